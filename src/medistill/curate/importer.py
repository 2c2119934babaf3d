"""Import existing reasoning-trace datasets into a trace store.

Public sets (HuatuoGPT-o1's traces, m1K, MedReason...) are curated, mixed and decontaminated
exactly like our own teacher's traces once they sit in the same store. A field mapping says
where each part lives; the dataset's name becomes the row's ``teacher`` (its origin) and the
file its ``endpoint``, so the data card can count by origin.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medistill.data.loading import (
    LETTERS,
    Skipped,
    check_gold,
    iter_json_or_jsonl,
    iter_jsonl,
    normalise_options,
    require_str,
)
from medistill.errors import DataError, MedistillError
from medistill.store import TraceRecord, TraceStore

log = logging.getLogger(__name__)

FIELDS = ("question", "options", "gold", "reasoning", "response", "id", "subject", "finish_reason")
REQUIRED = ("question", "options", "gold", "response")

PRESETS: dict[str, dict[str, str]] = {
    # HuatuoGPT-o1 style MCQ traces (the shape of its demo data): CoT + final response.
    "huatuogpt-o1": {
        "question": "question",
        "options": "options",
        "gold": "answer_idx",
        "reasoning": "Complex_CoT",
        "response": "Response",
    },
    # Our own column names (an exported dataset or a hand-made file).
    "medistill": {
        "question": "question",
        "options": "options",
        "gold": "gold",
        "reasoning": "reasoning",
        "response": "text",
        "id": "question_id",
        "subject": "subject",
        "finish_reason": "finish_reason",
    },
}


def parse_mapping(spec: str | dict[str, str] | None, preset: str | None = None) -> dict[str, str]:
    """A field mapping from a preset plus ``ours=theirs`` pairs (comma-separated or a dict)."""
    mapping: dict[str, str] = {}
    if preset:
        if preset not in PRESETS:
            raise MedistillError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        mapping.update(PRESETS[preset])
    if isinstance(spec, str):
        for part in filter(None, (p.strip() for p in spec.split(","))):
            ours, sep, theirs = part.partition("=")
            if not sep or not theirs.strip():
                raise MedistillError(f"mapping entry {part!r}: expected ours=theirs")
            mapping[ours.strip()] = theirs.strip()
    elif spec:
        mapping.update(spec)
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise MedistillError(f"unknown mapping field(s) {unknown}; valid: {list(FIELDS)}")
    missing = [f for f in REQUIRED if f not in mapping]
    if missing:
        raise MedistillError(
            f"the mapping needs {missing} (e.g. --map question=Question,gold=answer_idx)"
        )
    return mapping


def _iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise MedistillError("Parquet import needs pyarrow: pip install pyarrow") from None
        line = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
            for rec in batch.to_pylist():
                line += 1
                yield line, rec
        return
    if path.suffix in (".jsonl", ".ndjson") or path.name.endswith(".jsonl.gz"):
        yield from iter_jsonl(path)
        return
    yield from iter_json_or_jsonl(path)


def _gold_letter(raw: Any, options: dict[str, str], *, path: str, line: int, field: str) -> str:
    """A gold given as a letter, a 0-based index or the option's text."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(options):
        return LETTERS[raw]
    text = str(raw).strip() if raw is not None else ""
    for letter, option in options.items():
        if text and text.lower() == option.lower() and len(text) > 1:
            return letter
    letter = check_gold(raw, options, path=path, line=line, field=field)
    if letter is None:
        raise DataError("empty value", path=path, line=line, field=field)
    return letter


def record_from(
    rec: Any, mapping: dict[str, str], *, origin: str, path: str, line: int
) -> TraceRecord:
    """One imported row as a trace record (raises a located :class:`DataError`)."""
    if not isinstance(rec, dict):
        raise DataError(f"expected an object, got {type(rec).__name__}", path=path, line=line)
    question = require_str(rec, mapping["question"], path=path, line=line)
    if mapping["options"] not in rec:
        raise DataError("missing field", path=path, line=line, field=mapping["options"])
    options = normalise_options(
        rec[mapping["options"]], path=path, line=line, field=mapping["options"]
    )
    gold = _gold_letter(
        rec.get(mapping["gold"]), options, path=path, line=line, field=mapping["gold"]
    )
    response = require_str(rec, mapping["response"], path=path, line=line)
    reasoning = None
    if "reasoning" in mapping:
        reasoning = require_str(rec, mapping["reasoning"], path=path, line=line)
    qid = str(rec[mapping["id"]]) if mapping.get("id") in rec else f"{Path(path).stem}:{line}"
    subject = rec.get(mapping.get("subject", ""), None)
    finish = str(rec.get(mapping.get("finish_reason", ""), None) or "stop")
    messages = [{"role": "user", "content": question}]
    key = hashlib.sha256(
        json.dumps(
            [origin, qid, question, options, reasoning, response], ensure_ascii=False
        ).encode()
    ).hexdigest()
    return TraceRecord(
        key=key,
        question_id=qid,
        sample_index=0,
        teacher=origin,
        messages=messages,
        params={"imported_from": Path(path).name},
        text=response,
        finish_reason=finish,
        source=origin,
        question=question,
        options=options,
        gold=gold,
        subject=str(subject) if subject else None,
        reasoning=reasoning,
        endpoint=f"import:{Path(path).name}",
    )


def import_traces(
    path: str | Path,
    store_path: str | Path,
    *,
    origin: str,
    mapping: dict[str, str],
    skip_invalid: bool = False,
    batch: int = 1000,
) -> dict[str, Any]:
    """Import a JSON / JSONL / Parquet trace dataset into the store; returns the counts.

    Re-importing the same file adds nothing (rows are keyed by their content). A bad row
    stops the import with its file, line and field, or is counted and listed under
    ``skip_invalid``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    skipped: list[Skipped] = []
    read = added = 0
    pending: list[TraceRecord] = []
    with TraceStore(store_path) as store:
        for line, rec in _iter_records(path):
            read += 1
            try:
                pending.append(record_from(rec, mapping, origin=origin, path=str(path), line=line))
            except DataError as e:
                if not skip_invalid:
                    raise
                skipped.append(Skipped(e.path or str(path), e.line, e.field, e.reason))
            if len(pending) >= batch:
                added += store.put_many(pending)
                pending.clear()
        added += store.put_many(pending)
    for s in skipped:
        log.warning("skipped %s", s)
    summary = {
        "file": str(path),
        "origin": origin,
        "read": read,
        "imported": added,
        "already_present": read - len(skipped) - added,
        "skipped": len(skipped),
        "skipped_rows": [str(s) for s in skipped[:50]],
    }
    log.info(
        "%s: read %d rows, imported %d, %d already present, %d skipped",
        path,
        read,
        added,
        summary["already_present"],
        len(skipped),
    )
    return summary
