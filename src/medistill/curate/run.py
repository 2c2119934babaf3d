"""Stage 2: the trace store -> a verified, deduplicated, decontaminated dataset with a card.

Passes, each streaming and each bounded in memory (state lives in a scratch SQLite file):

1. **verify** every stored trace: structure, truncation, the extracted answer (shared
   extractor, shuffle undone) against gold, leaked answer keys, repetition, length.
2. **questions** with a surviving trace, in store order: decontamination against every
   evaluation benchmark named, exact and near-duplicate removal, the difficulty filter.
3. **balance** subjects, then **select** traces per question (all, k, shortest, majority).
4. **write** the dataset (JSONL + HF, messages and prompt/completion), the drop log, the
   decontamination log and the data card; with a safety mix, its decontaminated, seeded
   share of harmful-request -> refusal demonstrations too (``curate/safety_mix.py``). Every
   trace lands in exactly one bucket: kept + each drop reason = traces in, checked before
   anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sqlite3
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from medistill.curate.advice import imported_traces, log_outcome
from medistill.curate.config import SELECTIONS, CurateConfig
from medistill.curate.decontam import BenchmarkIndex, load_eval_questions
from medistill.curate.dedup import EmbeddingIndex, NearDupIndex
from medistill.curate.filters import REASONS, TEXT_ANSWERS, Verdict, quality, token_counter, verify
from medistill.curate.output import write_outputs
from medistill.curate.safety_mix import build_mix, enabled, load_demos
from medistill.curate.text import exact_hash, question_text, word_hashes
from medistill.curate.workdb import INDEXES, open_workdb, remove_workdb
from medistill.data.loading import iter_jsonl
from medistill.errors import DataError, MedistillError
from medistill.store import TraceStore

log = logging.getLogger(__name__)


def _rank(seed: int, key: str) -> int:
    """A deterministic pseudo-random signed 63-bit rank for ``key`` under ``seed``."""
    d = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "big") >> 1


def _check(cfg: CurateConfig) -> None:
    if cfg.selection not in SELECTIONS:
        raise MedistillError(f"selection {cfg.selection!r}; choose one of: {', '.join(SELECTIONS)}")
    if cfg.extract_mode not in ("strict", "lenient"):
        raise MedistillError(f"extract_mode {cfg.extract_mode!r}; choose strict or lenient")
    if cfg.text_answers not in TEXT_ANSWERS:
        raise MedistillError(f"text_answers {cfg.text_answers!r}; choose auto, on or off")
    if not 0 <= cfg.validation_fraction < 1:
        raise MedistillError("validation_fraction must be in [0, 1)")
    if cfg.selection == "k" and cfg.k < 1:
        raise MedistillError("k must be at least 1")
    if not Path(cfg.store).exists():
        raise MedistillError(f"{cfg.store}: trace store not found")


def _original(row: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The options and gold in the original lettering (undoing the teacher's shuffle)."""
    perm = row.get("permutation") or {k: k for k in row["options"]}
    opts = {perm[s]: t for s, t in row["options"].items()}
    return dict(sorted(opts.items())), perm[row["gold"]]


