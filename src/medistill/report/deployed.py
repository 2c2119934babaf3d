"""The report's "As deployed" table: each exported GGUF file as it runs on a CPU.

``medistill run``'s ``eval-deployed`` stage leaves one eval run folder per (GGUF file,
benchmark) holding a ``deployment.json`` beside run_eval's files. Those folders are not models
of the results table (the same student, quantised): they get their own rows, one per file and
benchmark, with accuracy and its CI (or refusal rates), no-answer, cut-off, tokens and seconds
per answer at the CPU's threads, peak memory, file size, and the change against the
unquantised student on the same questions (answers changed, McNemar p). The figures are
:func:`medistill.deploy.measured.deployed_figures`'s, the same the model card carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from medistill.deploy.measured import (
    EXPLANATION,
    MCQ_HEADER,
    SAFETY_HEADER,
    deployed_figures,
    is_deployed,
    markdown_tables,
    row_cells,
)
from medistill.report.tables import benchmark_order


def _folder(entry: str | Path) -> Path:
    given = Path(entry)
    return given if given.is_dir() else given.parent


def split_deployed(
    run_dirs: Sequence[str | Path],
) -> tuple[list[str | Path], list[Path]]:
    """The entries of ``run_dirs`` (folders or ``metrics.json`` paths) that are ordinary eval
    runs, and the folders of those that evaluated a deployed file (``deployment.json``)."""
    plain: list[str | Path] = []
    deployed: list[Path] = []
    for entry in run_dirs:
        folder = _folder(entry)
        if is_deployed(folder):
            deployed.append(folder)
        else:
            plain.append(entry)
    return plain, deployed


def deployed_data(folders: Sequence[str | Path]) -> dict[str, Any] | None:
    """The table's rows (:func:`~medistill.deploy.measured.deployed_figures` of each folder,
    a folder named twice counted once), by file then in the benchmarks' usual order;
    ``None`` when there is no folder."""
    seen: dict[Path, dict[str, Any]] = {}
    for f in folders:
        key = Path(f).resolve()
        if key not in seen:
            seen[key] = deployed_figures(f)
    if not seen:
        return None
    rows = list(seen.values())
    order = {b: i for i, b in enumerate(benchmark_order([str(r["benchmark"]) for r in rows]))}
    files = list(dict.fromkeys(str(r.get("file_name")) for r in rows))
    rows.sort(key=lambda r: (files.index(str(r.get("file_name"))), order[str(r["benchmark"])]))
    return {"rows": rows, "explanation": EXPLANATION}


def deployed_markdown(data: dict[str, Any]) -> str:
    """The "As deployed" section of ``report.md``."""
    return f"## As deployed\n\n{markdown_tables(data['rows'])}\n\n{data['explanation']}\n"


def deployed_html(data: dict[str, Any]) -> str:
    """The "As deployed" tables of ``report.html`` (every value escaped)."""
    parts = []
    for kind, header in (("mcq", MCQ_HEADER), ("safety", SAFETY_HEADER)):
        rows = [r for r in data["rows"] if r.get("kind") == kind]
        if not rows:
            continue
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row_cells(r)) + "</tr>" for r in rows
        )
        parts.append(f'<table id="deployed-{kind}"><tr>{head}</tr>{body}</table>')
    parts.append(f'<p class="note">{escape(data["explanation"])}</p>')
    return "\n".join(parts)
