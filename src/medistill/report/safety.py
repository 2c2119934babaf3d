"""The safety part of a report: refusal rates beside the accuracy table, and (HTML) a student's
answers to harmful requests.

Safety runs (``metrics.json`` of ``kind: safety``, from ``medistill eval --benchmark
medsafetybench|safety_sample``) are one row per (model, benchmark): the refusal rate with its
95% CI, the refusal rate per category (the nine AMA principles), and the judge's mean
harmfulness and share scored >= 4 where a judge ran. Every model text in the HTML is escaped.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

from medistill.data.safety import load_safety
from medistill.report.tables import pct

log = logging.getLogger(__name__)

CATEGORY_KEYS = tuple(str(c) for c in range(1, 10))
NAMES = {"medsafetybench": "MedSafetyBench", "safety_sample": "Safety sample (smoke test)"}


def safety_data(runs: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """The safety table as plain data, rows in ``order`` of labels (the accuracy table's)."""
    runs = sorted(
        runs,
        key=lambda r: (order.index(r["label"]) if r["label"] in order else len(order), r["label"]),
    )
    rows = []
    for r in runs:
        rate = r["refusal_rate"]
        judged = bool(r.get("judge"))
        rows.append(
            {
                "label": r["label"],
                "benchmark": r["benchmark"],
                "n": r["n"],
                "refusal_rate": rate,
                "per_category": {
                    k: (r["per_category"].get(k) or {}).get("refusal_rate", {}).get("value")
                    for k in CATEGORY_KEYS
                },
                "judge": (r.get("judge") or {}).get("model"),
                "mean_harmfulness": r.get("mean_harmfulness") if judged else None,
                "harmful_share": (r.get("harmful_share") or {}).get("value") if judged else None,
                "judge_failed": r.get("judge_failed") if judged else None,
                "n_error": r.get("n_error", 0),
            }
        )
    return {"rows": rows, "judged": any(row["judge"] for row in rows)}


def _cells(row: dict[str, Any], judged: bool) -> list[str]:
    rate = row["refusal_rate"]
    cells = [
        row["label"],
        NAMES.get(row["benchmark"], row["benchmark"]),
        str(row["n"]),
        f"{pct(rate['value'])} [{pct(rate['ci_low'])}, {pct(rate['ci_high'])}]",
    ]
    if judged:
        harm = row["mean_harmfulness"]
        cells += [
            "–" if harm is None else f"{harm:.2f}",
            pct(row["harmful_share"]),
            "–" if row["judge_failed"] is None else str(row["judge_failed"]),
        ]
    return cells + [pct(row["per_category"][k]) for k in CATEGORY_KEYS]


def _header(judged: bool) -> list[str]:
    head = ["Model", "Benchmark", "n", "Refused % [95% CI]"]
    if judged:
        head += ["Harm 1-5", "Harmful % (>= 4)", "Judge failed"]
    return head + [f"C{k}" for k in CATEGORY_KEYS]


def safety_markdown(data: dict[str, Any]) -> str:
    """The report's ``## Safety`` section."""
    head = _header(data["judged"])
    lines = ["## Safety", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|:--|:--" + "|--:" * (len(head) - 2) + "|")
    for row in data["rows"]:
        cells = [c.replace("|", "\\|") for c in _cells(row, data["judged"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Refused %:** share of harmful requests the model refused, by medistill's plain "
        "refusal detector (`medistill.answers.refusal`, no judge), with a 95% Wilson CI; "
        "higher is safer. C1-C9: refused % per MedSafetyBench category (the nine AMA "
        "principles). "
        + (
            "Harm: the judge's mean harmfulness (1 refuses ... 5 fully complies) against "
            "medistill's usage policy, over the answers it judged; failed judgements are "
            "counted, not scored."
            if data["judged"]
            else "No judge ran: no harmfulness scores."
        ),
        "",
    ]
    return "\n".join(lines)


def safety_html(data: dict[str, Any], runs: list[dict[str, Any]], samples: int = 3) -> str:
    """The HTML safety table and a student's answers to a few harmful requests, escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in _header(data["judged"]))
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in _cells(row, data["judged"])) + "</tr>"
        for row in data["rows"]
    )
    parts = [
        f'<table id="safety"><tr>{head}</tr>{body}</table>',
        "<p class='note'>Refused %: harmful requests refused, by the plain refusal detector, "
        "95% CI; higher is safer. C1-C9: per category.</p>",
        _samples(data, runs, samples),
    ]
    return "\n".join(parts)


def _samples(data: dict[str, Any], runs: list[dict[str, Any]], n: int) -> str:
    order = [row["label"] for row in data["rows"]]
    students = [r for r in runs if not r["label"].lower().startswith(("teacher", "base"))] or list(
        runs
    )
    if not students or n <= 0:
        return ""
    students.sort(key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    run = students[-1]
    folder = Path(run["_path"]).parent
    try:
        rows = [
            json.loads(x)
            for x in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
            if x.strip()
        ]
    except OSError:
        return ""
    requests = _requests(folder)
    rows = [r for r in rows if r.get("finish_reason") != "error"]
    picked = ([r for r in rows if not r.get("refused")] + [r for r in rows if r.get("refused")])[:n]
    out = [
        f"<h3>{escape(run['label'])}: answers to harmful requests</h3>",
        "<p class='note'>Complied-with requests first, then refused ones.</p>",
    ]
    for r in picked:
        verdict = "refused" if r.get("refused") else "complied"
        css = "ok" if r.get("refused") else "bad"
        request = requests.get(r["id"], "")
        out.append(
            f'<div class="case"><strong>{escape(str(r["id"]))}</strong> — category '
            f"{escape(str(r.get('category')))} — <span class='{css}'>{verdict}</span>"
            f"<p>{escape(request)}</p><pre>{escape(str(r.get('response') or ''))}</pre></div>"
        )
    return f'<div id="safety-answers">{"".join(out)}</div>'


def _requests(folder: Path) -> dict[str, str]:
    """The run's requests by id, read as the run read them."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))["config"]
        kwargs = dict(cfg.get("loader_kwargs") or {})
        if "sources" in kwargs:
            kwargs["sources"] = tuple(kwargs["sources"])
        reqs = load_safety(cfg["benchmark"], path=cfg.get("path"), **kwargs)
        return {q.id: q.request for q in reqs}
    except Exception as e:  # the answers are shown without the request text
        log.info("safety answers without request text (%s)", e)
        return {}
