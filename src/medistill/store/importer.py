"""Import existing reasoning-trace datasets into a trace store.

Public sets (HuatuoGPT-o1's traces, m1K, MedReason...) are curated, mixed and decontaminated
exactly like our own teacher's traces once they sit in the same store. A field mapping says
where each part lives; the dataset's name becomes the row's ``teacher`` (its origin) and the
file its ``endpoint``, so the data card can count by origin. A mapped ``ground_truth`` (the
set's own answer text, e.g. HuatuoGPT-o1's ``Ground-True Answer``) is kept in the row's
``params``: curation accepts a prose response that states it as naming the gold option.

Released model *outputs* (MIRAGE's GPT-3.5 / GPT-4 answers) carry neither the question nor
the options, only the benchmark's id, and answer in JSON (``{"step_by_step_thinking": ...,
"answer_choice": ...}``). A mapping without ``question`` / ``options`` joins each row to a
benchmark loaded with ``questions`` by its ``id``; ``json_reasoning`` / ``json_answer`` name
the keys of a JSON response; ``teacher`` names a per-row model field (stored as
``origin:model``, so one file holding several models is counted per model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medistill.answers import extract_answer
from medistill.data.loading import (
    Skipped,
    check_gold,
    iter_json_or_jsonl,
    iter_jsonl,
    require_str,
)
from medistill.data.options import normalise_options
from medistill.data.registry import load_benchmark
from medistill.data.schema import LETTERS, Question
from medistill.errors import DataError, MedistillError
from medistill.prompts import answer_line
from medistill.store.import_mapping import matches, needs_questions, parse_questions, parse_where
from medistill.store.traces import TraceRecord, TraceStore

log = logging.getLogger(__name__)


def load_join_questions(specs: Mapping[str, str | None]) -> dict[str, dict[str, Question]]:
    """Load each benchmark named in ``specs`` as ``{name: {question id: Question}}``."""
    out: dict[str, dict[str, Question]] = {}
    for name, path in specs.items():
        result = load_benchmark(name, path)
        out[name] = {q.id: q for q in result.questions}
        log.info("joining on %d %s questions%s", len(out[name]), name, f" ({path})" * bool(path))
    return out


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


def _response_text(rec: dict[str, Any], field: str, *, path: str, line: int) -> str:
    """The response field as text; a list (several samples, as MIRAGE stores them) gives its
    first element, and an empty list is an error: the model returned nothing."""
    if field not in rec:
        raise DataError("missing field", path=path, line=line, field=field)
    value = rec[field]
    if isinstance(value, list):
        if not value:
            raise DataError("empty list: no response to import", path=path, line=line, field=field)
        value = value[0]
    if isinstance(value, (dict, list)):
        raise DataError(
            f"expected text, got {type(value).__name__}", path=path, line=line, field=field
        )
    if value is None or not str(value).strip():
        raise DataError("empty value", path=path, line=line, field=field)
    return str(value).strip()


def _unescape(value: str) -> str:
    """A JSON string body cut out by pattern, decoded (as written when it is not valid)."""
    try:
        return json.loads(f'"{value}"')
    except ValueError:
        return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def _as_field_text(value: Any) -> str | None:
    """A parsed JSON value as text: strings as they are, a list of steps one per line."""
    if value is None or isinstance(value, (dict, bool)):
        return None
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value if v is not None)
    text = str(value).strip()
    return text or None


def parse_json_response(
    text: str, reasoning_key: str | None, answer_key: str
) -> tuple[str | None, str | None] | None:
    """``(reasoning, answer)`` from a JSON response such as MIRAGE's
    ``{"step_by_step_thinking": "...", "answer_choice": "B"}``; ``None`` when the text holds
    neither key (a refusal or an API error written as prose).

    ``json.loads`` first; broken JSON (a missing comma, an unescaped quote, a cut-off end) is
    read by pattern: the reasoning runs to the quote that closes it before the next key or
    the end (or to the end of a cut-off text), the answer is the last ``"answer_key": "..."``
    string (or a bare word).
    """
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        if (reasoning_key not in obj) and (answer_key not in obj):
            return None
        return _as_field_text(obj.get(reasoning_key)), _as_field_text(obj.get(answer_key))
    keys = "|".join(re.escape(k) for k in (reasoning_key, answer_key) if k)
    reasoning = answer = None
    if reasoning_key:
        m = re.search(
            rf'"{re.escape(reasoning_key)}"\s*:\s*"(?P<v>.*?)'
            rf'(?:"\s*,?\s*"(?:{keys})"\s*:|"\s*\}}\s*$|"?\s*$)',
            body,
            re.S,
        )
        if m:
            reasoning = _as_field_text(_unescape(m.group("v")))
    found = list(
        re.finditer(
            rf'"{re.escape(answer_key)}"\s*:\s*(?:"(?P<v>(?:[^"\\]|\\.)*)"|(?P<bare>[\w.]+))', body
        )
    )
    if found:
        m = found[-1]
        raw = m.group("v") if m.group("v") is not None else m.group("bare")
        answer = None if raw == "null" else _as_field_text(_unescape(raw))
    if reasoning is None and answer is None and not found:
        return None
    return reasoning, answer


def json_answer_response(answer: str | None, options: dict[str, str]) -> str:
    """The stored response for a JSON answer field: the contract line for the letter the shared
    extractor reads from it in strict mode ("B", "(B)", "B. Thumb", the option's text).

    When no letter can be read the field is kept as JSON, so curation's verification reaches
    the same verdict (no answer, or conflicting for "B and C") and drops it: never a guess. A
    missing answer gives an empty response (dropped as ``no_answer``).
    """
    if answer is None:
        return ""
    field = json.dumps({"answer_choice": answer}, ensure_ascii=False)
    letter = extract_answer(field, options, mode="strict").letter
    return answer_line(letter) if letter else field


def _joined_question(
    rec: dict[str, Any],
    mapping: Mapping[str, str],
    questions: Mapping[str, Mapping[str, Question]],
    *,
    path: str,
    line: int,
) -> Question:
    """The benchmark question a row names by id: from the benchmark its ``dataset`` field
    names when that one is loaded, else from the only benchmark loaded."""
    id_field = mapping["id"]
    if id_field not in rec:
        raise DataError("missing field", path=path, line=line, field=id_field)
    qid = str(rec[id_field] if rec[id_field] is not None else "").strip()
    if not qid:
        raise DataError("empty value", path=path, line=line, field=id_field)
    named = rec.get(mapping["dataset"]) if "dataset" in mapping else None
    if named in questions:
        name = str(named)
    elif len(questions) == 1:
        name = next(iter(questions))
    else:
        raise DataError(
            f"no --questions for dataset {named!r}; loaded: {', '.join(questions)}",
            path=path,
            line=line,
            field=mapping.get("dataset"),
        )
    q = questions[name].get(qid)
    if q is None:
        raise DataError(
            f"id {qid!r} is not among the {len(questions[name])} {name} questions loaded "
            "with --questions",
            path=path,
            line=line,
            field=id_field,
        )
    return q


def record_from(
    rec: Any,
    mapping: dict[str, str],
    *,
    origin: str,
    path: str,
    line: int,
    questions: Mapping[str, Mapping[str, Question]] | None = None,
) -> TraceRecord:
    """One imported row as a trace record (raises a located :class:`DataError`).

    With ``question`` mapped the row carries its question; without, it is joined to
    ``questions`` by id (its gold, if given, must agree with the benchmark's). With
    ``json_answer`` mapped the response is parsed as JSON (see :func:`parse_json_response`).
    """
    if isinstance(rec, DataError):  # a line that is not JSON (iter_jsonl yields these)
        raise rec
    if not isinstance(rec, dict):
        raise DataError(f"expected an object, got {type(rec).__name__}", path=path, line=line)
    joined: Question | None = None
    if needs_questions(mapping):
        if not questions:
            raise MedistillError("this mapping joins rows to a benchmark: pass --questions")
        joined = _joined_question(rec, mapping, questions, path=path, line=line)
        question, options = joined.question, dict(joined.options)
        gold_raw = rec.get(mapping["gold"]) if "gold" in mapping else None
        if gold_raw is None or (isinstance(gold_raw, str) and not gold_raw.strip()):
            gold = joined.gold
            if gold is None:
                raise DataError(
                    "no gold answer in the row or the benchmark",
                    path=path,
                    line=line,
                    field=mapping.get("gold", mapping["id"]),
                )
        else:
            gold = _gold_letter(gold_raw, options, path=path, line=line, field=mapping["gold"])
            if joined.gold is not None and gold != joined.gold:
                raise DataError(
                    f"gold {gold} differs from the {joined.source} answer key "
                    f"({joined.gold}) for id {joined.id!r}",
                    path=path,
                    line=line,
                    field=mapping["gold"],
                )
    else:
        question = require_str(rec, mapping["question"], path=path, line=line)
        if mapping["options"] not in rec:
            raise DataError("missing field", path=path, line=line, field=mapping["options"])
        options = normalise_options(
            rec[mapping["options"]], path=path, line=line, field=mapping["options"]
        )
        gold = _gold_letter(
            rec.get(mapping["gold"]), options, path=path, line=line, field=mapping["gold"]
        )
    reasoning = None
    if "json_answer" in mapping:
        raw = _response_text(rec, mapping["response"], path=path, line=line)
        parsed = parse_json_response(raw, mapping.get("json_reasoning"), mapping["json_answer"])
        if parsed is None:  # prose (a refusal, an API error): verification reads it as it is
            response = raw
        else:
            reasoning, answer = parsed
            response = json_answer_response(answer, options)
    elif joined is not None:
        response = _response_text(rec, mapping["response"], path=path, line=line)
    else:
        response = require_str(rec, mapping["response"], path=path, line=line)
    if "reasoning" in mapping:
        reasoning = require_str(rec, mapping["reasoning"], path=path, line=line)
    if joined is not None:
        qid = joined.id
    else:
        qid = str(rec[mapping["id"]]) if mapping.get("id") in rec else f"{Path(path).stem}:{line}"
    subject = rec.get(mapping.get("subject", ""), None) or (joined.subject if joined else None)
    finish = str(rec.get(mapping.get("finish_reason", ""), None) or "stop")
    teacher = origin
    if "teacher" in mapping:
        model = rec.get(mapping["teacher"])
        if isinstance(model, str) and model.strip():
            teacher = f"{origin}:{model.strip()}"
    messages = [{"role": "user", "content": question}]
    parts: list[Any] = [origin, qid, question, options, reasoning, response]
    if "teacher" in mapping:  # two models may write the same text: keep both
        parts.append(teacher)
    key = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
    params: dict[str, Any] = {"imported_from": Path(path).name}
    truth = rec.get(mapping["ground_truth"]) if "ground_truth" in mapping else None
    if isinstance(truth, (str, int, float)) and not isinstance(truth, bool) and str(truth).strip():
        params["ground_truth"] = str(truth).strip()
    if joined is not None:
        params["joined_to"] = joined.source
    return TraceRecord(
        key=key,
        question_id=qid,
        sample_index=0,
        teacher=teacher,
        messages=messages,
        params=params,
        text=response,
        finish_reason=finish,
        source=joined.source if joined is not None else origin,
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
    questions: Sequence[str] | Mapping[str, Any] | None = None,
    where: Sequence[str] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Import a JSON / JSONL / Parquet trace dataset into the store; returns the counts.

    Re-importing the same file adds nothing (rows are keyed by their content). A bad row
    stops the import with its file, line and field, or is counted and listed under
    ``skip_invalid``. ``questions`` (``NAME[=PATH]`` specs or ``{name: path}``) are the
    benchmarks a mapping without question text joins to by id; ``where`` (``FIELD=VALUE``
    specs) keeps only matching rows, the others counted as ``filtered``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    specs = parse_questions(questions)
    filters = parse_where(where)
    joined: dict[str, dict[str, Question]] | None = None
    if needs_questions(mapping):
        if not specs:
            raise MedistillError(
                "this mapping has no question text (e.g. --preset mirage): pass --questions "
                "NAME[=PATH] to join rows to a benchmark by id, e.g. "
                "--questions medmcqa=data/medmcqa/dev.jsonl"
            )
        joined = load_join_questions(specs)
    elif specs:
        log.warning("--questions ignored: the mapping takes the question from each row")
    skipped: list[Skipped] = []
    read = added = filtered = 0
    pending: list[TraceRecord] = []
    with TraceStore(store_path) as store:
        for line, rec in _iter_records(path):
            read += 1
            if filters and isinstance(rec, dict) and not matches(rec, filters):
                filtered += 1
                continue
            try:
                pending.append(
                    record_from(
                        rec, mapping, origin=origin, path=str(path), line=line, questions=joined
                    )
                )
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
        "already_present": read - filtered - len(skipped) - added,
        "filtered": filtered,
        "skipped": len(skipped),
        "skipped_rows": [str(s) for s in skipped[:50]],
    }
    log.info(
        "%s: read %d rows, imported %d, %d already present, %d filtered out, %d skipped",
        path,
        read,
        added,
        summary["already_present"],
        filtered,
        len(skipped),
    )
    return summary
