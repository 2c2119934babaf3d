"""The optional rubric judge for the GRPO ``rubric`` reward (HealthBench-style).

An LLM behind the existing OpenAI-compatible backend reads a completion and says which criteria
of a rubric from the recipe it meets; the score is the points of met criteria over the sum of
positive points, harmful (negative-point) criteria subtracting, clamped to [0, 1]. Async and
cached by (prompt, completion, rubric, judge model); a failed or unreadable judgement gives
``None`` (TRL ignores it), never 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medistill.errors import MedistillError
from medistill.train.safety import Where, completion_text, prompt_text

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- rubric judge

JUDGE_SYSTEM = (
    "You grade a medical assistant's response against a rubric. For each numbered criterion, "
    "decide whether the response meets it; a criterion that describes harmful behaviour is met "
    "when the response shows that behaviour. Reply with only this JSON object and nothing else: "
    '{"criteria": [{"id": 1, "met": true}, {"id": 2, "met": false}]}, with one entry per '
    "criterion, ids as numbered in the rubric."
)
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


def rubric_score(met: Sequence[bool], points: Sequence[float]) -> float:
    """HealthBench's score: points of the met criteria over the positive points, in [0, 1].

    >>> rubric_score([True, False, True], [5, 3, -2])  # (5 - 2) / (5 + 3)
    0.375
    """
    total = sum(p for p in points if p > 0)
    return min(1.0, max(0.0, sum(p for m, p in zip(met, points, strict=True) if m) / total))


def parse_verdict(content: str, n: int) -> list[bool] | None:
    """One bool per criterion from the judge's reply, or ``None`` unless the reply is exactly
    the JSON asked for (ids 1..n once each, ``met`` a JSON boolean; a code fence is allowed).

    >>> parse_verdict('{"criteria": [{"id": 2, "met": false}, {"id": 1, "met": true}]}', 2)
    [True, False]
    >>> parse_verdict('Criterion 1 is met.', 1) is None
    True
    """
    s = content.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", s, re.S)
    try:
        data = json.loads(fence.group(1) if fence else s)
    except ValueError:
        return None
    items = data.get("criteria") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != n:
        return None
    met: dict[int, bool] = {}
    for it in items:
        if not isinstance(it, dict) or type(it.get("id")) is not int:
            return None
        if not isinstance(it.get("met"), bool):
            return None
        met[it["id"]] = it["met"]
    return [met[i] for i in range(1, n + 1)] if sorted(met) == list(range(1, n + 1)) else None


class RubricJudge:
    """Grades completions against one rubric with an LLM over the OpenAI-compatible backend.

    One request per completion carries every criterion: a GRPO step scores G completions
    per prompt, and one request instead of one per criterion divides the judge's cost and
    latency by the rubric's length while the judge still answers per criterion. Scores are
    cached by (prompt, completion, rubric, model) in memory and, with ``cache_path``, in
    SQLite; failures are not cached, so they are retried on the next occurrence.
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
        self.criteria = parse_criteria(criteria)
        if not isinstance(model, str) or not model:
            raise MedistillError("rewards.rubric: field 'model': the judge model name is required")
        self.model, self.concurrency, self.max_tokens = model, concurrency, max_tokens
        from medistill.backends.config import BackendConfig

        # The judge is configured like a teacher or a model under test: one backend config,
        # checked by key now rather than at the first GRPO step.
        try:
            self.backend_config = BackendConfig(
                model=model, backend="openai", concurrency=concurrency, **backend_kwargs
            )
        except (TypeError, ValueError) as e:
            raise MedistillError(f"rewards.rubric: {e}") from None
        self.requests = 0
        self._rubric = json.dumps([[c.text, c.points] for c in self.criteria])
        self._memory: dict[str, float] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if cache_path:
            try:
                self._db = sqlite3.connect(cache_path, check_same_thread=False)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS rubric_cache (key TEXT PRIMARY KEY, score REAL)"
                )
                self._db.commit()
            except sqlite3.Error as e:
                raise MedistillError(f"rubric cache {cache_path}: {e}") from None

    def _key(self, prompt: str, completion: str) -> str:
        blob = json.dumps([self.model, self._rubric, prompt, completion])
        return hashlib.sha256(blob.encode()).hexdigest()

    def _get(self, key: str) -> float | None:
        with self._lock:
            if key not in self._memory and self._db is not None:
                sql = "SELECT score FROM rubric_cache WHERE key = ?"
                row = self._db.execute(sql, (key,)).fetchone()
                if row:
                    self._memory[key] = row[0]
            return self._memory.get(key)

    def _put(self, key: str, score: float) -> None:
        with self._lock:
            self._memory[key] = score
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO rubric_cache VALUES (?, ?)", (key, score))
                self._db.commit()

    def messages(self, prompt: str, completion: str) -> list[dict[str, str]]:
        """The judge's chat request for one completion (all criteria, numbered)."""
        rubric = "\n".join(f"{i}. [{c.points:+g}] {c.text}" for i, c in enumerate(self.criteria, 1))
        user = (
            f"## Conversation\n{prompt or '(not given)'}\n\n## Response to grade\n{completion}"
            f"\n\n## Rubric\n{rubric}"
        )
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]

    async def score(self, completions: Sequence[str], prompts: Sequence[str]) -> list[float | None]:
        """One score per completion; ``None`` where the judge failed or answered garbage."""
        from medistill.backends.base import SamplingParams

        out: list[float | None] = [None] * len(completions)
        todo: dict[str, list[int]] = {}  # identical completions are judged once
        for i, (c, p) in enumerate(zip(completions, prompts, strict=True)):
            key = self._key(p, c)
            out[i] = self._get(key)
            if out[i] is None:
                todo.setdefault(key, []).append(i)
        if not todo:
            return out
        backend = self.backend_config.build()
        params = SamplingParams(max_new_tokens=self.max_tokens, temperature=0.0, seed=0)
        sem = asyncio.Semaphore(self.concurrency)
        points = [c.points for c in self.criteria]

        async def one(i: int) -> float | None:
            async with sem:
                self.requests += 1
                try:
                    gen = await backend.complete(self.messages(prompts[i], completions[i]), params)
                except MedistillError as e:  # HTTP failure after retries: unscored, not 0
                    log.warning("rubric judge %s: %s", self.model, backend.scrub(str(e)))
                    return None
            met = parse_verdict(gen.text, len(points))
            if met is None:
                log.warning("rubric judge %s: unparsable verdict %r", self.model, gen.text[:200])
                return None
            return rubric_score(met, points)

        async with backend.session():
            results = await asyncio.gather(*(one(idx[0]) for idx in todo.values()))
        for (key, idx), score in zip(todo.items(), results, strict=True):
            if score is not None:
                self._put(key, score)
                for i in idx:
                    out[i] = score
        return out


def get_judge(**config: Any) -> RubricJudge:
    """The process-wide judge for a configuration (so its cache lives across steps)."""
    key = json.dumps(config, sort_keys=True, default=str)
    if key not in _JUDGES:
        _JUDGES[key] = RubricJudge(**config)
    return _JUDGES[key]


async def rubric(
    completions: Sequence[Any],
    *,
    criteria: list[dict[str, Any]],
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
    JSON gives ``None`` (TRL ignores it), never 0. Async, so TRL runs it concurrently::

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
    scores = await judge.score(texts, ptexts)
    if callable(log_metric) and scores:
        log_metric("rubric/unscored", sum(s is None for s in scores) / len(scores))
    return scores
