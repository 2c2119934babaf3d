"""Reading records from files, validating them, and counting what was skipped.

Every format parser in :mod:`medistill.data.formats` yields ``(line, raw_record)`` pairs and
turns each into a :class:`Question` through :func:`validated`; this module owns the rules
that make a question valid and the bookkeeping for ``--skip-invalid``.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.data.schema import Question
from medistill.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Skipped:
    """One record left out under ``--skip-invalid``: where it was and why."""

    path: str
    line: int | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        return str(DataError(self.reason, path=self.path, line=self.line, field=self.field))


@dataclass
class LoadReport:
    """What a load did: counts, skipped records, and decisions taken (e.g. cop base)."""

    path: str
    loaded: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    no_gold: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The split the questions are labelled with and the file really read (a Hub copy is named
    #: by its dataset id and split); set by ``load_benchmark``, recorded by the trace store.
    split: str | None = None
    source_file: str | None = None
    #: Your own questions file split by a holdout rule (:mod:`medistill.data.mcq_file`): the
    #: share, seed, rule, the part read and both parts' counts; ``None`` otherwise.
    holdout: dict[str, Any] | None = None

    def summary(self) -> str:
        """One line for the log / CLI: loaded, skipped and missing-gold counts."""
        s = f"{self.path}: loaded {self.loaded} questions"
        if self.skipped:
            s += f", skipped {len(self.skipped)} invalid"
        if self.no_gold:
            s += f", {len(self.no_gold)} without a gold answer ({', '.join(self.no_gold[:5])})"
        return s


@dataclass
class LoadResult:
    """Questions plus the :class:`LoadReport` describing how they were read."""

    questions: list[Question]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.questions)

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)


def open_text(path: Path):
    """Open a text file, transparently decompressing ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON is a DataError."""
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield (
                    lineno,
                    DataError(
                        f"malformed JSON ({e.msg} at column {e.colno})", path=str(path), line=lineno
                    ),
                )


def iter_json_or_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Read a JSON array / dict file or a JSON-lines file (detected from the content).

    MedMCQA's official ``dev.json`` is JSON lines despite its name, so the extension is
    not trusted. For a whole-document JSON the "line" is the 1-based record index.
    """
    with open_text(path) as fh:
        head = fh.read(1 << 16)
    stripped = head.lstrip()
    if stripped.startswith("["):
        try:
            with open_text(path) as fh:
                data = json.load(fh)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON ({e.msg})", path=str(path), line=e.lineno) from e
        yield from enumerate(data, start=1)
        return
    if stripped.startswith("{"):
        # A dict document (PubMedQA keyed by PMID) or JSON lines: try one document first.
        try:
            with open_text(path) as fh:
                data = json.load(fh)
        except json.JSONDecodeError:
            yield from iter_jsonl(path)
            return
        if isinstance(data, dict) and not _looks_like_record(data):
            for i, (key, value) in enumerate(data.items(), start=1):
                if isinstance(value, dict):
                    value = {"__key__": key, **value}
                yield i, value
        else:
            yield 1, data
        return
    yield from iter_jsonl(path)


def _looks_like_record(d: dict) -> bool:
    return "question" in d or "QUESTION" in d


def iter_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, row)`` from a header-less CSV (MMLU style)."""
    with open_text(path) as fh:
        reader = csv.reader(fh)
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            yield reader.line_num, row


def require_str(rec: dict, key: str, *, path: str, line: int) -> str:
    """Return ``rec[key]`` as a stripped non-empty string, or raise a located DataError."""
    if key not in rec:
        raise DataError("missing field", path=path, line=line, field=key)
    value = rec[key]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError("empty value", path=path, line=line, field=key)
    if isinstance(value, (dict, list)):
        raise DataError(
            f"expected text, got {type(value).__name__}", path=path, line=line, field=key
        )
    return str(value).strip()


def check_gold(
    gold: Any, options: dict[str, str], *, path: str, line: int, field: str
) -> str | None:
    """Validate a gold letter against the options; ``None`` stays ``None`` (no answer key)."""
    if gold is None or (isinstance(gold, str) and not gold.strip()):
        return None
    letter = str(gold).strip().upper()
    if letter not in options:
        raise DataError(
            f"gold answer {gold!r} is not among the options {list(options)}",
            path=path,
            line=line,
            field=field,
        )
    return letter


class Collector:
    """Accumulates questions from one file, enforcing unique ids and ``skip_invalid``."""

    def __init__(self, path: Path, *, skip_invalid: bool, limit: int | None = None) -> None:
        self.path = str(path)
        self.skip_invalid = skip_invalid
        self.limit = limit
        self.questions: list[Question] = []
        self.report = LoadReport(path=self.path)
        self._seen: dict[str, int] = {}

    @property
    def full(self) -> bool:
        """True once ``limit`` questions were collected."""
        return self.limit is not None and len(self.questions) >= self.limit

    def fail(self, err: DataError) -> None:
        """Raise ``err``, or record it as skipped when ``skip_invalid`` is on."""
        if not self.skip_invalid:
            raise err
        self.report.skipped.append(Skipped(err.path or self.path, err.line, err.field, err.reason))

    def add(self, q: Question, line: int, *, id_field: str = "id") -> None:
        """Add a parsed question after the checks that need the whole file (unique ids)."""
        if not q.question.strip():
            self.fail(DataError("empty value", path=self.path, line=line, field="question"))
            return
        if q.id in self._seen:
            self.fail(
                DataError(
                    f"duplicate id {q.id!r} (first seen on line {self._seen[q.id]})",
                    path=self.path,
                    line=line,
                    field=id_field,
                )
            )
            return
        self._seen[q.id] = line
        if q.gold is None:
            self.report.no_gold.append(q.id)
        self.questions.append(q)

    def result(self) -> LoadResult:
        """Finish: log the summary and any skipped rows, and return the LoadResult."""
        self.report.loaded = len(self.questions)
        for s in self.report.skipped:
            log.warning("skipped %s", s)
        if self.report.no_gold:
            log.warning(
                "%d question(s) in %s have no gold answer and are not scored: %s",
                len(self.report.no_gold),
                self.path,
                ", ".join(self.report.no_gold[:10]),
            )
        for note in self.report.notes:
            log.info("%s", note)
        if not self.questions:
            raise DataError("no valid questions found", path=self.path)
        return LoadResult(self.questions, self.report)