def _batches(it: Iterator[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in it:
        batch.append(row)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _verify_batch(
    rows: list[dict[str, Any]], mode: str, think_tags: bool, text_answers: str = "auto"
) -> list[Verdict]:
    """Verify one batch (a top-level function, so worker processes can run it)."""
    return [verify(r, mode=mode, think_tags=think_tags, text_answers=text_answers) for r in rows]


def _verified(
    batches: Iterator[list[dict[str, Any]]], cfg: CurateConfig, workers: int
) -> Iterator[tuple[list[dict[str, Any]], list[Verdict]]]:
    """``(batch, verdicts)`` in store order. With several workers the extractor runs in a
    process pool (it is CPU-bound Python) with at most two batches per worker in flight, so
    memory stays bounded."""
    args = (cfg.extract_mode, cfg.think_tags, cfg.text_answers)
    if workers <= 1:
        for batch in batches:
            yield batch, _verify_batch(batch, *args)
        return
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch/threads are loaded
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        pending: deque[tuple[list[dict[str, Any]], Any]] = deque()
        for batch in batches:
            pending.append((batch, pool.submit(_verify_batch, batch, *args)))
            if len(pending) >= 2 * workers:
                done, fut = pending.popleft()
                yield done, fut.result()
        while pending:
            done, fut = pending.popleft()
            yield done, fut.result()


def verify_pass(
    db: sqlite3.Connection,
    cfg: CurateConfig,
    count_tokens: Callable[[Sequence[str]], list[int]],
    progress: Callable[[int], None] = lambda n: None,
    workers: int = 1,
) -> int:
    """Pass 1: verify and filter every stored trace into the scratch tables (verification
    in ``workers`` processes when more than one)."""
    seq = 0
    with TraceStore(cfg.store) as store:
        batches = _batches(store.iter_rows(), cfg.batch_size)
        for batch, verdicts in _verified(batches, cfg, workers):
            tokens = quality(
                verdicts,
                count_tokens,
                min_tokens=cfg.min_tokens,
                max_tokens=cfg.max_tokens,
                repetition_ngram=cfg.repetition_ngram,
                max_repetition=cfg.max_repetition,
            )
            traces, kept, questions = [], [], []
            for row, v, n in zip(batch, verdicts, tokens, strict=True):
                seq += 1
                qkey = f"{row.get('source') or ''}\x1f{row['question_id']}"
                traces.append(
                    (seq, row["key"], qkey, row["teacher"], v.reason, v.detail, v.letter,
                     int(v.correct), n, _rank(cfg.seed, row["key"]), v.verified_by)
                )  # fmt: skip
                if v.reason is None:
                    kept.append((seq, v.assistant, json.dumps(row["options"]), v.shown_letter))
                if v.reason != "malformed":
                    opts, gold = _original(row)
                    questions.append(
                        (qkey, row.get("source"), row["question_id"], row["question"],
                         json.dumps(opts, ensure_ascii=False), gold, row.get("subject"),
                         exact_hash(row["question"], opts), _rank(cfg.seed, qkey))
                    )  # fmt: skip
            db.execute("BEGIN")
            db.executemany("INSERT INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?)", traces)
            db.executemany("INSERT INTO kept VALUES (?,?,?,?)", kept)
            db.executemany(
                "INSERT OR IGNORE INTO questions (qkey, source, question_id, question, options,"
                " gold, subject, nhash, rank) VALUES (?,?,?,?,?,?,?,?,?)",
                questions,
            )
            db.execute("COMMIT")
            progress(len(batch))
    db.executescript(INDEXES)
    return seq


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
    from medistill.data import BENCHMARKS

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


def _apply_question_reasons(db: sqlite3.Connection) -> None:
    db.execute(
        "UPDATE traces SET (reason, detail) = (SELECT q.reason, q.detail FROM questions q"
        " WHERE q.qkey = traces.qkey) WHERE reason IS NULL AND qkey IN"
        " (SELECT qkey FROM questions WHERE reason IS NOT NULL)"
    )


def balance_subjects(db: sqlite3.Connection, cap: int | None) -> None:
    """Keep at most ``cap`` questions per subject, chosen by the seeded rank."""
    if not cap:
        return
    seen: Counter[str] = Counter()
    drop = []
    for qrow, subject in db.execute(
        "SELECT qrow, COALESCE(subject, '') FROM questions q WHERE reason IS NULL AND EXISTS"
        " (SELECT 1 FROM traces t WHERE t.qkey = q.qkey AND t.reason IS NULL) ORDER BY rank"
    ).fetchall():
        seen[subject] += 1
        if seen[subject] > cap:
            drop.append((f"more than {cap} questions in subject {subject or '(none)'}", qrow))
    db.executemany("UPDATE questions SET reason='subject_cap', detail=? WHERE qrow=?", drop)


def select_traces(db: sqlite3.Connection, cfg: CurateConfig) -> None:
    """Per question, keep the traces the selection policy asks for."""
    if cfg.selection == "all":
        return
    updates: list[tuple[str, str, int]] = []
    rows = db.execute(
        "SELECT qkey, seq, tokens FROM traces WHERE reason IS NULL ORDER BY qkey, rank"
    )
    group: list[tuple[int, int]] = []
    current = None

    def flush(qkey: str, group: list[tuple[int, int]]) -> None:
        if cfg.selection == "k":
            updates.extend(("not_selected", f"beyond k={cfg.k}", s) for s, _ in group[cfg.k :])
        elif cfg.selection == "shortest":
            best = min(group, key=lambda g: g[1])[0]
            updates.extend(
                ("not_selected", "a shorter trace was kept", s) for s, _ in group if s != best
            )
        else:  # majority
            (gold,) = db.execute("SELECT gold FROM questions WHERE qkey=?", (qkey,)).fetchone()
            votes = Counter(
                dict(
                    db.execute(
                        "SELECT letter, COUNT(*) FROM traces WHERE qkey=? AND letter IS NOT NULL"
                        " GROUP BY letter",
                        (qkey,),
                    ).fetchall()
                )
            )
            top = votes.most_common(2)
            if not top or top[0][0] != gold or (len(top) > 1 and top[1][1] == top[0][1]):
                detail = f"votes {dict(votes)}, gold {gold}"
                updates.extend(("no_majority", detail, s) for s, _ in group)
            else:
                updates.extend(("not_selected", "one majority trace kept", s) for s, _ in group[1:])

    for qkey, seq, tokens in rows:
        if qkey != current and group:
            flush(current, group)
            group = []
        current = qkey
        group.append((seq, tokens))
    if group:
        flush(current, group)
    db.executemany("UPDATE traces SET reason=?, detail=? WHERE seq=?", updates)


def run_curate(cfg: CurateConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Curate ``cfg.store`` into ``cfg.out``; returns the statistics written to the card."""
    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".curate-work.sqlite"
    db = open_workdb(work, cfg.sqlite_cache_mb)
    try:
        with TraceStore(cfg.store) as store:
            total = len(store)
            imported = imported_traces(store)
        demos = load_demos(cfg) if enabled(cfg) else None  # a bad file fails before verifying
        count_tokens, tokenizer_name = token_counter(cfg.tokenizer)
        workers = cfg.workers or (min(os.cpu_count() or 1, 8) if total > 20_000 else 1)
        with _progress(show_progress, total) as advance:
            n_in = verify_pass(db, cfg, count_tokens, advance, workers)
        index = None
        if not cfg.eval_benchmarks:
            log.warning("no evaluation benchmarks named: the dataset is NOT decontaminated")
        else:
            index = BenchmarkIndex(
                load_eval_questions(cfg.eval_benchmarks),
                method=cfg.decontam_method,
                ngram=cfg.decontam_ngram,
                max_df=cfg.decontam_max_df,
                min_overlap=cfg.decontam_min_overlap,
                candidates=cfg.decontam_candidates,
                copy_cosine=cfg.decontam_copy_cosine,
                answer_cosine=cfg.decontam_answer_cosine,
                options_cosine=cfg.decontam_options_cosine,
                shared_options=cfg.decontam_shared_options,
                length_ratio=cfg.decontam_length_ratio,
                jaccard=cfg.decontam_jaccard,
            )
        decon = question_pass(db, cfg, index, out / "decontamination.jsonl")
        decon["benchmark_questions"] = len(index) if index is not None else 0
        _apply_question_reasons(db)
        balance_subjects(db, cfg.max_per_subject)
        _apply_question_reasons(db)
        select_traces(db, cfg)
        counts = dict(
            db.execute("SELECT COALESCE(reason, 'kept'), COUNT(*) FROM traces GROUP BY 1")
        )
        kept = counts.pop("kept", 0)
        dropped = {r: counts.pop(r, 0) for r in REASONS}
        if counts or kept + sum(dropped.values()) != n_in:
            raise MedistillError(f"internal: curation counts do not add up ({counts}, {n_in})")
        safety = None
        if demos is None:
            (out / "safety_decontamination.jsonl").unlink(missing_ok=True)  # an earlier run's
        else:
            safety = build_mix(
                cfg,
                demos,
                kept=kept,
                eval_index=index,
                count_tokens=count_tokens,
                decon_log=out / "safety_decontamination.jsonl",
            )
        stats = write_outputs(
            db,
            cfg,
            out,
            n_in=n_in,
            kept=kept,
            dropped=dropped,
            tokenizer_name=tokenizer_name,
            decontam=decon,
            imported=imported,
            safety=safety,
        )
    finally:
        db.close()
        remove_workdb(work)
    log.info(
        "curated %d traces: kept %d, dropped %s",
        n_in,
        kept,
        ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none",
    )
    log_outcome(stats)
    return stats


class _progress:
    """A rich progress bar over the verify pass (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        task = self.bar.add_task("verifying traces", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
