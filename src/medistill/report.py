"""Turn ``medistill eval`` run folders into a paper-style results table and bar chart.

Each run folder holds one ``metrics.json`` (schema_version 1) for one (model, benchmark)
pair. :func:`build_report` gathers any number of them into

* ``report.md``   - one row per model, one column per benchmark, accuracy with its 95% CI,
  an ``Avg`` column and cost/quality columns, followed by notes and warnings;
* ``report.png``  - a grouped bar chart with CI error bars and the chance level;
* ``report.json`` - the same table as data, for other tools.

The warnings under the table are the point of the report as much as the numbers: an
accuracy whose CI lies entirely below chance, a high no-answer rate or a high truncation
rate almost always means the answer extraction or ``max_new_tokens`` is wrong, not that
the model is bad.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.errors import DataError, MedistillError
from medistill.evaluate.metrics import validate_metrics

__all__ = [
    "BENCHMARK_NAMES",
    "METRICS",
    "NO_ANSWER_WARN",
    "TRUNCATION_WARN",
    "Report",
    "benchmark_order",
    "build_report",
    "load_runs",
]

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
_WARN_HINT = "check answer extraction / max_new_tokens"
_COST_HEADERS = ("No answer %", "Trunc. %", "Tokens/answer", "s/answer", "Latency s")


@dataclass
class Report:
    """What :func:`build_report` wrote: the Markdown text and the paths of its outputs."""

    markdown: str
    markdown_path: Path
    png_path: Path
    json_path: Path | None = None
    html_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


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


def _header(benchmark: str) -> str:
    return BENCHMARK_NAMES.get(benchmark, benchmark)


def _pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}"


def _pct_short(value: float) -> str:
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


def _distinct(runs: list[dict]) -> tuple[list[dict], list[str]]:
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
            f"⚠ {len(group)} runs are labelled {label!r} on {_header(bench)} "
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


def _run_warnings(run: dict[str, Any], metric: str) -> list[str]:
    """Signs of an extraction or truncation failure in one run, as short phrases."""
    issues: list[str] = []
    acc = run["accuracy"][metric]
    chance = run.get("chance")
    if chance is not None and acc["ci_high"] < chance:
        issues.append(
            f"accuracy {_pct_short(acc['value'])} (95% CI up to {_pct_short(acc['ci_high'])}) "
            f"is below chance {_pct_short(chance)}"
        )
    no_answer = run["no_answer_rate"][metric]
    if no_answer > NO_ANSWER_WARN:
        issues.append(f"no-answer {_pct_short(no_answer)}")
    truncation = run.get("truncation_rate")
    if truncation is not None and truncation > TRUNCATION_WARN:
        loops = run.get("repetition_rate")
        of_which = f" ({_pct_short(loops)} in repetition loops)" if loops else ""
        issues.append(f"truncated {_pct_short(truncation)}{of_which}")
    letters = run.get("letters") or {}
    if letters.get("flagged"):
        top = letters["most_frequent"]
        issues.append(
            f"position bias: answers {top} on {_pct_short(letters['extracted'][top])} "
            f"(gold {top}: {_pct_short(letters['gold'].get(top, 0.0))})"
        )
    return issues


def _table_data(runs: list[dict], metric: str, notes: list[str]) -> dict[str, Any]:
    """Everything the Markdown, JSON and PNG outputs are drawn from, as plain data (``runs``
    already labelled apart by :func:`_distinct`, whose ``notes`` become warnings)."""
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
                "header": _header(bench),
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
            if run.get("n_error"):
                issues.append(
                    f"{run['n_error']} question(s) failed with a server error (not scored)"
                )
            if issues:
                warnings.append(
                    f"⚠ {label} on {_header(bench)}: {', '.join(issues)} — {_WARN_HINT}"
                )
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
    from medistill.evaluate.sampling import describe

    texts = []
    for run in runs:
        if not run.get("sampling"):
            continue
        text = describe(run["sampling"])
        spread = run.get("samples_accuracy")
        if spread:
            mean, sd = _pct(spread["mean"]), _pct(spread["std"])
            text += f", accuracy {mean}% ± {sd} (SD over samples)"
        texts.append(text if len(runs) == 1 else f"{_header(run['benchmark'])}: {text}")
    return "; ".join(texts) or None


# --------------------------------------------------------------------------- rendering


def _accuracy_cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return DASH
    return f"{_pct(cell['value'])} ({_pct(cell['ci_low'])}–{_pct(cell['ci_high'])})"


def _table_strings(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The table as a header row and body rows of display strings."""
    benches = [b["name"] for b in data["benchmarks"]]
    header = ["Model", *[b["header"] for b in data["benchmarks"]], "Avg", *_COST_HEADERS]
    body = [
        [
            row["label"],
            *[_accuracy_cell(row["cells"][b]) for b in benches],
            _pct(row["avg"]),
            _pct(row["no_answer_rate"]),
            _pct(row["truncation_rate"]),
            _num(row["tokens_per_answer"], 0),
            _num(row["s_per_answer"], 2),
            _num(row["latency_s"], 2),
        ]
        for row in data["rows"]
    ]
    return header, body


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _render_markdown(data: dict[str, Any], title: str) -> str:
    """The Markdown report: title, table, then metric/n/chance notes and warnings."""
    header, body = _table_strings(data)
    lines = [f"# {title}", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    lines.append("|:--" + "|--:" * (len(header) - 1) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body]
    lines.append("")

    metric = data["metric"]
    lines.append(
        f"**Metric:** {metric} accuracy ({METRICS[metric]}), % correct with 95% CI. "
        "Avg is the unweighted mean over benchmarks, shown only for models run on all of "
        "them; the cost columns are averaged over a model's runs, weighted by n. s/answer "
        "is wall-clock time per answer; Latency s is each request's own time (for a "
        "concurrent server, queueing included)."
    )
    lines.append("")
    n_parts = []
    for bench in data["benchmarks"]:
        ns = bench["n"]
        shown = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]} (varies by model)"
        n_parts.append(f"{bench['header']} {shown}")
    lines.append(f"**n per benchmark:** {', '.join(n_parts)}.")
    lines.append("")
    chances = [b["chance"] for b in data["benchmarks"]]
    if chances and all(c is not None for c in chances) and len(set(chances)) == 1:
        chance_text = f"{_pct(chances[0])}% on every benchmark"
    else:
        chance_text = ", ".join(
            f"{b['header']} {_pct(b['chance'])}{'' if b['chance'] is None else '%'}"
            for b in data["benchmarks"]
        )
    lines.append(f"**Chance:** {chance_text}.")
    lines.append("")
    lines += _published_markdown(data)
    decoding = [(r["label"], r.get("sampling")) for r in data["rows"] if r.get("sampling")]
    if decoding:
        lines += ["**Decoding** (per model: settings and where they came from):", ""]
        lines += [f"- {_md_escape(label)}: {_md_escape(text)}" for label, text in decoding]
        lines.append("")
    if data["warnings"]:
        lines.append("**Warnings:**")
        lines.append("")
        lines += [f"- {w}" for w in data["warnings"]]
    else:
        lines.append(
            "No warnings: every run is above chance, with no-answer ≤ "
            f"{_pct_short(NO_ANSWER_WARN)} and cut off ≤ {_pct_short(TRUNCATION_WARN)}."
        )
    lines.append("")
    return "\n".join(lines)


