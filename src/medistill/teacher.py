"""A model and how to reach it: the teacher for ``generate``, the model under test for ``eval``.

The config class is :class:`medistill.backends.config.BackendConfig`, one for every backend;
:class:`TeacherConfig` is that class under the name ``generate``'s ``teacher:`` has always had.
"""

from __future__ import annotations

from dataclasses import dataclass

from medistill.backends.config import (
    PROVIDER_MODELS,
    BackendConfig,
    VLLMEngineConfig,
    provider_model_problem,
)


@dataclass
class TeacherConfig(BackendConfig):
    """A teacher model and how to reach it (every key is a :class:`BackendConfig` key).

    ``spec`` strings accepted by :meth:`from_spec`: ``openai:<model>`` (any OpenAI-compatible
    server, see ``base_url``), ``transformers:<hub id or folder>``, ``vllm:<model>``, or a bare
    model name (``openai``).
    """


__all__ = [
    "PROVIDER_MODELS",
    "BackendConfig",
    "TeacherConfig",
    "VLLMEngineConfig",
    "provider_model_problem",
]
