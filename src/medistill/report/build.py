"""Build the report: ``medistill eval`` run folders into a paper-style results table and chart.

Each run folder holds one ``metrics.json`` (schema_version 1) for one (model, benchmark)
pair. :func:`build_report` gathers any number of them into

* ``report.md``   - one row per model, one column per benchmark, accuracy with its 95% CI,
  an ``Avg`` column and cost/quality columns, followed by notes and warnings;
* ``report.png``  - a grouped bar chart with CI error bars and the chance level;
* ``report.json`` - the same table as data, for other tools.

The warnings under the table are the point of the report as much as the numbers: an
accuracy whose CI lies entirely below chance, a high no-answer rate or a high truncation
rate almost always means the answer extraction or ``max_new_tokens`` is wrong, not that
the model is bad, and a position-biased run scores a preferred letter; each warning says
what was measured and what to look at.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medistill.errors import MedistillError
from medistill.report.deployed import deployed_data, deployed_markdown, split_deployed
from medistill.report.explanations import explanations_data, explanations_markdown
from medistill.report.html import write_html
from medistill.report.markdown import render_markdown
from medistill.report.plots import render_png
from medistill.report.safety import safety_data
from medistill.report.safety_render import safety_markdown
from medistill.report.tables import (
    METRICS,
    SCHEMA_VERSION,
    distinct_labels,
    load_runs,
    table_data,
    table_strings,
)

logger = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    """A Markdown table, a bar chart with error bars and a self-contained HTML report from
    eval run folders (``medistill report``)."""

    runs: list[str] = field(
        metadata={
            "help": "eval run folders (or their metrics.json files), one per model and benchmark"
        }
    )
    out: str = field(default="runs/report", metadata={"help": "report folder"})
    metric: str = field(default="lenient", metadata={"help": "lenient | strict"})
    title: str | None = field(default=None, metadata={"help": "the report's title"})
    dataset: str | None = field(
        default=None, metadata={"help": "curated dataset folder: its data card goes in the HTML"}
    )


@dataclass
class Report:
    """What :func:`build_report` wrote: the Markdown text and the paths of its outputs."""

    markdown: str
    markdown_path: Path
    png_path: Path
    json_path: Path | None = None
    html_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    metric: str = "lenient",
    title: str | None = None,
    dataset: str | Path | None = None,
    explanations: int = 4,
    deployed: Sequence[str | Path] = (),
) -> Report:
    """Compare eval runs in one results table (``report.md``), chart and JSON under ``out_dir``.

    ``run_dirs`` are ``medistill eval`` run folders (or their ``metrics.json`` files), one
    per (model, benchmark); if two share a (label, benchmark) the later one wins, with a
    logged warning. ``metric`` picks the ``strict`` or ``lenient`` accuracy. The report
    lists warnings for runs that look broken rather than weak (CI below chance, no-answer
    rate above 20%, truncation above 5%), so a bad extraction is not mistaken for a result.

    ``report.html`` is the same in one self-contained page for a reviewer, with a cost
    table, a second plot, the data card of ``dataset`` (a curated dataset folder) when given,
    and ``explanations`` sample answers per benchmark, each beside the teacher's answer to the
    same question (see :mod:`medistill.report.samples`). Both outputs carry the Explanations
    table (:mod:`medistill.report.explanations`): whether each model's reasoning supports its
    answers.

    ``deployed``: eval folders of exported GGUF files (``medistill run``'s eval-deployed
    stage; any entry of ``run_dirs`` holding a ``deployment.json`` counts too): an "As
    deployed" table of their figures (:mod:`medistill.report.deployed`), not rows of the
    results table.
    """
    if metric not in METRICS:
        raise MedistillError(
            f"unknown metric {metric!r}: choose one of {', '.join(repr(m) for m in METRICS)}"
        )
    run_dirs, found = split_deployed(run_dirs)
    as_deployed = deployed_data([*found, *deployed])
    if not run_dirs and as_deployed is not None:
        raise MedistillError(
            "every run folder given holds deployment.json (an eval-deployed run): add at "
            "least one plain eval run folder, e.g. the unquantised student's"
        )
    loaded = [dict(r) for r in load_runs(run_dirs)]
    # Safety runs (refusal rates, not accuracies) get their own table beside this one.
    safety_runs = [r for r in loaded if r.get("kind") == "safety"]
    runs, notes = distinct_labels([r for r in loaded if r.get("kind") != "safety"])
    title = title or f"Results ({metric} accuracy)"
    data = table_data(runs, metric, notes)
    safety = None
    if safety_runs:
        safety = safety_data(safety_runs, [row["label"] for row in data["rows"]])
    for warning in data["warnings"]:
        logger.warning("%s", warning)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    audit = explanations_data(runs, [row["label"] for row in data["rows"]])
    markdown = render_markdown(data, title)
    if audit is not None:
        markdown += "\n" + explanations_markdown(audit)
    if safety is not None:
        markdown += "\n" + safety_markdown(safety)
    if as_deployed is not None:
        markdown += "\n" + deployed_markdown(as_deployed)
    markdown_path = out / "report.md"
    markdown_path.write_text(markdown, encoding="utf-8")

    header, body = table_strings(data)
    json_path = out / "report.json"
    payload = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        **data,
        "table": {"header": header, "rows": body},
        **({"explanations": audit} if audit is not None else {}),
        **({"safety": safety} if safety is not None else {}),
        **({"deployed": as_deployed["rows"]} if as_deployed is not None else {}),
    }
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    png_path = out / "report.png"
    render_png(data, title, png_path)
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
        audit=audit,
        deployed=as_deployed,
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
