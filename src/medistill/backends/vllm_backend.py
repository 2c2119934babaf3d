"""Offline batched generation with vLLM (GPU). Imported only when this backend is chosen."""

from __future__ import annotations

import gc
import importlib
import logging
import sys
import time
from typing import Any

from medistill.backends.base import (
    FINISH_LENGTH,
    FINISH_REPETITION,
    FINISH_STOP,
    Generation,
    Messages,
    SamplingParams,
)
from medistill.backends.loops import mark_loop, vllm_repetition_detection
from medistill.errors import MedistillError
from medistill.models import resolve_model

log = logging.getLogger(__name__)


class VLLMBackend:
    """``vllm.LLM.chat`` over whole batches; vLLM schedules them itself (continuous batching).

    The engine takes every argument of
    :class:`~medistill.backends.config.VLLMEngineConfig` (``engine_args`` last, so it may set
    any other ``vllm.LLM`` keyword). ``batch_size`` prompts go to each ``LLM.chat`` call
    (the eval's ``batch_size``). With ``stop_loops`` a degenerate repetition loop ends as
    ``repetition`` (:mod:`medistill.backends.loops`). :meth:`close` shuts the engine down and
    gives its GPU memory back, so a training stage can follow in the same process.
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
        stop_loops: bool = True,
    ) -> None:
        try:
            import vllm
        except ImportError as e:
            raise MedistillError(
                "the vllm backend needs vLLM on a CUDA machine: pip install 'medistill[vllm]'"
            ) from e

        self._vllm = vllm
        self.model = resolve_model(model)
        self.batch_size = batch_size
        self.stop_loops = stop_loops
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

        vLLM 0.31 (pinned; 0.33 alike) has no ``LLM.shutdown`` and no
        ``LLMEngine.shutdown``: the engine core is stopped by its client,
        ``llm.llm_engine.engine_core.shutdown()`` (``EngineCoreClient.shutdown``: the engine
        process of ``MPClient``, or the in-process core and its workers of ``InprocClient``).
        Then, when this backend started the distributed state, vLLM's
        ``destroy_model_parallel`` and ``destroy_distributed_environment``, then
        ``gc.collect()`` and ``torch.cuda.empty_cache()``. An engine without that client
        (another vLLM) is reported, never skipped silently. The backend cannot generate
        afterwards.
        """
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception as e:  # a half-dead engine: free what can be freed anyway
                log.warning("vLLM engine core shutdown failed: %s", e)
        else:
            log.warning(
                "this vLLM has no llm_engine.engine_core.shutdown(): the engine is freed only "
                "when garbage collection releases it (medistill pins vllm==0.31.0)"
            )
        del llm, core, shutdown
        _free_engine_memory(self._owns_distributed)
        log.info("vLLM engine for %s shut down", self.model)

    def preferred_batch_size(self) -> int:
        """Prompts per ``LLM.chat`` call (``batch_size``): vLLM schedules them continuously
        inside the call; the eval loop saves the answers after each call."""
        return self.batch_size

    def sampling_params(self, params: SamplingParams) -> Any:
        """vLLM's ``SamplingParams`` for ``params``: ``top_k`` only when set (vLLM's 0 is
        no cut), and vLLM's own loop stop where the installed vLLM has it
        (:func:`~medistill.backends.loops.vllm_repetition_detection`)."""
        kwargs: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            "n": 1,
        }
        if params.top_k is not None:
            kwargs["top_k"] = params.top_k
        if self.stop_loops:
            try:
                module = importlib.import_module("vllm.sampling_params")
            except ImportError:
                module = None
            rule = vllm_repetition_detection(getattr(module, "RepetitionDetectionParams", None))
            if rule is not None:
                kwargs["repetition_detection"] = rule
        return self._vllm.SamplingParams(**kwargs)

    def generate(self, batch: list[Messages], params: SamplingParams) -> list[Generation]:
        """Generate with ``LLM.chat``; finish reason and token counts come from vLLM. An
        answer that ran to its budget inside a loop is marked ``repetition``
        (:func:`~medistill.backends.loops.mark_loop`), as vLLM marks one it stopped."""
        sp = self.sampling_params(params)
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
            finish = _FINISH.get(str(c.finish_reason), FINISH_STOP)
            g = Generation(
                text=c.text,
                finish_reason=finish,
                output_tokens=len(c.token_ids),
                prompt_tokens=len(out.prompt_token_ids or []),
                latency_s=elapsed / len(batch),
            )
            results.append(mark_loop(g, c.token_ids) if self.stop_loops else g)
        return results


#: vLLM's finish reasons (``FINISH_REASON_STRINGS`` of ``vllm.v1.engine``, 0.31) as ours.
_FINISH = {"length": FINISH_LENGTH, "repetition": FINISH_REPETITION}


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
