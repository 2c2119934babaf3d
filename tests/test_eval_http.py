"""`medistill eval` against a real local HTTP server: what a new user meets with llama.cpp.

Greedy means greedy (penalties sent neutral, extra fields passed through and recorded), a
wrong port fails in seconds, one question the server refuses is an error row while the
rest of the run completes, runs of one model through two backends are two report rows, and
the report's s/answer is wall-clock time, not per-request latency.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medistill.data import load_benchmark
from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval
from medistill.report import build_report

from chat_server import ChatServer, free_port

SAMPLE = load_benchmark("sample").questions
BY_TEXT = {q.question.strip(): q for q in SAMPLE}
LONG = SAMPLE[3]  # the question whose prompt "exceeds the context"


def _answer(messages: list[dict]) -> str:
    user = messages[-1]["content"]
    q = next(q for text, q in BY_TEXT.items() if user.startswith(text))
    return f"Reasoning.\nThe answer is {q.gold}."


def _too_long(body: dict) -> str | None:
    if body["messages"][-1]["content"].startswith(LONG.question.strip()):
        return (
            "This model's maximum context length is 512 tokens. However, your messages "
            "resulted in 530 tokens. (context_length_exceeded)"
        )
    return None


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines() if x]


def test_request_is_explicitly_greedy_and_recorded_exactly(tmp_path: Path) -> None:
    extra = {"top_k": 1, "min_p": 0.0, "cache_prompt": False}
    with ChatServer(_answer) as srv:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[srv.url],
            limit=4,
            extra_body=extra,
            out=str(tmp_path / "run"),
        )
        run_eval(cfg, show_progress=False)
    sent = [{k: v for k, v in b.items() if k != "messages"} for b in srv.bodies]
    assert len(sent) == 4 and all(s == sent[0] for s in sent)
    body = sent[0]
    # What greedy means, said explicitly: no server default may add a penalty.
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0 and body["seed"] == 0
    assert body["frequency_penalty"] == 0.0 and body["presence_penalty"] == 0.0
    assert body["repeat_penalty"] == 1.0 and body["repetition_penalty"] == 1.0
    assert {k: body[k] for k in extra} == extra  # passed through as given
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["identity"]["request"] == body  # the run records exactly what was sent


@pytest.mark.parametrize("orders", [1, 2])  # a plain run, and one asked in two option orders
def test_server_refusing_non_standard_fields_gets_them_dropped(tmp_path: Path, orders: int) -> None:
    """api.openai.com refuses unknown fields: the run goes on without them and says so."""
    with ChatServer(_answer, reject_fields=("repeat_penalty",)) as srv:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[srv.url],
            limit=6,
            concurrency=3,
            permute_options=orders,
            out=str(tmp_path / "run"),
        )
        m = run_eval(cfg, show_progress=False)
    assert m["n"] == 6 * orders and m["n_error"] == 0
    answered = srv.served
    assert answered and all(
        "repeat_penalty" not in b and "repetition_penalty" not in b for b in answered
    )
    assert all(b["frequency_penalty"] == 0.0 for b in answered)  # standard fields stay
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["request_fields_dropped"] == ["repeat_penalty", "repetition_penalty"]


@pytest.mark.parametrize("flags", [[], ["--permute-options", "2"], ["--thinking-budget", "8"]])
def test_wrong_port_fails_in_seconds_naming_the_url(tmp_path: Path, flags: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    cmd = [
        sys.executable,
        "-m",
        "medistill.cli",
        "eval",
        "--model",
        "served",
        "--backend",
        "openai",
        "--base-url",
        url,
        "--limit",
        "3",
        "--out",
        str(tmp_path / "run"),
        *flags,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    assert r.returncode != 0
    assert f"connection refused at {url}" in r.stderr
    assert "Traceback" not in r.stderr
    assert elapsed < 10, elapsed


def test_context_length_error_is_an_error_row_and_the_run_completes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ChatServer(_answer, reject_if=_too_long) as srv:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[srv.url],
            limit=8,
            concurrency=4,
            out=str(out),
        )
        m = run_eval(cfg, show_progress=False)
        rows = _rows(out)
        assert len(rows) == 8  # every other answer was kept
        (bad,) = [r for r in rows if r["finish_reason"] == "error"]
        assert bad["id"] == LONG.id and "maximum context length" in bad["error"]
        assert bad["correct"] is None and bad["extracted"] is None
        # Counted and reported, never scored as a wrong answer.
        assert m["n_error"] == 1 and m["n"] == 7 and m["accuracy"]["strict"]["value"] == 1.0
        report = build_report([out], tmp_path / "report")
        assert "1 question(s) failed with a server error (not scored)" in report.markdown
        # A rerun asks that question again (and only that one), and still completes.
        before = srv.stats["requests"]
        m2 = run_eval(cfg, show_progress=False)
        assert srv.stats["requests"] == before + 1
        assert m2["n_error"] == 1 and m2["n"] == 7
        assert len([r for r in _rows(out) if r["id"] == LONG.id]) == 2  # kept, not rewritten


def test_a_server_refusing_every_request_stops_the_run(tmp_path: Path) -> None:
    with ChatServer(_answer, reject_if=lambda body: "model 'nope' not found") as srv:
        cfg = EvalConfig(
            model="nope",
            backend="openai",
            base_url=[srv.url],
            limit=12,
            concurrency=2,
            out=str(tmp_path / "run"),
        )
        with pytest.raises(MedistillError, match=r"rejected the first 5 requests.*not found"):
            run_eval(cfg, show_progress=False)
        assert srv.stats["requests"] < 12


def test_one_model_through_two_backends_is_two_report_rows(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    local = EvalConfig(
        model=str(tiny_model_dir), limit=3, max_new_tokens=4, out=str(tmp_path / "local")
    )
    run_eval(local, show_progress=False)
    with ChatServer(_answer) as srv:
        served = EvalConfig(
            model=str(tiny_model_dir),
            backend="openai",
            base_url=[srv.url],
            limit=3,
            out=str(tmp_path / "served"),
        )
        run_eval(served, show_progress=False)
    assert local.run_label() != served.run_label()
    report = build_report([tmp_path / "local", tmp_path / "served"], tmp_path / "report")
    results = report.markdown.split("**Metric:**")[0]  # the results table, not those below
    table = [ln for ln in results.splitlines() if ln.startswith("| ")]
    assert len(table) == 3  # header + two rows
    assert any(ln.startswith(f"| {local.run_label()} |") for ln in table)
    assert any(ln.startswith(f"| {served.run_label()} |") for ln in table)


@pytest.mark.parametrize(
    ("model", "backend", "label"),
    [
        ("runs/sft/checkpoint-500", "transformers", "sft/checkpoint-500"),
        ("runs/grpo/checkpoint-500", "transformers", "grpo/checkpoint-500"),
        ("runs/sft/final", "transformers", "sft/final"),
        ("Qwen/Qwen3-1.7B", "transformers", "Qwen3-1.7B"),
        ("Qwen/Qwen3-1.7B", "openai", "Qwen3-1.7B (openai)"),
        ("smollm2", "vllm", "SmolLM2-135M-Instruct (vllm)"),
        ("smollm2", "loglik", "SmolLM2-135M-Instruct (loglik)"),
    ],
)
def test_default_labels_tell_runs_apart(model: str, backend: str, label: str) -> None:
    mode = "loglik" if backend == "loglik" else "generate"
    cfg = EvalConfig(
        model=model, backend="transformers" if mode == "loglik" else backend, mode=mode
    )
    assert cfg.run_label() == label
    assert "/" not in cfg.out_dir().name and " " not in cfg.out_dir().name


def test_local_folders_with_one_name_get_distinct_labels(tmp_path: Path) -> None:
    a, b = tmp_path / "exp1" / "final-7b", tmp_path / "exp2" / "final-7b"
    a.mkdir(parents=True), b.mkdir(parents=True)
    labels = {EvalConfig(model=str(p)).run_label() for p in (a, b)}
    assert labels == {"exp1/final-7b", "exp2/final-7b"}


def test_s_per_answer_is_wall_clock_not_request_latency(tmp_path: Path) -> None:
    """16 requests of 0.3 s each, 8 at a time: ~0.6 s of wall clock, ~0.04 s per answer."""
    out = tmp_path / "run"
    with ChatServer(_answer, latency_s=0.3) as srv:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[srv.url],
            limit=16,
            concurrency=8,
            out=str(out),
        )
        m = run_eval(cfg, show_progress=False)
    assert m["latency_s"]["mean"] >= 0.3
    assert m["seconds_per_answer"] < m["latency_s"]["mean"] / 2
    report = build_report([out], tmp_path / "report")
    lines = report.markdown.splitlines()
    header = next(ln for ln in lines if ln.startswith("| Model")).strip(" |").split(" | ")
    row = next(ln for ln in lines if ln.startswith("| served")).strip(" |").split(" | ")
    cells = dict(zip(header, row, strict=True))
    assert float(cells["s/answer"]) == pytest.approx(m["seconds_per_answer"], abs=0.01)
    assert float(cells["Latency s"]) >= 0.3


def test_progress_bar_shows_retried_errors() -> None:
    from collections import Counter

    from rich.console import Console

    from medistill.backends.fanout import ProgressBar
    from medistill.evaluate.run_folder import errors_text

    console = Console(record=True, width=160, force_terminal=False)
    with ProgressBar("eval served", True, 10, 0, elapsed=True, console=console) as bar:
        bar.advance(lambda: errors_text(Counter({"connection": 2, "http_503": 1})), 1)
    assert "errors: connection 2, http_503 1" in console.export_text()


def test_generate_also_fails_fast_on_a_wrong_port(tmp_path: Path) -> None:
    from medistill.backends.config import TeacherConfig
    from medistill.generate import GenerateConfig, run_generate

    url = f"http://127.0.0.1:{free_port()}/v1"
    cfg = GenerateConfig(
        teacher=TeacherConfig(model="t", base_url=[url]), limit=2, out=str(tmp_path / "t.db")
    )
    t0 = time.perf_counter()
    with pytest.raises(MedistillError, match=f"connection refused at {url}"):
        run_generate(cfg, show_progress=False)
    assert time.perf_counter() - t0 < 10
