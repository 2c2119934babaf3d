"""Offline batched generation with vLLM (GPU). Imported only when this backend is chosen."""

from __future__ import annotations

import logging
import time
from typing import Any

from medistill.backends.base import FINISH_LENGTH, FINISH_STOP, Generation, Messages, SamplingParams
from medistill.errors import MedistillError

log = logging.getLogger(__name__)


class VLLMBackend:
    """``vllm.LLM.chat`` over whole batches; vLLM schedules them itself (continuous batching)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 256,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        **_: Any,
    ) -> None:
        try:
            import vllm
        except ImportError as e:
            raise MedistillError(
                "the vllm backend needs vLLM on a CUDA machine: pip install 'medistill[vllm]'"
            ) from e
        from medistill.models import resolve_model

        self._vllm = vllm
        self.model = resolve_model(model)
        self.batch_size = batch_size
        kwargs: dict[str, Any] = {
            "model": self.model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "trust_remote_code": trust_remote_code,
        }
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = vllm.LLM(**kwargs)

    def preferred_batch_size(self) -> int:
        """Large batches: vLLM batches continuously inside one call."""
        return self.batch_size

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate with ``LLM.chat``; finish reason and token counts come from vLLM."""
        sp = self._vllm.SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            n=1,
        )
        t0 = time.perf_counter()
        outputs = self.llm.chat(batch, sp, use_tqdm=False)
        elapsed = time.perf_counter() - t0
        results = []
        for out in outputs:
            c = out.outputs[0]
            finish = FINISH_LENGTH if c.finish_reason == "length" else FINISH_STOP
            results.append(
                Generation(
                    text=c.text,
                    finish_reason=finish,
                    output_tokens=len(c.token_ids),
                    prompt_tokens=len(out.prompt_token_ids or []),
                    latency_s=elapsed / len(batch),
                )
            )
        return results