def _published_markdown(data: dict[str, Any]) -> list[str]:
    """The published tables' scoring rule beside ours (an upper bound), and the letters each
    run answered against the gold letters: the two figures a reader needs to set a run next
    to a paper's table."""
    benches = data["benchmarks"]
    if not any(
        (row["cells"].get(b["name"]) or {}).get("published") is not None
        for row in data["rows"]
        for b in benches
    ):
        return []
    lines = [
        "**Published-table scoring (upper bound):** HuatuoGPT-o1 / MedReason's rule — the "
        "better of a first- and a last-match reading, the most similar option when no letter "
        "is written, never no answer — so a run can sit beside a published table; it is not "
        "medistill's accuracy. Letters: the most frequent answered letter and its share "
        "against its gold share.",
        "",
        "| Model | " + " | ".join(_md_escape(b["header"]) for b in benches) + " |",
        "|:--" + "|--:" * len(benches) + "|",
    ]
    for row in data["rows"]:
        cells = []
        for b in benches:
            c = row["cells"].get(b["name"])
            if c is None or c.get("published") is None:
                cells.append("–")
                continue
            letters = c.get("letters") or {}
            top = letters.get("most_frequent")
            bias = (
                f" · {top} {_pct_short(letters['extracted'][top])} vs "
                f"{_pct_short(letters['gold'].get(top, 0.0))}"
                if top
                else ""
            )
            cells.append(f"{_pct(c['published'])}{bias}")
        lines.append(f"| {_md_escape(row['label'])} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _render_png(data: dict[str, Any], title: str, path: Path) -> None:
    """Grouped bar chart: benchmarks on x, one bar per model, CI error bars, chance lines."""
    # Agg canvas directly: no GUI backend and no pyplot global state, so this is safe to
    # call from a headless server, a test, or a process that already uses another backend.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    benches = data["benchmarks"]
    rows = data["rows"]
    n_models = max(len(rows), 1)
    group_width = 0.8
    bar_width = group_width / n_models
    width = max(6.0, 1.5 + len(benches) * (0.6 + 0.45 * n_models))
    fig = Figure(figsize=(width, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    cmap = matplotlib.colormaps["tab10" if n_models <= 10 else "tab20"]
    show_values = n_models * len(benches) <= 30
    for i, row in enumerate(rows):
        xs, ys, lows, highs = [], [], [], []
        for j, bench in enumerate(benches):
            cell = row["cells"][bench["name"]]
            if cell is None:
                continue
            xs.append(j - group_width / 2 + (i + 0.5) * bar_width)
            ys.append(100 * cell["value"])
            lows.append(max(0.0, 100 * (cell["value"] - cell["ci_low"])))
            highs.append(max(0.0, 100 * (cell["ci_high"] - cell["value"])))
        bars = ax.bar(
            xs,
            ys,
            bar_width * 0.92,
            yerr=[lows, highs],
            capsize=3,
            color=cmap(i % cmap.N),
            edgecolor="black",
            linewidth=0.5,
            error_kw={"elinewidth": 1, "ecolor": "black"},
            label=row["label"],
        )
        if show_values:
            for bar, y, high in zip(bars, ys, highs, strict=True):
                ax.annotate(
                    f"{y:.0f}",
                    (bar.get_x() + bar.get_width() / 2, min(y + high, 100)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )

    chances = [b["chance"] for b in benches]
    known = [c for c in chances if c is not None]
    if known and len(known) == len(chances) and len(set(known)) == 1:
        ax.axhline(
            100 * known[0],
            color="gray",
            linestyle="--",
            linewidth=1.2,
            label=f"chance ({_pct_short(known[0])})",
            zorder=3,
        )
    else:
        labelled = False
        for j, chance in enumerate(chances):
            if chance is None:
                continue
            ax.hlines(
                100 * chance,
                j - group_width / 2 - 0.05,
                j + group_width / 2 + 0.05,
                colors="gray",
                linestyles="dashed",
                linewidth=1.2,
                label=None if labelled else "chance",
                zorder=3,
            )
            labelled = True

    ax.set_xticks(range(len(benches)))
    ax.set_xticklabels(
        [
            b["header"] + ("\n(n=" + "/".join(str(n) for n in b["n"]) + ")" if b["n"] else "")
            for b in benches
        ]
    )
    ax.set_xlim(-0.6, len(benches) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(title)
    ax.yaxis.grid(True, linestyle=":", linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    # Models first, in table order, then the chance line; as many columns as fit the width.
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda k: labels[k].startswith("chance"))
    ax.legend(
        [handles[k] for k in order],
        [labels[k] for k in order],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=max(1, min(len(labels), int(width // 2.2))),
        frameon=False,
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    metric: str = "lenient",
    title: str | None = None,
    dataset: str | Path | None = None,
    explanations: int = 4,
) -> Report:
    """Compare eval runs in one results table (``report.md``), chart and JSON under ``out_dir``.

    ``run_dirs`` are ``medistill eval`` run folders (or their ``metrics.json`` files), one
    per (model, benchmark); if two share a (label, benchmark) the later one wins, with a
    logged warning. ``metric`` picks the ``strict`` or ``lenient`` accuracy. The report
    lists warnings for runs that look broken rather than weak (CI below chance, no-answer
    rate above 20%, truncation above 5%), so a bad extraction is not mistaken for a result.

    ``report.html`` is the same in one self-contained page for a reviewer, with a cost
    table, a second plot, the data card of ``dataset`` (a curated dataset folder) when given,
    and ``explanations`` sample answers (see :mod:`medistill.report_html`).
    """
    if metric not in METRICS:
        raise MedistillError(
            f"unknown metric {metric!r}: choose one of {', '.join(repr(m) for m in METRICS)}"
        )
    loaded = [dict(r) for r in load_runs(run_dirs)]
    # Safety runs (refusal rates, not accuracies) get their own table beside this one.
    safety_runs = [r for r in loaded if r.get("kind") == "safety"]
    runs, notes = _distinct([r for r in loaded if r.get("kind") != "safety"])
    title = title or f"Results ({metric} accuracy)"
    data = _table_data(runs, metric, notes)
    safety = None
    if safety_runs:
        from medistill.report_safety import render_markdown, safety_data

        safety = safety_data(safety_runs, [row["label"] for row in data["rows"]])
    for warning in data["warnings"]:
        logger.warning("%s", warning)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = _render_markdown(data, title)
    if safety is not None:
        markdown += "\n" + render_markdown(safety)
    markdown_path = out / "report.md"
    markdown_path.write_text(markdown, encoding="utf-8")

    header, body = _table_strings(data)
    json_path = out / "report.json"
    payload = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        **data,
        "table": {"header": header, "rows": body},
        **({"safety": safety} if safety is not None else {}),
    }
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    png_path = out / "report.png"
    _render_png(data, title, png_path)
    from medistill.report_html import write_html

    html_path = write_html(
        out / "report.html",
        title=title,
        data=data,
        runs=runs,
        chart_png=png_path,
        metric=metric,
        dataset=Path(dataset) if dataset else None,
        explanations=explanations,
        safety=(safety, safety_runs) if safety is not None else None,
    )
    logger.info("wrote %s, %s, %s and %s", markdown_path, html_path, png_path, json_path)
    return Report(
        markdown=markdown,
        markdown_path=markdown_path,
        png_path=png_path,
        json_path=json_path,
        html_path=html_path,
        warnings=list(data["warnings"]),
    )
