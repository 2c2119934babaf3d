"""The results table as data: eval run folders read and checked, one row per model, one column
per benchmark, the warnings that say a run looks broken rather than weak, and the table's cells as
display strings (shared by the Markdown, JSON and HTML outputs)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medistill.errors import DataError, MedistillError
from medistill.evaluate.metrics import validate_metrics
from medistill.evaluate.sampling import describe

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"

#: Accuracy variants written by ``medistill eval`` and what each one counts as an answer.
METRICS: dict[str, str] = {
    "strict": "explicit answer statement only",
    "lenient": "explicit answer statement, with fallback extraction rules",
}

#: Known benchmarks in table order, with the column header used for each.
BENCHMARK_NAMES: dict[str, str] = {
    "medqa": "MedQA",
    "medqa5": "MedQA-5",
    "medmcqa": "MedMCQA",
    "pubmedqa": "PubMedQA",
    "mmlu_medical": "MMLU-Med",
    "sample": "Sample (smoke test)",
    "sample_train": "Sample, first half",
    "sample_heldout": "Sample, held-out half",
}

#: A run is flagged when its no-answer rate exceeds this fraction...
NO_ANSWER_WARN = 0.20
#: ...or when its truncation rate exceeds this one.
TRUNCATION_WARN = 0.05

DASH = "–"
_COST_HEADERS = ("No answer %", "Trunc. %", "Tokens/answer", "s/answer", "Latency s")


# --------------------------------------------------------------------------- loading


def load_runs(run_dirs: Sequence[str | Path]) -> list[dict]:
    """Read and validate the ``metrics.json`` of each run folder, in the order given.

    Each entry may be a run folder or the path of a ``metrics.json`` file itself. Bad input
    fails here, early and by name, rather than as a ``KeyError`` deep inside the rendering:
    a folder without ``metrics.json``, invalid JSON or a missing/ill-typed field raises
    :class:`~medistill.errors.DataError` (a :class:`~medistill.errors.MedistillError`)
    naming the file and the field. ``output_tokens``, ``latency_s``, ``throughput`` and
    ``truncation_rate`` may be null or absent (log-likelihood runs have no generation cost).

    Each returned dict is the file's content plus ``"_path"``, the file it was read from.
    """
    if isinstance(run_dirs, str | Path):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise MedistillError("no run folders given: pass one or more `medistill eval` outputs")
    runs: list[dict] = []
    for entry in run_dirs:
        given = Path(entry)
        path = given / METRICS_FILE if given.is_dir() else given
        if not path.is_file():
            if given.is_dir():
                reason = f"no {METRICS_FILE} in this folder (is it a `medistill eval` run folder?)"
            else:
                reason = "no such run folder or metrics file"
            raise DataError(reason, path=str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read file: {exc}", path=str(path)) from exc
        try:
            run = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from exc
        validate_metrics(run, path)
        run["_path"] = str(path)
        runs.append(run)
        logger.debug("loaded %s (%s on %s)", path, run["label"], run["benchmark"])
    return runs


# --------------------------------------------------------------------------- table data


def benchmark_order(names: Sequence[str]) -> list[str]:
    """Sort benchmark names the way papers usually list them (known ones first).

    Known benchmarks come in :data:`BENCHMARK_NAMES` order, any others after them
    alphabetically, so tables from different runs always line up column for column.
    """
    known = list(BENCHMARK_NAMES)
    unique = set(names)
    return [b for b in known if b in unique] + sorted(unique - set(known))


def bench_header(benchmark: str) -> str:
    return BENCHMARK_NAMES.get(benchmark, benchmark)


def pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}"


def pct_short(value: float) -> str:
    """``0.54 -> '54%'``, ``0.204 -> '20.4%'``: no needless decimals in warning lines."""
    pct = round(100 * value, 1)
    return f"{pct:.0f}%" if pct == round(pct) else f"{pct:.1f}%"


def _num(value: float | None, digits: int) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _weighted_mean(pairs: list[tuple[float | None, int]]) -> float | None:
    """n-weighted mean over the pairs whose value is known; ``None`` if none is."""
    known = [(v, n) for v, n in pairs if v is not None]
    total = sum(n for _, n in known)
    if not known or total == 0:
        return None
    return sum(v * n for v, n in known) / total


def _block_mean(run: dict[str, Any], key: str) -> float | None:
    block = run.get(key)
    return block.get("mean") if isinstance(block, dict) else None


def distinct_labels(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """Give runs that share a (label, benchmark) distinct labels: every run gets a row.

    Two runs with one label (the same model evaluated twice, or two models given the same
    ``--label``) are both shown, each labelled with its run folder, and the report says so.
    """
    seen: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        seen.setdefault((run["label"], run["benchmark"]), []).append(run)
    notes = []
    for (label, bench), group in seen.items():
        if len(group) < 2:
            continue
        folders = [str(Path(r["_path"]).parent) for r in group]
        for run, folder in zip(group, folders, strict=True):
            run["label"] = f"{label} [{folder}]"
        notes.append(
            f"⚠ {len(group)} runs are labelled {label!r} on {bench_header(bench)} "
            f"({', '.join(folders)}): shown as separate rows; give each eval a --label"
        )
        logger.warning("%s", notes[-1])
    return runs, notes


def _s_per_answer(run: dict[str, Any]) -> float | None:
    """Wall-clock seconds per answer (older files: from throughput, else latency)."""
    if run.get("seconds_per_answer") is not None:
        return run["seconds_per_answer"]
    rate = (run.get("throughput") or {}).get("answers_per_s")
    return 1.0 / rate if rate else _block_mean(run, "latency_s")


#: What to look at for each kind of warning (one line each, said once per run).
HINTS = {
    "below_chance": "compare its wrong rows' response with their extracted letter in "
    "predictions.jsonl: below chance usually means letters misread, not a weak model",
    "no_answer": "read its no-answer rows in predictions.jsonl (an answer the extractor cannot "
    "read counts as wrong; `medistill rescore` rereads a run)",
    "truncation": "raise max_new_tokens (eval --max-new-tokens) or read the cut-off rows",
    "position": "its accuracy partly measures one preferred letter, not its reasoning: rerun "
    "with --permute-options 4 (a model that picks a position changes its chosen option text "
    "when the options move) and read its answers of that letter in predictions.jsonl",
    "errors": "see the rows with finish_reason error in predictions.jsonl",
}


def _run_warnings(run: dict[str, Any], metric: str) -> list[tuple[str, str]]:
    """Signs of an extraction, truncation or position failure in one run: ``(phrase, hint)``
    pairs, each phrase saying what was measured and each hint (a :data:`HINTS` key) what to
    look at."""
    issues: list[tuple[str, str]] = []
    acc = run["accuracy"][metric]
    chance = run.get("chance")
    if chance is not None and acc["ci_high"] < chance:
        issues.append(
            (
                f"accuracy {pct_short(acc['value'])} (95% CI up to {pct_short(acc['ci_high'])}) "
                f"is below chance {pct_short(chance)}",
                "below_chance",
            )
        )
    no_answer = run["no_answer_rate"][metric]
    if no_answer > NO_ANSWER_WARN:
        issues.append((f"no-answer {pct_short(no_answer)}", "no_answer"))
    truncation = run.get("truncation_rate")
    if truncation is not None and truncation > TRUNCATION_WARN:
        loops = run.get("repetition_rate")
        of_which = f" ({pct_short(loops)} in repetition loops)" if loops else ""
        issues.append((f"truncated {pct_short(truncation)}{of_which}", "truncation"))
    letters = run.get("letters") or {}
    if letters.get("flagged"):
        top = letters["most_frequent"]
        issues.append(
            (
                f"position bias: answers {top} on {pct_short(letters['extracted'][top])} of "
                f"questions (gold {top}: {pct_short(letters['gold'].get(top, 0.0))})",
                "position",
            )
        )
    if run.get("n_error"):
        issues.append(
            (f"{run['n_error']} question(s) failed with a server error (not scored)", "errors")
        )
    return issues


def warning_line(label: str, benchmark: str, issues: list[tuple[str, str]]) -> str:
    """One run's warning: what was measured, then what to look at (each hint once)."""
    hints = list(dict.fromkeys(HINTS[h] for _, h in issues))
    return (
        f"⚠ {label} on {bench_header(benchmark)}: {', '.join(p for p, _ in issues)} — "
        + "; ".join(hints)
    )


