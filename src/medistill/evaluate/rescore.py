"""Re-score saved responses with the shared extractor, without re-running any model.

``medistill rescore`` reads any JSONL of saved generations (ours, lm-evaluation-harness
samples, a paper's released outputs), extracts answers, and writes every input row back with
``extracted``, ``rule`` and ``correct`` added, plus a summary whose metrics come from
:func:`medistill.evaluate.metrics.compute_metrics`, as ``eval``'s do, and a
``metrics.json``-schema file that ``medistill report`` reads. A row whose finish field says
``length`` is scored as a cut-off answer (explicit statements only), as ``eval`` scores it.

``task: refusal`` scores saved responses to *open* requests instead (a harmful request, or a
benign but sensitive one) with the refusal detector every safety run uses
(:mod:`medistill.answers.refusal`): each row is written back with ``refused`` and
``refusal_family``, and the summary and ``<out>.metrics.json`` (``kind: safety``) come from
:func:`medistill.evaluate.safety_metrics.compute_safety_metrics`, as a safety ``eval``'s do:
the refusal rate with its 95% Wilson interval, and, where rows carry ``expect`` (``refuse`` /
``answer``), the harmful side's refusal rate, the benign side's over-refusal rate and
``safe_both_ways``. No gold answer is read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.answers import extract_answer
from medistill.answers.published import published_reading
from medistill.answers.refusal import refusal_family
from medistill.data import load_benchmark
from medistill.data.loading import iter_jsonl
from medistill.data.safety import EXPECT
from medistill.errors import DataError, MedistillError
from medistill.evaluate.metrics import compute_metrics, validate_metrics
from medistill.evaluate.safety_metrics import compute_safety_metrics

#: What ``rescore`` reads a response for: a multiple-choice letter, or a refusal.
TASKS = ("mcq", "refusal")

log = logging.getLogger(__name__)


@dataclass
class RescoreConfig:
    """Options of ``medistill rescore``."""

    input: str = field(metadata={"help": "JSONL of saved responses"})
    out: str = field(metadata={"help": "output JSONL (every input row + extraction)"})
    task: str = field(
        default="mcq",
        metadata={
            "help": "mcq (extract the answer letter) | refusal (responses to open requests: "
            "refused or not, by the refusal detector)"
        },
    )
    response_field: str = field(
        default="response", metadata={"help": "field with the response text"}
    )
    gold_field: str = field(default="gold", metadata={"help": "field with the gold letter"})
    options_field: str | None = field(default=None, metadata={"help": "field with the options"})
    question_field: str | None = field(
        default="question",
        metadata={
            "help": "field with the question text, when rows have one (read as curation and "
            "eval read it: an EXCEPT question is not read by option text)"
        },
    )
    benchmark: str | None = field(
        default=None, metadata={"help": "take options from this benchmark"}
    )
    benchmark_path: str | None = field(
        default=None, metadata={"help": "local file for --benchmark"}
    )
    id_field: str = field(default="id", metadata={"help": "row field joined to benchmark ids"})
    mode: str = field(default="lenient", metadata={"help": "strict | lenient"})
    agree_field: str | None = field(default=None, metadata={"help": "compare with a boolean mark"})
    finish_field: str = field(
        default="finish_reason",
        metadata={"help": "field whose value 'length' marks a cut-off response"},
    )
    expect_field: str = field(
        default="expect",
        metadata={"help": "task refusal: field saying refuse | answer (absent: refuse)"},
    )
    category_field: str = field(
        default="category", metadata={"help": "task refusal: field grouping the rates"}
    )
    label: str | None = field(default=None, metadata={"help": "run label in <out>.metrics.json"})
    skip_invalid: bool = field(default=False, metadata={"help": "skip bad rows, count them"})


def _get(row: dict, dotted: str) -> Any:
    """``row["a"]["b"]`` for ``"a.b"``; ``KeyError`` if absent."""
    cur: Any = row
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


def rescore(cfg: RescoreConfig) -> dict[str, Any]:
    """Rescore ``cfg.input`` into ``cfg.out``; return the summary (also at ``<out>.summary.json``).

    A response field holding a list (several samples, as MIRAGE stores them) is scored on its
    first element; an empty list counts as an empty response.
    """
    in_path = Path(cfg.input)
    if not in_path.exists():
        raise DataError("file not found", path=str(in_path))
    if cfg.task not in TASKS:
        raise MedistillError(f"task must be one of {', '.join(TASKS)}, got {cfg.task!r}")
    # id -> (options, question): the extractor reads with the question, as eval does
    options_by_id: dict[str, tuple[dict[str, str], str]] = {}
    if cfg.benchmark and cfg.task == "mcq":
        data = load_benchmark(cfg.benchmark, cfg.benchmark_path)
        options_by_id = {q.id: (q.options, q.question) for q in data.questions}
    out_path = Path(cfg.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n = agree = agree_n = 0
    skipped: list[str] = []
    scored_rows: list[dict[str, Any]] = []
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for line, row in iter_jsonl(in_path):
            try:
                if isinstance(row, DataError):
                    raise row
                if cfg.task == "refusal":
                    result, metric_row = _score_refusal(row, line, cfg, str(in_path))
                else:
                    result, metric_row = _score(row, line, cfg, options_by_id, str(in_path))
            except DataError as e:
                if not cfg.skip_invalid:
                    raise
                skipped.append(str(e))
                continue
            n += 1
            scored_rows.append(metric_row)
            verdict = result["refused"] if cfg.task == "refusal" else result["correct"]
            if cfg.agree_field and verdict is not None and cfg.agree_field in row:
                agree_n += 1
                agree += bool(row[cfg.agree_field]) == verdict
            fh.write(json.dumps({**row, **result}, ensure_ascii=False) + "\n")
    tmp.replace(out_path)
    refusal = cfg.task == "refusal"
    metrics = compute_safety_metrics(scored_rows) if refusal else compute_metrics(scored_rows)
    metrics.update(
        {
            "label": cfg.label or in_path.name,
            "benchmark": cfg.benchmark or "rescored",
            "model": None,
        }
    )
    if not refusal:
        metrics["mode"] = cfg.mode
    summary: dict[str, Any] = {
        **metrics,
        "input": str(in_path),
        "rows": n,
        "scored": metrics["n"],
        "skipped": len(skipped),
    }
    if cfg.agree_field:
        summary["agreement"] = {
            "field": cfg.agree_field,
            "n": agree_n,
            "rate": agree / agree_n if agree_n else None,
        }
    for s in skipped:
        log.warning("skipped %s", s)
    summary_path = out_path.with_suffix(".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if metrics["n"]:
        metrics_path = out_path.with_suffix(".metrics.json")
        validate_metrics(metrics, metrics_path)
        metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return summary


def _text(row: Any, line: int, cfg: RescoreConfig, path: str) -> str | None:
    """The response of one row (the first of a list; ``None`` stays ``None``)."""
    if not isinstance(row, dict):
        raise DataError("expected a JSON object", path=path, line=line)
    try:
        response = _get(row, cfg.response_field)
    except KeyError:
        raise DataError("missing field", path=path, line=line, field=cfg.response_field) from None
    if isinstance(response, list):
        response = response[0] if response else ""
    if response is not None and not isinstance(response, str):
        raise DataError(
            f"expected text, got {type(response).__name__}",
            path=path,
            line=line,
            field=cfg.response_field,
        )
    return response


def _score_refusal(
    row: Any, line: int, cfg: RescoreConfig, path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``task: refusal``: the fields added to one row (``refused``, ``refusal_family``) and the
    row :func:`compute_safety_metrics` reads."""
    response = _text(row, line, cfg, path)
    expect = row.get(cfg.expect_field, "refuse")
    if expect not in EXPECT:
        raise DataError(
            f"expected one of {', '.join(EXPECT)}, got {expect!r}",
            path=path,
            line=line,
            field=cfg.expect_field,
        )
    finish = row.get(cfg.finish_field) if cfg.finish_field else None
    family = refusal_family(response or "")
    result = {"refused": family is not None, "refusal_family": family}
    metric_row = {
        **result,
        "id": str(row.get(cfg.id_field, line)),
        "expect": expect,
        "category": row.get(cfg.category_field),
        "source": row.get("source"),
        "finish_reason": finish if isinstance(finish, str) else None,
    }
    return result, metric_row


