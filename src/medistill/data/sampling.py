"""Seeded samples of a benchmark's questions (MedMCQA's 182k train questions, say).

:func:`sample_questions` draws exactly ``n`` questions, the same ones for the same seed on any
machine. With ``stratify`` it allocates the ``n`` across the strata (subjects) in proportion to
their sizes by the largest-remainder method (see :func:`allocate`): each stratum gets its
proportional share rounded up or down, and at least one question where ``n`` allows; then it
draws that many at random within each stratum. The sample keeps the file's order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from medistill.data.schema import Question
from medistill.errors import MedistillError

#: What a sample can be stratified by: the question attribute (``None``: a plain random sample).
STRATA = ("subject",)
NO_STRATUM = "(none)"


def _stratum(q: Question, by: str) -> str:
    value = getattr(q, by, None)
    return str(value) if value not in (None, "") else NO_STRATUM


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over strata of ``sizes`` in proportion (largest remainder).

    When ``n`` is at least the number of strata, a stratum whose proportional share is under one
    question gets one (repeated until none is left under one: the others share what remains).
    Each other stratum gets the floor of its share of the rest, ``rest * size / its total``,
    and the leftover questions go to the largest fractional remainders (ties by name): every
    stratum is within one question of its share, and of its plain share ``n * size / total``
    whenever no stratum needed the floor of one. Never more than a stratum holds.
    """
    total = sum(sizes.values())
    if n > total:
        raise MedistillError(f"cannot sample {n} questions: only {total} available")
    if n < 0:
        raise MedistillError(f"a sample size must be at least 0, got {n}")
    rest = sorted(s for s, c in sizes.items() if c > 0)
    alloc = {s: 0 for s in sizes}
    budget = n
    if n >= len(rest):
        # Invariant: budget >= len(rest), so never every stratum is under one, and budget <=
        # the questions left, so no share exceeds its stratum.
        while True:
            left_total = sum(sizes[s] for s in rest)
            small = [s for s in rest if budget * sizes[s] < left_total]
            if not small:
                break
            for s in small:
                alloc[s] = 1
                rest.remove(s)
            budget -= len(small)
    left_total = sum(sizes[s] for s in rest)
    share = {s: budget * sizes[s] / left_total for s in rest} if left_total else {}
    for s in rest:
        alloc[s] = math.floor(share[s])
    left = budget - sum(alloc[s] for s in rest)
    for s in sorted(rest, key=lambda s: (-(share[s] - math.floor(share[s])), s))[:left]:
        alloc[s] += 1  # the remainders add up to ``left``, each under one: one pass
    return alloc


def sample_questions(
    questions: Sequence[Question], n: int, *, seed: int = 0, stratify: str | None = None
) -> list[Question]:
    """Exactly ``n`` of ``questions``, drawn with ``seed`` (stratified by ``stratify``).

    ``n`` larger than the questions available is an error naming both numbers.
    """
    if stratify is not None and stratify not in STRATA:
        raise MedistillError(
            f"cannot stratify by {stratify!r}; choose one of: {', '.join(STRATA)} (or none)"
        )
    if n > len(questions):
        raise MedistillError(
            f"cannot sample {n} questions: only {len(questions)} available "
            "(lower the sample's n, or raise the source's limit)"
        )
    if stratify is None:
        picked = random.Random(f"{seed}").sample(range(len(questions)), n)
    else:
        groups: dict[str, list[int]] = {}
        for i, q in enumerate(questions):
            groups.setdefault(_stratum(q, stratify), []).append(i)
        alloc = allocate({s: len(ix) for s, ix in groups.items()}, n)
        picked = []
        for s in sorted(groups):
            picked += random.Random(f"{seed}:{s}").sample(groups[s], alloc.get(s, 0))
    return [questions[i] for i in sorted(picked)]


__all__ = ["STRATA", "allocate", "sample_questions"]
