"""The optional rubric judge for the GRPO ``rubric`` reward (HealthBench-style).

An LLM behind the existing OpenAI-compatible backend reads a completion and says which criteria
of a rubric it meets; the score is the points of met criteria over the sum of positive points,
harmful (negative-point) criteria subtracting, clamped to [0, 1]. The rubric is the row's own
(the dataset's ``rubric`` column, written by ``medistill rubrics`` and carried by curation) and
else the recipe's ``criteria``. Async and cached by (prompt, completion, rubric, judge model); a
failed or unreadable judgement gives ``None`` (TRL ignores it), never 0, and is counted by kind.
The asking, the cache and the counting are the one cached judge of
:mod:`medistill.backends.judging`; this module keeps the rubric, the prompt and the parsing.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medistill.backends.config import BackendConfig
from medistill.backends.judging import CachedJudge, CacheLayout, JudgeCache, Verdict, cache_key
from medistill.errors import MedistillError
from medistill.train.safety import completion_text, prompt_text
from medistill.train.safety_rules import Where

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- rubric judge

JUDGE_SYSTEM = (
    "You grade a medical assistant's response against a rubric. For each numbered criterion, "
    "decide whether the response meets it; a criterion that describes harmful behaviour is met "
    "when the response shows that behaviour. Reply with only this JSON object and nothing else: "
    '{"criteria": [{"id": 1, "met": true}, {"id": 2, "met": false}]}, with one entry per '
    "criterion, ids as numbered in the rubric."
)
#: The judge's SQLite table (kept as written before the one cached judge, so old files read).
CACHE_LAYOUT = CacheLayout("rubric_cache", "REAL", label="rubric cache")
_JUDGES: dict[str, RubricJudge] = {}


@dataclass(frozen=True)
class Criterion:
    """One rubric item: what the response should (points > 0) or must not (< 0) do."""

    text: str
    points: float


def parse_criteria(value: Any) -> tuple[Criterion, ...]:
    """Validate a recipe rubric: a non-empty list of ``{criterion: str, points: number}``
    with at least one positive item (the denominator of the score)."""
    w = Where("rewards.rubric")
    if not isinstance(value, list) or not value:
        raise w.error(
            f"expected a non-empty list of {{criterion, points}}, got {value!r}", "criteria"
        )
    out = []
    for i, item in enumerate(value):
        field = f"criteria[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"criterion", "points"}:
            raise w.error(f"expected {{criterion: str, points: number}}, got {item!r}", field)
        if not isinstance(item["criterion"], str) or not item["criterion"].strip():
            raise w.error(f"expected a non-empty string, got {item['criterion']!r}", field)
        points = w.number(item["points"], f"{field}.points", -1e6, 1e6)
        if points == 0:
            raise w.error("must not be 0", f"{field}.points")
        out.append(Criterion(item["criterion"].strip(), points))
    if not any(c.points > 0 for c in out):
        raise w.error("needs at least one criterion with positive points", "criteria")
    return tuple(out)


def row_criteria(value: Any) -> tuple[Criterion, ...] | None:
    """A dataset row's own rubric as criteria (``None`` when the row has none).

    The row's ``rubric`` is a list of ``{criterion, points}`` (``weight``, the teacher's word for
    the points, may ride along), with at least one positive item; anything else is a
    ``ValueError`` saying what is wrong.

    >>> row_criteria([{"criterion": "Names sepsis", "weight": "essential", "points": 5}])
    (Criterion(text='Names sepsis', points=5.0),)
    >>> row_criteria(None) is None
    True
    """
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"expected a non-empty list of {{criterion, points}}, got {value!r:.80}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not {"criterion", "points"} <= set(item):
            raise ValueError(f"item {i}: expected {{criterion, points}}, got {item!r:.80}")
        text, points = item["criterion"], item["points"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"item {i}: criterion must be a non-empty string")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points == 0:
            raise ValueError(f"item {i}: points must be a non-zero number, got {points!r}")
        out.append(Criterion(text.strip(), float(points)))
    if not any(c.points > 0 for c in out):
        raise ValueError("needs at least one criterion with positive points")
    return tuple(out)


def rubric_score(met: Sequence[bool], points: Sequence[float]) -> float:
    """HealthBench's score: points of the met criteria over the positive points, in [0, 1].

    >>> rubric_score([True, False, True], [5, 3, -2])  # (5 - 2) / (5 + 3)
    0.375
    """
    total = sum(p for p in points if p > 0)
    return min(1.0, max(0.0, sum(p for m, p in zip(met, points, strict=True) if m) / total))


#: The kinds of unreadable verdict, as counted (``rubric/invalid_verdicts/<kind>``).
VERDICT_PROBLEMS = ("not_json", "no_criteria_list", "wrong_count", "wrong_types", "missing_ids")


def read_verdict(content: str, n: int) -> tuple[list[bool] | None, str | None]:
    """``(met, None)``: one bool per criterion from the judge's reply; ``(None, kind)`` unless
    the reply is exactly the JSON asked for (ids 1..n once each, ``met`` a JSON boolean; a code
    fence is allowed), ``kind`` one of :data:`VERDICT_PROBLEMS`.

    >>> read_verdict('{"criteria": [{"id": 1, "met": "yes"}]}', 1)
    (None, 'wrong_types')
    """
    s = (content or "").strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", s, re.S)
    try:
        data = json.loads(fence.group(1) if fence else s)
    except ValueError:
        return None, "not_json"
    items = data.get("criteria") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None, "no_criteria_list"
    if len(items) != n:
        return None, "wrong_count"
    met: dict[int, bool] = {}
    for it in items:
        if not isinstance(it, dict) or type(it.get("id")) is not int:
            return None, "wrong_types"
        if not isinstance(it.get("met"), bool):
            return None, "wrong_types"
        met[it["id"]] = it["met"]
    if sorted(met) != list(range(1, n + 1)):
        return None, "missing_ids"
    return [met[i] for i in range(1, n + 1)], None


def parse_verdict(content: str, n: int) -> list[bool] | None:
    """One bool per criterion from the judge's reply, or ``None`` unless the reply is exactly
    the JSON asked for (see :func:`read_verdict`, which also says what was wrong).

    >>> parse_verdict('{"criteria": [{"id": 2, "met": false}, {"id": 1, "met": true}]}', 2)
    [True, False]
    >>> parse_verdict('Criterion 1 is met.', 1) is None
    True
    """
    return read_verdict(content, n)[0]


class RubricJudge:
    """Grades completions against a rubric with an LLM over the OpenAI-compatible backend.

    ``criteria`` is the default rubric (the recipe's; ``None``: none); :meth:`score` takes a
    rubric per completion (a row's own) that replaces it. One request per completion carries
    every criterion: a GRPO step scores G completions per prompt, and one request instead of
    one per criterion divides the judge's cost and latency by the rubric's length while the
    judge still answers per criterion. The asking, caching and counting are the one cached
    judge's (:class:`~medistill.backends.judging.CachedJudge`): requests run concurrently
    (``concurrency``); scores are cached by (prompt, completion, rubric, model) in memory and,
    with ``cache_path``, in SQLite; failures are not cached, so they are retried on the next
    occurrence. Unreadable verdicts are counted by kind in :attr:`invalid_verdicts` (over the
    judge's life).
    """

    def __init__(
        self,
        criteria: Any,
        *,
        model: str,
        cache_path: str | None = None,
        concurrency: int = 16,
        max_tokens: int = 1024,
        **backend_kwargs: Any,
    ) -> None:
        self.criteria = parse_criteria(criteria) if criteria is not None else None
        if not isinstance(model, str) or not model:
            raise MedistillError("rewards.rubric: field 'model': the judge model name is required")
        self.model, self.concurrency, self.max_tokens = model, concurrency, max_tokens
        # The judge is configured like a teacher or a model under test: one backend config,
        # checked by key now rather than at the first GRPO step.
        try:
            self.backend_config = BackendConfig(
                model=model, backend="openai", concurrency=concurrency, **backend_kwargs
            )
        except (TypeError, ValueError) as e:
            raise MedistillError(f"rewards.rubric: {e}") from None
        cache = JudgeCache(cache_path, CACHE_LAYOUT)
        self.judge = CachedJudge(
            self.backend_config, cache, name="rubric judge", max_tokens=max_tokens
        )

    @property
    def requests(self) -> int:
        """Requests sent to the judge over its life."""
        return self.judge.requests

    @property
    def invalid_verdicts(self) -> Counter[str]:
        """Unreadable verdicts by kind (:data:`VERDICT_PROBLEMS`) over the judge's life."""
        return self.judge.invalid

    def key(self, prompt: str, completion: str, criteria: Sequence[Criterion]) -> str:
        """The cache key: (model, rubric, prompt, completion)."""
        rubric = json.dumps([[c.text, c.points] for c in criteria])
        return cache_key([self.model, rubric, prompt, completion])

    def messages(
        self, prompt: str, completion: str, criteria: Sequence[Criterion] | None = None
    ) -> list[dict[str, str]]:
        """The judge's chat request for one completion (all criteria, numbered; the default
        rubric unless ``criteria`` is given)."""
        criteria = criteria if criteria is not None else self.criteria or ()
        rubric = "\n".join(f"{i}. [{c.points:+g}] {c.text}" for i, c in enumerate(criteria, 1))
        user = (
            f"## Conversation\n{prompt or '(not given)'}\n\n## Response to grade\n{completion}"
            f"\n\n## Rubric\n{rubric}"
        )
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]

    async def score(
        self,
        completions: Sequence[str],
        prompts: Sequence[str],
        rubrics: Sequence[Sequence[Criterion] | None] | None = None,
        *,
        invalid: Counter[str] | None = None,
    ) -> list[float | None]:
        """One score per completion; ``None`` where the judge failed or answered garbage, or
        where the completion has no rubric (neither its own in ``rubrics`` nor the default).
        Unreadable verdicts are counted by kind in ``invalid`` (this call's) and in
        :attr:`invalid_verdicts`."""
        used: list[Sequence[Criterion] | None] = []
        keys: list[str | None] = []
        for i, (c, p) in enumerate(zip(completions, prompts, strict=True)):
            own = rubrics[i] if rubrics is not None else None
            criteria = own if own else self.criteria
            used.append(criteria)
            keys.append(self.key(p, c, criteria) if criteria else None)

        def ask(i: int) -> list[dict[str, str]]:
            return self.messages(prompts[i], completions[i], used[i])

        def read(i: int, text: str) -> Verdict:
            points = [c.points for c in used[i] or ()]
            met, problem = read_verdict(text, len(points))
            return Verdict(problem=problem) if met is None else Verdict(rubric_score(met, points))

        return await self.judge.judge(keys, ask, read, invalid=invalid)


def get_judge(**config: Any) -> RubricJudge:
    """The process-wide judge for a configuration (so its cache lives across steps)."""
    key = json.dumps(config, sort_keys=True, default=str)
    if key not in _JUDGES:
        _JUDGES[key] = RubricJudge(**config)
    return _JUDGES[key]


async def rubric(
    completions: Sequence[Any],
    *,
    criteria: list[dict[str, Any]] | None,
    model: str,
    prompts: Sequence[Any] | None = None,
    base_url: str | list[str] = "http://127.0.0.1:8000/v1",
    api_key_env: str = "OPENAI_API_KEY",
    timeout_s: float = 120.0,
    max_retries: int = 3,
    backoff_base_s: float = 1.0,
    concurrency: int = 16,
    max_tokens: int = 1024,
    cache_path: str | None = None,
    extra_body: dict[str, Any] | None = None,
    log_metric: Any = None,
    **kwargs: Any,
) -> list[float | None]:
    """HealthBench-style rubric reward: an LLM judge says which criteria each completion meets.

    Why: rules catch known patterns only; a rubric states what a good answer does
    (``points > 0``) and what harm looks like (``points < 0``). Score = points of the met
    criteria / sum of the positive points, clamped to [0, 1]. The judge is reached through
    :class:`~medistill.backends.openai_http.OpenAIBackend` (retries, pacing); the API key is
    read from the environment variable ``api_key_env`` and never logged. The judge sees the
    prompt's user text and the completion's answer (after any ``</think>``); a cut-off
    completion is judged as it stands. An HTTP failure or an answer that is not the strict
    JSON gives ``None`` (TRL ignores it), never 0, and is counted.

    Per-question rubrics: a row's own ``rubric`` column (``medistill rubrics``, carried by
    curation; TRL passes it as the ``rubric`` keyword) is used for its completions; a row without
    one falls back to the recipe's ``criteria`` (``criteria: null``: no fallback, such rows are
    unscored). Metrics, via ``log_metric``: ``rubric/from_row``, ``rubric/from_recipe`` and
    ``rubric/none`` (shares of the batch's completions graded with each), ``rubric/unscored``
    (share ``None``), ``rubric/invalid_verdicts`` (unreadable verdicts in the batch) and one
    ``rubric/invalid_verdicts/<kind>`` per kind seen. Async, so TRL runs it concurrently::

        >>> criteria = [{"criterion": "Advises urgent care", "points": 5},
        ...             {"criterion": "Recommends aspirin to a child", "points": -5}]
        >>> asyncio.run(rubric(["Call 911 now."], criteria=criteria, model="gpt-4o-mini",
        ...                    prompts=["Crushing chest pain, sweating."]))  # doctest: +SKIP
        [1.0]
    """
    judge = get_judge(
        criteria=criteria, model=model, base_url=base_url, api_key_env=api_key_env,
        timeout_s=timeout_s, max_retries=max_retries, backoff_base_s=backoff_base_s,
        concurrency=concurrency, max_tokens=max_tokens, cache_path=cache_path,
        extra_body=extra_body,
    )  # fmt: skip
    texts = [completion_text(c).rpartition("</think>")[2] for c in completions]
    ptexts = [prompt_text(p) for p in prompts] if prompts is not None else [""] * len(texts)
    rubrics = _row_rubrics(kwargs.get("rubric"), len(texts))
    invalid: Counter[str] = Counter()
    scores = await judge.score(texts, ptexts, rubrics, invalid=invalid)
    if callable(log_metric) and scores:
        n = len(scores)
        from_row = sum(r is not None for r in rubrics)
        from_recipe = 0 if judge.criteria is None else n - from_row
        log_metric("rubric/from_row", from_row / n)
        log_metric("rubric/from_recipe", from_recipe / n)
        log_metric("rubric/none", (n - from_row - from_recipe) / n)
        log_metric("rubric/unscored", sum(s is None for s in scores) / n)
        log_metric("rubric/invalid_verdicts", float(sum(invalid.values())))
        for kind, k in invalid.items():
            log_metric(f"rubric/invalid_verdicts/{kind}", float(k))
    return scores


def _row_rubrics(column: Sequence[Any] | None, n: int) -> list[tuple[Criterion, ...] | None]:
    """Each completion's own rubric from the dataset's ``rubric`` column (``None``: none; a
    malformed one is warned about and falls back to the recipe's)."""
    if column is None:
        return [None] * n
    out: list[tuple[Criterion, ...] | None] = []
    for i in range(n):
        try:
            out.append(row_criteria(column[i] if i < len(column) else None))
        except ValueError as e:
            log.warning("rubric: row %d's rubric is not usable (%s); using the recipe's", i, e)
            out.append(None)
    return out
