"""In-process llama.cpp (llama-cpp-python) on a GGUF file: the quantised student on a CPU, no
server. Imported only when this backend is chosen (``pip install 'medistill[serve]'``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medistill.backends.base import Generation, Messages, SamplingParams
from medistill.backends.llamacpp_batch import CTX_STEP, ParallelDecoder
from medistill.errors import MedistillError
from medistill.prompts import ChoiceRequest

log = logging.getLogger(__name__)


#: Conversations decoded at once when ``n_parallel`` is not set (measured in
#: benchmarks/gguf_throughput.py).
DEFAULT_N_PARALLEL = 8


class LlamaCppBackend:
    """A GGUF under llama.cpp with its own chat template. Generation decodes ``n_parallel``
    conversations at once on one context (:mod:`medistill.backends.llamacpp_batch`:
    continuous, a finished answer's slot takes the next conversation). At ``n_parallel`` 1,
    greedy answers are the tokens of ``create_chat_completion`` (and of ``medistill serve``);
    with several sequences the batched matrix products round differently and can flip a
    near-tie (SmolLM2 on 8 MedQA questions, n_parallel 8 against 1: q8_0 7 of 8 texts and 8
    of 8 letters the same, q4_k_m 6 and 7). Penalties are neutral, so greedy means greedy.
    Scoring (:meth:`score_choices`, :meth:`score_branches`) runs on the model's own
    one-sequence context."""

    name = "llamacpp"

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_parallel: int | None = None,
        **_: Any,
    ) -> None:
        path = Path(model)
        if path.is_dir() or path.suffix != ".gguf":
            raise MedistillError(
                f"backend llamacpp reads one .gguf file, not {model!r}; make one with "
                f"`medistill export-model --model {model} --format gguf`"
            )
        if not path.is_file():
            raise MedistillError(f"backend llamacpp: no such file {model}")
        n_parallel = DEFAULT_N_PARALLEL if n_parallel is None else n_parallel
        if n_parallel < 1:
            raise MedistillError(
                f"backend llamacpp: n_parallel must be at least 1, not {n_parallel}"
            )
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise MedistillError(
                "backend llamacpp needs llama-cpp-python: pip install 'medistill[serve]'"
            ) from e
        self.model = str(path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_parallel = n_parallel
        self._decoder: ParallelDecoder | None = None
        self.llm = Llama(
            model_path=self.model,
            n_ctx=n_ctx,
            n_threads=self.n_threads,
            verbose=False,
        )

    def preferred_batch_size(self) -> int:
        """``n_parallel``: the conversations decoded together."""
        return self.n_parallel

    def close(self) -> None:
        """Free the llama.cpp model and contexts (idempotent)."""
        decoder, self._decoder = getattr(self, "_decoder", None), None
        if decoder is not None:
            decoder.close()
        llm, self.llm = getattr(self, "llm", None), None
        close = getattr(llm, "close", None)  # llama-cpp-python >= 0.2.59
        if callable(close):
            close()

    def chat_prompt(self, messages: Messages) -> str:
        """The prompt text of ``messages`` under the GGUF's own chat template (a final
        assistant turn is continued, not closed), for :meth:`score_choices`."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if messages and messages[-1].get("role") == "assistant":
            return self.chat_prompt(messages[:-1]) + messages[-1]["content"]
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
            return "\n\n".join(parts) + "\n\nAssistant:"
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template,
            eos_token=self.llm.detokenize([eos], special=True).decode() if eos != -1 else "",
            bos_token=self.llm.detokenize([bos], special=True).decode() if bos != -1 else "",
        )
        return formatter(messages=messages).prompt

    def score_choices(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        """Log-likelihood of each continuation after its context, per request (as the
        transformers backend scores them: trailing spaces move to the continuation).

        The context is evaluated once, reusing the KV cache of the tokens it shares with the
        previous one (a reasoning cut at 25% then 50% is evaluated once); each continuation
        token is then read from the last position's logits, one token at a time."""
        out = []
        for req in requests:
            pairs = req.token_pairs(lambda text, r=req: self._tokenize(text, r.add_bos))
            out.append({key: self._loglik(ctx, cont) for key, (ctx, cont) in pairs.items()})
        return out

    def _tokenize(self, text: str, add_bos: bool | None) -> list[int]:
        # False: a rendered chat prompt (its special tokens are written in it)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos is not False, special=True)

    def token_ids(self, text: str) -> list[int]:
        """``text``'s token ids, no BOS added (special tokens written in it are parsed)."""
        return self._tokenize(text, False)

    def token_text(self, ids: list[int]) -> str:
        """The text of token ids (special tokens kept as written)."""
        return self.llm.detokenize(ids, special=True).decode("utf-8", errors="ignore")

    def score_branches(
        self, trunk: list[int], branches: list[tuple[int, list[int]]], tokens: dict[str, int]
    ) -> list[dict[str, float]]:
        """Next-token log-probabilities of ``tokens`` after each branch ``trunk[:cut] +
        suffix`` (the transformers backend's method of the same name): branches in order of
        their cut reuse the KV cache of the trunk, so the trunk is evaluated once."""
        out: list[dict[str, float]] = [{} for _ in branches]
        for i in sorted(range(len(branches)), key=lambda i: branches[i][0]):
            cut, suffix = branches[i]
            logp = self._next_logprobs(trunk[:cut] + suffix)
            out[i] = {k: float(logp[t]) for k, t in tokens.items()}
        return out

    def _loglik(self, context: list[int], continuation: list[int]) -> float:
        total = 0.0
        for i, token in enumerate(continuation):
            total += float(self._next_logprobs(context + continuation[:i])[token])
        return total

    def _next_logprobs(self, context: list[int]):
        """Log-softmax of the next token after ``context``, evaluating only what the KV cache
        does not hold yet (the longest prefix shared with what was evaluated last is kept)."""
        import numpy as np
        from llama_cpp import llama_get_logits_ith

        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        if not (llm.n_tokens == len(context) and cached == context):  # else: logits still here
            common, limit = 0, min(len(cached), len(context) - 1)
            while common < limit and cached[common] == context[common]:
                common += 1
            llm.n_tokens = common  # eval drops the cache past the shared prefix
            llm.eval(context[common:])
        ptr = llama_get_logits_ith(llm.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return logits - top - np.log(np.exp(logits - top).sum())

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate one completion per conversation, in order (:meth:`generate_each`)."""
        out: list[Generation | None] = [None] * len(batch)

        def keep(i: int, g: Generation) -> None:
            out[i] = g

        self.generate_each(batch, params, keep)
        return out  # type: ignore[return-value]

    def generate_each(
        self,
        batch: list[Messages],
        params: SamplingParams,
        on_result: Callable[[int, Generation], None],
    ) -> None:
        """Generate for every conversation, calling ``on_result(index, generation)`` as each
        one ends: ``n_parallel`` decode together and a finished one's slot takes the next
        (:class:`~medistill.backends.llamacpp_batch.ParallelDecoder`). A final assistant turn
        is continued. A prompt longer than ``n_ctx`` is an error row for that conversation;
        the answer's budget is ``max_new_tokens`` or what ``n_ctx`` leaves (``length``)."""
        prompts = [self._tokenize(self.chat_prompt(m), False) for m in batch]
        if not prompts:
            return
        eos = self.llm.token_eos()
        # create_chat_completion's stop string: the EOS token's text
        stop = [self.llm._model.token_get_text(eos).encode("utf-8")] if eos != -1 else []
        fits = [len(p) for p in prompts if len(p) < self.n_ctx]
        decoder = self._decoder_for(min(self.n_ctx, max(fits, default=1) + params.max_new_tokens))
        for f in decoder.run(prompts, params, n_ctx=self.n_ctx, stop=[s for s in stop if s]):
            on_result(
                f.index,
                Generation(
                    text=f.text,
                    finish_reason=f.finish_reason,
                    output_tokens=None if f.error else len(f.tokens),
                    prompt_tokens=f.prompt_tokens,
                    latency_s=f.seconds,
                    error=f.error,
                ),
            )

    def _decoder_for(self, positions: int) -> ParallelDecoder:
        """A parallel context whose sequences hold ``positions`` tokens (kept and reused; made
        again, larger, when a later call needs more): the KV cache is sized to what the
        prompts and the budget need, not to ``n_ctx`` times ``n_parallel``."""
        if self._decoder is not None and self._decoder.n_ctx_seq >= positions:
            return self._decoder
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        size = min(-(-positions // CTX_STEP) * CTX_STEP, self.n_ctx)
        log.info(
            "llama.cpp: %d parallel sequences of %d tokens, %d threads",
            self.n_parallel,
            size,
            self.n_threads,
        )
        self._decoder = ParallelDecoder(
            self.llm, n_parallel=self.n_parallel, n_ctx_seq=size, n_threads=self.n_threads
        )
        return self._decoder
