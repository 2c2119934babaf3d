"""Your own multiple-choice questions as the ``mcq`` benchmark: a JSON-lines, JSON or CSV file.

A hospital's exam bank or a formulary quiz is read by every command that names a benchmark
(``--benchmark mcq --path FILE``, or ``{benchmark: mcq, path: FILE}`` in a recipe):

- **JSONL / JSON** (``.jsonl``, ``.json``; ``.gz`` too): one object per question with
  ``question``, ``options`` (an object ``{"A": .., "B": ..}`` or a list, lettered A, B, ... in
  order) and ``answer`` (the option's letter, or its exact text; ``gold`` is read where there
  is no ``answer``), and optionally ``id``, ``subject`` and ``explanation``.
- **CSV** (``.csv``): a header row with ``question``, one column per option (``A``, ``B``,
  ... or ``option_a``, ``option_b``, ... or ``opa``, ``opb``, ...) and ``answer``; ``id``,
  ``subject`` and ``explanation`` columns are read where present. A question with fewer
  options leaves its last option cells empty.
- **Other field names**: ``columns`` maps ours to yours, e.g. ``{question: stem, answer:
  correct, options: [opa, opb, opc, opd], id: qid}``; ``options`` is a list of per-option
  fields (either format) or, in JSON, the one field holding the object or list.

Every question has 2 to 10 options. A bad row raises :class:`DataError` naming the file, the
line and the field (``--skip-invalid`` counts and skips it instead): an empty question, a
duplicate id, too few or too many options, a gap in the options, an answer that is neither a
letter of the options nor the text of exactly one.

**One file for training and evaluation**: ``holdout`` (a share, e.g. 0.2) and
``holdout_seed`` split the file by a seeded hash of each question's id (its text where the
file has no ids), so the split does not depend on the rows' order: the ``test`` split is the
held-out share (what ``eval`` reads), the ``train`` split the rest (what ``generate`` reads).
The rule and both counts are recorded in the load report (``LoadReport.holdout``) and noted
in the log.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medistill.data.loading import (
    Collector,
    LoadResult,
    iter_json_or_jsonl,
    iter_jsonl,
    open_text,
    require_str,
)
from medistill.data.mcq_options import MAX_OPTIONS, MIN_OPTIONS, check_options, held_out
from medistill.data.schema import LETTERS, Question
from medistill.errors import DataError

#: File suffixes read (a ``.gz`` on top is decompressed).
SUFFIXES = (".jsonl", ".json", ".csv")
#: The splits a holdout rule defines: ``test`` (held out, evaluated on) and ``train``.
HOLDOUT_SPLITS = ("train", "test")

_OPTION_HEADER = re.compile(r"^(?:option[\s_-]*|op)?([a-j])$", re.IGNORECASE)


def load_mcq_file(
    path: str | Path,
    *,
    source: str = "mcq",
    split: str = "test",
    skip_invalid: bool = False,
    limit: int | None = None,
    columns: Mapping[str, Any] | None = None,
    holdout: float | None = None,
    holdout_seed: int = 0,
) -> LoadResult:
    """Load your own questions (JSONL, JSON or CSV, chosen by the file's suffix).

    ``columns`` renames fields; ``holdout``/``holdout_seed`` keep one part of the file:
    ``split`` test the held-out share, train the rest (see the module's docstring).
    """
    path = Path(path)
    check_options(columns, holdout, holdout_seed, where=str(path))
    cols = dict(columns or {})
    if holdout is not None and split not in HOLDOUT_SPLITS:
        raise DataError(
            f"split {split!r} with a holdout rule: choose test (the held-out share) or train "
            "(the rest)",
            path=str(path),
        )
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"unsupported file type {suffix or '(none)'!r}: the mcq benchmark reads "
            ".jsonl, .json or .csv (save a spreadsheet as CSV)",
            path=str(path),
        )
    records = _csv_records(path, cols) if suffix == ".csv" else _json_records(path)
    coll = Collector(path, skip_invalid=skip_invalid, limit=None if holdout else limit)
    keys: dict[str, str] = {}  # question id -> what the holdout rule hashes
    for index, (line, rec) in enumerate(records):
        if coll.full:
            break
        try:
            if isinstance(rec, DataError):
                raise rec
            if not isinstance(rec, dict):
                raise DataError(
                    f"expected a JSON object, got {type(rec).__name__}", path=str(path), line=line
                )
            q = mcq_file_record(rec, line, str(path), cols, source=source, split=split, index=index)
        except DataError as e:
            coll.fail(e)
            continue
        coll.add(q, line, id_field=cols.get("id", "id"))
        given = rec.get(_field(rec, cols, "id"))
        has_id = given is not None and str(given).strip() != ""
        keys.setdefault(q.id, q.id if has_id else " ".join(q.question.split()))
    result = coll.result()
    if holdout is not None:
        result = _keep_part(result, keys, holdout, holdout_seed, split, limit)
    return result


def _keep_part(
    result: LoadResult,
    keys: dict[str, str],
    holdout: float,
    seed: int,
    split: str,
    limit: int | None,
) -> LoadResult:
    """The ``split`` part of a loaded file under the holdout rule, recorded in its report."""
    test = [q for q in result.questions if held_out(keys[q.id], holdout, seed)]
    test_ids = {q.id for q in test}
    train = [q for q in result.questions if q.id not in test_ids]
    kept = (test if split == "test" else train)[:limit]
    report = result.report
    report.holdout = {
        "share": holdout,
        "seed": seed,
        "rule": "sha256('<seed>:<id>') < share (the question's text where a row has no id)",
        "part": split,
        "test": len(test),
        "train": len(train),
    }
    report.notes.append(
        f"holdout {holdout} (seed {seed}): {len(test)} of {len(result.questions)} questions "
        f"held out (split test), {len(train)} for training (split train); read: {split}"
    )
    if not kept:
        raise DataError(
            f"the holdout rule ({holdout}, seed {seed}) leaves no {split} questions of "
            f"{len(result.questions)}: change holdout",
            path=report.path,
        )
    report.loaded = len(kept)
    return LoadResult(kept, report)


def _json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, object)`` of a JSON-lines file, or ``(index, object)`` of a JSON array."""
    with open_text(path) as fh:
        head = fh.read(1 << 12).lstrip()
    if head.startswith("["):
        yield from iter_json_or_jsonl(path)
    else:
        yield from iter_jsonl(path)


def _csv_records(path: Path, cols: dict[str, Any]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` of a CSV with a header row; a header without the question, answer or
    option columns is a DataError naming line 1. A spreadsheet's export is read as saved:
    a byte-order mark is dropped, and the header's commonest of ``,`` ``;`` and tab is the
    delimiter."""
    with open_text(path) as fh:
        first = fh.readline()
    delimiter = max((",", ";", "\t"), key=first.count)  # a tie: the comma
    with open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError("empty file: expected a header row", path=str(path), line=1)
        names = [h.strip().lstrip("\ufeff").strip() for h in header]
        lowered = {n.lower(): n for n in names}
        for key in ("question", "answer"):
            wanted = cols.get(key, key)
            if wanted not in names and wanted.lower() not in lowered:
                how = f"columns.{key}" if key in cols else f"map yours with columns: {{{key}: ..}}"
                raise DataError(
                    f"no {wanted!r} column in the header {names} ({how})",
                    path=str(path),
                    line=1,
                    field=wanted,
                )
        if "options" not in cols:
            cols["options"] = _option_columns(names, path)
        elif isinstance(cols["options"], str):
            raise DataError(
                "columns.options must list one column per option in a CSV",
                path=str(path),
                line=1,
                field="options",
            )
        else:
            missing = [c for c in cols["options"] if c not in names]
            if missing:
                raise DataError(
                    f"option column(s) {missing} not in the header {names} (columns.options)",
                    path=str(path),
                    line=1,
                    field=missing[0],
                )
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            if len(row) > len(names):
                yield (
                    reader.line_num,
                    DataError(
                        f"{len(row)} cells but the header has {len(names)} columns (a comma "
                        "in an unquoted cell?)",
                        path=str(path),
                        line=reader.line_num,
                    ),
                )
                continue
            rec = dict(zip(names, row, strict=False))
            for name in names:  # a case-insensitive header: Question, ANSWER
                rec.setdefault(name.lower(), rec.get(name, ""))
            yield reader.line_num, rec


def _option_columns(names: list[str], path: Path) -> list[str]:
    """The header's option columns (``A``.., ``option_a``.., ``opa``..) in letter order."""
    found: dict[str, str] = {}
    for name in names:
        m = _OPTION_HEADER.match(name.strip())
        if m and m.group(1).upper() not in found:
            found[m.group(1).upper()] = name
    letters = sorted(found)
    if len(letters) < MIN_OPTIONS or letters != list(LETTERS[: len(letters)]):
        raise DataError(
            f"no option columns A, B, ... (or option_a.., opa..) in the header {names}; "
            "name yours with columns: {options: [col1, col2, ...]}",
            path=str(path),
            line=1,
            field="options",
        )
    return [found[letter] for letter in letters]


def _field(rec: dict, cols: dict[str, Any], key: str) -> str:
    """The file's name for our ``key`` (``columns`` first; ``answer`` falls back to ``gold``)."""
    if key in cols:
        return cols[key]
    if key == "answer" and "answer" not in rec and "gold" in rec:
        return "gold"
    return key


def mcq_file_record(
    rec: dict,
    line: int,
    path: str,
    cols: dict[str, Any],
    *,
    source: str = "mcq",
    split: str = "test",
    index: int = 0,
) -> Question:
    """Convert one row (a JSON object or a CSV row by header) of your own questions."""
    question = require_str(rec, _field(rec, cols, "question"), path=path, line=line)
    options = _options(rec, cols, path=path, line=line)
    answer_field = _field(rec, cols, "answer")
    gold = parse_answer(rec.get(answer_field), options, path=path, line=line, field=answer_field)
    id_field = _field(rec, cols, "id")
    raw_id = rec.get(id_field)
    if isinstance(raw_id, str):
        raw_id = raw_id.strip()
    has_id = raw_id not in (None, "")
    meta: dict[str, Any] = {"index": index}
    explanation = rec.get(_field(rec, cols, "explanation"))
    if isinstance(explanation, str) and explanation.strip():
        meta["explanation"] = explanation.strip()
    subject = rec.get(_field(rec, cols, "subject"))
    return Question(
        id=str(raw_id) if has_id else f"{index:04d}",
        source=source,
        split=split,
        question=question,
        options=options,
        gold=gold,
        subject=str(subject).strip() if subject not in (None, "") else None,
        meta=meta,
    )


def _options(rec: dict, cols: dict[str, Any], *, path: str, line: int) -> dict[str, str]:
    """The row's options as letter -> text: 2 to 10, lettered A.. without gaps; in a
    per-option layout (CSV, or ``columns.options`` a list) trailing empty cells are unused."""
    spec = cols.get("options", "options")
    if isinstance(spec, list):
        texts = [rec.get(c) for c in spec]
        texts = [None if t is None or not str(t).strip() else str(t).strip() for t in texts]
        while texts and texts[-1] is None:
            texts.pop()
        pairs = [(LETTERS[i], t) for i, t in enumerate(texts)]
        where = spec
    else:
        if spec not in rec:
            raise DataError("missing field", path=path, line=line, field=spec)
        raw = rec[spec]
        if isinstance(raw, Mapping):
            pairs = sorted(((str(k).strip().upper(), v) for k, v in raw.items()), key=_by_letter)
        elif isinstance(raw, list):
            pairs = [(LETTERS[i], v) for i, v in enumerate(raw[: len(LETTERS)])]
        else:
            raise DataError(
                f"expected an object letter -> text or a list, got {type(raw).__name__}",
                path=path,
                line=line,
                field=spec,
            )
        where = [spec]
    field = where[0] if len(where) == 1 else "options"
    if len(pairs) < MIN_OPTIONS or len(pairs) > MAX_OPTIONS:
        raise DataError(
            f"{len(pairs)} option(s): a question needs {MIN_OPTIONS} to {MAX_OPTIONS}",
            path=path,
            line=line,
            field=field,
        )
    out: dict[str, str] = {}
    for i, (letter, text) in enumerate(pairs):
        named = where[i] if len(where) > 1 else field
        if letter != LETTERS[i]:
            raise DataError(
                f"option letters must run A, B, C... without gaps; got {[p[0] for p in pairs]}",
                path=path,
                line=line,
                field=field,
            )
        if text is None or not str(text).strip():
            raise DataError(
                f"option {letter} is empty (a later option is not)",
                path=path,
                line=line,
                field=named,
            )
        out[letter] = str(text).strip()
    return out


def _by_letter(pair: tuple[str, Any]) -> tuple[int, str]:
    return (len(pair[0]), pair[0])


def _norm(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def parse_answer(raw: Any, options: dict[str, str], *, path: str, line: int, field: str) -> str:
    """The gold letter from an answer given as a letter of the options (any case, e.g. ``b``)
    or as the exact text of one option (case and spacing aside). Anything else (empty, a
    number, a text matching no option or two) is a DataError naming the row."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise DataError("empty answer: give the option's letter or its text", path=path,
                        line=line, field=field)  # fmt: skip
    if isinstance(raw, bool) or not isinstance(raw, str):
        raise DataError(
            f"answer {raw!r} is not text: give the option's letter "
            f"({', '.join(options)}) or its text",
            path=path,
            line=line,
            field=field,
        )
    letter = raw.strip().rstrip(".)").lstrip("(").strip().upper()
    if letter in options:
        return letter
    matches = [k for k, v in options.items() if _norm(v) == _norm(raw)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise DataError(
            f"answer {raw!r} matches options {' and '.join(matches)}: give the letter",
            path=path,
            line=line,
            field=field,
        )
    raise DataError(
        f"answer {raw!r} is neither a letter of the options ({', '.join(options)}) nor the "
        "text of one",
        path=path,
        line=line,
        field=field,
    )
