"""Metrics for eval runs: accuracy with Wilson intervals, no-answer and truncation rates,
cost per answer, breakdowns. Pure functions over prediction rows, so ``eval`` and
``rescore`` report exactly the same numbers from the same rows, and one pydantic schema
(:class:`RunMetrics`, :class:`SafetyMetrics`) of the ``metrics.json`` they write, which
``report`` reads. A safety run's figures are :mod:`medistill.evaluate.safety_metrics`."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medistill.backends.base import CUT_OFF
from medistill.errors import DataError

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


def spread(values: list[float]) -> dict[str, float] | None:
    """Mean, median and total of a per-answer quantity (tokens, seconds); ``None`` if none."""
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
    answer are counted (``n_no_gold``) but not scored; error rows (``finish_reason``
    ``error``: the server refused that question) are counted (``n_error``) and left out of
    every rate, never scored as wrong. A cut-off answer is one that did not end on its own:
    the token budget (``length``) or a stopped repetition loop (``repetition``).

    Cost: ``seconds_per_answer`` is wall-clock time over answers (``wall_s``, the run's
    elapsed time); ``latency_s`` is each request's own time, which for a concurrent HTTP
    run includes queueing at the server and says nothing about throughput.
    """
    all_rows = list(rows)
    rows = [r for r in all_rows if r.get("finish_reason") != "error"]
    n_error = len(all_rows) - len(rows)
    scored = [r for r in rows if r.get("gold")]
    n = len(scored)
    lenient = sum(r.get("extracted") == r["gold"] for r in scored)
    strict = sum(r.get("extracted_strict") == r["gold"] for r in scored)
    none_l = sum(r.get("extracted") is None for r in scored)
    none_s = sum(r.get("extracted_strict") is None for r in scored)
    with_finish = [r for r in rows if r.get("finish_reason")]
    reasons = Counter(str(r["finish_reason"]) for r in with_finish)
    truncated = sum(reasons[r] for r in CUT_OFF)
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
    if wall and rows:
        throughput = {
            "answers_per_s": len(rows) / wall,
            "output_tokens_per_s": (sum(tokens) / wall) if tokens else None,
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "n": n,
        "n_total": len(rows),
        "n_no_gold": len(rows) - n,
        "n_error": n_error,
        "accuracy": {"strict": proportion(strict, n), "lenient": proportion(lenient, n)},
        "no_answer_rate": {
            "strict": none_s / n if n else None,
            "lenient": none_l / n if n else None,
        },
        "truncation_rate": truncated / len(with_finish) if with_finish else None,
        "repetition_rate": reasons["repetition"] / len(with_finish) if with_finish else None,
        "finish_reasons": dict(reasons.most_common()),
        "seconds_per_answer": (wall_s / len(rows)) if wall_s and rows else None,
        "output_tokens": spread(tokens),
        "latency_s": spread(latency),
        "throughput": throughput,
        "by_subject": subjects,
        "rules": dict(Counter(str(r.get("rule")) for r in rows).most_common()),
        "chance": chance,
        "letters": letter_distribution(scored),
        "accuracy_published": _published(scored),
    }


#: A run is flagged for position bias when its most frequent extracted letter exceeds that
#: letter's share of the gold answers by more than this.
POSITION_BIAS_WARN = 0.15


