"""Text generation behind one interface: transformers, OpenAI-compatible HTTP, vLLM.

Heavy dependencies (torch, transformers, vLLM) are imported by the backend that needs them,
never at package import.
"""

from __future__ import annotations

from typing import Any

from medistill.backends.base import (
    FINISH_LENGTH,
    FINISH_STOP,
    Backend,
    Generation,
    Messages,
    SamplingParams,
)
from medistill.errors import MedistillError

BACKENDS = ("transformers", "openai", "vllm")


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
    raise MedistillError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "FINISH_LENGTH",
    "FINISH_STOP",
    "Backend",
    "Generation",
    "Messages",
    "SamplingParams",
    "make_backend",
]
