"""Teacher generation: a real HTTP server with faults, a real SQLite store, real kills."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medistill.backends import SamplingParams
from medistill.backends.config import TeacherConfig
from medistill.cli import app
from medistill.data import load_benchmark
from medistill.errors import MedistillError
from medistill.generate import GenerateConfig, build_requests, run_generate, shuffle_question
from medistill.store import TraceStore, export_store, trace_key

from chat_server import ChatServer


def answer(messages: list[dict]) -> str:
    return "Step 1: consider the findings.\nThe answer is B."


def served_key(body: dict, base_seed: int = 0) -> str:
    """The store key of a request the server answered (the server sees the whole body)."""
    params = SamplingParams(
        max_new_tokens=body["max_tokens"],
        temperature=body["temperature"],
        top_p=body["top_p"],
        seed=body["seed"],
        n=body["n"],
    ).to_dict()
    return trace_key(body["model"], body["messages"], params, body["seed"] - base_seed)


def teacher(url: str | list[str], **kw) -> TeacherConfig:
    kw = {"concurrency": 16, "timeout_s": 0.3, "backoff_base_s": 0.01, "max_retries": 30, **kw}
    return TeacherConfig(model="teacher-x", base_url=url if isinstance(url, list) else [url], **kw)


def rows(db: Path) -> list[dict]:
    with TraceStore(db) as s:
        return list(s.iter_rows())


def test_faults_every_key_stored_exactly_once(shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with ChatServer(answer, fault_rate=0.3, truncate_every=7, seed=3, timeout_sleep_s=0.6) as srv:
        cfg = GenerateConfig(
            teacher=teacher(srv.url, concurrency=32),
            path=str(shared_data / "medqa/US_4options_test.jsonl"),
            benchmark="medqa",
            limit=200,
            samples=4,
            temperature=0.7,
            max_tokens=64,
            out=str(db),
        )
        summary = run_generate(cfg, show_progress=False)
        stats = srv.stats
    wanted = {
        r.key for r in build_requests(load_benchmark("medqa", cfg.path, limit=200).questions, cfg)
    }
    got = rows(db)
    assert len(wanted) == 800
    assert len(got) == 800 and {r["key"] for r in got} == wanted
    for fault in ("429", "500", "503", "reset", "malformed", "timeout"):
        assert stats[fault] > 0, fault
    assert sum(summary["errors"].values()) >= sum(
        stats[f] for f in ("429", "500", "503", "malformed")
    )
    assert summary["new_calls"] == 800 and summary["already_stored"] == 0
    assert 0 < sum(r["truncated"] for r in got) == summary["truncated_new"]
    assert all(r["text"] and r["endpoint"] == srv.url and r["completion_tokens"] for r in got)
    assert max(r["attempts"] for r in got) > 1
    # A rerun makes no call at all.
    with ChatServer(answer) as srv2:
        cfg.teacher = teacher(srv2.url)
        again = run_generate(cfg, show_progress=False)
        assert srv2.stats["requests"] == 0
    assert again["new_calls"] == 0 and again["already_stored"] == 800


def test_sigkill_then_resume_repeats_no_finished_call(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    with ChatServer(answer, latency_s=0.02) as srv:
        cmd = [
            sys.executable,
            "-m",
            "medistill.cli",
            "generate",
            "--teacher",
            "openai:teacher-x",
            "--base-url",
            srv.url,
            "--benchmark",
            "sample",
            "--samples",
            "4",
            "--concurrency",
            "4",
            "--max-tokens",
            "32",
            "--out",
            str(db),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        n = 0
        while time.time() < deadline and n < 60:
            time.sleep(0.05)
            if db.exists():
                try:
                    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM traces").fetchone()[0]
                except sqlite3.OperationalError:
                    n = 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = {r["key"]: r for r in rows(db)}
        assert 60 <= len(before) < 240
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        served = Counter(served_key(b) for b in srv.served)
    after = rows(db)
    assert len(after) == 240 and len({r["key"] for r in after}) == 240
    for key, row in before.items():  # finished before the kill: kept as is, never re-asked
        assert served[key] == 1
        assert next(r for r in after if r["key"] == key) == row


def test_auth_error_stops_at_once_and_never_leaks_the_key(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    secret = "sk-live-SECRET-abcdef123456"
    monkeypatch.setenv("TEACHER_KEY", secret)
    db = tmp_path / "a.db"
    caplog.set_level(logging.DEBUG)
    with ChatServer(answer, api_key="something-else") as srv:
        cfg = GenerateConfig(
            teacher=teacher(srv.url, api_key_env="TEACHER_KEY", concurrency=4),
            benchmark="sample",
            samples=4,
            out=str(db),
        )
        with pytest.raises(MedistillError) as exc:
            run_generate(cfg, show_progress=False)
        assert srv.stats["requests"] <= 4  # no retries, nothing sent after the first answer
        assert srv.seen_auth[0] == f"Bearer {secret}"  # the key was sent, to the server only
    msg = str(exc.value)
    assert srv.url in msg and "TEACHER_KEY" in msg and secret not in msg
    assert secret not in caplog.text
    assert secret.encode() not in db.read_bytes()
    # A server that echoes the key back in a 400: the message is scrubbed.
    with ChatServer(answer, reject_status=400) as srv:
        cfg.teacher = teacher(srv.url, api_key_env="TEACHER_KEY")
        with pytest.raises(MedistillError, match=r"HTTP 400") as exc:
            run_generate(cfg, show_progress=False)
    assert secret not in str(exc.value) and "***" in str(exc.value)
    assert secret not in caplog.text


def test_cli_auth_error_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with ChatServer(answer, api_key="k") as srv:
        r = CliRunner().invoke(
            app,
            [
                "generate",
                "--teacher",
                "openai:t",
                "--base-url",
                srv.url,
                "--api-key-env",
                "NOPE_KEY",
                "--limit",
                "2",
                "--out",
                str(tmp_path / "x.db"),
            ],
        )
    assert r.exit_code == 2
    assert "authentication failed" in r.output and "NOPE_KEY (it is not set)" in r.output
    assert "Traceback" not in r.output


def test_budgets_stop_cleanly_and_resume(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    with ChatServer(answer) as srv:
        cfg = GenerateConfig(
            teacher=teacher(srv.url, concurrency=4),
            benchmark="sample",
            samples=2,
            out=str(db),
            max_requests=10,
        )
        s = run_generate(cfg, show_progress=False)
        assert s["new_calls"] == 10 and s["stopped_by"] == "max_requests" and len(rows(db)) == 10
        cfg.max_requests = None
        cfg.max_cost = 0.0005
        cfg.teacher = teacher(srv.url, concurrency=1, price_input_per_mtok=10.0)
        s = run_generate(cfg, show_progress=False)
        assert s["stopped_by"] == "max_cost"
        assert s["estimated_cost_new"] >= 0.0005 and len(rows(db)) < 120
        cfg.max_cost = None
        s = run_generate(cfg, show_progress=False)
        assert s["stopped_by"] is None and len(rows(db)) == 120


def test_shuffle_remaps_gold_and_is_deterministic() -> None:
    q = load_benchmark("sample").questions[0]
    seen = set()
    for k in range(8):
        shown, perm = shuffle_question(q, 0, k)
        assert shuffle_question(q, 0, k) == (shown, perm)
        assert sorted(perm.values()) == sorted(q.options)
        assert shown.options[shown.gold] == q.options[q.gold]
        assert perm[shown.gold] == q.gold
        assert all(shown.options[s] == q.options[o] for s, o in perm.items())
        seen.add(tuple(perm.values()))
    assert len(seen) > 1


def test_shuffled_traces_store_permutation(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with ChatServer(answer) as srv:
        run_generate(
            GenerateConfig(
                teacher=teacher(srv.url),
                benchmark="sample",
                limit=5,
                samples=3,
                shuffle_options=True,
                out=str(db),
            ),
            show_progress=False,
        )
    sample = {q.id: q for q in load_benchmark("sample").questions}
    for r in rows(db):
        q = sample[r["question_id"]]
        assert r["permutation"][r["gold"]] == q.gold
        assert r["options"][r["gold"]] == q.options[q.gold]
        assert f"A. {r['options']['A']}" in r["messages"][-1]["content"]


@pytest.mark.parametrize("mode", ["field", "inline"])
def test_reasoning_kept(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "r.db"
    with ChatServer(answer, reasoning=mode) as srv:
        run_generate(
            GenerateConfig(teacher=teacher(srv.url), benchmark="sample", limit=2, out=str(db)),
            show_progress=False,
        )
    for r in rows(db):
        assert r["reasoning"] == "Thinking it through."
        assert r["text"].strip() == answer([])


def test_retry_truncated_once_with_bigger_budget(tmp_path: Path) -> None:
    db = tmp_path / "rt.db"
    with ChatServer(answer, truncate_every=2) as srv:
        s = run_generate(
            GenerateConfig(
                teacher=teacher(srv.url, concurrency=1),
                benchmark="sample",
                limit=6,
                max_tokens=50,
                retry_truncated=True,
                out=str(db),
            ),
            show_progress=False,
        )
        budgets = Counter(b["max_tokens"] for b in srv.served)
    assert s["retried_truncated"] >= 2 and budgets[100] == s["retried_truncated"]


def test_several_endpoints_share_the_load(tmp_path: Path) -> None:
    with ChatServer(answer, latency_s=0.02) as a, ChatServer(answer, latency_s=0.02) as b:
        run_generate(
            GenerateConfig(
                teacher=teacher([a.url, b.url], concurrency=8),
                benchmark="sample",
                limit=30,
                out=str(tmp_path / "e.db"),
            ),
            show_progress=False,
        )
        assert a.stats["ok"] > 5 and b.stats["ok"] > 5
        assert a.stats["ok"] + b.stats["ok"] == 30
    assert {r["endpoint"] for r in rows(tmp_path / "e.db")} == {a.url, b.url}


def test_requests_per_minute_paces(tmp_path: Path) -> None:
    with ChatServer(answer) as srv:
        t0 = time.perf_counter()
        run_generate(
            GenerateConfig(
                teacher=teacher(srv.url, requests_per_minute=1200),
                benchmark="sample",
                limit=10,
                out=str(tmp_path / "p.db"),
            ),
            show_progress=False,
        )
        # 20 requests/s: 10 requests cannot all start in less than 9 intervals of 50 ms.
        assert time.perf_counter() - t0 >= 0.44


def test_export_formats(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with ChatServer(answer) as srv:
        run_generate(
            GenerateConfig(
                teacher=teacher(srv.url), benchmark="sample", limit=4, samples=2, out=str(db)
            ),
            show_progress=False,
        )
    jl = export_store(db, tmp_path / "t.jsonl", "jsonl")
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert len(lines) == 8 and lines[0]["messages"][0]["role"] == "system"
    import datasets
    import pyarrow.parquet as pq

    table = pq.read_table(export_store(db, tmp_path / "t.parquet", "parquet"))
    assert table.num_rows == 8 and "text" in table.column_names
    ds = datasets.load_from_disk(str(export_store(db, tmp_path / "hf", "hf")))
    assert len(ds) == 8 and json.loads(ds[0]["messages"])[1]["role"] == "user"
    with pytest.raises(MedistillError, match="jsonl, parquet or hf"):
        export_store(db, tmp_path / "t.csv", "csv")


def test_yaml_recipe_and_cli(tmp_path: Path) -> None:
    with ChatServer(answer) as srv:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(
            "generate:\n"
            f"  teacher: {{model: teacher-y, base_url: [{srv.url}], concurrency: 4}}\n"
            "  benchmark: sample\n  limit: 3\n  samples: 2\n"
            f"  out: {tmp_path / 'y.db'}\n"
        )
        r = CliRunner().invoke(app, ["generate", "--config", str(recipe), "--samples", "3"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["new_calls"] == 9
        recipe.write_text("generate:\n  teacher: {model: t}\n  sampels: 2\n")
        r = CliRunner().invoke(app, ["generate", "--config", str(recipe)])
        assert r.exit_code == 2 and "unknown key(s) 'sampels' (did you mean 'samples'?)" in r.output
    assert {row["teacher"] for row in rows(tmp_path / "y.db")} == {"teacher-y"}


def test_store_is_wal_and_rejects_garbage(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    with TraceStore(db) as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite at all " * 100)
    with pytest.raises(MedistillError, match="not a usable trace store"):
        TraceStore(bad)


@pytest.mark.slow
def test_transformers_teacher_offline(tiny_model_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "hf.db"
    s = run_generate(
        GenerateConfig(
            teacher=TeacherConfig(model=str(tiny_model_dir), backend="transformers", batch_size=4),
            benchmark="sample",
            limit=3,
            samples=2,
            max_tokens=8,
            out=str(db),
        ),
        show_progress=False,
    )
    assert s["new_calls"] == 6
    got = rows(db)
    assert len(got) == 6 and {r["sample_index"] for r in got} == {0, 1}
    assert all(
        r["completion_tokens"] and r["finish_reason"] in ("stop", "length", "repetition")
        for r in got
    )


def test_split_option_is_accepted_and_labels_questions(tmp_path: Path) -> None:
    db = tmp_path / "sp.db"
    with ChatServer(answer) as srv:
        r = CliRunner().invoke(
            app,
            [
                "generate",
                "--teacher",
                "openai:t",
                "--base-url",
                srv.url,
                "--limit",
                "2",
                "--split",
                "train",
                "--out",
                str(db),
            ],
        )
    assert r.exit_code == 0, r.output
    with TraceStore(db) as s:
        assert len(s) == 2
    from medistill.data import load_benchmark as lb

    assert {q.split for q in lb("sample", split="train", limit=2)} == {"train"}


def test_rationalize_shows_the_teacher_the_key_but_never_the_student(tmp_path: Path) -> None:
    """STaR: the teacher's request carries the (shuffled) gold letter and the reference
    explanation; the curated student prompt is the plain question; a trace that parrots the
    hint is dropped as leaked_gold."""
    import re

    from medistill.curate import CurateConfig, run_curate

    seen: list[str] = []

    def rationalizer(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        seen.append(user)
        letter = re.search(r"the correct answer is ([A-E])\.", user).group(1)
        if len(seen) % 4 == 0:  # a teacher that gives the game away
            return f"For the teacher only the answer is {letter}.\nThe answer is {letter}."
        return f"Weighing the findings, option {letter} explains them.\nThe answer is {letter}."

    db = tmp_path / "t.db"
    with ChatServer(rationalizer) as srv:
        cfg = GenerateConfig(
            teacher=TeacherConfig(model="t", base_url=[srv.url]),
            benchmark="sample_train",
            limit=8,
            shuffle_options=True,
            rationalize=True,
            out=str(db),
        )
        run_generate(cfg, show_progress=False)
    questions = {q.id: q for q in load_benchmark("sample_train", limit=8).questions}
    for req in build_requests(list(questions.values()), cfg):
        user = req.messages[-1]["content"]
        assert f"the correct answer is {req.gold}." in user
        assert questions[req.question.id].meta["explanation"][:40] in user
        assert user.endswith(f'"The answer is {req.gold}.")')
    stats = run_curate(
        CurateConfig(
            store=str(db),
            out=str(tmp_path / "ds"),
            eval_benchmarks=[],
            min_tokens=4,
            validation_fraction=0.0,
            hf_dataset=False,
        ),
        show_progress=False,
    )
    assert stats["dropped"]["leaked_gold"] == 2
    rows = [json.loads(x) for x in (tmp_path / "ds/messages/train.jsonl").open()]
    assert len(rows) == 6
    for row in rows:
        prompt = row["messages"][-2]["content"]
        assert "teacher only" not in prompt and "correct answer" not in prompt


@pytest.mark.parametrize(
    ("urls", "model", "ok"),
    [
        (["https://api.deepseek.com/v1"], "deepseek-ai/DeepSeek-R1", False),  # main's GPU recipe
        (["https://api.deepseek.com"], "deepseek-reasoner", True),
        (["https://api.deepseek.com/v1"], "deepseek-chat", True),
        (["http://gpu1:8000/v1"], "deepseek-ai/DeepSeek-R1", True),  # your own vLLM server
    ],
)
def test_a_hosted_provider_gets_its_own_model_ids(urls: list[str], model: str, ok: bool) -> None:
    from medistill.backends.config import provider_model_problem

    problem = provider_model_problem(urls, model)
    assert (problem is None) is ok
    if not ok:
        assert "deepseek-reasoner" in problem and model in problem


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_shipped_recipes_name_models_their_provider_serves(name: str) -> None:
    """A shipped recipe must run as written: main sent the Hub id deepseek-ai/DeepSeek-R1 to
    DeepSeek's API, which serves deepseek-reasoner / deepseek-chat."""
    from medistill.backends.config import provider_model_problem
    from medistill.config import load_recipe

    teacher = (load_recipe(RECIPES / name).get("generate") or {}).get("teacher") or {}
    if teacher.get("backend", "openai") == "openai" and teacher.get("model"):
        urls = teacher.get("base_url") or []
        assert (
            provider_model_problem(urls if isinstance(urls, list) else [urls], teacher["model"])
            is None
        )


def test_the_teacher_backend_is_closed_when_generation_ends(tmp_path: Path, monkeypatch) -> None:
    """A local (vLLM) teacher's engine held its GPU memory after generate returned, into the
    training stage of the same `medistill run`; the backend is now closed on the way out,
    also when a call fails."""
    from medistill.backends.openai_http import OpenAIBackend

    closed: list[int] = []
    monkeypatch.setattr(OpenAIBackend, "close", lambda self: closed.append(1))
    with ChatServer(answer) as srv:
        cfg = GenerateConfig(
            teacher=teacher(srv.url), benchmark="sample", limit=3, out=str(tmp_path / "c.db")
        )
        assert run_generate(cfg, show_progress=False)["new_calls"] == 3
    assert closed == [1]
    with ChatServer(answer, api_key="other") as srv:  # fails with an auth error
        cfg = GenerateConfig(
            teacher=teacher(srv.url), benchmark="sample", limit=3, out=str(tmp_path / "d.db")
        )
        with pytest.raises(MedistillError):
            run_generate(cfg, show_progress=False)
    assert closed == [1, 1]
