"""Several conversations decoded at once on one llama.cpp context (llama-cpp-python's low-level
API): the CPU evaluation of a GGUF is no longer one answer after another.

One context holds ``n_parallel`` sequences, each with its own KV cache (``n_seq_max``,
``kv_unified`` off: every sequence has the same context length it would have alone). Each
``llama_decode`` call carries one new token of every answering sequence plus as much of the
waiting prompts as fits in the batch, so the weights are read once for up to ``n_parallel``
answers. Continuous: a sequence that ends leaves at once and the next conversation takes its
slot. Each sequence samples with its own sampler chain (greedy, or top-k / top-p /
temperature with the request's seed), so an answer does not depend on which others it was
decoded with. Greedy answers are the tokens of ``Llama.create_chat_completion`` one
conversation at a time at ``n_parallel`` 1, and on the tiny test model at any ``n_parallel``
(tests/test_llamacpp_batch.py); on a real model several sequences at once read the weights in
batched matrix products whose rounding can flip a near-tie.

The stop rules are ``create_completion``'s: an end-of-generation token (EOS, end of turn) ends
the answer without being counted, the stop strings (the chat format's, the EOS token's text)
cut the text where they begin, and the token budget is ``max_new_tokens`` or what the context
leaves after the prompt (finish ``length``). A prompt that does not fit the context is an
error for that conversation alone.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from medistill.backends.base import FINISH_ERROR, FINISH_LENGTH, FINISH_STOP, SamplingParams
from medistill.errors import MedistillError

#: Context positions are allocated per sequence in steps of this many tokens.
CTX_STEP = 256
#: Most tokens one ``llama_decode`` call carries (answer tokens plus prompt chunks).
N_BATCH = 512


@dataclass
class Finished:
    """One ended answer: its position in the request list, its completion tokens (without the
    end-of-generation token), why it ended, and its own wall time (from its prompt's first
    decode to its last token)."""

    index: int
    tokens: list[int]
    text: str
    finish_reason: str
    prompt_tokens: int
    seconds: float
    error: str | None = None


@dataclass
class _Seq:
    """A conversation holding a slot: its prompt, how much of it is in the KV cache, its
    sampler and what it has generated."""

    index: int
    prompt: list[int]
    limit: int
    sampler: Any
    started: float
    fed: int = 0
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    logits_at: int = -1  # its row of the last decode's logits; -1: none


def sampler_chain(params: SamplingParams) -> Any:
    """A llama.cpp sampler chain for one sequence: greedy at temperature 0, else the top-k cut
    (when set), the top-p cut (below 1), the temperature and a draw seeded with
    ``params.seed`` (llama.cpp's random seed when it is ``None``). No penalties and no
    min-p cut: the other backends apply none."""
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    chain = LlamaSampler()
    if params.temperature <= 0:
        chain.add_greedy()
        return chain
    if params.top_k:
        chain.add_top_k(params.top_k)
    if params.top_p < 1.0:
        chain.add_top_p(params.top_p, 1)
    chain.add_temp(params.temperature)
    seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
    chain.add_dist(seed & 0xFFFFFFFF)
    return chain


class ParallelDecoder:
    """A llama.cpp context of ``n_parallel`` sequences of ``n_ctx_seq`` positions each on the
    model of an open ``llama_cpp.Llama`` (the weights are shared, the KV cache is this
    context's own). Freed by :meth:`close`, or with the model."""

    def __init__(self, llm: Any, *, n_parallel: int, n_ctx_seq: int, n_threads: int) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx_seq * n_parallel
        params.n_batch = N_BATCH
        params.n_ubatch = N_BATCH
        params.n_seq_max = n_parallel
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = n_threads
        # as llama_cpp.Llama's own context (flash attention off): the same numerics
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        try:
            self.ctx = LlamaContext(model=llm._model, params=params, verbose=False)
        except ValueError as e:
            raise MedistillError(
                f"backend llamacpp: no context for {n_parallel} sequences of {n_ctx_seq} "
                f"tokens ({e}); lower n_parallel"
            ) from e
        self.n_parallel = n_parallel
        self.n_ctx_seq = llama_cpp.llama_n_ctx_seq(self.ctx.ctx)
        self.batch = LlamaBatch(n_tokens=N_BATCH, embd=0, n_seq_max=1, verbose=False)
        self.vocab = llm._model.vocab
        self.llm = llm

    def close(self) -> None:
        """Free the context and the batch (idempotent)."""
        for part in (getattr(self, "batch", None), getattr(self, "ctx", None)):
            if part is not None:
                part.close()
        self.batch = self.ctx = None

    def run(
        self,
        prompts: Sequence[list[int]],
        params: SamplingParams,
        *,
        n_ctx: int,
        stop: Sequence[bytes] = (),
    ) -> Iterator[Finished]:
        """Decode every prompt (token ids, chat template applied), yielding each answer as it
        ends (not in order). ``n_ctx``: the context one conversation may use (prompt plus
        answer); ``stop``: stop strings, cut from the text."""
        import llama_cpp

        mem = llama_cpp.llama_get_memory(self.ctx.ctx)
        waiting = deque(range(len(prompts)))
        slots: list[_Seq | None] = [None] * self.n_parallel
        while waiting or any(slots):
            for s in range(self.n_parallel):
                while slots[s] is None and waiting:
                    i = waiting.popleft()
                    prompt = list(prompts[i])
                    if len(prompt) >= n_ctx:
                        msg = f"Requested tokens ({len(prompt)}) exceed context window of {n_ctx}"
                        yield Finished(i, [], "", FINISH_ERROR, len(prompt), 0.0, error=msg)
                        continue
                    limit = min(params.max_new_tokens, n_ctx - len(prompt))
                    if len(prompt) + limit > self.n_ctx_seq:
                        raise MedistillError(
                            f"backend llamacpp: {len(prompt) + limit} positions needed, the "
                            f"context holds {self.n_ctx_seq} per sequence"
                        )
                    llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
                    slots[s] = _Seq(i, prompt, limit, sampler_chain(params), time.perf_counter())
            if not any(slots):
                break
            self._fill(slots)
            rc = llama_cpp.llama_decode(self.ctx.ctx, self.batch.batch)
            if rc != 0:
                raise MedistillError(
                    f"backend llamacpp: llama_decode returned {rc} with {self.n_parallel} "
                    "sequences; lower n_parallel"
                )
            for s, seq in enumerate(slots):
                if seq is None or seq.logits_at < 0:
                    continue
                done = self._step(seq, stop)
                if done is not None:
                    llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
                    slots[s] = None
                    yield done

    def _fill(self, slots: list[_Seq | None]) -> None:
        """The next batch: one token of every answering sequence, then prompt chunks of the
        sequences still reading theirs, up to :data:`N_BATCH` tokens."""
        b = self.batch.batch
        n = 0

        def add(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n] = token, pos, 1
            b.seq_id[n][0], b.logits[n] = seq_id, logits
            n += 1

        for s, seq in enumerate(slots):
            if seq is not None and seq.fed == len(seq.prompt):  # answering
                seq.logits_at = n
                add(seq.tokens[-1], len(seq.prompt) + len(seq.tokens) - 1, s, True)
        for s, seq in enumerate(slots):
            if seq is None or seq.fed == len(seq.prompt):
                continue
            seq.logits_at = -1
            take = min(N_BATCH - n, len(seq.prompt) - seq.fed)
            for k in range(seq.fed, seq.fed + take):
                last = k == len(seq.prompt) - 1
                if last:
                    seq.logits_at = n
                add(seq.prompt[k], k, s, last)
            seq.fed += take
        b.n_tokens = n

    def _step(self, seq: _Seq, stop: Sequence[bytes]) -> Finished | None:
        """Sample ``seq``'s next token; its :class:`Finished` when that ends it."""
        import llama_cpp

        token = seq.sampler.sample(self.ctx, seq.logits_at)
        seq.logits_at = -1
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            return self._finished(seq, FINISH_STOP)
        seq.tokens.append(token)
        piece = self.llm.detokenize([token])
        seq.text += piece
        for s in stop:  # only a stop string that this piece completes is new
            if s in seq.text[-(len(s) + len(piece)) :]:
                return self._finished(seq, FINISH_STOP, cut=s)
        if len(seq.tokens) >= seq.limit:
            return self._finished(seq, FINISH_LENGTH)
        seq.fed = len(seq.prompt)  # answering: next batch carries this token
        return None

    def _finished(self, seq: _Seq, reason: str, cut: bytes | None = None) -> Finished:
        text = self.llm.detokenize(seq.tokens, prev_tokens=seq.prompt)
        if cut is not None:
            text = text[: text.index(cut)] if cut in text else text
        return Finished(
            seq.index,
            seq.tokens,
            text.decode("utf-8", errors="ignore"),
            reason,
            len(seq.prompt),
            time.perf_counter() - seq.started,
        )
