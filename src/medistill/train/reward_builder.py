"""From a recipe's ``rewards:`` section to TRL reward callables: each registered reward of
:mod:`medistill.train.rewards` bound to its parameters, with ``truncated`` derived from the
completion ids, an unknown name answered with the valid ones, async rewards kept async."""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from medistill.errors import MedistillError
from medistill.train.judge import RubricJudge
from medistill.train.rewards import DATA_KEYS, REWARDS, conciseness
from medistill.train.safety_rules import load_rules

log = logging.getLogger(__name__)


def reward_params(fn: Callable[..., Any]) -> dict[str, Any]:
    """A reward's recipe parameters and defaults: its keyword arguments that are not data.

    >>> reward_params(conciseness)
    {'budget': 512, 'buffer': 128, 'bonus': 0.5}
    """
    params = inspect.signature(fn).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in DATA_KEYS
        and p.name != "completions"
    }


def truncation_flags(
    completion_ids: Sequence[Sequence[int]],
    max_completion_length: int,
    eos_token_ids: Sequence[int] = (),
) -> list[bool]:
    """Cut-off completions: as long as the budget and not ending in an EOS token.

    >>> truncation_flags([[5, 6, 2], [5, 6, 7], [5]], 3, eos_token_ids=[2])
    [False, True, False]
    """
    eos = {int(e) for e in eos_token_ids}
    return [len(ids) >= max_completion_length and int(ids[-1]) not in eos for ids in completion_ids]


class _Bound:
    """A registry function with its recipe parameters bound; derives ``truncated``.

    A class instance (not a closure) so it pickles; ``__name__`` is the registry name, which
    TRL logs as ``rewards/<name>/mean``.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        params: dict[str, Any],
        max_len: int | None,
        eos: Sequence[int],
    ) -> None:
        self.__name__ = self.__qualname__ = name
        self.__doc__ = fn.__doc__
        self.fn, self.params, self.max_len, self.eos = fn, params, max_len, tuple(eos)

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        ids = kwargs.get("completion_ids")
        if kwargs.get("truncated") is None and ids is not None and self.max_len:
            kwargs["truncated"] = truncation_flags(ids, self.max_len, self.eos)
        return {**kwargs, **self.params}

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        return self.fn(completions, **self._kwargs(kwargs))

    def __repr__(self) -> str:
        return f"<reward {self.__name__} {self.params}>"


class _AsyncBound(_Bound):
    """:class:`_Bound` for an async reward (TRL awaits those concurrently)."""

    async def __call__(  # type: ignore[override]
        self, completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        return await self.fn(completions, **self._kwargs(kwargs))


def _check(name: str, params: dict[str, Any], rules_path: str | None) -> None:
    """Validate what can be validated before training starts (not at the first step)."""
    if name == "conciseness":
        values = {**reward_params(conciseness), **params}
        for key in ("budget", "buffer", "bonus"):
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise MedistillError(f"rewards.conciseness: {key} must be a number >= 0, got {v!r}")
        if not 0 < values["buffer"] <= values["budget"]:
            raise MedistillError("rewards.conciseness: need 0 < buffer <= budget")
    elif name == "safety":
        params.setdefault("rules", rules_path)
        load_rules(params["rules"])
    elif name == "rubric":
        for key in ("criteria", "model"):
            if key not in params:
                hint = (
                    " (the recipe's rubric, for rows without one of their own; null: grade "
                    "only rows with a per-question rubric, from medistill rubrics)"
                    if key == "criteria"
                    else ""
                )
                raise MedistillError(f"rewards.rubric: {key!r} is required{hint}")
        # Validates the rubric and opens the SQLite cache, if any.
        RubricJudge(params["criteria"], model=params["model"], cache_path=params.get("cache_path"))
        if params["criteria"] is None:
            log.info("rewards.rubric: criteria null: a row without its own rubric is unscored")


def is_async_reward(fn: Any) -> bool:
    """As TRL decides: a coroutine function, a partial of one, or an async ``__call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def build_rewards(
    spec: Mapping[str, float | Mapping[str, Any]],
    *,
    max_completion_length: int | None = None,
    eos_token_ids: Sequence[int] = (),
    rules_path: str | None = None,
) -> tuple[list[Callable[..., Any]], list[float]]:
    """The reward callables and weights, in order, for a recipe's ``rewards:`` mapping.

    ``spec`` maps a registry name to a weight or to ``{weight: w, <parameters>}``. Each
    callable is named after its registry key, binds its parameters and derives
    ``truncated`` from ``completion_ids`` (length >= ``max_completion_length`` and no
    final EOS id) when the caller does not pass it. ``rules_path`` is the default rule file
    of ``safety``. Errors name the bad key: an unknown reward (with the closest name), an
    unknown parameter (with the valid ones) or a weight that is not a number.

    >>> spec = {"correctness": 1.0, "conciseness": {"weight": 0.2, "budget": 384}}
    >>> funcs, weights = build_rewards(spec)
    >>> [f.__name__ for f in funcs], weights
    (['correctness', 'conciseness'], [1.0, 0.2])
    """
    funcs: list[Callable[..., Any]] = []
    weights: list[float] = []
    for name, value in spec.items():
        if name not in REWARDS:
            close = difflib.get_close_matches(str(name), list(REWARDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MedistillError(f"unknown reward {name!r}{hint}; valid: {', '.join(REWARDS)}")
        params = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weight = params.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise MedistillError(f"rewards.{name}: weight must be a number, got {weight!r}")
        fn = REWARDS[name]
        valid = reward_params(fn)
        for key in params:
            if key not in valid:
                raise MedistillError(
                    f"rewards.{name}: unknown parameter {key!r}; valid: "
                    f"{', '.join(['weight', *valid])}"
                )
        _check(name, params, rules_path)
        cls = _AsyncBound if is_async_reward(fn) else _Bound
        funcs.append(cls(name, fn, params, max_completion_length, eos_token_ids))
        weights.append(float(weight))
        log.debug("reward %s: weight %s, parameters %s", name, weight, sorted(params))
    return funcs, weights
