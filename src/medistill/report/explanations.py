"""The report's Explanations table: does each model's reasoning support its answers?

One row per (model, benchmark) of the generate-mode runs, in the results table's order, from
the ``explanations`` block ``medistill eval`` writes in ``metrics.json``
(:mod:`medistill.evaluate.audit`):

* *inconsistent*: the share of answered questions whose reasoning argues for another option
  than the answer line, or for none (``consistency``; no judge, read by the one extractor);
* *fixed before reasoning* and the *early-answering* curve (``load_bearing``; Lanham et al.
  2023, arXiv 2307.13702): the model is made to answer with its reasoning cut at 0, 25, 50, 75
  and 100% of its tokens; the curve is the share whose answer then is already the final one,
  and *fixed before reasoning* the share answered the same with no reasoning at all;
* *wrong steps* (``step_errors``, optional): the share of reasoning steps a judge model read as
  wrong, with the judge named (a weak judge's figure labelled as such).

A run without the block (a log-likelihood run, one written before the audit) is shown as
*not measured*, with the reason in the notes.
"""

from __future__ import annotations

from html import escape
from typing import Any

from medistill.report.markdown import md_escape
from medistill.report.tables import DASH, bench_header, benchmark_order, pct

NOT_MEASURED = "not measured"
HEADER = [
    "Model",
    "Benchmark",
    "n",
    "Inconsistent % [95% CI] (other / none; no conclusion)",
    "Fixed before reasoning % [95% CI]",
    "Early answering: final answer given at 0/25/50/75/100% of reasoning",
    "Wrong steps % (per answer; judge)",
]
NOTES = [
    "Inconsistent: answered questions whose reasoning, read by the same extractor up to the "
    "final answer statement, argues for another option (other) or for none (none); no judge. "
    "No conclusion: the reasoning concludes nothing the extractor can read (not counted as "
    "inconsistent: a high share means the figure rests on few answers).",
    "Early answering (Lanham et al. 2023, arXiv 2307.13702): the reasoning cut at 0, 25, 50, 75 "
    "and 100% of its tokens and the model made to answer at once; the share already giving its "
    "final answer. Fixed before reasoning is that share at 0%: answers the reasoning did not "
    "change (reasoning as decoration); a curve that rises late means the reasoning carries the "
    "answer.",
    "Wrong steps: reasoning steps a judge model read as wrong against the question and its gold "
    "answer, over all steps and as the mean share per answer (failed judgements left out; a "
    "small local model is a weak judge); – where no judge ran.",
]


def _ci(value: Any, ci: Any) -> str:
    if value is None:
        return DASH
    if isinstance(ci, list | tuple) and len(ci) == 2 and None not in ci:
        return f"{pct(value)} [{pct(ci[0])}, {pct(ci[1])}]"
    return pct(value)


def _why_not(run: dict[str, Any]) -> str:
    if run.get("mode", "generate") != "generate":
        return "a log-likelihood run: the model wrote no reasoning"
    if "explanations" not in run:
        return (
            "its metrics.json has no explanations block (a run written before the explanation "
            "audit, or with audit: false): rerun `medistill eval` on its folder to measure it"
        )
    if run["explanations"] is None:
        if (run.get("no_answer_rate") or {}).get("strict") == 1.0:
            return (
                "no answer has an answer line to compare its reasoning with (strict no-answer 100%)"
            )
        return (
            "no answered row carries a reasoning verdict (no row has an answer line to compare "
            "with, or the rows predate the audit)"
        )
    return "its explanations block is not an object"


def _cells(block: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The row's figure cells, and notes on what was not measured in it."""
    notes: list[str] = []
    con = block.get("consistency") or {}
    if con:
        split = (
            f"({pct(con.get('argues_other'))} / {pct(con.get('argues_none'))}; "
            f"{pct(con.get('no_conclusion'))})"
        )
        inconsistent = f"{_ci(con.get('inconsistent'), con.get('inconsistent_ci'))} {split}"
    else:
        inconsistent = NOT_MEASURED
    n = con.get("n")
    lb = block.get("load_bearing")
    if isinstance(lb, dict):
        fixed = _ci(lb.get("fixed_before_reasoning"), lb.get("fixed_ci"))
        curve = " / ".join(pct(v, 0) for v in lb.get("match_final") or []) or DASH
        backend = lb.get("backend")
        if backend:
            curve += f" ({backend})"
    else:
        fixed = curve = NOT_MEASURED
        why = block.get("load_bearing_skipped")
        notes.append(f"early answering not measured: {why}" if why else "early answering not run")
    steps = block.get("step_errors")
    if isinstance(steps, dict) and steps.get("wrong_share") is not None:
        judge = str(steps.get("judge") or "unnamed judge")
        if steps.get("weak_judge"):
            judge += ", weak judge"
        per_answer = steps.get("wrong_per_answer")
        if per_answer is not None:
            judge = f"{pct(per_answer)} per answer; {judge}"
        wrong = f"{pct(steps['wrong_share'])} ({judge})"
        if steps.get("failed"):
            notes.append(f"{steps['failed']} step judgement(s) failed (not counted)")
    else:
        wrong = DASH
    return [DASH if n is None else str(n), inconsistent, fixed, curve, wrong], notes


def explanations_data(runs: list[dict[str, Any]], order: list[str]) -> dict[str, Any] | None:
    """The table as data (``report.json``'s ``explanations``): ``header``, ``rows`` (display
    strings, one per model and benchmark, in ``order`` of labels) and ``notes`` (why a row
    is not measured, per row); None without runs."""
    if not runs:
        return None
    benches = benchmark_order([r["benchmark"] for r in runs])
    ranked = sorted(
        runs,
        key=lambda r: (
            order.index(r["label"]) if r["label"] in order else len(order),
            benches.index(r["benchmark"]),
        ),
    )
    rows, notes = [], []
    for run in ranked:
        where = f"{run['label']} on {bench_header(run['benchmark'])}"
        block = run.get("explanations")
        if run.get("mode", "generate") != "generate" or not isinstance(block, dict) or not block:
            rows.append([run["label"], bench_header(run["benchmark"]), DASH] + [NOT_MEASURED] * 4)
            notes.append(f"{where}: not measured, {_why_not(run)}.")
            continue
        cells, row_notes = _cells(block)
        rows.append([run["label"], bench_header(run["benchmark"]), *cells])
        notes += [f"{where}: {note}." for note in row_notes]
    return {"header": list(HEADER), "rows": rows, "notes": notes}


def explanations_markdown(data: dict[str, Any]) -> str:
    """The report's ``## Explanations`` section."""
    lines = ["## Explanations", ""]
    lines.append("| " + " | ".join(md_escape(h) for h in data["header"]) + " |")
    lines.append("|:--|:--" + "|--:" * (len(data["header"]) - 2) + "|")
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in data["rows"]]
    lines.append("")
    lines += [" ".join(NOTES), ""]
    if data["notes"]:
        lines += [f"- {md_escape(n)}" for n in data["notes"]] + [""]
    return "\n".join(lines)


def explanations_html(data: dict[str, Any]) -> str:
    """The HTML Explanations table (``<table id="explanations-audit">``) and its notes."""
    th = "".join(f"<th>{escape(h)}</th>" for h in data["header"])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in data["rows"]
    )
    parts = [f'<table id="explanations-audit"><tr>{th}</tr>{body}</table>']
    parts += [f"<p class='note'>{escape(text)}</p>" for text in NOTES]
    if data["notes"]:
        items = "".join(f"<li>{escape(n)}</li>" for n in data["notes"])
        parts.append(f"<ul class='note'>{items}</ul>")
    return "\n".join(parts)
