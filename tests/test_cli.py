"""The CLI: thin commands, one-line errors with exit status 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medistill.cli import app

runner = CliRunner()


def test_inspect_reports_counts_and_skips(tmp_path: Path, shared_data: Path) -> None:
    r = runner.invoke(
        app,
        [
            "inspect",
            "medqa",
            "--path",
            str(shared_data / "medqa/US_4options_dev_subset100_lievin2022.jsonl"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "loaded 100 questions, 1 without a gold answer (1116)" in r.stdout
    bad = tmp_path / "b.jsonl"
    ok = {"id": "1", "question": "Q", "options": ["x", "y"], "answer": "A"}
    bad.write_text(json.dumps(ok) + "\n" + json.dumps({**ok, "id": "2", "answer": "C"}) + "\n")
    r = runner.invoke(app, ["inspect", "sample", "--path", str(bad)])
    assert r.exit_code == 2
    assert "b.jsonl:2: field 'answer': gold answer 'C' is not among" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["inspect", "sample", "--path", str(bad), "--skip-invalid"])
    assert r.exit_code == 0 and "skipped 1 invalid" in r.stdout and "b.jsonl:2" in r.stdout


def test_unknown_names_list_choices(tmp_path: Path) -> None:
    r = runner.invoke(app, ["eval", "--model", "x", "--benchmark", "medqua"])
    assert r.exit_code == 2 and "choose one of: medqa" in r.output
    r = runner.invoke(app, ["eval", "--model", "x", "--backend", "tgi", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "transformers, openai, vllm" in r.output
    r = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "missing" in r.output and "Traceback" not in r.output


def test_eval_then_report_from_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--limit",
            "4",
            "--max-new-tokens",
            "6",
            "--out",
            str(run),
            "--label",
            "tiny",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "tiny on sample: n=4 accuracy lenient" in r.stdout
    r = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "| tiny |" in r.stdout and (tmp_path / "rep" / "report.png").stat().st_size > 1000
