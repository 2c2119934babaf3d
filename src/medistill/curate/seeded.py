"""Seeded draws shared by every curate pass and the safety mix: a key's rank under the
seed (the order selection, subject balance and the mix draw in) and the split a rank falls in.
"""

from __future__ import annotations

import hashlib


def seeded_rank(seed: int, key: str) -> int:
    """A deterministic pseudo-random signed 63-bit rank for ``key`` under ``seed``."""
    d = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "big") >> 1


def split_of(rank: int, fraction: float) -> str:
    """``validation`` for a ``fraction`` of ranks, else ``train`` (a question's traces share
    its rank, so they share a split)."""
    return "validation" if (rank % 1_000_003) / 1_000_003 < fraction else "train"
