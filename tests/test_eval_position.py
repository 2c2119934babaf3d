"""Every eval reports the letters it answered against the gold letters and flags position
bias, and gives the published tables' scoring rule beside strict and lenient accuracy, in
metrics.json, the command's output and the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medistill.data import load_benchmark
from medistill.evaluate import EvalConfig, run_eval
from medistill.report import build_report

from chat_server import ChatServer

BY_TEXT = {q.question.strip(): q for q in load_benchmark("sample").questions}


def _always_a(messages: list[dict]) -> str:
    """A student that learned a letter: it names the gold, then answers A anyway."""
    user = messages[-1]["content"]
    q = next(q for text, q in BY_TEXT.items() if user.startswith(text))
    other = "B" if q.gold == "A" else q.gold
    return f"It is {other} or A.\nThe answer is A."


def test_a_letter_collapse_is_flagged_and_the_published_rule_is_an_upper_bound(
    tmp_path: Path,
) -> None:
    with ChatServer(_always_a) as srv:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[srv.url],
            benchmark="sample",
            out=str(tmp_path / "run"),
            max_new_tokens=32,
        )
        m = run_eval(cfg, show_progress=False)
        cmd = [sys.executable, "-m", "medistill.cli", "eval", "--model", "served"]
        cmd += ["--backend", "openai", "--base-url", srv.url, "--benchmark", "sample"]
        cmd += ["--out", str(tmp_path / "cli"), "--max-new-tokens", "32"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    letters = m["letters"]
    assert letters["extracted"] == {"A": 1.0} and letters["most_frequent"] == "A"
    assert letters["flagged"] and letters["excess"] == round(1.0 - letters["gold"]["A"], 4)
    lenient = m["accuracy"]["lenient"]["value"]
    published = m["accuracy_published"]
    assert published["upper_bound"] and published["value"] == 1.0 > lenient
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["accuracy_published"]["value"] == 1.0 and saved["letters"]["flagged"]
    assert "published-table scoring (upper bound): 100.0" in out.stdout
    assert "POSITION BIAS: A on 100%" in out.stdout
    rep = build_report([tmp_path / "run"], tmp_path / "report", title="bias")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "position bias: answers A on 100%" in md
    assert "Published-table scoring (upper bound)" in md and "| 100.0 · A 100% vs" in md
    html = (tmp_path / "report" / "report.html").read_text()
    assert 'id="published"' in html
    assert rep.warnings


def test_a_balanced_run_is_not_flagged(tmp_path: Path) -> None:
    def right(messages: list[dict]) -> str:
        q = next(q for t, q in BY_TEXT.items() if messages[-1]["content"].startswith(t))
        return f"The answer is {q.gold}."

    with ChatServer(right) as srv:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[srv.url],
            benchmark="sample",
            out=str(tmp_path / "run"),
            max_new_tokens=16,
        )
        m = run_eval(cfg, show_progress=False)
    assert m["letters"]["extracted"] == m["letters"]["gold"] and not m["letters"]["flagged"]
    assert m["accuracy_published"]["value"] == m["accuracy"]["lenient"]["value"] == 1.0
