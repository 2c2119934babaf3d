"""The HTML report's sample explanations: for each benchmark, a student's answers to a few
questions, right and wrong, each beside the teacher's answer to the SAME question.

Questions are paired by (benchmark, question id): the student's and the teacher's runs on one
benchmark, never one benchmark's student beside another benchmark's teacher. Questions the
teacher also answered are shown first; the caption says beside whom the answers are, and says
so plainly when the teacher did not run on a benchmark or did not answer a shown question.
Every text that comes from a model or a dataset is escaped.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

from medistill.data import load_benchmark
from medistill.data.options import format_options
from medistill.report.tables import bench_header

log = logging.getLogger(__name__)


def is_teacher(label: str) -> bool:
    """A teacher row of the report (``medistill run`` labels it ``teacher: <model>``)."""
    return label.lower().startswith("teacher")


def predictions(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A run's ``predictions.jsonl`` rows by question id (empty when the file is absent)."""
    path = Path(run["_path"]).parent / "predictions.jsonl"
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows[str(r["id"])] = r
    return rows


def _questions(run: dict[str, Any]) -> dict[str, Any]:
    """The run's questions by id, read the way the run read them (for the clean text)."""
    cfg_path = Path(run["_path"]).parent / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))["config"]
        qs = load_benchmark(cfg["benchmark"], cfg.get("path"), **(cfg.get("loader_kwargs") or {}))
        return {q.id: q for q in qs.questions}
    except Exception as e:  # the answers are shown without the question text
        log.info("sample explanations without question text (%s)", e)
        return {}


def pick_pairs(
    runs: list[dict[str, Any]], order: list[str], benchmarks: list[str], n: int
) -> list[dict[str, Any]]:
    """Per benchmark (in ``benchmarks`` order), the cases to show: ``benchmark``, ``student``
    and ``teacher`` (runs on that benchmark; the teacher may be None), and ``cases``, up to
    ``n`` of ``(student_row, teacher_row | None)`` on one question id — questions the student
    got right, then wrong, those the teacher also answered first. The student is the last
    model in ``order`` (the report's row order) that is not the teacher."""
    gen = [r for r in runs if r.get("mode", "generate") == "generate"]
    gen.sort(key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    out = []
    for bench in benchmarks:
        here = [r for r in gen if r["benchmark"] == bench]
        teacher = next((r for r in here if is_teacher(r["label"])), None)
        students = [r for r in here if r is not teacher]
        if not students or n <= 0:
            continue
        student = students[-1]
        mine = predictions(student)
        theirs = predictions(teacher) if teacher else {}
        scored = [r for r in mine.values() if r.get("correct") is not None]
        # questions the teacher answered too come first, within right and within wrong
        scored.sort(key=lambda r: str(r["id"]) not in theirs)
        right = [r for r in scored if r["correct"]][: (n + 1) // 2]
        wrong = [r for r in scored if not r["correct"]][: n - len(right)]
        picked = (right + wrong)[:n]
        if len(picked) < n:  # fewer wrong (or right) answers than half: fill from the others
            rest = [r for r in scored if r not in picked]
            picked += rest[: n - len(picked)]
            picked.sort(key=lambda r: not r["correct"])  # right, then wrong
        cases = [(r, theirs.get(str(r["id"]))) for r in picked]
        out.append({"benchmark": bench, "student": student, "teacher": teacher, "cases": cases})
    return out


def caption(pair: dict[str, Any]) -> str:
    """What the shown answers are, true in every case: beside the teacher on the same
    questions, or why the teacher's answer is missing."""
    student, teacher, cases = pair["student"], pair["teacher"], pair["cases"]
    bench = bench_header(pair["benchmark"])
    head = f"{student['label']} on {bench}"
    if teacher is None:
        return f"{head}: no teacher run on {bench}, so the student's answers are shown alone."
    missing = sum(1 for _, t in cases if t is None)
    right = sum(1 for r, _ in cases if r["correct"])
    if missing == 0:
        return (
            f"{head}, each beside {teacher['label']}'s answer to the same question: "
            f"{right} the student got right, then {len(cases) - right} it got wrong."
        )
    if missing == len(cases):
        return (
            f"{head}: {teacher['label']} answered none of these questions on {bench} (its "
            "run holds other questions), so the student's answers are shown alone."
        )
    return (
        f"{head}, beside {teacher['label']}'s answer to the same question where the teacher "
        f"answered it ({missing} of {len(cases)} shown without one: not in the teacher's run)."
    )


def samples_html(
    runs: list[dict[str, Any]], order: list[str], benchmarks: list[str], n: int
) -> str:
    """The report's sample-explanations section (``<div id="explanations">``), one block per
    benchmark."""
    pairs = [p for p in pick_pairs(runs, order, benchmarks, n) if p["cases"]]
    if not pairs:
        return "<p class='note'>No scored generated answers to show.</p>"
    out = []
    for pair in pairs:
        bench = pair["benchmark"]
        out.append(
            f'<div class="bench" data-benchmark="{escape(bench)}">'
            f"<h3>{escape(bench_header(bench))}</h3>"
            f"<p class='note caption'>{escape(caption(pair))}</p>"
        )
        questions = _questions(pair["student"])
        for mine, theirs in pair["cases"]:
            out.append(_case(pair, mine, theirs, questions.get(mine["id"])))
        out.append("</div>")
    return f'<div id="explanations">{"".join(out)}</div>'


def _case(pair: dict[str, Any], mine: dict[str, Any], theirs: dict[str, Any] | None, q: Any) -> str:
    head = f"<strong>{escape(str(mine['id']))}</strong> — gold {escape(str(mine.get('gold')))}"
    text = ""
    if q is not None:
        opts = "<br>".join(escape(line) for line in format_options(q.options).split("\n"))
        text = f"<p>{escape(q.question)}</p><p>{opts}</p>"
    cols = [answer_block(pair["student"]["label"], mine)]
    if theirs is not None:
        cols.append(answer_block(pair["teacher"]["label"], theirs))
    return (
        f'<div class="case" data-id="{escape(str(mine["id"]))}">{head}{text}'
        f'<div class="pair">{"".join(cols)}</div></div>'
    )


def answer_block(label: str, row: dict[str, Any]) -> str:
    """One model's answer to one question: its letter, right or wrong, and its text."""
    verdict = "right" if row.get("correct") else "wrong"
    css = "ok" if row.get("correct") else "bad"
    got = row.get("extracted") or "no answer"
    return (
        f'<div class="answer" data-label="{escape(label)}"><strong>{escape(label)}</strong> — '
        f"<span class='{css}'>{escape(str(got))}, {verdict}</span> <span class='note'>"
        f"({escape(str(row.get('finish_reason')))}, {escape(str(row.get('output_tokens')))} "
        f"tokens)</span>{_verdict_note(row)}"
        f"<pre>{escape(str(row.get('response') or ''))}</pre></div>"
    )


def _verdict_note(row: dict[str, Any]) -> str:
    """The audit's reading of the row (``reasoning_verdict`` in predictions, when written):
    a mark where the reasoning argues for another option, or for none."""
    verdict = row.get("reasoning_verdict")
    if verdict == "argues_other":
        said = escape(str(row.get("extracted_strict") or row.get("extracted")))
        argued = escape(str(row.get("concluded")))
        return (
            f" <span class='bad verdict'>the reasoning argues for {argued}, the answer line "
            f"says {said}</span>"
        )
    if verdict == "argues_none":
        return " <span class='bad verdict'>the reasoning argues for no option</span>"
    return ""
