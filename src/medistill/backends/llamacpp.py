"""In-process llama.cpp (llama-cpp-python) on a GGUF file: the quantised student on a CPU, no
server. Imported only when this backend is chosen (``pip install 'medistill[serve]'``)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from medistill.backends.base import (
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_STOP,
    Generation,
    Messages,
    SamplingParams,
)
from medistill.errors import MedistillError
from medistill.prompts import ChoiceRequest

log = logging.getLogger(__name__)


class LlamaCppBackend:
    """``Llama.create_chat_completion`` with the GGUF's own chat template, one conversation
    at a time (llama.cpp decodes one sequence per context). Penalties are neutral
    (``repeat_penalty`` 1.0), so greedy means greedy."""

    name = "llamacpp"

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
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
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise MedistillError(
                "backend llamacpp needs llama-cpp-python: pip install 'medistill[serve]'"
            ) from e
        self.model = str(path)
        self.llm = Llama(
            model_path=self.model,
            n_ctx=n_ctx,
            n_threads=n_threads or os.cpu_count() or 1,
            verbose=False,
        )

    def preferred_batch_size(self) -> int:
        """One conversation at a time: answers are saved as each one ends."""
        return 1

    def close(self) -> None:
        """Free the llama.cpp model and context (idempotent)."""
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
        """Generate one completion per conversation, in order."""
        return [self._one(messages, params) for messages in batch]

    def _one(self, messages: Messages, params: SamplingParams) -> Generation:
        started = time.perf_counter()
        try:
            out = self.llm.create_chat_completion(
                messages,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                # unset: no top-k cut (llama-cpp-python's own default is 40)
                top_k=params.top_k or 0,
                repeat_penalty=1.0,
                frequency_penalty=0.0,
                presence_penalty=0.0,
            )
        except ValueError as e:  # e.g. the prompt does not fit the context
            return Generation(text="", finish_reason=FINISH_ERROR, error=str(e))
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        reason = choice.get("finish_reason") or FINISH_STOP
        return Generation(
            text=choice["message"].get("content") or "",
            finish_reason=FINISH_LENGTH if reason == "length" else FINISH_STOP,
            output_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
            latency_s=time.perf_counter() - started,
        )
