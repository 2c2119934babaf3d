"""One rule for a degenerate repetition loop, shared by every backend.

A thinking model decoded greedily (or a weak student) can repeat one short passage until the
token budget ends it. The transformers backend stops such a loop while decoding
(:func:`medistill.backends.hf_decode.stream_decode`); vLLM stops it in its scheduler where
the installed version can (``SamplingParams.repetition_detection``, see
:func:`vllm_repetition_detection`); and every answer that ran to its budget is checked
afterwards by :func:`mark_loop`, on its token ids where the backend returns them, else on
its text. Either way the answer's finish reason is ``repetition``: cut off, like ``length``,
and counted in the run's ``repetition_rate`` as well as its ``truncation_rate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medistill.backends.base import FINISH_LENGTH, FINISH_REPETITION, Generation


@dataclass(frozen=True)
class LoopRule:
    """When a generation counts as a degenerate repetition loop.

    The last ``min_span`` or more tokens must repeat one period of at most ``max_period``
    tokens, at least ``min_repeats`` times over. ``"The answer is A. " * 40`` qualifies;
    a numbered list, a table or a repeated phrase inside varied text does not.
    """

    min_span: int = 96
    min_repeats: int = 4
    max_period: int = 200
    check_every: int = 16

    def period(self, tokens: Sequence) -> int | None:
        """The period of a loop that ``tokens`` end in, or ``None``.

        ``LoopRule().period([1, 2, 3] * 40) == 3``; ``LoopRule().period(list(range(300)))``
        is ``None``. Any sequence of comparable items works (token ids, characters).
        """
        n = len(tokens)
        if n < self.min_span:
            return None
        window = np.asarray(tokens[-min(n, self.max_period * (self.min_repeats + 1)) :])
        m = len(window)
        for p in range(1, min(self.max_period, m // self.min_repeats) + 1):
            same = window[p:] == window[:-p]
            # Length of the repeating suffix: trailing run of matches, plus one period.
            mismatch = np.flatnonzero(~same)
            run = len(same) - (mismatch[-1] + 1 if len(mismatch) else 0)
            span = run + p
            if span >= max(self.min_span, self.min_repeats * p):
                return p
        return None


#: The rule on token ids (transformers, vLLM).
TOKEN_RULE = LoopRule()
#: The same rule on characters, for backends that return text only (HTTP, llama.cpp): a
#: token is about four characters of English, so spans and periods are four times longer.
TEXT_RULE = LoopRule(min_span=4 * TOKEN_RULE.min_span, max_period=4 * TOKEN_RULE.max_period)


def mark_loop(g: Generation, token_ids: Sequence[int] | None = None) -> Generation:
    """``g`` with finish reason ``repetition`` when it ran to its budget (``length``) inside
    a loop under :data:`TOKEN_RULE` (on ``token_ids``) or :data:`TEXT_RULE` (on its text,
    when no ids are given); otherwise ``g`` unchanged. An answer that ended on its own is
    never relabelled: only the kind of cut-off changes, never whether it was cut off."""
    if g.finish_reason != FINISH_LENGTH:
        return g
    if token_ids is not None:
        looping = TOKEN_RULE.period(list(token_ids)) is not None
    else:
        looping = TEXT_RULE.period(list(g.full_text())) is not None
    return dataclasses.replace(g, finish_reason=FINISH_REPETITION) if looping else g


def vllm_repetition_detection(params_class: type | None) -> object | None:
    """vLLM's own loop stop (``SamplingParams.repetition_detection``, vLLM 0.31 and 0.33:
    ``RepetitionDetectionParams(max_pattern_size, min_pattern_size, min_count)``, finish
    reason ``repetition``) set to stop only loops :data:`TOKEN_RULE` also calls loops: a
    period of 8 to 200 tokens repeated 12 times (at least 96 tokens, at least 4 repeats),
    so a stopped answer and a post-hoc flagged one mean the same. Shorter periods (a run of
    one character) run to the budget and are flagged afterwards. ``None`` when the
    installed vLLM has no such class (it is passed as ``params_class``)."""
    if params_class is None:
        return None
    min_period = 8
    return params_class(
        max_pattern_size=TOKEN_RULE.max_period,
        min_pattern_size=min_period,
        min_count=max(TOKEN_RULE.min_repeats, -(-TOKEN_RULE.min_span // min_period)),
    )