def table_data(runs: list[dict], metric: str, notes: list[str]) -> dict[str, Any]:
    """Everything the Markdown, JSON and PNG outputs are drawn from, as plain data (``runs``
    already labelled apart by :func:`distinct_labels`, whose ``notes`` become warnings)."""
    by_key = {(r["label"], r["benchmark"]): r for r in runs}
    labels = list(dict.fromkeys(run["label"] for run in runs))
    benchmarks = benchmark_order([run["benchmark"] for run in runs])

    bench_info: list[dict[str, Any]] = []
    for bench in benchmarks:
        bench_runs = [by_key[(label, bench)] for label in labels if (label, bench) in by_key]
        chances = list(dict.fromkeys(r["chance"] for r in bench_runs if r["chance"] is not None))
        if len(chances) > 1:
            logger.warning(
                "runs on %s disagree on the chance level %s; using %s", bench, chances, chances[0]
            )
        bench_info.append(
            {
                "name": bench,
                "header": bench_header(bench),
                "n": sorted({r["n"] for r in bench_runs}),
                "chance": chances[0] if chances else None,
            }
        )

    rows: list[dict[str, Any]] = []
    warnings: list[str] = list(notes)
    for label in labels:
        row_runs = [by_key[(label, b)] for b in benchmarks if (label, b) in by_key]
        cells: dict[str, dict[str, Any] | None] = {}
        for bench in benchmarks:
            run = by_key.get((label, bench))
            if run is None:
                cells[bench] = None
                continue
            acc = run["accuracy"][metric]
            cells[bench] = {
                "value": acc["value"],
                "ci_low": acc["ci_low"],
                "ci_high": acc["ci_high"],
                "correct": acc.get("correct"),
                "n": acc.get("n", run["n"]),
                "mode": run.get("mode"),
                "source": run["_path"],
                "published": (run.get("accuracy_published") or {}).get("value"),
                "letters": run.get("letters"),
            }
            issues = _run_warnings(run, metric)
            if issues:
                warnings.append(warning_line(label, bench, issues))
        complete = all(cells[b] is not None for b in benchmarks)
        avg = (
            sum(c["value"] for c in cells.values() if c is not None) / len(benchmarks)
            if complete and benchmarks
            else None
        )
        rows.append(
            {
                "label": label,
                "cells": cells,
                "avg": avg,
                "no_answer_rate": _weighted_mean(
                    [(r["no_answer_rate"][metric], r["n"]) for r in row_runs]
                ),
                "truncation_rate": _weighted_mean(
                    [(r.get("truncation_rate"), r["n"]) for r in row_runs]
                ),
                "tokens_per_answer": _weighted_mean(
                    [(_block_mean(r, "output_tokens"), r["n"]) for r in row_runs]
                ),
                "s_per_answer": _weighted_mean([(_s_per_answer(r), r["n"]) for r in row_runs]),
                "latency_s": _weighted_mean(
                    [(_block_mean(r, "latency_s"), r["n"]) for r in row_runs]
                ),
                "sampling": _sampling_text(row_runs),
            }
        )
    return {"metric": metric, "benchmarks": bench_info, "rows": rows, "warnings": warnings}


