"""One config class for every backend: the teacher of ``generate``, the model under test of
``eval`` and a judge.

:class:`BackendConfig` is the single source of each backend key's name, type, default and help
(recipe keys and command-line options are derived from it). The vLLM engine arguments live in
:class:`VLLMEngineConfig`, which :class:`BackendConfig` and the eval config both take their
engine keys from, so the two cannot drift apart. :class:`TeacherConfig` is that class under
the name ``generate``'s ``teacher:`` has always had; :func:`served_name`/:func:`served_label`
name the model a hosted API's alias serves now.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from medistill.backends.base import Backend
from medistill.backends.hf import TransformersBackend
from medistill.backends.llamacpp import LlamaCppBackend
from medistill.backends.openai_http import OpenAIBackend
from medistill.backends.vllm_backend import VLLMBackend
from medistill.errors import MedistillError
from medistill.models import model_name

BACKENDS = ("transformers", "openai", "vllm", "llamacpp")


def make_backend(name: str, model: str, **kwargs: Any) -> Backend:
    """Build a backend by name; a typo names the valid choices."""
    if name == "transformers":
        return TransformersBackend(model, **kwargs)
    if name == "openai":
        return OpenAIBackend(model, **kwargs)
    if name == "vllm":
        return VLLMBackend(model, **kwargs)
    if name == "llamacpp":
        return LlamaCppBackend(model, **kwargs)
    raise MedistillError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


log = logging.getLogger(__name__)

#: Hosted APIs whose model ids differ from the Hub's (as documented by the provider, 2026-12):
#: a Hub id sent there fails on the first request, after the run has started.
PROVIDER_MODELS: dict[str, tuple[str, ...]] = {
    "api.deepseek.com": ("deepseek-chat", "deepseek-reasoner"),
}

#: The weight/activation dtypes a local backend accepts (``auto``: the checkpoint's, or bf16).
DTYPES = ("auto", "bfloat16", "float16", "float32")


class ConfigValueError(MedistillError, ValueError):
    """A bad config value. A :class:`MedistillError` when the class is built directly; also a
    ``ValueError``, so :func:`medistill.config.build` prefixes it with the recipe section."""


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(kw_only=True)
class VLLMEngineConfig:
    """The vLLM engine (``vllm.LLM``) arguments: keys of a backend config and of ``eval:``.

    ``dtype`` is also the transformers backend's. ``engine_args`` takes any other ``vllm.LLM``
    keyword (``{"enforce_eager": true, "kv_cache_dtype": "fp8"}``), applied last; a key that
    is one of the named fields is refused (set the field).
    """

    tensor_parallel_size: int = field(
        default=1, metadata={"help": "vllm: GPUs the model is split across (tensor parallelism)"}
    )
    max_model_len: int | None = field(
        default=None,
        metadata={"help": "vllm: context length (prompt + answer); none: the model's"},
    )
    gpu_memory_utilization: float = field(
        default=0.9,
        metadata={"help": "vllm: fraction of each GPU's memory the engine may take, in (0, 1]"},
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "local backends (vllm, transformers): weight dtype; auto: the model's "
            "(vllm) or bf16 on CUDA / fp32 on CPU (transformers)",
            "choices": DTYPES,
        },
    )
    enable_prefix_caching: bool | None = field(
        default=None,
        metadata={"help": "vllm: reuse the KV cache of shared prompt prefixes; none: vLLM's"},
    )
    engine_args: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "vllm: more vllm.LLM keyword arguments as a mapping, e.g. "
            '{"enforce_eager": true}'
        },
    )

    def __post_init__(self) -> None:
        self.check_engine()

    def check_engine(self) -> None:
        """Refuse a bad engine value, naming its key."""
        tp = self.tensor_parallel_size
        if not _is_int(tp) or tp < 1:
            raise ConfigValueError(f"tensor_parallel_size must be an integer >= 1, got {tp!r}")
        mml = self.max_model_len
        if mml is not None and (not _is_int(mml) or mml < 1):
            raise ConfigValueError(f"max_model_len must be an integer >= 1 or none, got {mml!r}")
        gmu = self.gpu_memory_utilization
        if isinstance(gmu, bool) or not isinstance(gmu, (int, float)) or not 0 < gmu <= 1:
            raise ConfigValueError(
                f"gpu_memory_utilization must be a number in (0, 1], got {gmu!r}"
            )
        if self.dtype not in DTYPES:
            raise ConfigValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        epc = self.enable_prefix_caching
        if epc is not None and not isinstance(epc, bool):
            raise ConfigValueError(
                f"enable_prefix_caching must be true, false or none, got {epc!r}"
            )
        if not isinstance(self.engine_args, dict):
            raise ConfigValueError(f"engine_args must be a mapping, got {self.engine_args!r}")
        for key in self.engine_args:
            if not isinstance(key, str):
                raise ConfigValueError(f"engine_args: key {key!r} is not a string")
            if key in ENGINE_NAMED:
                raise ConfigValueError(
                    f"engine_args: key {key!r} is a named setting; set {key}: itself, "
                    f"not engine_args.{key}"
                )

    def engine_values(self) -> dict[str, Any]:
        """The engine keys and their values (recipe keys of ``eval:`` and of a backend)."""
        return {name: getattr(self, name) for name in ENGINE_KEYS}

    def vllm_kwargs(self) -> dict[str, Any]:
        """The engine keywords for :class:`~medistill.backends.vllm_backend.VLLMBackend`."""
        return self.engine_values()


#: The keys of :class:`VLLMEngineConfig`, in order.
ENGINE_KEYS = tuple(f.name for f in dataclasses.fields(VLLMEngineConfig))
#: ``vllm.LLM`` arguments set by named fields, which ``engine_args`` may not repeat.
ENGINE_NAMED = frozenset(ENGINE_KEYS) - {"engine_args"} | {"model", "trust_remote_code"}


@dataclass
class _BackendKeys:
    """The keys of :class:`BackendConfig` before its engine keys (the order of ``--help``)."""

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
    n_parallel: int | None = field(
        default=None,
        metadata={
            "help": "llamacpp: conversations decoded at once on one context (a finished "
            "answer's slot takes the next); none: 8"
        },
    )
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


@dataclass
class BackendConfig(VLLMEngineConfig, _BackendKeys):
    """A model and how to reach it: a teacher, the model under evaluation, a judge.

    ``spec`` strings accepted by :meth:`from_spec`: ``openai:<model>`` (any OpenAI-compatible
    server, see ``base_url``), ``transformers:<hub id or folder>``, ``vllm:<model>``, or a bare
    model name (``openai``). The vLLM engine keys (``tensor_parallel_size``, ``max_model_len``,
    ``gpu_memory_utilization``, ``dtype``, ``enable_prefix_caching``, ``engine_args``) are
    those of :class:`VLLMEngineConfig`.
    """

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> BackendConfig:
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

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Every key of this config, in order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigValueError(
                f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}"
            )
        if isinstance(self.base_url, str):
            self.base_url = [self.base_url]
        if self.n_parallel is not None and self.n_parallel < 1:
            raise ConfigValueError(f"n_parallel must be at least 1, not {self.n_parallel}")
        self.check_engine()
        problem = (
            provider_model_problem(self.base_url, self.model) if self.backend == "openai" else None
        )
        if problem:
            log.warning("%s; check the provider's model list", problem)

    def recipe_values(self) -> dict[str, Any]:
        """Every key and its value, as recipe keys (``build`` of them gives this config)."""
        return {name: getattr(self, name) for name in self.field_names()}

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Estimated cost in dollars from the configured price table."""
        return (
            prompt_tokens * self.price_input_per_mtok
            + completion_tokens * self.price_output_per_mtok
        ) / 1e6

    def build(self, **backend_kwargs: Any) -> Backend:
        """The backend object; ``backend_kwargs`` go to its constructor (``neutral_penalties``
        for openai, ``stop_loops`` for transformers). Call its ``close()`` when done, or use
        :meth:`open`."""
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
                dtype=self.dtype,
                trust_remote_code=self.trust_remote_code,
                **backend_kwargs,
            )
        if self.backend == "llamacpp":
            return make_backend(
                "llamacpp", self.model, n_parallel=self.n_parallel, **backend_kwargs
            )
        return make_backend(
            "vllm",
            self.model,
            trust_remote_code=self.trust_remote_code,
            **self.vllm_kwargs(),
            **backend_kwargs,
        )

    @contextmanager
    def open(self, **backend_kwargs: Any) -> Iterator[Backend]:
        """``with cfg.open() as backend:`` -- :meth:`build`, then ``close()`` on the way out
        (a vLLM engine gives its GPU memory back), also when the block raises."""
        backend = self.build(**backend_kwargs)
        try:
            yield backend
        finally:
            close_backend(backend)


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


def close_backend(backend: Any) -> None:
    """Call ``backend.close()`` if it has one (a backend from outside medistill may not)."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()


__all__ = [
    "BACKENDS",
    "DTYPES",
    "ENGINE_KEYS",
    "PROVIDER_MODELS",
    "SERVED_MODELS",
    "BackendConfig",
    "ConfigValueError",
    "TeacherConfig",
    "VLLMEngineConfig",
    "close_backend",
    "make_backend",
    "provider_model_problem",
    "served_label",
    "served_name",
]
