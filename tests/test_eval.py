"""Eval runs: a real tiny model through the real backend, resume, kill, loglik, HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medistill.data import load_benchmark
from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval

from chat_server import ChatServer

SAMPLE = {q.question.strip(): q for q in load_benchmark("sample").questions}


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines() if x]


def _teacher(messages: list[dict]) -> str:
    """Answers the embedded sample correctly, in the expected format."""
    user = messages[-1]["content"]
    q = next(q for text, q in SAMPLE.items() if user.startswith(text))
    return f"Reasoning about {q.subject}.\nThe answer is {q.gold}."


def test_tiny_model_eval_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = EvalConfig(
        model=str(tiny_model_dir),
        benchmark="sample",
        limit=6,
        batch_size=4,
        max_new_tokens=8,
        out=str(tmp_path / "run"),
        label="tiny",
    )
    m = run_eval(cfg, show_progress=False)
    rows = _rows(tmp_path / "run")
    assert sorted(r["id"] for r in rows) == [f"sample-00{i}" for i in range(1, 7)]
    for r in rows:
        assert r["prompt"].endswith("<|im_start|>assistant\n")
        assert r["finish_reason"] in ("stop", "length")
        assert 1 <= r["output_tokens"] <= 8 + 1
        assert r["latency_s"] > 0
        assert r["correct"] == (r["extracted"] == r["gold"])
    assert m["n"] == 6 and m["label"] == "tiny" and m["benchmark"] == "sample"
    assert m["truncation_rate"] == sum(r["finish_reason"] == "length" for r in rows) / 6
    assert m["accuracy"]["lenient"]["n"] == 6
    assert 0 <= m["accuracy"]["lenient"]["ci_low"] <= m["accuracy"]["lenient"]["ci_high"] <= 1
    assert m["throughput"]["answers_per_s"] > 0
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["accuracy"] == m["accuracy"]


def test_rerun_skips_finished_and_torn_line_is_dropped(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    cfg = EvalConfig(
        model=str(tiny_model_dir),
        benchmark="sample",
        limit=6,
        batch_size=3,
        max_new_tokens=4,
        out=str(out),
    )
    run_eval(cfg, show_progress=False)
    first = _rows(out)
    # Simulate a kill mid-write: keep 4 rows plus half of the fifth.
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(lines[:4]) + lines[4][:20])
    run_eval(cfg, show_progress=False)
    again = _rows(out)
    assert len(again) == 6 and len({r["id"] for r in again}) == 6
    assert again[:4] == first[:4]  # finished rows untouched
    # Nothing left to do: the model is not even loaded again.
    import medistill.evaluate.run_folder as ev

    def no_backend(_cfg):
        raise AssertionError("backend built although every question was finished")

    monkeypatch.setattr(ev, "make_backend", no_backend)
    assert run_eval(cfg, show_progress=False)["n"] == 6
    assert len(_rows(out)) == 6


def test_changed_settings_refuse_to_mix(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    run_eval(
        EvalConfig(model=str(tiny_model_dir), limit=2, max_new_tokens=4, out=out),
        show_progress=False,
    )
    with pytest.raises(MedistillError, match=r"different settings.*sampling"):
        run_eval(
            EvalConfig(model=str(tiny_model_dir), limit=2, max_new_tokens=5, out=out),
            show_progress=False,
        )
    m = run_eval(
        EvalConfig(model=str(tiny_model_dir), limit=2, max_new_tokens=5, out=out),
        overwrite=True,
        show_progress=False,
    )
    assert m["n"] == 2


def test_loglik_mode(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ll"
    m = run_eval(
        EvalConfig(model=str(tiny_model_dir), limit=5, mode="loglik", out=str(out)),
        show_progress=False,
    )
    rows = _rows(out)
    assert len(rows) == 5 and m["mode"] == "loglik" and m["truncation_rate"] == 0.0
    for r in rows:
        lp = r["logprobs"]
        assert set(lp) == {"A", "B", "C", "D"} and all(v < 0 for v in lp.values())
        assert r["extracted"] == max(lp, key=lp.get) and r["rule"] == "loglik"


@pytest.mark.parametrize(
    ("continuations", "add_bos"),
    [
        ({"A": " A", "B": " B"}, None),  # one token each: one pass for the question
        ({"A": " A", "B": " B"}, True),
        ({"A": " ascorbic acid", "B": " maybe not at all"}, None),  # several tokens each
    ],
)
def test_choice_scores_match_a_direct_forward_pass(
    tiny_model_dir: Path, continuations: dict[str, str], add_bos: bool | None
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medistill.backends.hf import TransformersBackend
    from medistill.prompts import ChoiceRequest

    backend = TransformersBackend(str(tiny_model_dir), batch_size=2)
    ctx = "Which vitamin deficiency causes scurvy?\nA. C\nB. D\nAnswer:"
    other = ChoiceRequest("A much longer context that pads the batch. " * 5 + ctx, continuations)
    got = backend.score_choices([ChoiceRequest(ctx, continuations, add_bos), other])[0]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    bos = [tok.bos_token_id] if add_bos and tok.bos_token_id is not None else []
    for letter, cont in continuations.items():
        ids = bos + tok(ctx, add_special_tokens=add_bos is None)["input_ids"]
        full = bos + tok(ctx + cont, add_special_tokens=add_bos is None)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([full])).logits[0], -1)
        want = sum(float(logp[i - 1, full[i]]) for i in range(len(ids), len(full)))
        assert got[letter] == pytest.approx(want, abs=1e-4)


def test_openai_backend_eval_through_faults(tmp_path: Path) -> None:
    with ChatServer(_teacher, fault_rate=0.3, truncate_every=0, seed=1) as srv:
        cfg = EvalConfig(
            model="teacher",
            backend="openai",
            base_url=[srv.url],
            limit=40,
            concurrency=8,
            out=str(tmp_path / "api"),
            label="teacher",
        )
        from medistill.backends import openai_http

        orig = openai_http.OpenAIBackend.__init__

        def fast(self, *a, **kw):  # keep retries quick in tests
            orig(self, *a, **kw)
            self.backoff_base_s = 0.01

        openai_http.OpenAIBackend.__init__ = fast
        try:
            m = run_eval(cfg, show_progress=False)
        finally:
            openai_http.OpenAIBackend.__init__ = orig
        faults = sum(srv.stats[f] for f in ("429", "500", "503", "reset", "malformed"))
    rows = _rows(tmp_path / "api")
    assert len(rows) == 40 and faults > 0
    assert m["accuracy"]["strict"]["value"] == 1.0 and m["no_answer_rate"]["lenient"] == 0
    assert all(r["endpoint"] == srv.url and r["output_tokens"] for r in rows)


def test_openai_truncation_is_recorded(tmp_path: Path) -> None:
    with ChatServer(_teacher, truncate_every=2) as srv:
        m = run_eval(
            EvalConfig(
                model="t", backend="openai", base_url=[srv.url], limit=10, out=str(tmp_path / "t")
            ),
            show_progress=False,
        )
    assert m["truncation_rate"] == pytest.approx(0.5)
    rows = _rows(tmp_path / "t")
    # A cut-off answer scores nothing by fallback: only what it explicitly stated counts.
    assert all(r["extracted"] is None for r in rows if r["finish_reason"] == "length")


def test_auth_error_names_variable_not_key(tmp_path: Path, monkeypatch) -> None:
    secret = "sk-test-DO-NOT-LEAK-1234567890"
    monkeypatch.setenv("MEDISTILL_TEST_KEY", secret)
    with ChatServer(_teacher, api_key="the-right-key") as srv:
        cfg = EvalConfig(
            model="t",
            backend="openai",
            base_url=[srv.url],
            limit=3,
            api_key_env="MEDISTILL_TEST_KEY",
            out=str(tmp_path / "a"),
        )
        with pytest.raises(MedistillError) as exc:
            run_eval(cfg, show_progress=False)
        assert srv.stats["requests"] <= 3  # stopped at once, no retries
    msg = str(exc.value)
    assert "MEDISTILL_TEST_KEY" in msg and srv.url in msg and secret not in msg
    for f in (tmp_path / "a").iterdir():
        assert secret not in f.read_text()


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "medistill.cli",
        "eval",
        "--model",
        str(tiny_model_dir),
        "--limit",
        "16",
        "--batch-size",
        "1",
        "--max-new-tokens",
        "24",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = out / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pred.exists() and pred.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(out)
    assert 3 <= len(before) < 16
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = _rows(out)
    assert len(after) == 16 and len({r["id"] for r in after}) == 16
    assert after[: len(before)] == before