def letter_distribution(scored: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The extracted letters (lenient; ``none`` for no answer) against the gold letters, as
    shares, and the most frequent extracted letter's excess over its gold share: a student
    that answers "A" on 97% of questions whose gold is A on 25% scores the share of one
    letter, not its reasoning (``flagged`` past :data:`POSITION_BIAS_WARN`)."""
    if not scored:
        return None
    n = len(scored)
    extracted = Counter(str(r.get("extracted") or "none") for r in scored)
    gold = Counter(str(r["gold"]) for r in scored)
    answered = {k: v for k, v in extracted.items() if k != "none"}
    top = max(answered, key=lambda k: (answered[k], k)) if answered else None
    excess = (extracted[top] - gold.get(top, 0)) / n if top else None
    return {
        "extracted": {k: round(v / n, 4) for k, v in sorted(extracted.items())},
        "gold": {k: round(v / n, 4) for k, v in sorted(gold.items())},
        "most_frequent": top,
        "excess": round(excess, 4) if excess is not None else None,
        "flagged": bool(excess is not None and excess > POSITION_BIAS_WARN),
    }


def _published(scored: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Accuracy by the published HuatuoGPT-o1 / MedReason rule (``correct_published`` per
    row, see :mod:`medistill.answers.published`): an upper bound, labelled as one."""
    rows = [r for r in scored if r.get("correct_published") is not None]
    if not rows:
        return None
    return {
        **proportion(sum(bool(r["correct_published"]) for r in rows), len(rows)),
        "rule": "best of first and last letter, option-text fallback, no abstention",
        "upper_bound": True,
    }


# ----------------------------------------------------------------------------- the schema
# One description of metrics.json, written by ``eval`` and ``rescore`` and read by ``report``.

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Proportion(_Model):
    """An accuracy with its 95% Wilson interval."""

    value: Fraction | None
    ci_low: Fraction
    ci_high: Fraction
    correct: int | None = None
    n: int | None = None


class ByMode(_Model):
    """Strict and lenient extraction side by side."""

    strict: Proportion
    lenient: Proportion


class RateByMode(_Model):
    """A rate per extraction mode (no-answer rate)."""

    strict: Fraction | None
    lenient: Fraction | None


class Spread(_Model):
    """Mean / median / total of a per-answer quantity (tokens, seconds)."""

    mean: NonNegative | None = None
    median: NonNegative | None = None
    total: NonNegative | None = None


Share = Annotated[list[Fraction], Field(min_length=2)]


class Consistency(_Model):
    """Does the reasoning argue for the answer line's option? Shares of the answered rows
    (``n``) by verdict (:func:`medistill.answers.reasoning.reasoning_verdict`); ``inconsistent``
    is ``argues_other`` + ``argues_none``, with its 95% Wilson interval."""

    n: Annotated[int, Field(gt=0)]
    consistent: Fraction
    argues_other: Fraction
    argues_none: Fraction
    no_conclusion: Fraction
    inconsistent: Fraction
    inconsistent_ci: Share


class LoadBearing(_Model):
    """Early answering (:mod:`medistill.evaluate.early_answer`): over ``n`` answers, per cut
    of the reasoning (``fractions`` of its tokens), the share whose likeliest letter is the
    final answer and the final letter's mean probability (normalised over the letters);
    ``fixed_before_reasoning``: the share already answered with no reasoning (0%)."""

    n: Annotated[int, Field(gt=0)]
    fractions: Share
    match_final: Share
    mean_prob_final: Share
    fixed_before_reasoning: Fraction
    fixed_ci: Share
    backend: str


class StepErrors(_Model):
    """The step judge (:mod:`medistill.evaluate.step_judge`): steps judged, the share wrong
    (over steps, and the mean over answers), the share it could not tell, failed judgements
    (not in any share), the judge's model and whether it is a weak (< 7B) judge (``None``:
    its name gives no size)."""

    n_answers: Annotated[int, Field(ge=0)]
    n_steps: Annotated[int, Field(ge=0)]
    wrong_share: Fraction | None
    wrong_per_answer: Fraction | None
    cant_tell_share: Fraction | None
    failed: Annotated[int, Field(ge=0)]
    judge: str
    weak_judge: bool | None


class Explanations(_Model):
    """The explanation audit of a generate-mode run (:mod:`medistill.evaluate.audit`):
    ``load_bearing`` is ``None`` with ``load_bearing_skipped`` saying why (a backend without
    letter log-probabilities, ``audit: false``, option orders); ``step_errors`` only with
    ``step_judge``."""

    consistency: Consistency
    load_bearing: LoadBearing | None = None
    load_bearing_skipped: str | None = None
    step_errors: StepErrors | None = None


class RunMetrics(_Model):
    """``metrics.json`` of one (model, benchmark) run, schema_version 1 (``explanations``:
    generate mode, when any row has an answer line)."""

    schema_version: Literal[1]
    label: Annotated[str, Field(min_length=1, pattern=r"\S")]
    benchmark: Annotated[str, Field(min_length=1, pattern=r"\S")]
    n: Annotated[int, Field(gt=0)]
    accuracy: ByMode
    no_answer_rate: RateByMode
    chance: Fraction | None = None
    truncation_rate: Fraction | None = None
    output_tokens: Spread | None = None
    latency_s: Spread | None = None
    seconds_per_answer: NonNegative | None = None
    n_error: Annotated[int, Field(ge=0)] = 0
    explanations: Explanations | None = None


class HarmfulSide(_Model):
    """A safety run's harmful requests (``expect`` ``refuse``): how many, and the share
    refused (higher is safer)."""

    n: Annotated[int, Field(gt=0)]
    refusal_rate: Proportion


class BenignSide(_Model):
    """A safety run's benign requests (``expect`` ``answer``): how many, and the share
    refused anyway (over-refusal: lower is better)."""

    n: Annotated[int, Field(gt=0)]
    over_refusal_rate: Proportion


class SafetyMetrics(_Model):
    """``metrics.json`` of one (model, safety benchmark) run: ``kind`` ``safety``.

    ``refusal_rate`` is over every request; ``harmful`` and ``benign`` split it by what a safe
    model does (absent in runs written before benign sets: all their requests were harmful),
    and ``safe_both_ways`` combines them where a run has both
    (:mod:`medistill.evaluate.safety_metrics`)."""

    schema_version: Literal[1]
    kind: Literal["safety"]
    label: Annotated[str, Field(min_length=1, pattern=r"\S")]
    benchmark: Annotated[str, Field(min_length=1, pattern=r"\S")]
    n: Annotated[int, Field(gt=0)]
    refusal_rate: Proportion
    harmful: HarmfulSide | None = None
    benign: BenignSide | None = None
    safe_both_ways: Fraction | None = None
    per_category: dict[str, dict[str, Any]]
    per_source: dict[str, dict[str, Any]] = Field(default_factory=dict)
    n_judged: Annotated[int, Field(ge=0)] | None = None
    judge_failed: Annotated[int, Field(ge=0)] | None = None
    mean_harmfulness: Annotated[float, Field(ge=1.0, le=5.0)] | None = None
    n_error: Annotated[int, Field(ge=0)] = 0


def validate_metrics(obj: Any, path: str | Path) -> RunMetrics | SafetyMetrics:
    """Check a parsed ``metrics.json`` against :class:`RunMetrics`; a problem raises
    :class:`~medistill.errors.DataError` naming the file and the first bad field."""
    if not isinstance(obj, dict):
        raise DataError("expected a JSON object at the top level", path=str(path))
    version = obj.get("schema_version")
    if "schema_version" in obj and version != SCHEMA_VERSION:
        raise DataError(
            f"unsupported schema_version {version!r} (this medistill reads {SCHEMA_VERSION})",
            path=str(path),
            field="schema_version",
        )
    try:
        if obj.get("kind") == "safety":
            return SafetyMetrics.model_validate(obj)
        return RunMetrics.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        what = "missing required field" if err["type"] == "missing" else err["msg"]
        got = "" if err["type"] == "missing" else f", got {err.get('input')!r}"
        raise DataError(f"{what}{got}", path=str(path), field=where) from None
