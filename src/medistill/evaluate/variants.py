"""Several answers per question: option orders (``--permute-options K``) and samples
(``--samples N --vote majority``, self-consistency).

Each question is asked as ``K x N`` variants: its options in K orders (cyclic shifts: the
original order and K-1 further shifts drawn with the run's seed), each sampled N times. A
variant's row keeps its own shown options, gold and extraction, so every row is scored as
an ordinary one; the run's metrics then aggregate per question:

* samples: the **vote** is the option text most samples chose (compared as text, so votes
  are counted across orders too); ties go to the tied answer given by the earliest sample;
  no answer wins only when no sample answered. Tokens per question are the sum over samples.
* orders: accuracy **per order**, the share of questions answered correctly under **every**
  order, and how often the chosen option **text** changes with the order (a model that picks
  a position, not a content, changes its text when the options move).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from medistill.data import Question
from medistill.data.options import rotate
from medistill.evaluate.sampling import samples_accuracy


@dataclass(frozen=True)
class Variant:
    """One way of asking a question: ``shown`` (options in order ``shift``), sample ``k``."""

    base: Question
    shown: Question
    shift: int
    sample: int

    @property
    def id(self) -> str:
        """The prediction row's id (the question's own id when there is one variant)."""
        return f"{self.base.id}#o{self.shift}s{self.sample}"


def shifts(n_options: int, k: int, seed: int | None) -> list[int]:
    """The original order (0) and ``k - 1`` further cyclic shifts, drawn with ``seed``."""
    others = list(range(1, n_options))
    random.Random(f"permute:{seed}").shuffle(others)
    return [0, *sorted(others[: max(0, k - 1)])]


def shifted(q: Question, shift: int) -> Question:
    """``q`` with its options rotated by ``shift`` (option i shown at i - shift), gold moved
    (:func:`medistill.data.options.rotate`)."""
    return rotate(q.options, q.gold, shift).question(q)


def expand(
    questions: list[Question], *, orders: int, samples: int, seed: int | None
) -> list[Variant]:
    """Every variant of every question (see the module docstring)."""
    out = []
    for q in questions:
        for shift in shifts(len(q.options), orders, seed) if orders > 1 else [0]:
            shown = shifted(q, shift) if shift else q
            out.extend(Variant(q, shown, shift, k) for k in range(samples))
    return out


def _vote(answers: list[str | None]) -> str | None:
    """The majority answer (see the module docstring for ties and no answer)."""
    given = [a for a in answers if a is not None]
    if not given:
        return None
    counts = Counter(given)
    best = max(counts.values())
    return next(a for a in given if counts[a] == best)


def aggregate(
    rows: list[dict[str, Any]], vote: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of the headline metrics, and the ``variants`` block.

    ``vote`` majority (or unset): one row per question and order, the samples' vote. ``vote``
    mean: every sample's own row, so the headline accuracy is the mean over samples (the
    caller widens its interval to the question count:
    :func:`medistill.evaluate.sampling.per_question_intervals`); the per-order figures still
    come from the vote. Rows without ``base_id`` (an ordinary run) come back unchanged with
    an empty block.
    """
    if not rows or "base_id" not in rows[0]:
        return rows, {}
    by_variant: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_variant[(r["base_id"], r["shift"])].append(r)
    voted: list[dict[str, Any]] = []
    agreement = []
    per_sample_correct = []
    for (_, shift), group in sorted(by_variant.items(), key=lambda kv: kv[0]):
        group.sort(key=lambda r: r["sample"])
        opts = group[0]["options"]
        by_text = {v: k for k, v in opts.items()}
        texts = {
            mode: [opts.get(r[key]) if r.get(key) else None for r in group]
            for mode, key in (("lenient", "extracted"), ("strict", "extracted_strict"))
        }
        winner = {mode: _vote(t) for mode, t in texts.items()}
        answered = [t for t in texts["lenient"] if t is not None]
        if answered and winner["lenient"] is not None:
            agreement.append(answered.count(winner["lenient"]) / len(group))
        per_sample_correct += [r.get("extracted") == r["gold"] for r in group if r.get("gold")]
        finishes = {r.get("finish_reason") for r in group}
        voted.append(
            {
                "id": group[0]["base_id"],
                "base_id": group[0]["base_id"],
                "shift": shift,
                "subject": group[0].get("subject"),
                "gold": group[0]["gold"],
                "options": opts,
                "extracted": by_text.get(winner["lenient"]),
                "extracted_strict": by_text.get(winner["strict"]),
                "chosen_text": winner["lenient"],
                # the published rule reads one response: an order's answer has it, a vote not
                "correct_published": group[0].get("correct_published") if len(group) == 1 else None,
                "rule": "vote" if len(group) > 1 else group[0].get("rule"),
                "finish_reason": "error"
                if finishes == {"error"}
                else ("length" if finishes <= {"length", "repetition"} else "stop"),
                "output_tokens": sum(r.get("output_tokens") or 0 for r in group),
                "latency_s": max((r.get("latency_s") or 0.0) for r in group),
            }
        )
    block: dict[str, Any] = {}
    samples = max(r["sample"] for r in rows) + 1
    if samples > 1:
        block["vote"] = {
            "samples": samples,
            "rule": "mean over samples (each sample's answer scored)"
            if vote == "mean"
            else "majority over option texts; ties: the earliest sample's; no answer only "
            "when no sample answered",
            "samples_accuracy": samples_accuracy(rows),
            "mean_sample_accuracy": (
                sum(per_sample_correct) / len(per_sample_correct) if per_sample_correct else None
            ),
            "mean_agreement": sum(agreement) / len(agreement) if agreement else None,
        }
    order_list = sorted({r["shift"] for r in voted})
    if len(order_list) > 1:
        by_q: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        for r in voted:
            by_q[r["base_id"]][r["shift"]] = r
        complete = {
            q: v
            for q, v in by_q.items()
            if len(v) == len(order_list) and all(r["gold"] for r in v.values())
        }
        n = len(complete)
        block["permutation"] = {
            "orders": order_list,
            "accuracy_by_order": {
                str(s): (
                    sum(v[s]["extracted"] == v[s]["gold"] for v in complete.values()) / n
                    if n
                    else None
                )
                for s in order_list
            },
            "correct_under_every_order": (
                sum(all(r["extracted"] == r["gold"] for r in v.values()) for v in complete.values())
                / n
                if n
                else None
            ),
            "chosen_text_changes": (
                sum(len({r["chosen_text"] for r in v.values()}) > 1 for v in complete.values()) / n
                if n
                else None
            ),
            "questions": n,
        }
    if vote == "mean" and samples > 1:
        return sorted(rows, key=lambda r: (r["base_id"], r["shift"], r["sample"])), block
    return voted, block
