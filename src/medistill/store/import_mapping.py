"""Field mappings of ``medistill import-traces``: which column of a trace dataset holds each
part of a stored trace (presets for known sets, ``ours=theirs`` pairs), the benchmarks a
mapping without question text joins to by id (``--questions``) and row filters (``--where``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from medistill.errors import MedistillError

FIELDS = (
    "question",
    "options",
    "gold",
    "reasoning",
    "response",
    "id",
    "subject",
    "finish_reason",
    "teacher",
    "dataset",
    "json_reasoning",
    "json_answer",
    "ground_truth",
)
REQUIRED = ("question", "options", "gold", "response")
#: Without ``question`` and ``options`` a row is joined to a ``--questions`` benchmark by id.
JOIN_REQUIRED = ("id", "response")

PRESETS: dict[str, dict[str, str]] = {
    # HuatuoGPT-o1 style MCQ traces (the shape of its demo data): CoT + final response. The
    # responses answer an open-ended rewrite of the question in prose, naming no letter:
    # curation verifies them by the option text they state or the set's own ground truth.
    "huatuogpt-o1": {
        "question": "question",
        "options": "options",
        "gold": "answer_idx",
        "reasoning": "Complex_CoT",
        "response": "Response",
        "ground_truth": "Ground-True Answer",
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
    # MIRAGE / MedRAG released outputs (Xiong et al. 2024): one row per benchmark question and
    # model, no question text (joined from --questions by qid), the answer as JSON text in
    # raw_responses[0]. The teacher is the row's model ("mirage:OpenAI/gpt-4-32k").
    "mirage": {
        "id": "qid",
        "gold": "gold",
        "response": "raw_responses",
        "teacher": "model",
        "dataset": "dataset",
        "json_reasoning": "step_by_step_thinking",
        "json_answer": "answer_choice",
    },
}
PRESETS["mirage-medrag"] = PRESETS["mirage"]


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
    if "question" in mapping or "options" in mapping:
        missing = [f for f in REQUIRED if f not in mapping]
    else:  # joined to a benchmark by id: question, options (and gold) come from there
        missing = [f for f in JOIN_REQUIRED if f not in mapping]
    if missing:
        raise MedistillError(
            f"the mapping needs {missing} (e.g. --map question=Question,gold=answer_idx)"
        )
    if "json_reasoning" in mapping and "reasoning" in mapping:
        raise MedistillError("map either reasoning (a row field) or json_reasoning, not both")
    return mapping


def needs_questions(mapping: Mapping[str, str]) -> bool:
    """True when the mapping has no question text: rows are joined to a benchmark by id."""
    return "question" not in mapping


def parse_questions(specs: Sequence[str] | Mapping[str, Any] | None) -> dict[str, str | None]:
    """``NAME[=PATH]`` specs (``medmcqa=dev.jsonl``, ``medqa``) as ``{name: path or None}``.

    A bare name loads the registered benchmark from ``$MEDISTILL_DATA_DIR`` or the Hub.
    """
    if not specs:
        return {}
    if isinstance(specs, Mapping):
        return {str(k): str(v) if v else None for k, v in specs.items()}
    out: dict[str, str | None] = {}
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        if not name.strip() or (sep and not path.strip()):
            raise MedistillError(f"--questions {spec!r}: expected NAME or NAME=PATH")
        out[name.strip()] = path.strip() or None
    return out


def parse_where(specs: Sequence[str] | Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """``FIELD=VALUE`` row filters as ``{field: allowed values}``; repeating a field allows
    several values (any of them), different fields must all match."""
    if not specs:
        return {}
    if isinstance(specs, Mapping):
        return {
            str(k): tuple(v) if isinstance(v, (list, tuple)) else (str(v),)
            for k, v in specs.items()
        }
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        field, sep, value = str(spec).partition("=")
        if not sep or not field.strip():
            raise MedistillError(f"--where {spec!r}: expected FIELD=VALUE")
        out[field.strip()] = (*out.get(field.strip(), ()), value)
    return out


def _as_text(value: Any) -> str:
    """A row value as ``--where`` compares it: strings as they are, anything else as JSON
    (so ``retrieval=null`` and ``n=3`` work)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def matches(rec: dict[str, Any], where: Mapping[str, Sequence[str]]) -> bool:
    """True when every ``where`` field is present in ``rec`` with one of its allowed values."""
    return all(f in rec and _as_text(rec[f]) in values for f, values in where.items())
