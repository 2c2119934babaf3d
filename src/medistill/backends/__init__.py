"""Text generation behind one interface: transformers, OpenAI-compatible HTTP, vLLM.

Heavy dependencies (torch, transformers, vLLM) are imported by the backend that needs them,
never at package import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medistill.backends.base import (
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_REPETITION,
    FINISH_STOP,
    Backend,
    Generation,
    Messages,
    SamplingParams,
)
from medistill.errors import MedistillError

BACKENDS = ("transformers", "openai", "vllm", "llamacpp")


def make_backend(name: str, model: str, **kwargs: Any) -> Backend:
    """Build a backend by name; a typo names the valid choices."""
    if name == "transformers":
        from medistill.backends.hf import TransformersBackend

        return TransformersBackend(model, **kwargs)
    if name == "openai":
        from medistill.backends.openai_http import OpenAIBackend

        return OpenAIBackend(model, **kwargs)
    if name == "vllm":
        from medistill.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model, **kwargs)
    if name == "llamacpp":
        from medistill.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model, **kwargs)
    raise MedistillError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


def generate_each(
    backend: Backend,
    batch: list[Messages],
    params: SamplingParams,
    on_result: Callable[[int, Generation], None],
) -> None:
    """Generate for every conversation, calling ``on_result(index, generation)`` as each
    one is ready, so the caller saves work as it comes (a killed run loses only what was in
    flight). Backends that stream (transformers' continuous batching, concurrent HTTP)
    call back per answer; others per batch of :meth:`Backend.preferred_batch_size`."""
    own = getattr(backend, "generate_each", None)
    if own is not None:
        own(batch, params, on_result)
        return
    step = backend.preferred_batch_size()
    for start in range(0, len(batch), step):
        for j, gen in enumerate(backend.generate(batch[start : start + step], params)):
            on_result(start + j, gen)


__all__ = [
    "BACKENDS",
    "FINISH_ERROR",
    "FINISH_LENGTH",
    "FINISH_REPETITION",
    "FINISH_STOP",
    "Backend",
    "Generation",
    "Messages",
    "SamplingParams",
    "generate_each",
    "make_backend",
]