def _score(
    row: Any, line: int, cfg: RescoreConfig, options_by_id: dict, path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields added to one row, and the row :func:`compute_metrics` reads."""
    response = _text(row, line, cfg, path)
    try:
        gold = _get(row, cfg.gold_field)
    except KeyError:
        raise DataError("missing field", path=path, line=line, field=cfg.gold_field) from None
    options = question = None
    if cfg.question_field and isinstance(row, dict) and row.get(cfg.question_field):
        question = str(row[cfg.question_field])
    if cfg.options_field:
        try:
            options = _get(row, cfg.options_field)
        except KeyError:
            raise DataError(
                "missing field", path=path, line=line, field=cfg.options_field
            ) from None
    elif options_by_id:
        try:
            qid = str(_get(row, cfg.id_field))
        except KeyError:
            raise DataError("missing field", path=path, line=line, field=cfg.id_field) from None
        if qid not in options_by_id:
            raise DataError(
                f"id {qid!r} is not in benchmark {cfg.benchmark!r}",
                path=path,
                line=line,
                field=cfg.id_field,
            )
        options, question = options_by_id[qid][0], question or options_by_id[qid][1]
    if cfg.mode not in ("strict", "lenient"):
        raise MedistillError(f"mode must be strict or lenient, got {cfg.mode!r}")
    finish = row.get(cfg.finish_field) if cfg.finish_field else None
    truncated = finish == "length"
    ask = {"truncated": truncated, "question": question}  # as curation and rewards read
    strict = extract_answer(response, options, mode="strict", **ask)
    lenient = extract_answer(response, options, mode="lenient", **ask)
    e = strict if cfg.mode == "strict" else lenient
    gold_letter = str(gold).strip().upper() if gold not in (None, "") else None
    result = {
        "extracted": e.letter,
        "rule": e.rule,
        "correct": (e.letter == gold_letter) if gold_letter else None,
    }
    metric_row = {
        "gold": gold_letter,
        "extracted": lenient.letter,
        "extracted_strict": strict.letter,
        "rule": e.rule,
        "finish_reason": finish if isinstance(finish, str) else None,
        "correct_published": published_reading(response, options, gold_letter).correct
        if gold_letter and isinstance(options, dict)
        else None,
    }
    return result, metric_row
