"""Offline batched generation with vLLM (GPU). Imported only when this backend is chosen."""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import time
from typing import Any

from medistill.backends.base import FINISH_LENGTH, FINISH_STOP, Generation, Messages, SamplingParams
from medistill.errors import MedistillError

log = logging.getLogger(__name__)


class VLLMBackend:
    """``vllm.LLM.chat`` over whole batches; vLLM schedules them itself (continuous batching).

    The engine takes every argument of
    :class:`~medistill.backends.config.VLLMEngineConfig` (``engine_args`` last, so it may set
    any other ``vllm.LLM`` keyword). :meth:`close` shuts the engine down and gives its GPU
    memory back, so a training stage can follow in the same process.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 256,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        dtype: str = "auto",
        enable_prefix_caching: bool | None = None,
        trust_remote_code: bool = False,
        engine_args: dict[str, Any] | None = None,
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
            "dtype": dtype,
            "trust_remote_code": trust_remote_code,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if enable_prefix_caching is not None:
            kwargs["enable_prefix_caching"] = enable_prefix_caching
        kwargs.update(engine_args or {})
        self.engine_kwargs = kwargs
        # A process group that existed before the engine (a training run's) is not ours to end.
        self._owns_distributed = not _distributed_initialized()
        self.llm = vllm.LLM(**kwargs)

    def close(self) -> None:
        """Shut the engine down and free its GPU memory (idempotent).

        The engine's own ``shutdown()`` (vLLM V1 stops its engine-core process there), then,
        when this backend started the distributed state, vLLM's ``destroy_model_parallel`` and
        ``destroy_distributed_environment``, then ``gc.collect()`` and
        ``torch.cuda.empty_cache()``. The backend cannot generate afterwards.
        """
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception as e:  # a half-dead engine: free what can be freed anyway
                log.warning("vLLM engine shutdown failed: %s", e)
        del llm, shutdown
        _free_engine_memory(self._owns_distributed)
        log.info("vLLM engine for %s shut down", self.model)

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
        if self.llm is None:
            raise MedistillError("the vllm backend was closed; build a new one")
        t0 = time.perf_counter()
        prefill = bool(batch) and all(m[-1].get("role") == "assistant" for m in batch)
        kwargs = {"continue_final_message": True, "add_generation_prompt": False} if prefill else {}
        outputs = self.llm.chat(batch, sp, use_tqdm=False, **kwargs)
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


def _distributed_initialized() -> bool:
    """Whether a ``torch.distributed`` process group exists (torch is not imported for this)."""
    torch = sys.modules.get("torch")
    try:
        dist = torch.distributed  # type: ignore[union-attr]
        return bool(dist.is_available() and dist.is_initialized())
    except Exception:
        return False


def _free_engine_memory(owns_distributed: bool) -> None:
    """What vLLM's tests do between engines, each step only where the installed vLLM has it."""
    if owns_distributed:
        try:
            state = importlib.import_module("vllm.distributed")
        except ImportError:
            state = None
        for name in ("destroy_model_parallel", "destroy_distributed_environment"):
            step = getattr(state, name, None)
            if callable(step):
                try:
                    step()
                except Exception as e:
                    log.debug("vllm.distributed.%s: %s", name, e)
    gc.collect()
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as e:  # a CUDA context already gone
        log.debug("torch.cuda.empty_cache: %s", e)
