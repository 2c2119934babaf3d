"""Budget control at test time, as m1 and s1 do it: a thinking budget after which the model
is made to answer, and a minimum under which its stop is replaced by "Wait" so it keeps
thinking.

Both continue the model's own assistant turn: the partial answer is sent back as the start
of that turn and generation goes on from it. The transformers and vLLM backends and
OpenAI-compatible servers that continue a final assistant message (vLLM's,
``continue_final_message``; llama.cpp's, which prefills it) can; the llama.cpp in-process
backend and hosted APIs cannot, and a run asking for it there is refused, saying so.

* ``thinking_budget``: an answer still going at that many tokens gets the answer cue (the
  answer line up to its letter, ``The answer is ``; after ``</think>`` when a think block is
  open) and :data:`ANSWER_TOKENS` more tokens to name its letter.
* ``min_thinking_tokens``: an answer that stops sooner gets ``Wait,`` and goes on, at most
  :data:`MAX_WAITS` times, within ``max_new_tokens`` in all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from medistill.backends import FINISH_LENGTH, FINISH_STOP, Generation
from medistill.errors import MedistillError
from medistill.prompts import ANSWER_LINE

ANSWER_TOKENS = 24
MAX_WAITS = 2
WAIT = "\nWait,"
#: Backends that can continue a final assistant turn.
CONTINUES = ("transformers", "vllm", "openai")


def answer_cue(text: str) -> str:
    """What follows a cut-off answer to make it answer: the answer line up to its letter."""
    cue = ANSWER_LINE.split("{letter}")[0]
    open_think = text.rfind("<think>") > text.rfind("</think>")
    return ("\n</think>\n\n" if open_think else "\n\n") + cue


def check(backend_name: str, budget: int | None, minimum: int | None, max_new: int) -> None:
    """Refuse budget settings that cannot mean what they say, naming the key."""
    if budget is None and minimum is None:
        return
    if backend_name not in CONTINUES:
        raise MedistillError(
            f"thinking_budget / min_thinking_tokens need a backend that continues an "
            f"assistant turn ({', '.join(CONTINUES)}; for openai, a vLLM or llama.cpp server); "
            f"the {backend_name} backend cannot"
        )
    if budget is not None and not 0 < budget < max_new:
        raise MedistillError(f"thinking_budget must be > 0 and < max_new_tokens ({max_new})")
    if minimum is not None and not 0 < minimum < max_new:
        raise MedistillError(f"min_thinking_tokens must be > 0 and < max_new_tokens ({max_new})")


def generate_budgeted(
    backend: Any,
    msgs: list[list[dict[str, str]]],
    params: Any,
    on_result: Callable[[int, Generation, dict[str, Any]], None],
    *,
    budget: int | None,
    minimum: int | None,
    chunk: int = 64,
) -> None:
    """Generate every conversation under the budget rules, calling ``on_result(index,
    generation, control)`` as each one ends; ``control`` says what was done
    (``forced_answer``, ``waits``). Token counts and latency add up over the phases."""
    for start in range(0, len(msgs), chunk):
        idx = list(range(start, min(start + chunk, len(msgs))))
        first = replace(params, max_new_tokens=budget or params.max_new_tokens)
        gens = backend.generate([msgs[i] for i in idx], first)
        state = {
            i: (g.text, g, {"forced_answer": False, "waits": 0})
            for i, g in zip(idx, gens, strict=True)
        }
        for _ in range(MAX_WAITS):  # "Wait": too short a stop goes on thinking
            short = [
                i for i, (_, g, _) in state.items()
                if minimum and g.finish_reason == FINISH_STOP and g.output_tokens < minimum
            ]  # fmt: skip
            if not short:
                break
            _continue(backend, msgs, params, state, short, WAIT, None)
            for i in short:
                state[i][2]["waits"] += 1
        if budget:
            over = [i for i, (_, g, _) in state.items() if g.finish_reason == FINISH_LENGTH]
            for i in over:
                state[i][2]["forced_answer"] = True
            _continue(backend, msgs, params, state, over, None, ANSWER_TOKENS)
        for i in idx:
            text, g, control = state[i]
            on_result(i, replace(g, text=text), control)


def _continue(backend, msgs, params, state, which, suffix, max_new) -> None:
    """Continue each conversation in ``which`` from its text plus ``suffix`` (or the answer
    cue), updating ``state`` in place."""
    if not which:
        return
    texts = {
        i: state[i][0] + (suffix if suffix is not None else answer_cue(state[i][0])) for i in which
    }
    used = {i: state[i][1].output_tokens for i in which}
    room = max_new or max(1, params.max_new_tokens - max(used.values()))
    turns = [[*msgs[i], {"role": "assistant", "content": texts[i]}] for i in which]
    gens = backend.generate(turns, replace(params, max_new_tokens=room))
    for i, g in zip(which, gens, strict=True):
        prev = state[i][1]
        merged = replace(
            g,
            output_tokens=(prev.output_tokens or 0) + (g.output_tokens or 0),
            prompt_tokens=prev.prompt_tokens,
            latency_s=(prev.latency_s or 0.0) + (g.latency_s or 0.0),
        )
        state[i] = (texts[i] + g.text, merged, state[i][2])
