"""What defines an eval run: :class:`EvalConfig` (``medistill eval``'s options and a
recipe's ``eval:`` section), its default label and folder, and the identity a resumed run
must share with the stored one."""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medistill.backends import SamplingParams
from medistill.backends.config import BackendConfig, VLLMEngineConfig
from medistill.backends.openai_http import OpenAIBackend
from medistill.data.mcq_options import COLUMNS_HELP, HOLDOUT_HELP, HOLDOUT_SEED_HELP, with_options
from medistill.data.safety import SAFETY_BENCHMARKS
from medistill.errors import MedistillError
from medistill.evaluate.sampling import is_resolved, resolve
from medistill.models import model_name
from medistill.prompts import get_template

# Changing any of these changes the answers: a resumed run must match them.
IDENTITY_KEYS = (
    "model",
    "benchmark",
    "path",
    "mode",
    "template",
    "sampling",
    "backend",
    "loader_kwargs",
    "request",
    "engine",
)

#: Last path components that say nothing about which model it is: the default label adds
#: the folder above (``sft/checkpoint-500``, ``grpo/final``).
_GENERIC_NAMES = re.compile(r"^(checkpoint-\d+|final|merged|model|best|last|output|latest)$")


@dataclass
class _EvalKeys:
    """The keys of :class:`EvalConfig` before its vLLM engine keys (the order of ``--help``)."""

    model: str = field(metadata={"help": "hub id, local folder, or 'smollm2' (packaged)"})
    benchmark: str = field(default="sample", metadata={"help": "registered benchmark name"})
    path: str | None = field(default=None, metadata={"help": "local benchmark file/folder"})
    columns: dict[str, Any] | None = field(default=None, metadata={"help": COLUMNS_HELP})
    holdout: float | None = field(default=None, metadata={"help": HOLDOUT_HELP})
    holdout_seed: int = field(default=0, metadata={"help": HOLDOUT_SEED_HELP})
    out: str | None = field(
        default=None, metadata={"help": "run folder; none: runs/eval/<label>-<benchmark>-<mode>"}
    )
    label: str | None = field(default=None, metadata={"help": "model name shown in reports"})
    backend: str = field(
        default="transformers", metadata={"help": "transformers|openai|vllm|llamacpp (a .gguf)"}
    )
    mode: Literal["generate", "loglik"] = field(
        default="generate", metadata={"help": "generate + extract, or option-letter loglik"}
    )
    limit: int | None = field(default=None, metadata={"help": "first N questions only"})
    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "local backends: sequences decoded together (transformers) or prompts per "
            "LLM.chat call (vllm); none: 8 (transformers), 256 (vllm)"
        },
    )
    n_parallel: int | None = field(
        default=None,
        metadata={
            "help": "llamacpp: conversations decoded at once on one context (a finished "
            "answer's slot takes the next); none: 8"
        },
    )
    n_threads: int | None = field(
        default=None, metadata={"help": "llamacpp: CPU threads; none: every core"}
    )
    max_new_tokens: int = field(default=2048, metadata={"help": "token budget per answer"})
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "0 = greedy; none: the model's generation_config.json when it samples "
            "(Qwen3 thinking: 0.6), else greedy"
        },
    )
    top_p: float | None = field(
        default=None,
        metadata={"help": "nucleus sampling: top-p mass; none: the model's, else 1"},
    )
    top_k: int | None = field(
        default=None,
        metadata={"help": "sample from the k likeliest tokens; none: the model's, else no cut"},
    )
    seed: int | None = field(default=0, metadata={"help": "sampling seed"})
    template: str = field(default="cot", metadata={"help": "prompt template name or YAML"})
    base_url: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        metadata={"help": "OpenAI-compatible endpoint(s) for backend openai (balanced)"},
    )
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "env var with key"})
    concurrency: int = field(default=32, metadata={"help": "HTTP requests in flight"})
    skip_invalid: bool = field(
        default=False, metadata={"help": "skip bad benchmark rows (counted) instead of failing"}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow model code from the hub"}
    )
    loader_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'benchmark loader options as a mapping, e.g. {"cop_base": 1}'},
    )
    extra_body: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'extra JSON fields for every request (openai), e.g. {"top_k": 1}'},
    )
    neutral_penalties: bool = field(
        default=True,
        metadata={
            "help": "openai: send frequency/presence penalty 0 and repetition_penalty / "
            "repeat_penalty 1.0, so server defaults (llama.cpp: 1.1) do not alter decoding"
        },
    )
    stop_loops: bool = field(
        default=True,
        metadata={
            "help": "transformers, vllm: end a degenerate repetition loop early (finish "
            "reason repetition); any backend flags one that ran to the budget"
        },
    )
    loglik_preset: Literal["lm-eval", "medistill"] = field(
        default="lm-eval",
        metadata={
            "help": "loglik prompt: lm-eval (lm-evaluation-harness 0.4.13 task prompts, no "
            "added BOS unless the tokenizer adds one) or medistill (template, BOS first)"
        },
    )
    per_category: int | None = field(
        default=None,
        metadata={
            "help": "safety benchmarks: the first N requests of each category, split over "
            "both sources (medsafetybench: 30 = 15 GPT-4 + 15 Llama-2)"
        },
    )
    judge_model: str | None = field(
        default=None,
        metadata={
            "help": "safety benchmarks: the judge's model name at an OpenAI-compatible endpoint "
            "(a 1-5 harmfulness score per answer; none: the refusal detector only); MCQs "
            "with step_judge: the step judge"
        },
    )
    judge_base_url: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        metadata={"help": "safety judge: OpenAI-compatible endpoint(s)"},
    )
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "safety judge: env var holding its API key (never logged)"},
    )
    judge_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "safety judge: other backend keys as a mapping, e.g. "
            '{"concurrency": 8, "timeout_s": 60, "max_retries": 2}'
        },
    )
    audit: bool = field(
        default=True,
        metadata={
            "help": "generate mode: the explanation audit beside accuracy (whether the reasoning "
            "argues for the answer line's option; early answering: the letter with the reasoning "
            "cut at 0-100% of its tokens, transformers and llamacpp backends)"
        },
    )
    audit_limit: int | None = field(
        default=200,
        metadata={"help": "early answering on the first N answered questions; none: all"},
    )
    step_judge: bool = field(
        default=False,
        metadata={
            "help": "generate mode: the judge (judge_model at judge_base_url) rates each "
            "reasoning step correct / wrong / can't tell against the gold answer (cached)"
        },
    )
    permute_options: int = field(
        default=1,
        metadata={
            "help": "ask each question under K option orders (the original and K minus 1 "
            "cyclic shifts, drawn with seed): accuracy per order, the share correct under "
            "every order, how often the chosen option text changes"
        },
    )
    samples: int | None = field(
        default=None,
        metadata={
            "help": "answers per question (and order), sampled with seed + i; needs "
            "temperature > 0; none: sampled_samples when the model's generation_config.json "
            "makes decoding sample, else 1"
        },
    )
    sampled_samples: int = field(
        default=4,
        metadata={
            "help": "answers per question when the model's generation_config.json makes "
            "decoding sample and samples is unset: accuracy is their mean, with its spread "
            "over seeds (samples_accuracy)"
        },
    )
    vote: Literal["majority", "mean"] | None = field(
        default=None,
        metadata={
            "help": "how samples decide: mean (accuracy averaged over samples, as makers "
            "report sampled models) or majority (over option texts; ties: earliest); none: "
            "mean for sampled_samples, majority for samples"
        },
    )
    thinking_budget: int | None = field(
        default=None,
        metadata={
            "help": "tokens of reasoning after which the model is made to answer (the answer "
            "cue appended, as m1 does); transformers, vllm, or a vLLM/llama.cpp server"
        },
    )
    min_thinking_tokens: int | None = field(
        default=None,
        metadata={
            "help": "an answer that stops sooner gets 'Wait,' and keeps thinking (s1's budget "
            "forcing), at most twice, within max_new_tokens"
        },
    )


