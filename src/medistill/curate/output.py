"""Writing the curated dataset: JSONL and Hugging Face datasets in two formats, the drop log,
and the statistics the data card is made from.

Layout of the output folder (the contract the training stages read, ``format_version`` 3)::

    messages/{train,validation}.jsonl           {"id", "messages": [system?, user, assistant], ...}
    prompt_completion/{train,validation}.jsonl  {"id", "prompt": [system?, user],
                                                 "completion": [assistant], ...}
    hf/messages, hf/prompt_completion           DatasetDict.save_to_disk of the same rows
    dropped.jsonl                               one line per dropped trace: reason and detail
    decontamination.jsonl                       one line per removed question: benchmark, id
    stats.json, README.md, token_lengths.png    the data card

Both formats carry the same metadata columns: ``question_id``, ``source``, ``teacher``,
``subject``, ``options`` (letter -> text, as shown in the prompt), ``gold`` (the correct letter
as shown), ``teacher_pass_rate``, ``tokens``, ``verified_by`` (how the answer was read:
``letter``, ``option_text`` or ``ground_truth``), ``rubric`` (the question's own grading rubric
from the store's ``rubrics`` table, ``[{criterion, weight, points}]``, or null). With ``options``
and ``gold`` in every row a GRPO reward scores a completion exactly as ``medistill eval`` scores
an answer. All traces of one question go to the same split (seeded), so validation never sees
a training question.

Rows also carry ``kind``: ``trace`` for a teacher trace, ``safety`` for a demonstration of
the safety mix (``curate/safety_mix.py``: a harmful request and its refusal, no system
prompt, empty ``options``, null ``gold``; SFT trains on them, GRPO skips them), ``contrast``
for a benign request and the teacher's helpful answer (``curate/contrast.py``; the same form).

Version history: 1 had ``answer`` (the letter) and no options; 2 renames it ``gold`` and adds
``options``; 3 (this) adds ``rubric``. The training stages read 2 and 3 and refuse version 1 with
a message saying how to re-curate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from medistill.curate.advice import low_yield
from medistill.curate.card import write_card
from medistill.curate.config import CurateConfig
from medistill.curate.contrast import ContrastMix
from medistill.curate.contrast import records as contrast_records
from medistill.curate.letters import PositionBalancer
from medistill.curate.safety_mix import SafetyMix
from medistill.curate.safety_mix import records as safety_records
from medistill.curate.seeded import split_of
from medistill.data import LETTERS, Question
from medistill.data.schema import DATASET_FORMAT_VERSION as FORMAT_VERSION
from medistill.data.schema import DATASET_SPLITS as SPLITS
from medistill.prompts import get_template
from medistill.store import TraceStore

log = logging.getLogger(__name__)

FORMATS = ("messages", "prompt_completion")


def _rows(db: sqlite3.Connection):
    return db.execute(
        "SELECT t.key, t.teacher, t.tokens, k.assistant, k.options, k.letter, q.source,"
        " q.question_id, q.question, q.subject, q.rank, s.rate, t.verified_by"
        " FROM traces t JOIN kept k ON k.seq = t.seq JOIN questions q ON q.qkey = t.qkey"
        " JOIN (SELECT qkey, AVG(correct) AS rate FROM traces GROUP BY qkey) s ON s.qkey = t.qkey"
        " WHERE t.reason IS NULL ORDER BY t.seq"
    )


def write_outputs(
    db: sqlite3.Connection,
    store: TraceStore,
    cfg: CurateConfig,
    out: Path,
    *,
    n_in: int,
    kept: int,
    dropped: dict[str, int],
    tokenizer_name: str,
    decontam: dict[str, int],
    imported: int = 0,
    safety: SafetyMix | None = None,
    contrast: ContrastMix | None = None,
    contrast_traces: int = 0,
) -> dict[str, Any]:
    """Write the dataset files, the drop log and the card; return the statistics.

    ``imported`` counts the input traces that came from ``medistill import-traces`` (the
    low-yield advice depends on it); ``safety`` is the safety mix and ``contrast`` its benign
    contrast demonstrations, written after the traces; ``contrast_traces`` counts the store's
    contrast calls (set apart from the traces)."""
    tpl = get_template(cfg.template)
    handles = {}
    files = ExitStack()
    for fmt in FORMATS:
        (out / fmt).mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            path = out / fmt / f"{split}.jsonl.tmp"
            handles[fmt, split] = files.enter_context(path.open("w", encoding="utf-8"))
    split_counts: Counter[str] = Counter()
    split_questions: dict[str, set[str]] = {s: set() for s in SPLITS}
    by_source: Counter[str] = Counter()
    by_subject: Counter[str] = Counter()
    by_teacher_kept: Counter[str] = Counter()
    tokens: list[int] = []
    n_options = 0
    rubrics = store.rubrics()
    refused = {k for k, (error, _) in store.rubric_status().items() if error is not None}
    balancer = PositionBalancer(cfg.position_balance, cfg.seed)
    rubric_rows = 0
    rubric_questions: set[tuple[str, str]] = set()
    kept_questions: set[tuple[str, str]] = set()
    try:
        for (
            key,
            teacher,
            ntok,
            assistant,
            options,
            letter,
            source,
            qid,
            question,
            subject,
            rank,
            rate,
            verified_by,
        ) in _rows(db):
            split = split_of(rank, cfg.validation_fraction)
            assistant, shown_options, letter = balancer.apply(
                key, assistant, json.loads(options), letter
            )
            shown = Question(
                id=qid, source=source or "", split=split, question=question,
                options=shown_options, gold=letter, subject=subject,
            )  # fmt: skip
            prompt = tpl.messages(shown)
            n_options = max(n_options, len(shown.options))
            completion = [{"role": "assistant", "content": assistant}]
            meta = {
                "kind": "trace",
                "question_id": qid,
                "source": source,
                "teacher": teacher,
                "subject": subject,
                "options": shown.options,
                "gold": letter,
                "teacher_pass_rate": round(rate, 4),
                "tokens": ntok,
                "verified_by": verified_by or "letter",
                "rubric": rubrics.get((source or "", qid)),
            }
            kept_questions.add((source or "", qid))
            if meta["rubric"] is not None:
                rubric_rows += 1
                rubric_questions.add((source or "", qid))
            rid = key[:16]
            handles["messages", split].write(
                json.dumps({"id": rid, "messages": prompt + completion, **meta}, ensure_ascii=False)
                + "\n"
            )
            handles["prompt_completion", split].write(
                json.dumps(
                    {"id": rid, "prompt": prompt, "completion": completion, **meta},
                    ensure_ascii=False,
                )
                + "\n"
            )
            split_counts[split] += 1
            split_questions[split].add(f"{source}/{qid}")
            by_source[source or ""] += 1
            by_subject[subject or "(none)"] += 1
            by_teacher_kept[teacher] += 1
            tokens.append(ntok)
        safety_splits = _write_open(handles, safety_records(safety, cfg) if safety else ())
        contrast_splits = _write_open(handles, contrast_records(contrast, cfg) if contrast else ())
    finally:
        files.close()
    for (fmt, split), h in handles.items():
        os.replace(h.name, out / fmt / f"{split}.jsonl")
    _write_dropped(db, out / "dropped.jsonl")
    hf_counts = split_counts + safety_splits + contrast_splits
    hf_note = _save_hf(out, hf_counts, max(n_options, 2)) if cfg.hf_dataset else "disabled"
    stats = _stats(db, cfg, n_in, kept, dropped, tokens, tokenizer_name, decontam)
    stats.update(
        {
            "splits": {
                s: {"traces": split_counts[s], "questions": len(split_questions[s])} for s in SPLITS
            },
            "kept_by_source": dict(by_source.most_common()),
            "sources": _per_source(db, store),
            "kept_by_subject": dict(by_subject.most_common()),
            "kept_by_teacher": dict(by_teacher_kept.most_common()),
            "hf_dataset": hf_note,
            "low_yield": low_yield(n_in, kept, dropped, cfg, imported=imported > 0),
            "rubrics": {
                "rows_with_rubric": rubric_rows,
                "rows": sum(split_counts.values()),
                "questions_with_rubric": len(rubric_questions),
                "questions": len(kept_questions),
                "questions_refused": len((kept_questions - rubric_questions) & refused),
                "questions_not_asked": len(kept_questions - rubric_questions - refused),
                "in_store": len(rubrics),
            },
            "position_balance": balancer.summary(),
        }
    )
    stats["contrast_traces"] = contrast_traces
    if safety is not None:
        stats["safety_mix"] = {
            **safety.stats,
            "splits": {s: safety_splits[s] for s in SPLITS},
        }
    if contrast is not None:
        stats["contrast_mix"] = {
            **contrast.stats,
            "splits": {s: contrast_splits[s] for s in SPLITS},
        }
    tmp = out / "stats.json.tmp"
    tmp.write_text(json.dumps(stats, indent=2), encoding="utf-8")
    os.replace(tmp, out / "stats.json")
    write_card(out, stats, np.asarray(tokens, dtype=np.int64))
    return stats


def _write_open(handles: dict[tuple[str, str], Any], recs: Any) -> Counter[str]:
    """Write open-request rows (safety or contrast ``(split, rec)``): the request as the user
    turn, the response as the assistant turn, no system prompt; returns rows per split."""
    splits: Counter[str] = Counter()
    for split, rec in recs:
        user = [{"role": "user", "content": rec["user"]}]
        completion = [{"role": "assistant", "content": rec["assistant"]}]
        for fmt, turns in (
            ("messages", {"messages": user + completion}),
            ("prompt_completion", {"prompt": user, "completion": completion}),
        ):
            row = {"id": rec["id"], **turns, **rec["meta"]}
            handles[fmt, split].write(json.dumps(row, ensure_ascii=False) + "\n")
        splits[split] += 1
    return splits


def _per_source(db: sqlite3.Connection, store: TraceStore) -> list[dict[str, Any]]:
    """Per source (benchmark), in store order: what was read (the split and file each trace
    records), traces and questions in, teacher accuracy, traces and questions kept. Questions
    are told apart by (source, id), so equal ids from two benchmarks never merge."""
    reads: dict[str, list[dict[str, Any]]] = {}
    for r in store.sources():
        reads.setdefault(r["source"] or "", []).append(
            {"split": r["split"], "file": r["file"], "traces": r["calls"]}
        )
    out = []
    for source, n, correct, kept, questions, kept_questions in db.execute(
        "SELECT substr(qkey, 1, instr(qkey, char(31)) - 1), COUNT(*), SUM(correct),"
        " SUM(reason IS NULL), COUNT(DISTINCT qkey),"
        " COUNT(DISTINCT CASE WHEN reason IS NULL THEN qkey END)"
        " FROM traces GROUP BY 1 ORDER BY MIN(seq)"
    ):
        out.append(
            {
                "source": source,
                "read": reads.get(source, []),
                "input_traces": n,
                "input_questions": questions,
                "teacher_accuracy": round((correct or 0) / n, 4) if n else None,
                "kept_traces": kept or 0,
                "kept_questions": kept_questions,
            }
        )
    return out


def _write_dropped(db: sqlite3.Connection, path: Path) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for key, qkey, teacher, reason, detail in db.execute(
            "SELECT key, qkey, teacher, reason, detail FROM traces WHERE reason IS NOT NULL"
            " ORDER BY seq"
        ):
            source, _, qid = qkey.partition("\x1f")
            rec = {"key": key, "source": source, "question_id": qid, "teacher": teacher}
            fh.write(json.dumps({**rec, "reason": reason, "detail": detail}) + "\n")
    os.replace(tmp, path)


def _features(fmt: str, n_options: int) -> Any:
    from datasets import Features, Value

    turn = [{"role": Value("string"), "content": Value("string")}]
    cols = {"id": Value("string"), "kind": Value("string")}
    cols.update({"messages": turn} if fmt == "messages" else {"prompt": turn, "completion": turn})
    for name in ("question_id", "source", "teacher", "subject", "gold"):
        cols[name] = Value("string")
    # Arrow needs one struct type: every letter a row uses; a row's absent options are null.
    cols["options"] = {letter: Value("string") for letter in LETTERS[:n_options]}
    cols["teacher_pass_rate"] = Value("float64")
    cols["tokens"] = Value("int64")
    cols["verified_by"] = Value("string")
    cols["rubric"] = [
        {"criterion": Value("string"), "weight": Value("string"), "points": Value("int64")}
    ]
    return Features(cols)


def _save_hf(out: Path, split_counts: Counter[str], n_options: int) -> str:
    """Write both formats in the layout of ``DatasetDict.save_to_disk`` (``load_from_disk``
    reads them), streaming rows from the JSONL files through ``ArrowWriter`` in batches.

    ``Dataset.from_json(...).save_to_disk`` would hold ~1.5x the data in memory (2 GB RSS at a
    million traces); this stays flat.
    """
    shutil.rmtree(out / "hf", ignore_errors=True)  # never leave a previous run's copy behind
    try:
        import datasets
        from datasets.arrow_writer import ArrowWriter
    except ImportError:
        log.warning("datasets is not installed: skipping the Hugging Face copies")
        return "skipped: datasets not installed"
    splits = [s for s in SPLITS if split_counts[s]]
    if not splits:
        return "empty"
    for fmt in FORMATS:
        features = _features(fmt, n_options)
        root = out / "hf" / fmt
        for split in splits:
            folder = root / split
            folder.mkdir(parents=True, exist_ok=True)
            fingerprint = hashlib.blake2b(f"{out}/{fmt}/{split}".encode(), digest_size=8)
            with (
                ArrowWriter(
                    features=features,
                    path=str(folder / "data-00000-of-00001.arrow"),
                    writer_batch_size=1000,
                ) as writer,
                open(out / fmt / f"{split}.jsonl", encoding="utf-8") as fh,
            ):
                for line in fh:
                    row = json.loads(line)
                    writer.write({k: row.get(k) for k in features})
                n, nbytes = writer.finalize()
            splits_info = datasets.SplitDict()
            splits_info.add(datasets.SplitInfo(split, num_bytes=nbytes, num_examples=n))
            info = datasets.DatasetInfo(features=features, splits=splits_info)
            info.write_to_directory(str(folder))
            state = {
                "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
                "_fingerprint": fingerprint.hexdigest(),
                "_format_columns": None,
                "_format_kwargs": {},
                "_format_type": None,
                "_output_all_columns": False,
                "_split": split,
            }
            (folder / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        (root / "dataset_dict.json").write_text(json.dumps({"splits": splits}), encoding="utf-8")
    return "hf/messages, hf/prompt_completion"


def _stats(
    db: sqlite3.Connection,
    cfg: CurateConfig,
    n_in: int,
    kept: int,
    dropped: dict[str, int],
    tokens: list[int],
    tokenizer_name: str,
    decontam: dict[str, int],
) -> dict[str, Any]:
    """Counts for the card: inputs, drops, teacher accuracy, dedup / decontamination."""
    teachers = {
        t: {"traces": n, "verified_correct": c}
        for t, n, c in db.execute(
            "SELECT teacher, COUNT(*), SUM(correct) FROM traces GROUP BY teacher ORDER BY 2 DESC"
        )
    }
    rates = [r for (r,) in db.execute("SELECT AVG(correct) FROM traces GROUP BY qkey")]
    edges = [0.0, 0.001, 0.25, 0.5, 0.75, 0.999, 1.0]
    labels = ["0", "(0, .25)", "[.25, .5)", "[.5, .75)", "[.75, 1)", "1"]
    hist = np.histogram(rates, bins=edges)[0].tolist() if rates else [0] * len(labels)
    qreasons = dict(
        db.execute("SELECT reason, COUNT(*) FROM questions WHERE reason IS NOT NULL GROUP BY 1")
    )
    decon: Counter[str] = Counter()
    items: set[str] = set()
    for (detail,) in db.execute("SELECT detail FROM questions WHERE reason='contaminated'"):
        bench, _, method = detail.partition(" ")
        decon[f"{bench.split(':')[0]} ({method})"] += 1
        items.add(bench)
    tok = np.asarray(tokens, dtype=np.int64)
    n_correct = sum(t["verified_correct"] or 0 for t in teachers.values())
    return {
        "format_version": FORMAT_VERSION,
        "store": str(cfg.store),
        "input_traces": n_in,
        "kept_traces": kept,
        "dropped": dropped,
        "input_questions": db.execute("SELECT COUNT(DISTINCT qkey) FROM traces").fetchone()[0],
        "kept_questions": db.execute(
            "SELECT COUNT(DISTINCT qkey) FROM traces WHERE reason IS NULL"
        ).fetchone()[0],
        "teacher_accuracy": round(n_correct / n_in, 4) if n_in else None,
        "teachers": teachers,
        "kept_by_verification": dict(
            db.execute(
                "SELECT COALESCE(verified_by, 'letter'), COUNT(*) FROM traces WHERE reason IS NULL"
                " GROUP BY 1 ORDER BY 2 DESC"
            )
        ),
        "pass_rate_histogram": dict(zip(labels, hist, strict=True)),
        "question_reasons": qreasons,
        "decontamination": {
            "benchmarks": cfg.eval_benchmarks,
            "benchmark_questions": decontam.get("benchmark_questions", 0),
            "method": cfg.decontam.method,
            "ngram": cfg.decontam.ngram,
            "jaccard": cfg.decontam.jaccard,
            "thresholds": {
                "ngram_coverage": cfg.decontam.min_overlap,
                "copy_cosine": cfg.decontam.copy_cosine,
                "answer_cosine": cfg.decontam.answer_cosine,
                "options_cosine": cfg.decontam.options_cosine,
                "shared_options": cfg.decontam.shared_options,
            },
            "checked_questions": decontam.get("checked", 0),
            "checked_without_answer": decontam.get("without_answer", 0),
            "distinct_benchmark_items": len(items),
            "removed_questions": dict(decon.most_common()),
        },
        "tokens": {
            "counter": tokenizer_name,
            "mean": round(float(tok.mean()), 1) if len(tok) else None,
            "median": int(np.median(tok)) if len(tok) else None,
            "p95": int(np.percentile(tok, 95)) if len(tok) else None,
            "max": int(tok.max()) if len(tok) else None,
            "total": int(tok.sum()),
        },
        "config": cfg.record(),
    }
