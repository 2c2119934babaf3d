"""A model and how to reach it: the teacher for ``generate``, the model under test for ``eval``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from medistill.backends import BACKENDS, make_backend
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

#: Hosted APIs whose model ids differ from the Hub's (as documented by the provider, 2026-12):
#: a Hub id sent there fails on the first request, after the run has started.
PROVIDER_MODELS: dict[str, tuple[str, ...]] = {
    "api.deepseek.com": ("deepseek-chat", "deepseek-reasoner"),
}


def provider_model_problem(base_urls: list[str], model: str) -> str | None:
    """Why ``model`` is not a model id of the hosted API at ``base_urls`` (``None`` when it is,
    or when the provider is not one whose ids are known)."""
    for url in base_urls:
        host = (urlparse(url).hostname or "").lower()
        known = PROVIDER_MODELS.get(host)
        if known and model not in known:
            return (
                f"model {model!r} is not served by {host}, whose model ids are "
                f"{', '.join(known)} (a Hub id such as deepseek-ai/DeepSeek-R1 is "
                f"deepseek-reasoner there)"
            )
    return None


@dataclass
class TeacherConfig:
    """A teacher model and how to reach it.

    ``spec`` strings accepted by :meth:`from_spec`: ``openai:<model>`` (any OpenAI-compatible
    server, see ``base_url``), ``transformers:<hub id or folder>``, ``vllm:<model>``, or a bare
    model name (``openai``).
    """

    model: str = field(metadata={"help": "model name sent to the server / local model"})
    backend: str = field(
        default="openai", metadata={"help": "openai | transformers | vllm | llamacpp"}
    )
    base_url: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        metadata={"help": "one or more OpenAI-compatible endpoints (balanced)"},
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "environment variable holding the API key"}
    )
    concurrency: int = field(default=64, metadata={"help": "requests in flight"})
    requests_per_minute: float | None = field(
        default=None, metadata={"help": "requests/min per endpoint", "aliases": ["--rpm"]}
    )
    tokens_per_minute: float | None = field(
        default=None, metadata={"help": "tokens/min per endpoint", "aliases": ["--tpm"]}
    )
    timeout_s: float = field(
        default=600.0, metadata={"help": "seconds per request", "aliases": ["--timeout"]}
    )
    max_retries: int = field(default=8, metadata={"help": "retries on 429/5xx/network"})
    backoff_base_s: float = field(default=1.0, metadata={"help": "first retry delay"})
    batch_size: int = field(default=8, metadata={"help": "local backends: batch size"})
    price_input_per_mtok: float = field(
        default=0.0, metadata={"help": "$ per 1M prompt tokens", "aliases": ["--price-in"]}
    )
    price_output_per_mtok: float = field(
        default=0.0, metadata={"help": "$ per 1M completion tokens", "aliases": ["--price-out"]}
    )
    extra_body: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "extra JSON fields sent with every request (openai backend)"},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow model code from the hub (local backends)"}
    )

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> TeacherConfig:
        """Parse ``backend:model`` (or a bare model name for the openai backend)."""
        backend, sep, model = spec.partition(":")
        if sep and backend in BACKENDS:
            return cls(model=model, backend=backend, **kwargs)
        return cls(model=spec, **kwargs)

    @classmethod
    def spec_values(cls, spec: str) -> dict[str, str]:
        """openai:<model> | transformers:<model> | vllm:<model> | llamacpp:<file.gguf> (a bare
        name: openai).

        The ``model`` and ``backend`` a :meth:`from_spec` string sets, as recipe keys.
        """
        parsed = cls.from_spec(spec)
        return {"model": parsed.model, "backend": parsed.backend}

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise MedistillError(
                f"unknown teacher backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}"
            )
        if isinstance(self.base_url, str):
            self.base_url = [self.base_url]
        problem = (
            provider_model_problem(self.base_url, self.model) if self.backend == "openai" else None
        )
        if problem:
            log.warning("%s; check the provider's model list", problem)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Estimated cost in dollars from the configured price table."""
        return (
            prompt_tokens * self.price_input_per_mtok
            + completion_tokens * self.price_output_per_mtok
        ) / 1e6

    def build(self, **backend_kwargs: Any):
        """The backend object for this teacher; ``backend_kwargs`` go to its constructor
        (``neutral_penalties`` for openai, ``stop_loops`` for transformers)."""
        if self.backend == "openai":
            return make_backend(
                "openai",
                self.model,
                base_url=self.base_url,
                api_key_env=self.api_key_env,
                concurrency=self.concurrency,
                timeout_s=self.timeout_s,
                max_retries=self.max_retries,
                backoff_base_s=self.backoff_base_s,
                requests_per_minute=self.requests_per_minute,
                tokens_per_minute=self.tokens_per_minute,
                extra_body=self.extra_body,
                **backend_kwargs,
            )
        if self.backend == "transformers":
            return make_backend(
                "transformers",
                self.model,
                batch_size=self.batch_size,
                trust_remote_code=self.trust_remote_code,
                **backend_kwargs,
            )
        if self.backend == "llamacpp":
            return make_backend("llamacpp", self.model)
        return make_backend("vllm", self.model, trust_remote_code=self.trust_remote_code)
