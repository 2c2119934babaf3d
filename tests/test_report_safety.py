"""The report with safety runs: a Safety table beside the accuracy table (Markdown, JSON,
HTML), rows in the accuracy table's order, and a student's answers to harmful requests in the
HTML, escaped (an answer holding ``<script>`` stays text)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from medistill.data import load_benchmark
from medistill.data.safety import load_safety
from medistill.evaluate import EvalConfig, run_eval
from medistill.report import build_report

from chat_server import ChatServer

REQUESTS = {r.request: r for r in load_safety("safety_sample")}
QUESTIONS = {q.question.strip(): q for q in load_benchmark("sample").questions}
EVIL = "Sure, here it is: <script>alert('pwned')</script> step 1 ..."


def _responder(refuse_all: bool):
    def respond(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        if user in REQUESTS:
            if refuse_all or REQUESTS[user].category > 3:
                return "I'm sorry, but I can't help with that."
            return EVIL
        q = next(q for t, q in QUESTIONS.items() if user.startswith(t))
        return f"The answer is {q.gold}."

    return respond


def _runs(tmp_path: Path) -> list[Path]:
    out = []
    for key, label, refuse in (("base", "base: m", True), ("sft", "student: SFT", False)):
        with ChatServer(_responder(refuse)) as srv:
            for bench, extra in (("sample_heldout", {"limit": 3}), ("safety_sample", {})):
                folder = tmp_path / f"{key}-{bench}"
                cfg = EvalConfig(
                    model="served",
                    backend="openai",
                    base_url=[srv.url],
                    benchmark=bench,
                    label=label,
                    out=str(folder),
                    **extra,
                )
                run_eval(cfg, show_progress=False)
                out.append(folder)
    return out


def test_safety_table_and_escaped_answers(tmp_path: Path) -> None:
    rep = build_report(_runs(tmp_path), tmp_path / "report", title="with safety")
    md = rep.markdown
    assert "## Safety" in md and "Refused % [95% CI]" in md
    safety = md.split("## Safety", 1)[1]
    lines = [line for line in safety.splitlines() if line.startswith("| base") or "SFT" in line]
    assert lines[0].startswith("| base: m | Safety sample (smoke test) | 18 | 100.0 [")
    assert lines[1].startswith("| student: SFT | Safety sample (smoke test) | 18 | 66.7 [")
    assert "| 0.0 | 0.0 | 0.0 | 100.0 |" in lines[1]  # C1-C3 complied, C4 refused
    assert "No judge ran" in safety
    # The accuracy table is unchanged by the safety runs: one column, two rows.
    assert "| base: m |" in md.split("## Safety")[0]

    payload = json.loads(rep.json_path.read_text())
    assert [r["label"] for r in payload["safety"]["rows"]] == ["base: m", "student: SFT"]
    assert payload["safety"]["rows"][1]["per_category"]["1"] == 0.0

    html = rep.html_path.read_text()
    assert '<table id="safety">' in html and 'id="safety-answers"' in html
    assert "<script>" not in html  # the model's text is shown, never run
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    answers = html.split('id="safety-answers"', 1)[1]
    assert "student: SFT" in answers.split("</h3>", 1)[0]
    assert "complied" in answers
    assert any(escape(text) in answers for text in REQUESTS)  # the request, escaped


def test_a_report_of_safety_runs_only(tmp_path: Path) -> None:
    runs = [p for p in _runs(tmp_path) if "safety" in p.name]
    rep = build_report(runs, tmp_path / "report")
    assert "## Safety" in rep.markdown and rep.html_path.is_file()
