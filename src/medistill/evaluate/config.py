"""What defines an eval run: :class:`EvalConfig` (``medistill eval``'s options and a
recipe's ``eval:`` section), its default label and folder, and the identity a resumed run
must share with the stored one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medistill.backends import SamplingParams
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
)

#: Last path components that say nothing about which model it is: the default label adds
#: the folder above (``sft/checkpoint-500``, ``grpo/final``).
_GENERIC_NAMES = re.compile(r"^(checkpoint-\d+|final|merged|model|best|last|output|latest)$")


@dataclass
class EvalConfig:
    """Everything that defines an eval run: ``medistill eval``'s options, a recipe's ``eval:``."""

    model: str = field(metadata={"help": "hub id, local folder, or 'smollm2' (packaged)"})
    benchmark: str = field(default="sample", metadata={"help": "registered benchmark name"})
    path: str | None = field(default=None, metadata={"help": "local benchmark file/folder"})
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
    batch_size: int = field(default=8, metadata={"help": "generation batch size (local)"})
    max_new_tokens: int = field(default=2048, metadata={"help": "token budget per answer"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: top-p mass"})
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
        metadata={"help": "transformers: end a degenerate repetition loop early"},
    )
    loglik_preset: Literal["lm-eval", "medistill"] = field(
        default="lm-eval",
        metadata={
            "help": "loglik prompt: lm-eval (lm-evaluation-harness 0.4.13 task prompts, no "
            "added BOS unless the tokenizer adds one) or medistill (template, BOS first)"
        },
    )

    def sampling(self) -> SamplingParams:
        """The decoding parameters of this run."""
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
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
        from medistill.models import model_name

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
            from medistill.backends.openai_http import OpenAIBackend

            probe = OpenAIBackend(
                self.model, extra_body=self.extra_body, neutral_penalties=self.neutral_penalties
            )
            return probe.request_fields(self.sampling())
        if self.backend == "transformers":  # besides ``sampling``
            return {"stop_loops": self.stop_loops}
        return {}

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the stored one."""
        tpl = get_template(self.template)
        ident = {
            "model": self.model,
            "benchmark": self.benchmark,
            "path": str(Path(self.path).resolve()) if self.path else None,
            "mode": self.mode,
            "template": tpl.to_dict(),
            "sampling": self.sampling().to_dict() if self.mode == "generate" else None,
            "backend": self.backend,
            "loader_kwargs": self.loader_kwargs,
            "request": self.request(),
        }
        return ident


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
