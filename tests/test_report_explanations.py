"""The report's Explanations table: per model and benchmark, whether the reasoning supports the
answer (consistency), whether the answer was fixed before any reasoning (early answering) and,
where a judge ran, the share of wrong steps — from ``metrics.json``'s ``explanations`` block;
a run without one is "not measured", with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medistill.report import build_report
from test_report import metrics, write_run


def audit(
    *,
    inconsistent: float = 0.12,
    other: float = 0.08,
    none: float = 0.04,
    load_bearing: bool = True,
    judge: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``explanations`` block in the schema ``medistill eval`` writes."""
    block: dict[str, Any] = {
        "consistency": {
            "n": 48,
            "consistent": 0.8,
            "argues_other": other,
            "argues_none": none,
            "no_conclusion": 0.08,
            "inconsistent": inconsistent,
            "inconsistent_ci": [0.058, 0.247],
        },
        "load_bearing": None,
    }
    if load_bearing:
        block["load_bearing"] = {
            "n": 48,
            "fractions": [0, 0.25, 0.5, 0.75, 1.0],
            "match_final": [0.625, 0.7, 0.81, 0.9, 1.0],
            "mean_prob_final": [0.5, 0.6, 0.7, 0.8, 0.95],
            "fixed_before_reasoning": 0.625,
            "fixed_ci": [0.484, 0.748],
            "backend": "transformers",
        }
    else:
        block["load_bearing_skipped"] = "the openai backend returns no log-probabilities"
    if judge is not None:
        block["step_errors"] = judge
    return block


def _table(markdown: str) -> list[list[str]]:
    section = markdown.split("## Explanations", 1)[1]
    lines = [x for x in section.splitlines() if x.startswith("|")]
    return [[c.strip() for c in x.strip().strip("|").split(" | ")] for x in lines]


def test_explanations_table(tmp_path: Path) -> None:
    judge = {
        "n_answers": 48,
        "n_steps": 300,
        "wrong_share": 0.312,
        "wrong_per_answer": 0.3,
        "cant_tell_share": 0.1,
        "failed": 3,
        "judge": "SmolLM2-1.7B-Instruct",
        "weak_judge": True,
    }
    teacher = metrics("teacher: T", "medqa")
    teacher["explanations"] = audit(judge=judge)
    teacher2 = metrics("teacher: T", "medmcqa")
    teacher2["explanations"] = audit(inconsistent=0.02, other=0.02, none=0.0)
    base = metrics("base: B", "medqa")  # a run written before the audit
    student = metrics("student: SFT", "medqa")
    student["explanations"] = audit(load_bearing=False)
    loglik = metrics("Meditron", "medqa", mode="loglik")
    unread = metrics("student: SFT", "medmcqa")
    unread["explanations"] = None  # eval wrote no block: no row had a verdict to count
    silent = metrics("base: B", "medmcqa", no_answer=(1.0, 1.0))
    silent["explanations"] = None  # no answer line anywhere: nothing to compare
    runs = [
        write_run(tmp_path, name, payload)
        for name, payload in (
            ("t1", teacher),
            ("t2", teacher2),
            ("b", base),
            ("s", student),
            ("l", loglik),
            ("u", unread),
            ("n", silent),
        )
    ]
    rep = build_report(runs, tmp_path / "out")
    header, _, *rows = _table(rep.markdown)
    assert header[:3] == ["Model", "Benchmark", "n"]
    assert [r[:2] for r in rows] == [
        ["teacher: T", "MedQA"],
        ["teacher: T", "MedMCQA"],
        ["base: B", "MedQA"],
        ["base: B", "MedMCQA"],
        ["student: SFT", "MedQA"],
        ["student: SFT", "MedMCQA"],
        ["Meditron", "MedQA"],
    ]
    assert rows[0][2:] == [
        "48",
        "12.0 [5.8, 24.7] (8.0 / 4.0; 8.0)",
        "62.5 [48.4, 74.8]",
        "62 / 70 / 81 / 90 / 100 (transformers)",
        "31.2 (30.0 per answer; SmolLM2-1.7B-Instruct, weak judge)",
    ]
    assert rows[1][3] == "2.0 [5.8, 24.7] (2.0 / 0.0; 8.0)" and rows[1][6] == "–"
    assert rows[2][2:] == ["–"] + ["not measured"] * 4
    assert rows[4][4:6] == ["not measured", "not measured"]
    assert rows[3][3] == rows[5][3] == rows[6][3] == "not measured"
    assert "student: SFT on MedMCQA: not measured, no answered row carries a reasoning verdict" in (
        rep.markdown
    )
    md = rep.markdown
    assert "base: B on MedQA: not measured, its metrics.json has no explanations block" in md
    assert (
        "student: SFT on MedQA: early answering not measured: the openai backend returns no "
        "log-probabilities." in md
    )
    assert "Meditron on MedQA: not measured, a log-likelihood run" in md
    assert (
        "base: B on MedMCQA: not measured, no answer has an answer line to compare its "
        "reasoning with (strict no-answer 100%)." in md
    )
    assert "teacher: T on MedQA: 3 step judgement(s) failed (not counted)." in md
    assert "Lanham et al. 2023" in md
    # the section sits between the results and the safety part, in the HTML too
    html = rep.html_path.read_text()
    assert html.index("<h2>Results</h2>") < html.index('id="explanations-audit"')
    assert (
        "31.2 (30.0 per answer; SmolLM2-1.7B-Instruct, weak judge)" in html
        and "Lanham et al. 2023" in html
    )
    saved = json.loads(rep.json_path.read_text())["explanations"]
    assert saved["rows"][0][4] == "62.5 [48.4, 74.8]"
