"""Pass 1 of curation: verify every stored trace into the scratch tables.

Each trace's structure, truncation, extracted answer (shared extractor, shuffle undone)
against gold, leaked answer keys, repetition and length; the verdicts land in ``traces``, the
surviving assistant turns in ``kept`` and each question once in ``questions``. Verification
runs in worker processes when asked (the extractor is CPU-bound Python), in bounded batches.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from medistill.curate.config import CurateConfig
from medistill.curate.filters import Verdict, quality, verify
from medistill.curate.seeded import seeded_rank
from medistill.curate.text import exact_hash
from medistill.curate.workdb import INDEXES
from medistill.data.options import unpermute
from medistill.store import TraceStore


def _batches(it: Iterator[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in it:
        batch.append(row)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _verify_batch(rows: list[dict[str, Any]], mode: str, think_tags: bool) -> list[Verdict]:
    """Verify one batch (a top-level function, so worker processes can run it)."""
    return [verify(r, mode=mode, think_tags=think_tags) for r in rows]


def _verified(
    batches: Iterator[list[dict[str, Any]]], cfg: CurateConfig, workers: int
) -> Iterator[tuple[list[dict[str, Any]], list[Verdict]]]:
    """``(batch, verdicts)`` in store order. With several workers the extractor runs in a
    process pool (it is CPU-bound Python) with at most two batches per worker in flight, so
    memory stays bounded."""
    args = (cfg.extract_mode, cfg.think_tags)
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
    store: TraceStore,
    cfg: CurateConfig,
    count_tokens: Callable[[Sequence[str]], list[int]],
    progress: Callable[[int], None] = lambda n: None,
    workers: int = 1,
) -> int:
    """Pass 1: verify and filter every trace of the open ``store`` into the scratch tables
    (verification in ``workers`` processes when more than one); returns the traces read.
    Contrast calls (open requests, no options: :mod:`medistill.curate.contrast`) are not
    traces to verify and are never read here."""
    seq = 0
    batches = _batches(store.iter_rows(contrast=False), cfg.batch_size)
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
                 int(v.correct), n, seeded_rank(cfg.seed, row["key"]), v.verified_by)
            )  # fmt: skip
            if v.reason is None:
                kept.append((seq, v.assistant, json.dumps(row["options"]), v.shown_letter))
            if v.reason != "malformed":
                opts, gold = unpermute(row["options"], row["gold"], row.get("permutation"))
                questions.append(
                    (qkey, row.get("source"), row["question_id"], row["question"],
                     json.dumps(opts, ensure_ascii=False), gold, row.get("subject"),
                     exact_hash(row["question"], opts), seeded_rank(cfg.seed, qkey))
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


class progress_bar:  # used as a function: ``with progress_bar(...) as advance``
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
