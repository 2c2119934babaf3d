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
