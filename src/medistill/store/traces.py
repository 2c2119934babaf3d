"""The durable trace store: one SQLite file (WAL mode), one row per finished teacher call.

A row's key is a hash of (teacher model, messages, sampling parameters, sample index), so a
rerun with the same configuration finds every finished call and never pays for it twice. Each
call is committed the moment it finishes: killing the process loses at most calls in flight.
No credentials are ever stored: only the model name, the endpoint URL and the texts.

A second table, ``rubrics``, holds the per-question grading rubrics ``medistill rubrics`` asks the
teacher for: one row per (source, question id), with the teacher's raw reply and, when it was a
valid rubric, its parsed criteria (``[{criterion, weight, points}]``), else the reason it was
refused. Curation copies the valid ones into the dataset.

**Contrast calls** (``generate.contrast``): the teacher's answers to benign open requests (no
options, no gold), stored beside the MCQ traces with ``source`` ``contrast:<set>``
(:data:`CONTRAST_PREFIX`). They are not questions: :meth:`TraceStore.iter_rows` and
:meth:`TraceStore.count` take ``contrast=False`` (the MCQ traces) or ``True`` (these only), and
:meth:`TraceStore.questions` leaves them out; curation's safety mix reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.backends.base import CUT_OFF
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

#: 2 added ``split`` and ``source_file`` (what each question was read from); 3 added the
#: ``rubrics`` table. An older store is migrated in place when opened (its rows keep NULL in the
#: new columns, its rubrics table starts empty) and resumes as before.
SCHEMA_VERSION = 3

_COLUMNS = (
    ("key", "TEXT PRIMARY KEY"),
    ("question_id", "TEXT NOT NULL"),
    ("sample_index", "INTEGER NOT NULL"),
    ("source", "TEXT"),
    ("teacher", "TEXT NOT NULL"),
    ("question", "TEXT"),
    ("options", "TEXT"),  # JSON: the options as shown to the teacher (shuffled if asked)
    ("gold", "TEXT"),  # gold letter in the shown options
    ("permutation", "TEXT"),  # JSON: shown letter -> original letter, or null
    ("subject", "TEXT"),
    ("messages", "TEXT NOT NULL"),  # JSON
    ("params", "TEXT NOT NULL"),  # JSON sampling parameters
    ("text", "TEXT"),
    ("reasoning", "TEXT"),
    ("finish_reason", "TEXT"),
    ("truncated", "INTEGER"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("latency_s", "REAL"),
    ("endpoint", "TEXT"),
    ("attempts", "INTEGER"),
    ("created_at", "REAL"),
    ("split", "TEXT"),  # the split the question was read as (train, test...)
    ("source_file", "TEXT"),  # the file really read, or the Hub copy and its split
)
COLUMNS = tuple(name for name, _ in _COLUMNS)
_JSON_COLUMNS = {"options", "permutation", "messages", "params"}

_RUBRIC_COLUMNS = (
    ("source", "TEXT NOT NULL"),  # '' for a question without a source
    ("question_id", "TEXT NOT NULL"),
    ("teacher", "TEXT NOT NULL"),
    ("messages", "TEXT NOT NULL"),  # JSON: the request, as sent
    ("raw", "TEXT"),  # the teacher's reply, as received
    ("criteria", "TEXT"),  # JSON [{criterion, weight, points}], or NULL when refused
    ("error", "TEXT"),  # why the reply was refused (NULL: a valid rubric)
    ("attempts", "INTEGER"),  # requests made for this question so far
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("created_at", "REAL"),
)
RUBRIC_COLUMNS = tuple(name for name, _ in _RUBRIC_COLUMNS)

#: The ``source`` of a contrast call starts with this (``contrast:benign_clinical``).
CONTRAST_PREFIX = "contrast:"
_CONTRAST_WHERE = {
    None: "",
    True: " WHERE source LIKE 'contrast:%'",
    False: " WHERE source IS NULL OR source NOT LIKE 'contrast:%'",
}


def contrast_source(name: str) -> str:
    """The ``source`` a contrast call of the open-request set ``name`` is stored with."""
    return f"{CONTRAST_PREFIX}{name}"


def is_contrast(source: str | None) -> bool:
    """Whether a stored ``source`` marks a contrast call (an open request, not a question)."""
    return bool(source) and source.startswith(CONTRAST_PREFIX)


def trace_key(
    teacher: str, messages: list[dict[str, str]], params: dict[str, Any], sample_index: int
) -> str:
    """The identity of one teacher call: same inputs, same key, on any machine."""
    blob = json.dumps(
        {"teacher": teacher, "messages": messages, "params": params, "sample": sample_index},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class TraceRecord:
    """One finished call, as stored."""

    key: str
    question_id: str
    sample_index: int
    teacher: str
    messages: list[dict[str, str]] | str  # a str is the messages already encoded as JSON
    params: dict[str, Any] | str
    text: str
    finish_reason: str
    source: str | None = None
    question: str | None = None
    options: dict[str, str] | None = None
    gold: str | None = None
    permutation: dict[str, str] | None = None
    subject: str | None = None
    reasoning: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    endpoint: str | None = None
    attempts: int = 1
    created_at: float = field(default_factory=time.time)
    split: str | None = None
    source_file: str | None = None

    @property
    def truncated(self) -> bool:
        """True when the call did not end on its own: its token limit, or a repetition loop
        a local backend stopped early (curation filters both as truncated)."""
        return self.finish_reason in CUT_OFF

    def row(self) -> tuple[Any, ...]:
        """Values in :data:`COLUMNS` order, JSON-encoding structured fields."""
        values = []
        for name in COLUMNS:
            v = int(self.truncated) if name == "truncated" else getattr(self, name)
            if name in _JSON_COLUMNS and v is not None and not isinstance(v, str):
                v = json.dumps(v, ensure_ascii=False)  # a str is already JSON
            values.append(v)
        return tuple(values)


@dataclass
class RubricRecord:
    """One question's rubric request and its outcome, as stored (``criteria`` is ``None`` and
    ``error`` says why when the reply was not a valid rubric)."""

    source: str | None
    question_id: str
    teacher: str
    messages: list[dict[str, str]]
    raw: str
    criteria: list[dict[str, Any]] | None
    error: str | None
    attempts: int = 1
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    created_at: float = field(default_factory=time.time)

    def row(self) -> tuple[Any, ...]:
        """Values in :data:`RUBRIC_COLUMNS` order, JSON-encoding structured fields."""
        values = {**self.__dict__, "source": self.source or ""}
        values["messages"] = json.dumps(self.messages, ensure_ascii=False)
        if self.criteria is not None:
            values["criteria"] = json.dumps(self.criteria, ensure_ascii=False)
        return tuple(values[name] for name in RUBRIC_COLUMNS)


class TraceStore:
    """SQLite trace store. Use as a context manager; safe against kills at any moment."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed call survives a killed process; only an OS
            # crash or power loss may drop the last commits.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            cols = ", ".join(f"{n} {t}" for n, t in _COLUMNS)
            self.db.execute(f"CREATE TABLE IF NOT EXISTS traces ({cols})")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
            rcols = ", ".join(f"{n} {t}" for n, t in _RUBRIC_COLUMNS)
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS rubrics ({rcols}, PRIMARY KEY (source, question_id))"
            )
            self.db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.DatabaseError as e:
            raise MedistillError(f"{self.path}: not a usable trace store ({e})") from e
        version = self.db.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()[0]
        if int(version) < SCHEMA_VERSION:
            self._migrate(int(version))
        elif int(version) != SCHEMA_VERSION:
            raise MedistillError(
                f"{self.path}: trace store schema {version}, this medistill reads {SCHEMA_VERSION}"
            )

    def _migrate(self, version: int) -> None:
        """Bring an older store up to :data:`SCHEMA_VERSION`: add the columns it lacks (their
        old rows stay NULL), in one transaction, so its keys and resume are untouched. The
        ``rubrics`` table (schema 3) is created, empty, when the store is opened."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            have = {row[1] for row in self.db.execute("PRAGMA table_info(traces)")}
            for name, sql_type in _COLUMNS:
                if name not in have:
                    self.db.execute(f"ALTER TABLE traces ADD COLUMN {name} {sql_type}")
            self.db.execute("UPDATE meta SET v=? WHERE k='schema_version'", (str(SCHEMA_VERSION),))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        log.info(
            "%s: trace store migrated from schema %d to %d", self.path, version, SCHEMA_VERSION
        )

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (WAL contents stay valid for the next open)."""
        self.db.close()

    def done_keys(self) -> set[str]:
        """Keys of every finished call."""
        return {k for (k,) in self.db.execute("SELECT key FROM traces")}

    def put(self, rec: TraceRecord) -> bool:
        """Commit one finished call; returns False if its key was already stored."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        cur = self.db.execute(
            f"INSERT OR IGNORE INTO traces ({', '.join(COLUMNS)}) VALUES ({placeholders})",
            rec.row(),
        )
        return cur.rowcount == 1

    def put_many(self, recs: list[TraceRecord]) -> int:
        """Commit several finished calls in one transaction (group commit); returns how many
        were new. Used to keep up with hundreds of calls finishing in the same instant."""
        if not recs:
            return 0
        placeholders = ", ".join("?" for _ in COLUMNS)
        before = self.db.total_changes
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                f"INSERT OR IGNORE INTO traces ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                [r.row() for r in recs],
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return self.db.total_changes - before

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM traces").fetchone()[0]

    def count(self, *, contrast: bool | None = None) -> int:
        """Stored calls: all (``None``), the MCQ traces (``False``) or the contrast calls
        (``True``)."""
        return self.db.execute(
            "SELECT COUNT(*) FROM traces" + _CONTRAST_WHERE[contrast]
        ).fetchone()[0]

    def totals(self) -> dict[str, Any]:
        """Counts and token totals over the whole store."""
        n, p, c, t = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
            " COALESCE(SUM(truncated), 0) FROM traces"
        ).fetchone()
        return {"calls": n, "prompt_tokens": p, "completion_tokens": c, "truncated": t}

    def sources(self) -> list[dict[str, Any]]:
        """What the stored calls were read from: one entry per (source, split, file) with its
        call count, in order of first appearance (``None`` for rows of a schema-1 store)."""
        cur = self.db.execute(
            "SELECT source, split, source_file, COUNT(*) FROM traces"
            " GROUP BY source, split, source_file ORDER BY MIN(rowid)"
        )
        return [{"source": a, "split": b, "file": c, "calls": n} for a, b, c, n in cur]

    def iter_rows(self, *, contrast: bool | None = None) -> Iterator[dict[str, Any]]:
        """Every stored call as a dict (JSON fields decoded), in insertion order: all of them
        (``None``), the MCQ traces (``False``) or the contrast calls only (``True``)."""
        cur = self.db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM traces{_CONTRAST_WHERE[contrast]} ORDER BY rowid"
        )
        for values in cur:
            row = dict(zip(COLUMNS, values, strict=True))
            for name in _JSON_COLUMNS:
                if row[name] is not None:
                    row[name] = json.loads(row[name])
            row["truncated"] = bool(row["truncated"])
            yield row

    # ------------------------------------------------------------------------- rubrics

    def questions(self) -> Iterator[dict[str, Any]]:
        """Each stored question once, in order of its first trace: ``source``, ``question_id``,
        ``question``, ``options`` and ``gold`` as that trace showed them, its ``permutation``
        (shown letter -> original letter, or ``None``) and ``subject``. Contrast calls (open
        requests, not questions) are left out."""
        # SQLite takes the bare columns of an aggregate query with MIN() from the MIN row.
        cur = self.db.execute(
            "SELECT COALESCE(source, ''), question_id, question, options, gold, permutation,"
            f" subject, MIN(rowid) FROM traces{_CONTRAST_WHERE[False]}"
            " GROUP BY COALESCE(source, ''), question_id ORDER BY MIN(rowid)"
        )
        for source, qid, question, options, gold, perm, subject, _ in cur:
            yield {
                "source": source,
                "question_id": qid,
                "question": question,
                "options": json.loads(options) if options else None,
                "gold": gold,
                "permutation": json.loads(perm) if perm else None,
                "subject": subject,
            }

    def put_rubric(self, rec: RubricRecord) -> None:
        """Commit one question's rubric outcome, replacing an earlier one for the question."""
        placeholders = ", ".join("?" for _ in RUBRIC_COLUMNS)
        self.db.execute(
            f"INSERT OR REPLACE INTO rubrics ({', '.join(RUBRIC_COLUMNS)}) VALUES ({placeholders})",
            rec.row(),
        )

    def rubric_status(self) -> dict[tuple[str, str], tuple[str | None, int]]:
        """``(source, question_id) -> (error, attempts)`` for every stored rubric outcome
        (``error`` ``None``: a valid rubric)."""
        cur = self.db.execute("SELECT source, question_id, error, attempts FROM rubrics")
        return {(s, q): (e, a or 0) for s, q, e, a in cur}

    def rubrics(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """The valid rubrics: ``(source, question_id) -> [{criterion, weight, points}]``
        (``source`` is ``''`` for a question without one)."""
        cur = self.db.execute(
            "SELECT source, question_id, criteria FROM rubrics"
            " WHERE error IS NULL AND criteria IS NOT NULL"
        )
        return {(s, q): json.loads(c) for s, q, c in cur}

    def iter_rubrics(self) -> Iterator[dict[str, Any]]:
        """Every stored rubric outcome as a dict (JSON fields decoded), in insertion order."""
        cur = self.db.execute(f"SELECT {', '.join(RUBRIC_COLUMNS)} FROM rubrics ORDER BY rowid")
        for values in cur:
            row = dict(zip(RUBRIC_COLUMNS, values, strict=True))
            for name in ("messages", "criteria"):
                if row[name] is not None:
                    row[name] = json.loads(row[name])
            yield row


def export_store(store_path: str | Path, out: str | Path, fmt: str = "jsonl") -> Path:
    """Export a trace store to ``jsonl``, ``parquet`` or a Hugging Face dataset folder (``hf``).

    Streams rows for JSONL; Parquet and HF go through ``pyarrow`` / ``datasets`` (optional).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not Path(store_path).exists():
        raise MedistillError(f"{store_path}: trace store not found")
    with TraceStore(store_path) as store:
        if fmt == "jsonl":
            tmp = out.with_suffix(out.suffix + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in store.iter_rows():
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            tmp.replace(out)
            return out
        rows = [_flat(r) for r in store.iter_rows()]
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MedistillError("Parquet export needs pyarrow: pip install pyarrow") from None
        pq.write_table(pa.Table.from_pylist(rows), out)
        return out
    if fmt == "hf":
        try:
            import datasets
        except ImportError:
            raise MedistillError("HF dataset export needs datasets: pip install datasets") from None
        datasets.Dataset.from_list(rows).save_to_disk(str(out))
        return out
    raise MedistillError(f"unknown export format {fmt!r}; choose jsonl, parquet or hf")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Structured fields as JSON strings: a stable columnar schema for Parquet / Arrow."""
    return {
        k: (json.dumps(v, ensure_ascii=False) if k in _JSON_COLUMNS and v is not None else v)
        for k, v in row.items()
    }