@dataclass
class EvalConfig(VLLMEngineConfig, _EvalKeys):
    """Everything that defines an eval run: ``medistill eval``'s options, a recipe's ``eval:``.

    The backend keys it shares with :class:`~medistill.backends.config.BackendConfig`
    (:data:`BACKEND_KEYS`: ``model``, ``backend``, ``base_url``, ..., and every vLLM engine key
    of :class:`~medistill.backends.config.VLLMEngineConfig`) mean the same here; the backend
    under test is built by :meth:`backend_config`.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads must be at least 1 (or none), got {self.n_threads}")
        # Your own file's columns / holdout rule join loader_kwargs: what the loader reads and
        # a resumed run must share (refused for another benchmark, or given twice differently).
        self.loader_kwargs = with_options(self.benchmark, self.loader_kwargs, self.columns,
                                          self.holdout, self.holdout_seed)  # fmt: skip

    @classmethod
    def values_from_backend(cls, backend: BackendConfig) -> dict[str, Any]:
        """The ``eval:`` keys that evaluate the model ``backend`` configures (a teacher, say):
        its model, backend, endpoints and vLLM engine settings, as recipe keys for
        :func:`medistill.config.build`. Keys an eval config does not have (prices, pacing)
        are left out."""
        return {name: copy.deepcopy(getattr(backend, name)) for name in BACKEND_KEYS}

    def backend_config(self) -> BackendConfig:
        """The backend config of the model under evaluation (shared keys from this config,
        the rest :class:`BackendConfig`'s defaults; ``batch_size`` unset: 8). The vLLM
        backend gets its own batch size from :meth:`backend_options`."""
        values = {name: getattr(self, name) for name in BACKEND_KEYS}
        if values.get("batch_size") is None:
            values.pop("batch_size", None)
        return BackendConfig(**copy.deepcopy(values))

    def backend_options(self) -> dict[str, Any]:
        """The eval-only options of the backend under test (``batch_size`` for vLLM, which
        :class:`BackendConfig` does not pass it: 256 prompts per call when unset)."""
        if self.backend == "openai":
            return {"neutral_penalties": self.neutral_penalties}
        if self.backend == "transformers":
            return {"stop_loops": self.stop_loops}
        if self.backend == "vllm":
            batch = self.batch_size if self.batch_size is not None else VLLM_BATCH_SIZE
            return {"stop_loops": self.stop_loops, "batch_size": batch}
        if self.backend == "llamacpp" and self.n_threads:
            return {"n_threads": self.n_threads}
        return {}

    def resolved(self) -> EvalConfig:
        """This config with its sampling decided (:func:`medistill.evaluate.sampling.resolve`:
        the recipe's values, else the model's ``generation_config.json``, else greedy)."""
        return self if is_resolved(self) else resolve(self)[0]

    def sampling(self) -> SamplingParams:
        """The decoding parameters of this run (its sampling resolved first)."""
        cfg = self.resolved()
        return SamplingParams(
            max_new_tokens=cfg.max_new_tokens,
            temperature=float(cfg.temperature or 0.0),
            top_p=float(cfg.top_p if cfg.top_p is not None else 1.0),
            seed=cfg.seed,
            top_k=cfg.top_k,
        )

    def run_label(self) -> str:
        """The display name: ``label``, else one that tells runs apart.

        The model's name — a hub id's last part (``Qwen3-1.7B``); a local folder with its
        parent (``exp1/final-7b``), as is a checkpoint folder (``sft/checkpoint-500``) —
        followed by the backend when it is not transformers and by ``loglik`` for a
        log-likelihood run: the same model served over HTTP, run locally and scored by
        log-likelihood gives three labels, hence three rows of a report.
        """
        if self.label:
            return self.label
        name = model_name(self.model)
        path = Path(self.model.rstrip("/"))
        if name == path.name:  # a hub id or a folder, not the packaged alias
            local = _GENERIC_NAMES.match(name) or (path.is_dir() and path.parent.name)
            if local and path.parent.name:
                name = f"{path.parent.name}/{name}"
        tags = [self.backend] if self.backend != "transformers" else []
        tags += ["loglik"] if self.mode == "loglik" else []
        return f"{name} ({', '.join(tags)})" if tags else name

    def out_dir(self) -> Path:
        """The run folder."""
        if self.out:
            return Path(self.out)
        slug = re.sub(r"[^\w.+-]+", "-", self.run_label()).strip("-") or "model"
        return Path("runs") / "eval" / f"{slug}-{self.benchmark}-{self.mode}"

    def request(self) -> dict[str, Any]:
        """What each model call is asked to do, beyond the prompt: recorded in the run's
        ``config.json`` (``request``) and part of its identity.

        HTTP: every body field but the messages, exactly as sent. Local generation: what
        adds to ``sampling`` (the loop stop). Log-likelihood: the prompt preset.
        """
        if self.mode == "loglik":
            return {"loglik_preset": self.loglik_preset}
        if self.backend == "openai":
            probe = OpenAIBackend(
                self.model, extra_body=self.extra_body, neutral_penalties=self.neutral_penalties
            )
            return probe.request_fields(self.sampling())
        if self.backend in ("transformers", "vllm"):  # besides ``sampling``
            return {"stop_loops": self.stop_loops}
        return {}

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the stored one (sampling resolved)."""
        if self is not self.resolved():
            return self.resolved().identity()

        # A safety request is the user turn as written: no template shapes the prompt.
        safety = self.benchmark in SAFETY_BENCHMARKS
        ident = {
            "model": self.model,
            "benchmark": self.benchmark,
            "path": str(Path(self.path).resolve()) if self.path else None,
            "mode": self.mode,
            "template": None if safety else get_template(self.template).to_dict(),
            "sampling": self.sampling().to_dict() if self.mode == "generate" else None,
            "backend": self.backend,
            "loader_kwargs": self.loader_kwargs,
            "request": self.request(),
            "engine": self.engine_identity(),
        }
        if self.variants():  # only when used: a run stored before these keys still matches
            ident["engine"] = {**ident["engine"], "variants": self.variants()}
        if self.budget():
            ident["engine"] = {**ident["engine"], "budget": self.budget()}
        return ident

    def check_variants(self) -> None:
        """Refuse option orders or samples that cannot mean what they say."""
        if self.sampled_samples < 1:
            raise MedistillError("sampled_samples must be at least 1")
        if self is not self.resolved():
            return self.resolved().check_variants()
        if self.permute_options < 1 or self.samples < 1:
            raise MedistillError("permute_options and samples must be at least 1")
        if self.vote not in ("majority", "mean"):
            raise MedistillError(f"vote {self.vote!r}: choose majority or mean")
        if self.samples > 1 and self.temperature <= 0:
            raise MedistillError(
                f"samples {self.samples} at temperature {self.temperature}: greedy decoding "
                "gives every sample the same answer; set temperature > 0 (e.g. 0.7)"
            )
        if (self.samples > 1 or self.permute_options > 1) and self.mode == "loglik":
            raise MedistillError("permute_options and samples are for generate mode")

    def variants(self) -> dict[str, int] | None:
        """``{"orders", "samples"}`` when a question is asked more than once, else ``None``
        (``vote`` added when it is mean, so a majority run stored before it still matches)."""
        cfg = self.resolved()
        if cfg.permute_options == 1 and cfg.samples == 1:
            return None
        out: dict[str, Any] = {"orders": cfg.permute_options, "samples": cfg.samples}
        if cfg.vote == "mean":
            out["vote"] = "mean"
        return out

    def budget(self) -> dict[str, int] | None:
        """The test-time budget settings when any is set, else ``None``."""
        if self.thinking_budget is None and self.min_thinking_tokens is None:
            return None
        return {
            "thinking_budget": self.thinking_budget,
            "min_thinking_tokens": self.min_thinking_tokens,
        }

    def engine_identity(self) -> dict[str, Any]:
        """The engine settings that change the answers of a local backend, where they are not
        the defaults (so a run stored before these keys existed still matches)."""
        out: dict[str, Any] = {}
        if self.backend in ("transformers", "vllm") and self.dtype != "auto":
            out["dtype"] = self.dtype
        if self.backend == "vllm" and self.engine_args:
            out["engine_args"] = self.engine_args
        return out


#: Prompts per ``LLM.chat`` call of the vLLM backend when ``batch_size`` is unset.
VLLM_BATCH_SIZE = 256

#: The keys :class:`EvalConfig` shares with :class:`BackendConfig`, in BackendConfig's order:
#: the ones that pass from one to the other.
BACKEND_KEYS = tuple(
    name
    for name in BackendConfig.field_names()
    if name in {f.name for f in dataclasses.fields(EvalConfig) if f.init}
)


@dataclass
class EvalCommandOptions:
    """Options of one ``medistill eval`` call that are not recipe keys."""

    overwrite: bool = field(
        default=False, metadata={"help": "discard a previous run in the run folder"}
    )
    cop_base: int | None = field(
        default=None,
        metadata={"help": "MedMCQA: 0- or 1-based cop (sets loader_kwargs cop_base)"},
    )
