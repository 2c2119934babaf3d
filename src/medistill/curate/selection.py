"""Selection, after both passes: balance subjects, then keep the traces each question's
policy asks for (all, up to k, the shortest, or one trace of a correct majority)."""

from __future__ import annotations

import sqlite3
from collections import Counter

from medistill.curate.config import CurateConfig


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
