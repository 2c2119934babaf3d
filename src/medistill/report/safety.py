"""The safety part of a report, both ways: for every model, how often it refuses harmful
requests and how often it refuses benign ones anyway, side by side, with one combined figure.

Safety runs (``metrics.json`` of ``kind: safety``, from ``medistill eval --benchmark
medsafetybench|safety_sample|xstest|benign_clinical``) are gathered per model (one row per
model label, the accuracy table's order). Each set a model ran gives a column per side it
holds: *refuses harmful* (MedSafetyBench, the safety sample, XSTest's unsafe contrast prompts:
higher is safer) and *over-refuses benign* (medistill's benign clinical set, XSTest's safe
prompts: lower is better), each a refusal rate with its 95% Wilson CI. The combined figure is
:func:`medistill.evaluate.safety_metrics.safe_both_ways` of the model's refusal rate pooled
over its harmful requests and its answer rate pooled over its benign ones: it falls when either
side fails, and is not given (with a note) when only one side was measured. A run written before
benign sets existed has no ``harmful``/``benign`` blocks: all its requests were harmful.

Per-category tables follow (per set and side), then the judge's figures where one ran (labelled
a weak judge's when it ran on a local server). :mod:`medistill.report.safety_render` renders
the data; this module builds it and picks a student's answers for the HTML.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from medistill.data.safety import load_safety
from medistill.evaluate.metrics import proportion
from medistill.evaluate.safety_metrics import safe_both_ways

log = logging.getLogger(__name__)

NAMES = {
    "medsafetybench": "MedSafetyBench",
    "safety_sample": "Safety sample (smoke test)",
    "xstest": "XSTest",
    "benign_clinical": "Benign clinical (medistill)",
}
#: The two sides of a safe model, in column order: what it must refuse, what it must answer.
SIDES = ("harmful", "benign")
#: Column order within a side (known sets first, others after alphabetically).
SET_ORDER = ("safety_sample", "medsafetybench", "xstest", "benign_clinical")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "::1")


def block_sides(block: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """A metrics block's sides as ``{side: (refused, n)}``; a block written before benign
    sets (no ``harmful``/``benign`` keys) counts every request as harmful."""
    if "harmful" not in block and "benign" not in block:
        return {"harmful": _count(block.get("refusal_rate") or {}, block.get("n") or 0)}
    out = {}
    if block.get("harmful"):
        out["harmful"] = _count(block["harmful"]["refusal_rate"], block["harmful"]["n"])
    if block.get("benign"):
        out["benign"] = _count(block["benign"]["over_refusal_rate"], block["benign"]["n"])
    return out


def _count(rate: dict[str, Any], n: int) -> tuple[int, int]:
    if rate.get("correct") is not None:
        return int(rate["correct"]), int(rate.get("n") or n)
    value = rate.get("value")
    return (round(value * n) if value is not None else 0), n


def _column_key(benchmark: str, side: str) -> str:
    return f"{benchmark}:{side}"


def _sort_key(benchmark: str) -> tuple[int, str]:
    return (SET_ORDER.index(benchmark) if benchmark in SET_ORDER else len(SET_ORDER), benchmark)


def _is_local(base_url: Any) -> bool:
    urls = base_url if isinstance(base_url, list) else [base_url]
    hosts = [urlparse(str(u)).hostname for u in urls if u]
    return bool(hosts) and all(h in _LOCAL_HOSTS or str(h).startswith("127.") for h in hosts)


def _columns(found: set[tuple[str, str]]) -> list[dict[str, str]]:
    both = {b for b, _ in found if (b, "harmful") in found and (b, "benign") in found}
    cols = []
    for side in SIDES:
        for bench in sorted({b for b, s in found if s == side}, key=_sort_key):
            name = NAMES.get(bench, bench)
            if bench in both:
                name += " unsafe" if side == "harmful" else " safe"
            cols.append(
                {"key": _column_key(bench, side), "benchmark": bench, "side": side, "name": name}
            )
    return cols


def safety_data(runs: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """The safety tables as plain data (``report.json``'s ``safety``): ``columns`` (one per
    set and side), ``rows`` (one per model, in ``order`` of labels, then the others), each with
    its ``cells`` (a proportion per column, refused / n), pooled ``harmful`` refusal and
    ``benign`` over-refusal rates, ``both_ways`` (and its ``both_ways_range`` from the two CIs)
    and ``missing`` (the side not measured); ``per_category``, ``judged``, ``notes``."""
    labels = sorted(
        {r["label"] for r in runs},
        key=lambda x: (order.index(x) if x in order else len(order), x),
    )
    cells: dict[str, dict[str, tuple[int, int]]] = {label: {} for label in labels}
    cats: dict[str, dict[str, dict[str, tuple[int, int]]]] = {label: {} for label in labels}
    notes: list[str] = []
    for run in runs:
        bench, label = run["benchmark"], run["label"]
        for side, counts in block_sides(run).items():
            key = _column_key(bench, side)
            if key in cells[label]:
                notes.append(
                    f"{label}: two runs on {NAMES.get(bench, bench)} ({side} requests); "
                    f"the later one ({Path(run['_path']).parent}) is shown"
                )
                log.warning("%s", notes[-1])
            cells[label][key] = counts
            cats[label][key] = {
                str(c): block_sides(b)[side]
                for c, b in (run.get("per_category") or {}).items()
                if side in block_sides(b)
            }
        if run.get("n_error"):
            notes.append(
                f"{label} on {NAMES.get(bench, bench)}: {run['n_error']} request(s) refused by "
                "the server (error rows, not scored)"
            )
    found = {(b, s) for c in cells.values() for b, _, s in (k.partition(":") for k in c)}
    columns = _columns(found)
    rows = [_model_row(label, cells[label]) for label in labels]
    for row in rows:
        if row["missing"]:
            notes.append(
                f"{row['label']}: the {row['missing']} side was not measured (no "
                f"{row['missing']} set ran), so no combined figure"
            )
    return {
        "columns": columns,
        "rows": rows,
        "per_category": _per_category(columns, labels, cats),
        "judged": _judged(runs, labels),
        "sets": sorted({r["benchmark"] for r in runs}, key=_sort_key),
        "notes": notes,
    }


def _model_row(label: str, cells: dict[str, tuple[int, int]]) -> dict[str, Any]:
    pooled = {}
    for side in SIDES:
        counts = [v for k, v in cells.items() if k.endswith(":" + side)]
        if counts:
            pooled[side] = proportion(sum(c for c, _ in counts), sum(n for _, n in counts))
    h, b = pooled.get("harmful"), pooled.get("benign")
    both = rng = None
    if h and b:
        both = safe_both_ways(h["value"], b["value"])
        rng = [
            safe_both_ways(h["ci_low"], b["ci_high"]),
            safe_both_ways(h["ci_high"], b["ci_low"]),
        ]
    return {
        "label": label,
        "cells": {k: proportion(c, n) for k, (c, n) in cells.items()},
        "harmful": h,
        "benign": b,
        "both_ways": both,
        "both_ways_range": rng,
        "missing": None if (h and b) else ("benign" if h else "harmful"),
    }


def _per_category(
    columns: list[dict[str, str]],
    labels: list[str],
    cats: dict[str, dict[str, dict[str, tuple[int, int]]]],
) -> list[dict[str, Any]]:
    tables = []
    for col in columns:
        keys = {c for label in labels for c in cats[label].get(col["key"], {})}
        if len(keys) < 2:
            continue
        order = sorted(keys, key=lambda c: c.zfill(3))
        rows = [
            {
                "label": label,
                "values": {
                    c: (
                        proportion(*cats[label][col["key"]][c])["value"]
                        if c in cats[label][col["key"]]
                        else None
                    )
                    for c in order
                },
            }
            for label in labels
            if col["key"] in cats[label]
        ]
        tables.append({**col, "categories": order, "rows": rows})
    return tables


def _judged(runs: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    out = []
    for run in sorted(runs, key=lambda r: (labels.index(r["label"]), _sort_key(r["benchmark"]))):
        judge = run.get("judge")
        if not judge:
            continue
        out.append(
            {
                "label": run["label"],
                "benchmark": run["benchmark"],
                "judge": str(judge.get("model")),
                "local": _is_local(judge.get("base_url")),
                "n_judged": run.get("n_judged"),
                "mean_harmfulness": run.get("mean_harmfulness"),
                "harmful_share": (run.get("harmful_share") or {}).get("value"),
                "judge_failed": run.get("judge_failed"),
            }
        )
    return out


# ------------------------------------------------------------------- a student's answers


def student_answers(runs: list[dict[str, Any]], order: list[str], n: int) -> dict[str, Any] | None:
    """The last student's (in ``order``; not a teacher or base model) answers for the HTML:
    ``label``, ``harmful`` (complied-with requests first) and ``benign`` (over-refused
    requests first), up to ``n`` each, with each row's ``request`` text where it can be read."""
    students = [r for r in runs if not r["label"].lower().startswith(("teacher", "base"))]
    students = students or list(runs)
    if not students or n <= 0:
        return None
    students.sort(key=lambda r: order.index(r["label"]) if r["label"] in order else len(order))
    label = students[-1]["label"]
    harmful: list[dict[str, Any]] = []
    benign: list[dict[str, Any]] = []
    for run in (r for r in students if r["label"] == label):
        folder = Path(run["_path"]).parent
        try:
            lines = (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        requests = _requests(folder)
        for x in lines:
            if not x.strip():
                continue
            row = json.loads(x)
            if row.get("finish_reason") == "error":
                continue
            row["request"] = requests.get(row["id"], "")
            (benign if row.get("expect") == "answer" else harmful).append(row)
    harmful.sort(key=lambda r: bool(r.get("refused")))
    benign.sort(key=lambda r: not r.get("refused"))
    return {"label": label, "harmful": harmful[:n], "benign": benign[:n]}


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
