"""Pass 2 of curation: the questions that still have a trace, in store order (keep-first).

Decontamination against every evaluation benchmark named, exact and near-duplicate removal
(MinHash, optionally embeddings), then the difficulty filter (the base student's accuracy from
an eval ``predictions.jsonl``). A question's reason is then applied to each of its traces.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

from medistill.curate.config import CurateConfig
from medistill.curate.decontam import BenchmarkIndex
from medistill.curate.dedup import EmbeddingIndex, NearDupIndex
from medistill.curate.text import question_text, word_hashes
from medistill.data.loading import iter_jsonl
from medistill.data.registry import BENCHMARKS
from medistill.errors import DataError


def _scored_source(predictions: Path) -> str | None:
    """The source whose questions an eval ``predictions.jsonl`` scores, from the benchmark in
    its run folder's ``config.json``; ``None`` when unknown (its ids then match any source)."""
    try:
        record = json.loads((predictions.parent / "config.json").read_text(encoding="utf-8"))
        bench = record["identity"]["benchmark"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(bench, str):
        return None
    spec = BENCHMARKS.get(bench)
    return spec.loader_kwargs.get("source", spec.name) if spec else bench


def _base_accuracy(path: str | None) -> dict[str, float]:
    """Per-question accuracy of the base student from an eval ``predictions.jsonl``, keyed by
    ``source\x1fid`` where its run folder names the benchmark, else by id alone."""
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise DataError("difficulty eval file not found", path=str(p))
    hits: dict[str, list[int]] = defaultdict(list)
    for line, rec in iter_jsonl(p):
        if isinstance(rec, DataError):
            raise rec
        for name in ("id", "correct"):
            if not isinstance(rec, dict) or name not in rec:
                raise DataError("missing field", path=str(p), line=line, field=name)
        if rec["correct"] is not None:
            hits[str(rec["id"])].append(int(bool(rec["correct"])))
    source = _scored_source(p)
    prefix = "" if source is None else f"{source}\x1f"
    return {prefix + k: sum(v) / len(v) for k, v in hits.items()}


def _question_name(db: sqlite3.Connection, qrow: int) -> str:
    """``source/question_id`` of a question in the scratch table (for drop details)."""
    (qkey,) = db.execute("SELECT qkey FROM questions WHERE qrow=?", (qrow,)).fetchone()
    return qkey.replace("\x1f", "/")


def _answers(db: sqlite3.Connection, rows: list[tuple]) -> list[str | None]:
    """Each question's answer for decontamination: its gold, else the letter most of its
    surviving traces chose (ties: the first letter)."""
    out: list[str | None] = [r[7] for r in rows]
    missing = [r[1] for r, a in zip(rows, out, strict=True) if not a]
    if missing:
        votes: dict[str, Counter[str]] = {}
        marks = ",".join("?" * len(missing))
        for qkey, letter, n in db.execute(
            f"SELECT qkey, letter, COUNT(*) FROM traces WHERE reason IS NULL AND letter IS NOT "
            f"NULL AND qkey IN ({marks}) GROUP BY qkey, letter",
            missing,
        ):
            votes.setdefault(qkey, Counter())[letter] = n
        for i, r in enumerate(rows):
            if not out[i] and r[1] in votes:
                out[i] = max(sorted(votes[r[1]]), key=lambda x: votes[r[1]][x])
    return out


def question_pass(
    db: sqlite3.Connection, cfg: CurateConfig, index: BenchmarkIndex | None, decon_log: Path
) -> dict[str, int]:
    """Pass 2: decontaminate, deduplicate and difficulty-filter the questions that still
    have a trace, in store order (keep-first). Returns decontamination counts: questions
    checked, and checked without an answer (copies only)."""
    checked = without_answer = 0
    near = NearDupIndex(db, threshold=cfg.dedup_jaccard) if cfg.dedup else None
    emb = EmbeddingIndex(cfg.embedding_threshold) if cfg.embedding_dedup else None
    base = _base_accuracy(cfg.difficulty_eval)
    cur = db.execute(
        "SELECT qrow, qkey, source, question_id, question, options, nhash, gold FROM questions q"
        " WHERE EXISTS (SELECT 1 FROM traces t WHERE t.qkey = q.qkey AND t.reason IS NULL)"
        " ORDER BY qrow"
    )
    rows = cur.fetchmany(cfg.batch_size)
    with open(decon_log, "w", encoding="utf-8") as dlog:
        while rows:
            marks: dict[int, tuple[str, str]] = {}
            qs = [(r[4], json.loads(r[5])) for r in rows]
            if index is not None:
                answers = _answers(db, rows)
                checked += len(rows)
                without_answer += sum(1 for a in answers if not a)
                batch = [(q, o, a) for (q, o), a in zip(qs, answers, strict=True)]
                for r, m in zip(rows, index.check_many(batch), strict=True):
                    if m is not None:
                        marks[r[0]] = ("contaminated", f"{m.benchmark}:{m.benchmark_id} {m.method}")
                        rec = {"source": r[2], "question_id": r[3], **m.to_dict()}
                        dlog.write(json.dumps(rec, ensure_ascii=False) + "\n")
            live = [i for i, r in enumerate(rows) if r[0] not in marks]
            if cfg.dedup:
                sigs = near.signatures(
                    [word_hashes(question_text(*qs[i]), mask_numbers=False) for i in live]
                )
                for i, sig in zip(live, sigs, strict=True):
                    qrow, qkey, nhash = rows[i][0], rows[i][1], rows[i][6]
                    db.execute("INSERT OR IGNORE INTO seen_exact VALUES (?, ?)", (nhash, qkey))
                    first = db.execute("SELECT qkey FROM seen_exact WHERE nhash=?", (nhash,))
                    first_key = first.fetchone()[0]
                    if first_key != qkey:
                        marks[qrow] = ("duplicate_exact", f"of {first_key.replace(chr(31), '/')}")
                        continue
                    dup = near.offer(qrow, sig)
                    if dup is not None:
                        of = _question_name(db, dup[0])
                        marks[qrow] = ("duplicate_near", f"of {of} (jaccard {dup[1]:.2f})")
            if emb is not None:
                live = [i for i, r in enumerate(rows) if r[0] not in marks]
                found = emb.offer_many(
                    [rows[i][0] for i in live], [question_text(*qs[i]) for i in live]
                )
                for i, d in zip(live, found, strict=True):
                    if d is not None:
                        of = _question_name(db, d[0])
                        marks[rows[i][0]] = ("duplicate_embedding", f"of {of} (cosine {d[1]:.3f})")
            for r in rows:
                acc = base.get(r[1], base.get(r[3]))  # (source, id) when known, else the id
                if r[0] not in marks and acc is not None and acc >= cfg.difficulty_max_accuracy:
                    marks[r[0]] = ("too_easy", f"base student accuracy {acc:.2f}")
            if marks:
                db.executemany(
                    "UPDATE questions SET reason=?, detail=? WHERE qrow=?",
                    [(a, b, q) for q, (a, b) in marks.items()],
                )
            rows = cur.fetchmany(cfg.batch_size)
    return {"checked": checked, "without_answer": without_answer}


def apply_question_reasons(db: sqlite3.Connection) -> None:
    """Each dropped question's reason onto its traces that are still kept."""
    db.execute(
        "UPDATE traces SET (reason, detail) = (SELECT q.reason, q.detail FROM questions q"
        " WHERE q.qkey = traces.qkey) WHERE reason IS NULL AND qkey IN"
        " (SELECT qkey FROM questions WHERE reason IS NOT NULL)"
    )