def _sampling_text(runs: list[dict[str, Any]]) -> str | None:
    """How a model's answers were decoded and where the settings came from (the eval's
    ``sampling`` record), with the spread over samples; ``None`` for runs that predate it."""
    texts = []
    for run in runs:
        if not run.get("sampling"):
            continue
        text = describe(run["sampling"])
        spread = run.get("samples_accuracy")
        if spread:
            mean, sd = pct(spread["mean"]), pct(spread["std"])
            text += f", accuracy {mean}% ± {sd} (SD over samples)"
        texts.append(text if len(runs) == 1 else f"{bench_header(run['benchmark'])}: {text}")
    return "; ".join(texts) or None


def _accuracy_cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return DASH
    return f"{pct(cell['value'])} ({pct(cell['ci_low'])}–{pct(cell['ci_high'])})"


def table_strings(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table as a header row and body rows of display strings."""
    benches = [b["name"] for b in data["benchmarks"]]
    header = ["Model", *[b["header"] for b in data["benchmarks"]], "Avg", *_COST_HEADERS]
    body = [
        [
            row["label"],
            *[_accuracy_cell(row["cells"][b]) for b in benches],
            pct(row["avg"]),
            pct(row["no_answer_rate"]),
            pct(row["truncation_rate"]),
            _num(row["tokens_per_answer"], 0),
            _num(row["s_per_answer"], 2),
            _num(row["latency_s"], 2),
        ]
        for row in data["rows"]
    ]
    return header, body
