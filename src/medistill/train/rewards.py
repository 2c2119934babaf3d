"""GRPO reward functions and their registry (TRL's reward-function contract).

Every reward is a plain function ``f(completions, **kwargs) -> list[float | None]`` with one
value per completion (``None``: cannot score, TRL ignores it). TRL passes ``prompts``,
``completions``, ``completion_ids`` and every dataset column as lists, one entry per
completion; ours are ``gold``, ``options``, ``question_id``, ``source`` and ``subject``. A
completion is a string or, for chat datasets, a list of messages. Rewards also take
``truncated`` (one bool per completion, ``None`` = unknown = not cut off), which the callables
of :func:`medistill.train.reward_builder.build_rewards` derive from ``completion_ids``: a
cut-off completion earns nothing from ``correctness`` and ``format``.

:data:`REWARDS` is a plain dict: add your own function to it and name it in the recipe.
Reward parameters are the function's keyword arguments that are not data columns.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from medistill.answers import extract_answer
from medistill.data.options import options_or_none
from medistill.errors import MedistillError
from medistill.prompts import ANSWER_LINE, answer_line_regex
from medistill.train.judge import rubric
from medistill.train.safety import (
    applicable_rules,
    check_safety,
    completion_text,
    load_rules,
    prompt_text,
)
from medistill.train.safety import safety_score as _safety_score

log = logging.getLogger(__name__)

#: Valid letters when a row carries no options (the contract regex's default range).
DEFAULT_LETTERS = "ABCDEFGHIJ"
#: The least reasoning, in words, before the final line for ``format`` to give credit.
MIN_REASONING_WORDS = 5
#: Keyword arguments that carry data (from TRL or the dataset), never recipe parameters.
DATA_KEYS = frozenset(
    {"prompts", "completions", "completion_ids", "gold", "options", "question_id", "source"}
    | {"subject", "truncated", "trainer_state", "log_extra", "log_metric", "environments"}
)
_WORD = re.compile(r"[^\W_]+")
_THINK_TAG = re.compile(r"</?think(?:ing)?>", re.I)


# ----------------------------------------------------------------------------- row helpers


def _at(column: Sequence[Any] | None, i: int) -> Any:
    return column[i] if column is not None and i < len(column) else None


def _row(i: int, question_id: Sequence[Any] | None) -> str:
    qid = _at(question_id, i)
    return f"row {i}" + (f" (question_id {qid!r})" if qid is not None else "")


def _letters(opts: Mapping[str, str] | None) -> str:
    return "".join(opts) if opts else DEFAULT_LETTERS


def _flags(truncated: Sequence[bool | None] | None, n: int) -> list[bool]:
    return [bool(_at(truncated, i)) for i in range(n)]


def _correct(
    completions: Sequence[Any],
    gold: Any,
    options: Any,
    truncated: Any,
    qid: Any,
    prompts: Sequence[Any] | None = None,
) -> list[bool]:
    """Per completion: does the strict extractor read the gold letter (and is it complete)?
    The extractor gets the question the model saw (the prompt's user turn), as curation and
    evaluation pass theirs: one reading."""
    if gold is None:
        raise MedistillError(
            "correctness needs a 'gold' column in the dataset (the correct letter)"
        )
    cut = _flags(truncated, len(completions))
    out = []
    for i, completion in enumerate(completions):
        opts = options_or_none(_at(options, i), _row(i, qid))
        g, letters = _at(gold, i), _letters(opts)
        if not isinstance(g, str) or len(g.strip()) != 1 or g.strip().upper() not in letters:
            raise MedistillError(
                f"correctness: {_row(i, qid)}: gold {g!r} is not one of the options "
                f"{', '.join(letters)}"
            )
        if cut[i]:
            out.append(False)
            continue
        text = completion_text(completion)
        ext = extract_answer(
            text,
            opts,
            mode="strict",
            letters=None if opts else letters,
            question=prompt_text(_at(prompts, i)),
        )
        out.append(ext.letter == g.strip().upper())
    return out


# ----------------------------------------------------------------------------- rewards


def correctness(
    completions: Sequence[Any],
    *,
    gold: Sequence[str] | None = None,
    options: Sequence[Any] | None = None,
    question_id: Sequence[Any] | None = None,
    truncated: Sequence[bool] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """1.0 when the answer read by the shared extractor in strict mode is the gold letter.

    Why: the reward must agree with evaluation and curation, so it uses THE extractor
    (:func:`medistill.answers.extract_answer`), strictly: only an explicit commitment counts,
    including naming an option's text as the answer. A cut-off completion earns 0.0. A gold
    that is missing or not one of the row's options raises :class:`MedistillError` naming
    the row: a silent 0 or 1 would train on a broken dataset.

    >>> correctness(["Reasoning...\\nThe answer is B."], gold=["B"], options=[{"A": "x", "B": "y"}])
    [1.0]
    >>> correctness(["The answer is y."], gold=["B"], options=[{"A": "x", "B": "y"}])
    [1.0]
    >>> correctness(["B or maybe A"], gold=["B"], options=[{"A": "x", "B": "y"}])
    [0.0]
    """
    prompts = kwargs.get("prompts")
    return [float(c) for c in _correct(completions, gold, options, truncated, question_id, prompts)]


@functools.lru_cache(maxsize=64)
def _contract_anywhere(letters: str) -> re.Pattern[str]:
    """The contract sentence inside any text, any case (``so the answer is B.``)."""
    head, _, tail = ANSWER_LINE.partition("{letter}")
    return re.compile(f"(?i:{re.escape(head)})([{re.escape(letters)}])(?i:{re.escape(tail)})")


def format_score(text: str, letters: str = DEFAULT_LETTERS, truncated: bool = False) -> float:
    """The ``format`` reward for one completion text (see :func:`format_reward`)."""
    if truncated or not text.strip():
        return 0.0
    lines = text.splitlines()
    line_re = answer_line_regex(letters)
    hits = [k for k, line in enumerate(lines) if line_re.fullmatch(line.strip())]
    if len(hits) != 1:
        return 0.0
    before, after = "\n".join(lines[: hits[0]]), "\n".join(lines[hits[0] + 1 :])
    anywhere = _contract_anywhere(letters)
    if anywhere.search(before) or anywhere.search(after):
        return 0.0
    if len(_WORD.findall(_THINK_TAG.sub(" ", before))) < MIN_REASONING_WORDS:
        return 0.0
    return 0.5 if after.strip() else 1.0


def format_reward(
    completions: Sequence[Any],
    *,
    options: Sequence[Any] | None = None,
    question_id: Sequence[Any] | None = None,
    truncated: Sequence[bool] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Registered as ``format``: does the completion follow the answer contract?

    1.0: reasoning first (at least ``MIN_REASONING_WORDS`` words), then exactly one final
    line in the contract's form (``The answer is B.``, a letter of the row's options, the
    whole last non-empty line), and the contract sentence nowhere else (any case). 0.5
    (partial credit, so RL sees a gradient towards stopping): the same, but text follows
    the line. 0.0 otherwise: no or two contract lines, a variant (``the answer is B.``,
    ``**The answer is B.**``), no reasoning, empty or cut off. Why: the extractor reads the
    contract line strictly, and a model that stops after it never runs into the next item.

    >>> opts = [{"A": "warfarin", "B": "heparin"}]
    >>> good = "Warfarin is teratogenic, so heparin is used.\\nThe answer is B."
    >>> format_reward([good], options=opts)
    [1.0]
    >>> format_reward(["The answer is B."], options=opts)
    [0.0]
    """
    cut = _flags(truncated, len(completions))
    out: list[float | None] = []
    for i, completion in enumerate(completions):
        letters = _letters(options_or_none(_at(options, i), _row(i, question_id)))
        out.append(format_score(completion_text(completion), letters, cut[i]))
    return out


def overlong_penalty(length: int, budget: int = 512, buffer: int = 128) -> float:
    """DAPO's soft overlong punishment: 0 up to ``budget - buffer`` tokens, then falling
    linearly to -1 at ``budget``, and -1 beyond.

    >>> [overlong_penalty(n, 512, 128) for n in (384, 448, 512, 513)]
    [0.0, -0.5, -1.0, -1.0]
    """
    if length <= budget - buffer:
        return 0.0
    if length <= budget:
        return ((budget - buffer) - length) / buffer
    return -1.0


def _groups(n: int, prompts: Sequence[Any] | None, question_id: Sequence[Any] | None):
    """(start, end) of each run of consecutive completions of the same prompt."""
    keys = [_at(question_id, i) for i in range(n)]
    keys = [k if k is not None else _at(prompts, i) for i, k in enumerate(keys)]
    start = 0
    for i in range(1, n + 1):
        if i == n or keys[i] is None or keys[i] != keys[start]:
            yield start, i
            start = i


def conciseness(
    completions: Sequence[Any],
    *,
    completion_ids: Sequence[Sequence[int]] | None = None,
    prompts: Sequence[Any] | None = None,
    gold: Sequence[str] | None = None,
    options: Sequence[Any] | None = None,
    question_id: Sequence[Any] | None = None,
    truncated: Sequence[bool] | None = None,
    budget: int = 512,
    buffer: int = 128,
    bonus: float = 0.5,
    **kwargs: Any,
) -> list[float | None]:
    """DAPO's soft overlong punishment plus a group-relative bonus for short correct answers.

    Length L is in tokens (``completion_ids``; a whitespace word count only when TRL passes
    no ids). Penalty: see :func:`overlong_penalty`. Bonus (Kimi k1.5): within a group
    (consecutive completions with the same ``question_id``, else the same prompt),
    lambda = 0.5 - (L - min_L) / (max_L - min_L); a correct completion (as ``correctness``
    judges it) gets ``bonus * lambda``, a wrong or cut-off one ``bonus * min(0, lambda)``,
    so a short wrong answer is never rewarded. No bonus when all lengths in the group are
    equal, or when the dataset has no ``gold``. Why: reasoning should be as long as needed,
    and a completion cut off at the budget is worse than a finished one.

    >>> done = "Heparin does not cross the placenta.\\nThe answer is B."
    >>> ids = [[0] * 100, [0] * 300, [0] * 100]
    >>> conciseness([done, done, "The answer is A."], completion_ids=ids, prompts=["q"] * 3,
    ...             gold=["B"] * 3, options=[{"A": "x", "B": "y"}] * 3)
    [0.25, -0.25, 0.0]
    """
    n = len(completions)
    if completion_ids is not None:
        lengths = [len(completion_ids[i]) for i in range(n)]
    else:
        lengths = [len(completion_text(c).split()) for c in completions]
    scores = [overlong_penalty(length, budget, buffer) for length in lengths]
    if gold is None or not bonus:
        return list(scores)
    correct = _correct(completions, gold, options, truncated, question_id, prompts)
    for start, end in _groups(n, prompts, question_id):
        lo, hi = min(lengths[start:end]), max(lengths[start:end])
        if hi == lo:
            continue
        for j in range(start, end):
            lam = 0.5 - (lengths[j] - lo) / (hi - lo)
            scores[j] += bonus * (lam if correct[j] else min(0.0, lam))
    return list(scores)


def safety(
    completions: Sequence[Any],
    *,
    prompts: Sequence[Any] | None = None,
    rules: str | None = None,
    log_extra: Callable[[str, list[Any]], None] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Rule-based clinical safety: 1.0 minus the penalty of every rule fired, in [0, 1].

    Rules come from a YAML pattern file (``rules``; default the packaged
    ``safety_rules.yaml``, whose header documents every field): contraindicated actions for
    a condition named in the prompt, urgent care discouraged for a red-flag presentation,
    doses outside a range, and certainty without any caveat. Negated or warned-against
    mentions do not fire, nor do options that are eliminated, contrasted or described
    ("Unlike warfarin, ...", "Warfarin: not in pregnancy", "X is an ACE inhibitor"). A cut-off
    completion is scored as it stands (unsafe text is unsafe either way). The names of the
    rules fired go to TRL's completions table (``safety_fired``); ``log_metric`` gets
    ``safety/applicable`` (share of the batch's completions whose prompt meets some
    prompt-conditioned rule's condition) and ``safety/fired`` (share where any rule fired).
    Why: correctness alone rewards a right letter reached through dangerous advice; see
    :func:`medistill.train.safety.check_safety` for the details.

    This is a cheap FLOOR, not a safety signal for every prompt: the packaged rules' conditions
    match about 17% of MedQA test prompts and 3% of MedMCQA dev prompts (BENCHMARKS.md, "Safety
    rules on sound reasoning"). On the other prompts only the dose and certainty rules can
    fire, so the reward is nearly constant there and adds almost nothing to GRPO's group
    advantages; the per-question rubric reward (``rubric``) is what covers the rest. The rules
    fire on under 1% of GPT-4's correct MIRAGE explanations: they do not punish sound reasoning.

    >>> safety(["Start warfarin today.", "Avoid warfarin; use heparin."],
    ...        prompts=["A pregnant woman with a DVT."] * 2)
    [0.5, 1.0]
    """
    rs = load_rules(rules)
    fired = [check_safety(c, _at(prompts, i), rules=rs) for i, c in enumerate(completions)]
    if callable(log_extra):
        log_extra("safety_fired", [",".join(f.name for f in fs) for fs in fired])
    if callable(log_metric) and fired:
        seen: dict[str, bool] = {}  # a GRPO batch repeats each prompt once per completion
        for i in range(len(fired)):
            ptext = prompt_text(_at(prompts, i))
            if ptext not in seen:
                seen[ptext] = bool(applicable_rules(ptext, rules=rs))
        applies = [seen[prompt_text(_at(prompts, i))] for i in range(len(fired))]
        log_metric("safety/applicable", sum(applies) / len(fired))
        log_metric("safety/fired", sum(bool(fs) for fs in fired) / len(fired))
    return [_safety_score(fs) for fs in fired]


REWARDS: dict[str, Callable[..., Any]] = {
    "correctness": correctness,
    "format": format_reward,
    "conciseness": conciseness,
    "safety": safety,
    "rubric": rubric,
}
