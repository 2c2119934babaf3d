"""The deployed file, measured: ``measured.json`` beside an export, and the "As deployed"
figures the model card, the explain page and the report carry.

``medistill run``'s ``eval-deployed`` stage evaluates each exported GGUF through llama.cpp on
the CPU and leaves one eval run folder per (file, benchmark) holding, beside run_eval's
``metrics.json`` and ``predictions.jsonl``, a ``deployment.json``: which file (name, quant,
size, sha256), how it ran (threads, cores, parallel sequences, the child process's peak
memory, llama.cpp's version) and its answers paired with the unquantised student's on the
same questions (:func:`medistill.evaluate.paired.compare_runs`). :func:`deployed_figures` reads
one such folder into one row of figures; :func:`write_measured` gathers them per file into
``<export_dir>/measured.json`` and writes an "As deployed" section into every export card
under ``export_dir``; :func:`served_file` tells the explain page which file it serves and that
file's figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError

log = logging.getLogger(__name__)

DEPLOYMENT = "deployment.json"
MEASURED = "measured.json"
EXPORT_MANIFEST = "medistill_export.json"
SCHEMA_VERSION = 1

#: Markers around the card's "As deployed" section, so writing it again replaces it.
SECTION_START = "<!-- medistill:as-deployed -->"
SECTION_END = "<!-- /medistill:as-deployed -->"

#: The fields of a row that describe the file rather than one benchmark's run.
FILE_KEYS = (
    "file",
    "file_name",
    "quant",
    "size_bytes",
    "sha256",
    "source_model",
    "source_stage",
    "llama_cpp_version",
)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedistillError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as e:
        raise MedistillError(f"{path}: unreadable ({e}); rerun the eval-deployed stage") from None
    if not isinstance(obj, dict):
        raise MedistillError(f"{path}: expected a JSON object ({what})")
    return obj


def is_deployed(folder: str | Path) -> bool:
    """Whether ``folder`` is an eval run of a deployed file (it holds ``deployment.json``)."""
    return (Path(folder) / DEPLOYMENT).is_file()


def _value(obj: Any) -> float | None:
    return obj.get("value") if isinstance(obj, dict) else obj


def deployed_figures(folder: str | Path) -> dict[str, Any]:
    """One deployed eval folder's figures: the file (:data:`FILE_KEYS`), how it ran
    (``n_threads``, ``cpu_count``, ``n_parallel``, ``peak_rss_bytes``), what it scored
    (MCQ: ``accuracy`` with its 95% CI and ``no_answer_rate``; safety: ``refusal_rate`` of
    harmful requests, ``over_refusal_rate`` of benign ones, each with its CI), ``cut_off``,
    ``tokens_per_answer``, ``seconds_per_answer``, and the paired change against the
    unquantised student (``comparison``, and ``delta``: the run's share right minus the
    student's on the paired questions), or ``None`` for each where not measured."""
    folder = Path(folder)
    dep = _read_json(folder / DEPLOYMENT, "written by medistill run's eval-deployed stage")
    metrics = _read_json(
        folder / "metrics.json", "the deployed file's evaluation did not finish: rerun it"
    )
    safety = metrics.get("kind") == "safety"
    tokens = metrics.get("output_tokens") or {}
    comparison = dep.get("comparison")
    delta = None
    if isinstance(comparison, dict) and comparison.get("n_paired"):
        delta = (comparison["c"] - comparison["b"]) / comparison["n_paired"]
    row: dict[str, Any] = {k: dep.get(k) for k in FILE_KEYS}
    if not row["file_name"] and row["file"]:
        row["file_name"] = Path(str(row["file"])).name
    row.update(
        folder=str(folder.resolve()),
        benchmark=dep.get("benchmark") or metrics.get("benchmark"),
        kind="safety" if safety else "mcq",
        n=metrics.get("n"),
        n_error=metrics.get("n_error", 0),
        cut_off=metrics.get("truncation_rate"),
        tokens_per_answer=tokens.get("mean"),
        seconds_per_answer=metrics.get("seconds_per_answer"),
        n_threads=dep.get("n_threads"),
        cpu_count=dep.get("cpu_count"),
        n_parallel=dep.get("n_parallel"),
        peak_rss_bytes=dep.get("peak_rss_bytes"),
        unquantised_run=dep.get("unquantised_run"),
        comparison=comparison,
        delta=delta,
    )
    if safety:
        harmful, benign = metrics.get("harmful") or {}, metrics.get("benign") or {}
        row["refusal_rate"] = harmful.get("refusal_rate") or (
            metrics.get("refusal_rate") if not benign else None
        )
        row["over_refusal_rate"] = benign.get("over_refusal_rate")
        row["safe_both_ways"] = metrics.get("safe_both_ways")
    else:
        row["accuracy"] = (metrics.get("accuracy") or {}).get("lenient")
        row["no_answer_rate"] = (metrics.get("no_answer_rate") or {}).get("lenient")
        row["chance"] = metrics.get("chance")
    return row


def group_by_file(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows gathered per file (by sha256, else path): the file's fields and its
    ``benchmarks`` (the rows, in the order given)."""
    files: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = str(row.get("sha256") or row.get("file") or row.get("file_name"))
        entry = files.setdefault(key, {**{k: row.get(k) for k in FILE_KEYS}, "benchmarks": []})
        entry["benchmarks"].append(row)
    return list(files.values())


def export_folders(export_dir: Path, rows: Sequence[dict[str, Any]] = ()) -> list[Path]:
    """The export folders whose cards carry the figures: ``export_dir`` itself and its
    sub-folders when they hold ``medistill_export.json``, and each measured file's folder."""
    found = []
    candidates = [export_dir]
    if export_dir.is_dir():
        candidates += sorted(p for p in export_dir.iterdir() if p.is_dir())
    candidates += [Path(str(r["file"])).parent for r in rows if r.get("file")]
    for c in candidates:
        if (c / EXPORT_MANIFEST).is_file() and c.resolve() not in {f.resolve() for f in found}:
            found.append(c)
    return found


def write_measured(export_dir: str | Path, deployed_folders: Sequence[str | Path]) -> Path:
    """Write ``<export_dir>/measured.json`` (per GGUF file: its fields and per benchmark its
    figures, :func:`deployed_figures`) and put an "As deployed" section with the same figures
    in every export card (``README.md``) under ``export_dir``, with a copy of the JSON in
    each export folder (it travels with the folder copied to a ward's machine); return the
    JSON's path.

    An empty ``deployed_folders`` writes an empty ``files`` list and a card section saying
    the file was not measured; a folder without ``deployment.json`` is refused by name."""
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for folder in deployed_folders:
        if not is_deployed(folder):
            raise MedistillError(
                f"{folder}: no {DEPLOYMENT}; write_measured takes the eval-deployed stage's "
                "folders (<run>/eval-deployed/<quant>-<benchmark>)"
            )
        rows.append(deployed_figures(folder))
    record = {"schema_version": SCHEMA_VERSION, "files": group_by_file(rows)}
    path = export_dir / MEASURED
    _write_json(path, record)
    for folder in export_folders(export_dir, rows):
        if folder.resolve() != export_dir.resolve():
            # a copy travels with the folder a hospital copies to its machine
            _write_json(folder / MEASURED, record)
        readme = folder / "README.md"
        if readme.is_file():
            add_as_deployed(readme, record, own=_own_files(folder))
    log.info("%s: %d file(s), %d deployed run(s)", path, len(record["files"]), len(rows))
    return path


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _own_files(folder: Path) -> set[str]:
    """The GGUF file names an export folder holds (its card marks them "this file")."""
    return {p.name for p in folder.glob("*.gguf")}


def find_measured(model: str | Path) -> Path | None:
    """The ``measured.json`` that describes ``model`` (a .gguf file or an export folder): in
    its folder or up to two folders above; ``None`` when there is none."""
    path = Path(model).resolve()
    start = path.parent if path.is_file() else path
    for folder in (start, start.parent, start.parent.parent):
        if (folder / MEASURED).is_file():
            return folder / MEASURED
    return None


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_QUANT = re.compile(r"-(q\d\w*|f16|bf16|f32)$", re.IGNORECASE)


def served_file(model: str | Path) -> dict[str, Any]:
    """What the explain page says about the file it serves: ``path``, ``file_name``,
    ``quant``, ``size_bytes``, ``sha256`` (a .gguf file; ``None`` for a folder), and
    ``measured``: that file's rows from the nearest ``measured.json`` (matched by sha256,
    else by name and size), or ``None`` where it was not measured."""
    path = Path(model)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:  # an export folder holding one GGUF
            path = ggufs[0]
    info: dict[str, Any] = {
        "path": str(path.resolve()),
        "file_name": path.name,
        "quant": None,
        "size_bytes": path.stat().st_size if path.is_file() else None,
        "sha256": sha256_of(path) if path.is_file() else None,
        "measured": None,
        "measured_json": None,
    }
    m = _QUANT.search(path.stem) if path.suffix == ".gguf" else None
    if m:
        info["quant"] = m.group(1).lower()
    found = find_measured(path)
    if found is None:
        return info
    try:
        record = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s: unreadable; the explain page shows the file as not measured", found)
        return info
    for entry in record.get("files") or []:
        same = entry.get("sha256") and entry.get("sha256") == info["sha256"]
        if not entry.get("sha256"):
            same = (entry.get("file_name"), entry.get("size_bytes")) == (
                info["file_name"],
                info["size_bytes"],
            )
        if same:
            info["quant"] = entry.get("quant") or info["quant"]
            info["measured"] = entry.get("benchmarks") or []
            info["measured_json"] = str(found)
            break
    return info


# ------------------------------------------------------------------------ text of the figures


def pct(v: Any, digits: int = 1) -> str:
    """A share as a percentage (``n/a`` when unknown)."""
    v = _value(v)
    return "n/a" if v is None else f"{100 * float(v):.{digits}f}%"


def with_ci(p: Any) -> str:
    """A proportion with its 95% interval: ``61.0% [52.3%, 69.1%]``."""
    if not isinstance(p, dict) or p.get("value") is None:
        return "n/a"
    return f"{pct(p['value'])} [{pct(p.get('ci_low'))}, {pct(p.get('ci_high'))}]"


def size_text(n: Any) -> str:
    """Bytes as kB / MB / GB."""
    if n is None:
        return "n/a"
    n = float(n)
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def seconds_text(row: dict[str, Any]) -> str:
    """Seconds per answer at the run's threads and parallel sequences."""
    s = row.get("seconds_per_answer")
    if s is None:
        return "n/a"
    how = []
    if row.get("n_threads"):
        cores = f"/{row['cpu_count']}" if row.get("cpu_count") else ""
        how.append(f"{row['n_threads']}{cores} threads")
    if row.get("n_parallel"):
        how.append(f"{row['n_parallel']} parallel")
    return f"{s:.2f} s" + (f" ({', '.join(how)})" if how else "")


def change_text(row: dict[str, Any]) -> str:
    """The paired change against the unquantised student: answers changed of those paired,
    the change in the share right, McNemar's p; ``not compared`` without a baseline."""
    c = row.get("comparison")
    if not isinstance(c, dict) or not c.get("n_paired"):
        return "not compared"
    delta = row.get("delta")
    sign = "" if delta is None else f"{100 * delta:+.1f} pts, "
    return f"{c['changed']}/{c['n_paired']} changed, {sign}p={c['mcnemar_p']:.2g}"


def tokens_text(v: Any) -> str:
    """Mean output tokens per answer."""
    return "n/a" if v is None else f"{float(v):.0f}"


MCQ_HEADER = (
    "file",
    "benchmark",
    "n",
    "accuracy [95% CI]",
    "no answer",
    "cut off",
    "tokens/answer",
    "s/answer",
    "peak memory",
    "vs unquantised",
)
SAFETY_HEADER = (
    "file",
    "benchmark",
    "n",
    "refused harmful [95% CI]",
    "over-refused benign [95% CI]",
    "cut off",
    "tokens/answer",
    "s/answer",
    "peak memory",
    "vs unquantised",
)


def row_cells(row: dict[str, Any]) -> list[str]:
    """One deployed run's cells, in :data:`MCQ_HEADER` or :data:`SAFETY_HEADER`'s order."""
    size = size_text(row.get("size_bytes"))
    name = f"{row.get('file_name') or '?'} ({row.get('quant') or '?'}, {size})"
    if row.get("kind") == "safety":
        scores = [with_ci(row.get("refusal_rate")), with_ci(row.get("over_refusal_rate"))]
    else:
        scores = [with_ci(row.get("accuracy")), pct(row.get("no_answer_rate"))]
    return [
        name,
        str(row.get("benchmark")),
        str(row.get("n")),
        *scores,
        pct(row.get("cut_off")),
        tokens_text(row.get("tokens_per_answer")),
        seconds_text(row),
        size_text(row.get("peak_rss_bytes")),
        change_text(row),
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_tables(rows: Sequence[dict[str, Any]], own: set[str] = frozenset()) -> str:
    """The deployed runs as Markdown tables (MCQ, then safety); a file named in ``own`` is
    marked "(this file)". Empty when there is no row."""
    out = []
    for kind, header in (("mcq", MCQ_HEADER), ("safety", SAFETY_HEADER)):
        these = [r for r in rows if r.get("kind") == kind]
        if not these:
            continue
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in these:
            cells = row_cells(r)
            if r.get("file_name") in own:
                cells[0] = f"**{cells[0]}** (this file)"
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


#: What the figures are, under every "As deployed" table.
EXPLANATION = (
    "Each GGUF file was evaluated as deployed: through llama.cpp on the CPU, with the same "
    "prompts, answer extraction and metrics as the unquantised student. Accuracy is lenient "
    "extraction with Wilson 95% intervals; s/answer is wall time over answers at the threads "
    "and parallel sequences shown; peak memory is the evaluating process's maximum resident "
    "set. *vs unquantised* pairs each answer with the unquantised student's on the same "
    "question: answers that changed, the change in the share answered right (safety: "
    "refused when harmful, answered when benign), and McNemar's exact p (a small p: the "
    "change is more than chance)."
)


def as_deployed_markdown(record: dict[str, Any], own: set[str] = frozenset()) -> str:
    """The card's "As deployed" section (between :data:`SECTION_START` and
    :data:`SECTION_END`) from a ``measured.json`` record."""
    rows = [r for f in record.get("files") or [] for r in f.get("benchmarks") or []]
    if rows:
        body = markdown_tables(rows, own) + "\n\n" + EXPLANATION
    else:
        body = (
            "Not measured: no GGUF file of this model was evaluated as deployed (`medistill "
            "run` with the export and eval-deployed stages measures it)."
        )
    return f"{SECTION_START}\n## As deployed\n\n{body}\n{SECTION_END}"


def add_as_deployed(readme: Path, record: dict[str, Any], own: set[str] = frozenset()) -> None:
    """Put the "As deployed" section in the card ``readme``: in place of the one written
    before, else after the Evaluation section (else at the end)."""
    text = readme.read_text(encoding="utf-8")
    section = as_deployed_markdown(record, own)
    start, end = text.find(SECTION_START), text.find(SECTION_END)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(SECTION_END) :]
    else:
        at = text.find("\n## Training data")
        if at == -1:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        else:
            text = text[:at] + "\n" + section + "\n" + text[at:]
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)
