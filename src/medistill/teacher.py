"""A model and how to reach it: the teacher for ``generate``, the model under test for ``eval``.

The config class is :class:`medistill.backends.config.BackendConfig`, one for every backend;
:class:`TeacherConfig` is that class under the name ``generate``'s ``teacher:`` has always had.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from medistill.backends.config import (
    PROVIDER_MODELS,
    BackendConfig,
    VLLMEngineConfig,
    provider_model_problem,
)
from medistill.models import model_name

#: What a hosted API's model id serves today, per host (as the provider documents it,
#: 2026-12): an alias such as ``deepseek-reasoner`` has named several models over time (R1,
#: then V3.1, now V3.2 in thinking mode), so reports and cards name the model behind it.
SERVED_MODELS: dict[str, dict[str, str]] = {
    "api.deepseek.com": {
        "deepseek-reasoner": "DeepSeek-V3.2 (thinking mode, deepseek-reasoner)",
        "deepseek-chat": "DeepSeek-V3.2 (non-thinking mode, deepseek-chat)",
    },
}


@dataclass
class TeacherConfig(BackendConfig):
    """A teacher model and how to reach it (every key is a :class:`BackendConfig` key).

    ``spec`` strings accepted by :meth:`from_spec`: ``openai:<model>`` (any OpenAI-compatible
    server, see ``base_url``), ``transformers:<hub id or folder>``, ``vllm:<model>``, or a bare
    model name (``openai``).
    """


def served_name(backend: BackendConfig) -> str:
    """The name of the model ``backend`` reaches, for labels: the model a hosted API's alias
    serves now (:data:`SERVED_MODELS`), else the model's short name (a Hub id's last part)."""
    if backend.backend == "openai":
        for url in backend.base_url:
            served = SERVED_MODELS.get((urlparse(url).hostname or "").lower(), {})
            if backend.model in served:
                return served[backend.model]
    return model_name(backend.model)


def served_label(model_id: str) -> str:
    """A stored teacher id as a card names it: a hosted API's alias (the trace store keeps the
    id the request named, not the host) becomes the model it serves now when exactly one
    provider in :data:`SERVED_MODELS` has that alias, so a card never calls V3.2's traces R1's;
    any other id is returned as it is.

    >>> served_label("deepseek-reasoner")
    'DeepSeek-V3.2 (thinking mode, deepseek-reasoner)'
    """
    found = {names[model_id] for names in SERVED_MODELS.values() if model_id in names}
    return found.pop() if len(found) == 1 else model_id


__all__ = [
    "PROVIDER_MODELS",
    "SERVED_MODELS",
    "BackendConfig",
    "TeacherConfig",
    "VLLMEngineConfig",
    "provider_model_problem",
    "served_label",
    "served_name",
]
