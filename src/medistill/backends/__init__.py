"""Text generation behind one interface: transformers, OpenAI-compatible HTTP, vLLM, llama.cpp.

:mod:`~medistill.backends.base` is the interface, :mod:`~medistill.backends.config` builds a
backend from its config (:func:`make_backend`), and :mod:`~medistill.backends.fanout` is the
one way many prompts go through a backend (HTTP workers or local batches, a cost cap, group
commit, one declared failure policy per caller). Heavy dependencies (torch, transformers,
vLLM, llama.cpp) are imported by the backend that needs them, never at package import.
"""

from __future__ import annotations

from medistill.backends.base import (
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_REPETITION,
    FINISH_STOP,
    Backend,
    Generation,
    Messages,
    RequestRejected,
    SamplingParams,
)
from medistill.backends.config import BACKENDS, make_backend
from medistill.backends.fanout import Policy, Prompt, fan_out, generate_all, generate_each

__all__ = [
    "BACKENDS",
    "FINISH_ERROR",
    "FINISH_LENGTH",
    "FINISH_REPETITION",
    "FINISH_STOP",
    "Backend",
    "Generation",
    "Messages",
    "Policy",
    "Prompt",
    "RequestRejected",
    "SamplingParams",
    "fan_out",
    "generate_all",
    "generate_each",
    "make_backend",
]
