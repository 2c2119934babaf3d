"""The scratch SQLite database curation works in, so memory stays bounded.

Traces stream from the store into ``traces`` (one small row each: verdict, letter, tokens)
and ``kept`` (the assistant turn of the traces that passed); questions go to ``questions``
once each. The question-level passes (dedup, decontamination, difficulty, balance,
selection) are SQL over these tables plus an LSH band table for near-duplicate search, so
a million traces need disk, not RAM.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE traces (
    seq INTEGER PRIMARY KEY, key TEXT, qkey TEXT, teacher TEXT, reason TEXT, detail TEXT,
    letter TEXT, correct INTEGER, tokens INTEGER, rank INTEGER, verified_by TEXT);
CREATE TABLE kept (seq INTEGER PRIMARY KEY, assistant TEXT, options TEXT, letter TEXT);
CREATE TABLE questions (
    qrow INTEGER PRIMARY KEY, qkey TEXT UNIQUE, source TEXT, question_id TEXT, question TEXT,
    options TEXT, gold TEXT, subject TEXT, nhash TEXT, rank INTEGER, reason TEXT, detail TEXT);
CREATE TABLE seen_exact (nhash TEXT PRIMARY KEY, qkey TEXT);
CREATE TABLE bands (bk INTEGER, qrow INTEGER);
CREATE TABLE sigs (qrow INTEGER PRIMARY KEY, sig BLOB);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS traces_qkey ON traces(qkey, reason);
CREATE INDEX IF NOT EXISTS traces_reason ON traces(reason);
"""


def open_workdb(path: Path, cache_mb: int = 64) -> sqlite3.Connection:
    """A fresh scratch database at ``path`` (any previous one is discarded); ``cache_mb`` caps
    its page cache, which is most of curation's memory."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")  # scratch: rebuilt from the store on every run
    db.execute("PRAGMA synchronous=OFF")
    db.execute(f"PRAGMA cache_size=-{int(cache_mb) * 1024}")
    db.execute("PRAGMA temp_store=FILE")
    db.executescript(SCHEMA)
    db.execute("CREATE INDEX bands_bk ON bands(bk)")
    return db


def remove_workdb(path: Path) -> None:
    """Delete the scratch database."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
