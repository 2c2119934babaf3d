"""Metrics for eval runs: accuracy with Wilson intervals, no-answer and truncation rates,
cost per answer, breakdowns. Pure functions over prediction rows, so ``eval`` and
``rescore`` report exactly the same numbers from the same rows."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

SCHEMA_VERSION = 1


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion: honest at small n and near 0 or 1,
    unlike the normal approximation (which can leave [0, 1])."""
    if n <= 0:
        return (0.0, 0.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(correct: int, n: int) -> dict[str, float | int | None]:
    """``{"value", "ci_low", "ci_high", "correct", "n"}`` for a proportion."""
    lo, hi = wilson_interval(correct, n)
    return {
        "value": correct / n if n else None,
        "ci_low": lo,
        "ci_high": hi,
        "correct": correct,
        "n": n,
    }


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "total": float(sum(values)),
    }


def compute_metrics(
    rows: Iterable[dict[str, Any]],
    *,
    chance: float | None = None,
    wall_s: float | None = None,
) -> dict[str, Any]:
    """Aggregate prediction rows into the metrics every report reads.

    Rows need ``gold``, ``extracted``, ``extracted_strict``, ``rule`` and optionally
    ``subject``, ``finish_reason``, ``output_tokens``, ``latency_s``. Rows without a gold
    answer are counted (``n_no_gold``) but not scored.
    """
    rows = list(rows)
    scored = [r for r in rows if r.get("gold")]
    n = len(scored)
    lenient = sum(r.get("extracted") == r["gold"] for r in scored)
    strict = sum(r.get("extracted_strict") == r["gold"] for r in scored)
    none_l = sum(r.get("extracted") is None for r in scored)
    none_s = sum(r.get("extracted_strict") is None for r in scored)
    with_finish = [r for r in rows if r.get("finish_reason")]
    truncated = sum(r["finish_reason"] == "length" for r in with_finish)
    tokens = [float(r["output_tokens"]) for r in rows if r.get("output_tokens") is not None]
    latency = [float(r["latency_s"]) for r in rows if r.get("latency_s") is not None]
    by_subject: dict[str, list[dict]] = defaultdict(list)
    for r in scored:
        by_subject[str(r.get("subject") or "unknown")].append(r)
    subjects = {}
    for name, rs in sorted(by_subject.items()):
        c = sum(r.get("extracted") == r["gold"] for r in rs)
        p = proportion(c, len(rs))
        subjects[name] = {
            "n": len(rs),
            "accuracy": p["value"],
            "ci_low": p["ci_low"],
            "ci_high": p["ci_high"],
        }
    wall = wall_s if wall_s else (sum(latency) if latency else None)
    throughput = None
    if wall:
        throughput = {
            "answers_per_s": len(rows) / wall,
            "output_tokens_per_s": (sum(tokens) / wall) if tokens else None,
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "n": n,
        "n_total": len(rows),
        "n_no_gold": len(rows) - n,
        "accuracy": {"strict": proportion(strict, n), "lenient": proportion(lenient, n)},
        "no_answer_rate": {
            "strict": none_s / n if n else None,
            "lenient": none_l / n if n else None,
        },
        "truncation_rate": truncated / len(with_finish) if with_finish else None,
        "output_tokens": _stats(tokens),
        "latency_s": _stats(latency),
        "throughput": throughput,
        "by_subject": subjects,
        "rules": dict(Counter(str(r.get("rule")) for r in rows).most_common()),
        "chance": chance,
    }
