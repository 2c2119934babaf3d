"""Parsers from each benchmark's published file format to :class:`Question`.

Each ``load_*`` function reads one local file (or folder, for MMLU) and returns a
:class:`LoadResult`; bad records raise :class:`DataError` naming file, line and field, or
are counted and skipped when ``skip_invalid`` is set. Hub rows go through the same
``*_record`` converters (see :mod:`medistill.data.registry`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medistill.data.loading import (
    Collector,
    LoadResult,
    check_gold,
    iter_csv,
    iter_json_or_jsonl,
    iter_jsonl,
    require_str,
)
from medistill.data.options import normalise_options
from medistill.data.schema import LETTERS, Question
from medistill.errors import DataError

log = logging.getLogger(__name__)

PUBMEDQA_OPTIONS = {"A": "yes", "B": "no", "C": "maybe"}


def _run(records: Iterable[tuple[int, Any]], coll: Collector, convert, **kw) -> LoadResult:
    """Drive ``convert(rec, line, path, index=i, **kw) -> Question`` over records into
    ``coll``; ``i`` is the 0-based record position (used for ids of rows without one)."""
    for index, (line, rec) in enumerate(records):
        if coll.full:
            break
        if isinstance(rec, DataError):
            coll.fail(rec)
            continue
        if not isinstance(rec, dict):
            coll.fail(
                DataError(
                    f"expected a JSON object, got {type(rec).__name__}", path=coll.path, line=line
                )
            )
            continue
        try:
            q = convert(rec, line, coll.path, index=index, **kw)
        except DataError as e:
            coll.fail(e)
            continue
        coll.add(q, line)
    return coll.result()


def _record_id(rec: dict, line: int, index: int, id_field: str | None) -> str:
    if id_field:
        if rec.get(id_field) in (None, ""):
            raise DataError("missing id", field=id_field, line=line)
        return str(rec[id_field])
    for key in ("id", "qid", "hf_validation_index"):
        if rec.get(key) not in (None, ""):
            return str(rec[key])
    return f"{index:04d}"


# ---------------------------------------------------------------- MedQA (4 or 5 options)


def medqa_record(
    rec: dict,
    line: int,
    path: str,
    *,
    source: str = "medqa",
    split: str = "test",
    index: int = 0,
    id_field: str | None = None,
) -> Question:
    """Convert one MedQA row (``question``, ``options``, ``answer_idx``, ``meta_info``)."""
    question = require_str(rec, "question", path=path, line=line)
    if "options" not in rec:
        raise DataError("missing field", path=path, line=line, field="options")
    options = normalise_options(rec["options"], path=path, line=line)
    if "answer_idx" not in rec and "answer" not in rec:
        raise DataError("missing field", path=path, line=line, field="answer_idx")
    gold = check_gold(rec.get("answer_idx"), options, path=path, line=line, field="answer_idx")
    if gold and rec.get("answer") and options[gold].strip() != str(rec["answer"]).strip():
        raise DataError(
            f"answer text {rec['answer']!r} does not match option {gold} {options[gold]!r}",
            path=path,
            line=line,
            field="answer",
        )
    try:
        qid = _record_id(rec, line, index, id_field)
    except DataError as e:
        raise DataError(e.reason, path=path, line=line, field=e.field) from None
    meta = {k: rec[k] for k in ("hf_validation_index", "realidx") if k in rec}
    meta["index"] = index
    return Question(
        id=qid,
        source=source,
        split=split,
        question=question,
        options=options,
        gold=gold,
        subject=rec.get("meta_info") or None,
        meta=meta,
    )


def load_medqa(
    path: str | Path,
    *,
    source: str = "medqa",
    split: str = "test",
    skip_invalid: bool = False,
    limit: int | None = None,
    id_field: str | None = None,
) -> LoadResult:
    """Load MedQA JSONL (US 4- or 5-option).

    Ids come from ``id_field`` if given, else the row's ``id``, ``qid`` or
    ``hf_validation_index``, else the zero-padded row index (which matches MIRAGE's ``qid``
    "0000".."1272" for the test set)."""
    path = Path(path)
    coll = Collector(path, skip_invalid=skip_invalid, limit=limit)
    return _run(iter_jsonl(path), coll, medqa_record, source=source, split=split, id_field=id_field)


# ---------------------------------------------------------------- MedMCQA


def detect_cop_base(cops: Iterable[Any]) -> tuple[int, str]:
    """Decide whether MedMCQA ``cop`` is 0-based (hub copy) or 1-based (official release).

    A 0 proves 0-based and a 4 proves 1-based; with neither (only 1..3 seen) we assume the
    official 1-based release and say so.
    """
    seen = {c for c in cops if isinstance(c, int) and not isinstance(c, bool)}
    if 0 in seen and 4 in seen:
        raise DataError(
            "cop has both 0 and 4: cannot tell 0- from 1-based; pass cop_base", field="cop"
        )
    if 0 in seen:
        return 0, "cop is 0-based (0 = opa), detected from a cop of 0 (Hugging Face copy)"
    if 4 in seen:
        return 1, "cop is 1-based (1 = opa), detected from a cop of 4 (official release)"
    return 1, "cop base could not be detected (no 0 or 4 seen): assuming 1-based (1 = opa)"


def medmcqa_record(
    rec: dict,
    line: int,
    path: str,
    *,
    cop_base: int = 1,
    source: str = "medmcqa",
    split: str = "dev",
    index: int = 0,
) -> Question:
    """Convert one MedMCQA row (``opa..opd``, ``cop``) with the given cop base."""
    question = require_str(rec, "question", path=path, line=line)
    raw = {}
    for letter, key in zip("ABCD", ("opa", "opb", "opc", "opd"), strict=True):
        raw[letter] = require_str(rec, key, path=path, line=line)
    options = normalise_options(raw, path=path, line=line)
    if "cop" not in rec:
        raise DataError("missing field", path=path, line=line, field="cop")
    cop = rec["cop"]
    gold = None
    if cop is not None and cop != -1:  # -1: unlabelled (hub test split)
        if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():
            cop = int(cop)
        if not isinstance(cop, int) or not (0 <= cop - cop_base < 4):
            raise DataError(
                f"cop {rec['cop']!r} is out of range for {cop_base}-based indexing",
                path=path,
                line=line,
                field="cop",
            )
        gold = LETTERS[cop - cop_base]
    qid = str(rec.get("id") or "").strip()
    if not qid:
        raise DataError("missing field", path=path, line=line, field="id")
    meta = {k: rec.get(k) for k in ("topic_name", "choice_type", "exp") if rec.get(k)}
    return Question(
        id=qid,
        source=source,
        split=split,
        question=question,
        options=options,
        gold=gold,
        subject=rec.get("subject_name") or None,
        meta=meta,
    )


def load_medmcqa(
    path: str | Path,
    *,
    source: str = "medmcqa",
    split: str = "dev",
    skip_invalid: bool = False,
    limit: int | None = None,
    cop_base: int | None = None,
) -> LoadResult:
    """Load MedMCQA JSON lines; ``cop_base`` 0/1 overrides detection (logged either way)."""
    path = Path(path)
    records = list(iter_json_or_jsonl(path))
    if cop_base is None:
        try:
            cop_base, note = detect_cop_base(
                r.get("cop") for _, r in records if isinstance(r, dict)
            )
        except DataError as e:
            raise DataError(e.reason, path=str(path), field="cop") from None
    else:
        if cop_base not in (0, 1):
            raise DataError(f"cop_base must be 0 or 1, got {cop_base}", path=str(path))
        note = f"cop is {cop_base}-based (set by the user)"
    coll = Collector(path, skip_invalid=skip_invalid, limit=limit)
    coll.report.notes.append(note)
    return _run(records, coll, medmcqa_record, cop_base=cop_base, source=source, split=split)


# ---------------------------------------------------------------- PubMedQA


def pubmedqa_record(
    rec: dict,
    line: int,
    path: str,
    *,
    source: str = "pubmedqa",
    split: str = "test",
    with_context: bool = True,
    index: int = 0,
) -> Question:
    """Convert a PubMedQA item (official dict-by-PMID or hub ``pqa_labeled`` row).

    The options are yes / no / maybe; the abstract's contexts precede the question.
    """
    if "QUESTION" in rec:
        text = require_str(rec, "QUESTION", path=path, line=line)
        contexts = rec.get("CONTEXTS") or []
        decision_key, pmid = "final_decision", rec.get("__key__") or rec.get("pubid")
    else:
        text = require_str(rec, "question", path=path, line=line)
        ctx = rec.get("context") or {}
        contexts = ctx.get("contexts", []) if isinstance(ctx, dict) else ctx
        decision_key, pmid = "final_decision", rec.get("pubid") or rec.get("__key__")
    if not pmid:
        raise DataError("missing PMID (dict key or pubid)", path=path, line=line, field="pubid")
    decision = require_str(rec, decision_key, path=path, line=line).lower()
    by_text = {v: k for k, v in PUBMEDQA_OPTIONS.items()}
    if decision not in by_text:
        raise DataError(
            f"final_decision must be yes/no/maybe, got {decision!r}",
            path=path,
            line=line,
            field=decision_key,
        )
    question = text
    if with_context and contexts:
        question = "Context: " + "\n".join(str(c) for c in contexts) + "\n\nQuestion: " + text
    meta = {"pmid": str(pmid)}
    if rec.get("LONG_ANSWER") or rec.get("long_answer"):
        meta["long_answer"] = rec.get("LONG_ANSWER") or rec.get("long_answer")
    return Question(
        id=str(pmid),
        source=source,
        split=split,
        question=question,
        options=dict(PUBMEDQA_OPTIONS),
        gold=by_text[decision],
        subject=None,
        meta=meta,
    )


def load_pubmedqa(
    path: str | Path,
    *,
    source: str = "pubmedqa",
    split: str = "test",
    skip_invalid: bool = False,
    limit: int | None = None,
    with_context: bool = True,
) -> LoadResult:
    """Load PubMedQA (``pqal_test_set.json`` dict keyed by PMID, or JSON lines of hub rows)."""
    path = Path(path)
    coll = Collector(path, skip_invalid=skip_invalid, limit=limit)
    return _run(
        iter_json_or_jsonl(path),
        coll,
        pubmedqa_record,
        source=source,
        split=split,
        with_context=with_context,
    )


# ---------------------------------------------------------------- MMLU (medical subjects)

MMLU_MEDICAL_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)


def mmlu_row(
    row: list[str],
    line: int,
    path: str,
    *,
    subject: str,
    index: int,
    source: str = "mmlu_medical",
    split: str = "test",
) -> Question:
    """Convert one header-less MMLU CSV row ``question,A,B,C,D,answer``."""
    if len(row) != 6:
        raise DataError(
            f"expected 6 columns (question,A,B,C,D,answer), got {len(row)}", path=path, line=line
        )
    names = ["question", "A", "B", "C", "D", "answer"]
    rec = dict(zip(names, row, strict=True))
    question = require_str(rec, "question", path=path, line=line)
    options = normalise_options({k: rec[k] for k in "ABCD"}, path=path, line=line, field="A..D")
    gold = check_gold(
        require_str(rec, "answer", path=path, line=line),
        options,
        path=path,
        line=line,
        field="answer",
    )
    return Question(
        id=f"{subject}-{index:04d}",
        source=source,
        split=split,
        question=question,
        options=options,
        gold=gold,
        subject=subject,
    )


def load_mmlu(
    path: str | Path,
    *,
    source: str = "mmlu_medical",
    split: str = "test",
    skip_invalid: bool = False,
    limit: int | None = None,
    subjects: Iterable[str] | None = None,
) -> LoadResult:
    """Load MMLU CSVs: one ``<subject>_test.csv`` file, or a folder of them.

    For a folder, ``subjects`` (default: the six MultiMedQA medical subjects) picks files.
    """
    path = Path(path)
    if path.is_dir():
        wanted = tuple(subjects or MMLU_MEDICAL_SUBJECTS)
        files = [path / f"{s}_{split}.csv" for s in wanted]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise DataError(f"missing MMLU subject files: {', '.join(missing)}", path=str(path))
    else:
        files = [path]
    coll = Collector(path, skip_invalid=skip_invalid, limit=limit)
    for f in files:
        subject = f.name.removesuffix(".csv").removesuffix(f"_{split}")
        for index, (line, row) in enumerate(iter_csv(f)):
            if coll.full:
                break
            try:
                q = mmlu_row(
                    row, line, str(f), subject=subject, index=index, source=source, split=split
                )
            except DataError as e:
                coll.fail(e)
                continue
            coll.add(q, line)
    return coll.result()


# ---------------------------------------------------------------- generic MCQ JSONL


def mcq_record(
    rec: dict, line: int, path: str, *, source: str = "mcq", split: str = "test", index: int = 0
) -> Question:
    """Convert a generic MCQ row: ``id``, ``question``, ``options`` (object or list),
    ``answer`` or ``gold`` (letter, or 0-based index when options is a list), ``subject``,
    and optional ``explanation``."""
    question = require_str(rec, "question", path=path, line=line)
    if "options" not in rec:
        raise DataError("missing field", path=path, line=line, field="options")
    options = normalise_options(rec["options"], path=path, line=line)
    gold_field = "answer" if "answer" in rec else "gold"
    if gold_field not in rec:
        raise DataError("missing field (answer or gold)", path=path, line=line, field="answer")
    gold_raw = rec[gold_field]
    if isinstance(gold_raw, int) and not isinstance(gold_raw, bool):
        if not 0 <= gold_raw < len(options):
            raise DataError(
                f"gold index {gold_raw} out of range", path=path, line=line, field=gold_field
            )
        gold_raw = LETTERS[gold_raw]
    gold = check_gold(gold_raw, options, path=path, line=line, field=gold_field)
    qid = str(rec["id"]) if rec.get("id") not in (None, "") else f"{index:04d}"
    meta = dict(rec.get("meta") or {})
    if rec.get("explanation"):
        meta["explanation"] = rec["explanation"]
    return Question(
        id=qid,
        source=rec.get("source") or source,
        split=rec.get("split") or split,
        question=question,
        options=options,
        gold=gold,
        subject=rec.get("subject") or None,
        meta=meta,
    )


def load_mcq_jsonl(
    path: str | Path,
    *,
    source: str = "mcq",
    split: str = "test",
    skip_invalid: bool = False,
    limit: int | None = None,
) -> LoadResult:
    """Load the generic MCQ JSON-lines format (also the embedded sample's format)."""
    path = Path(path)
    coll = Collector(path, skip_invalid=skip_invalid, limit=limit)
    return _run(iter_jsonl(path), coll, mcq_record, source=source, split=split)
