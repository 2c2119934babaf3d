"""The ``sft:``, ``grpo:`` and ``distill:`` configurations: TRL's own config classes, plus TRL's
``ModelConfig`` (LoRA / QLoRA fields, as in ``trl sft``) and the few fields medistill adds.

Subclassing keeps every TRL and ``TrainingArguments`` option available under its usual name, in
recipes and on the command line alike. What medistill changes is the defaults that matter on
the hardware at hand (:meth:`_StudentFields.resolve_hardware`): bf16 only on a GPU that has it
(TRL 1.16 turns it on by default, also on CPU), packing only where the attention kernel keeps
packed sequences apart (FlashAttention), LoRA on all linear layers, checkpoints often enough
to resume a killed run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from trl import DistillationConfig, GRPOConfig, ModelConfig, SFTConfig

from medistill.errors import MedistillError
from medistill.train.data import FORMAT_VERSION
from medistill.train.hardware import (
    FLASH_ATTENTION,
    QLORA_NEEDS_CUDA,
    deepspeed_launch,
    quantized_loading_kwargs,
    require_module,
    single_process_device_map,
)
from medistill.train.lm_head import (
    CPU_LM_HEAD_VOCAB_CHUNK,
    TRL_LM_HEAD_VOCAB_CHUNK,
    apply_lm_head_vocab_chunk,
    lm_head_vocab_chunk_default,
)
from medistill.train.trackers import headless_trackers

log = logging.getLogger(__name__)
# TRL 1.16 defaults gradient_checkpointing=True, which transformers 5 renames: same setting.
# TRL 1.16 still calls transformers' pre-v6 names (gradient_checkpointing, ...): same behaviour.
warnings.filterwarnings(
    "ignore", message=r"`\w+` is deprecated and will be removed in v6", category=FutureWarning
)

OVERLONG = ("drop", "truncate_middle")
#: Recipe keys that were renamed, with what to write instead (:func:`medistill.config.build`).
RENAMED_KEYS = {
    "lm_head_chunk_tokens": "lm_head_vocab_chunk: it was never a token count but the vocabulary "
    "width of each tile of TRL's fused LM head; rename the key (or remove it: the default is "
    f"TRL's {TRL_LM_HEAD_VOCAB_CHUNK:,} on a GPU, {CPU_LM_HEAD_VOCAB_CHUNK:,} on CPU)",
}

# Settings that change how a run is logged or saved, not what it learns: a rerun may change them.
OPERATIONAL = frozenset(
    {
        "output_dir",
        "logging_dir",
        "logging_steps",
        "logging_strategy",
        "logging_first_step",
        "report_to",
        "run_name",
        "disable_tqdm",
        "save_steps",
        "save_strategy",
        "save_total_limit",
        "overwrite_output_dir",
        "push_to_hub",
        "hub_model_id",
        "hub_token",
        "hub_strategy",
        "dataloader_num_workers",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "resume_from_checkpoint",
        "log_completions",
        "num_completions_to_print",
        "eval_steps",
        "eval_strategy",
        "per_device_eval_batch_size",
        "label",
        "overwrite",
        "dataloader_pin_memory",
        "lm_head_vocab_chunk",
    }
)


@dataclass
class _StudentFields:
    """The fields medistill adds to every training stage."""

    #: Renamed recipe keys, refused with what to write instead (``medistill.config.build``).
    RENAMED_KEYS: ClassVar[dict[str, str]] = RENAMED_KEYS

    model: str | None = field(
        default=None,
        metadata={"help": "student: hub id, local folder (an SFT output), or 'smollm2' (packaged)"},
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": f"curated dataset folder (medistill curate, format_version {FORMAT_VERSION}) "
            "or a JSONL file of rows in that format"
        },
    )
    label: str | None = field(
        default=None, metadata={"help": "name of the trained model in cards and reports"}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "discard a finished or different run in output_dir instead of refusing"},
    )
    # TRL / ModelConfig fields whose defaults medistill changes for every training stage.
    use_peft: bool = field(default=True, metadata={"help": "LoRA (PEFT) instead of full tuning"})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "LoRA target modules ('all-linear' = every linear layer but the head)"},
    )
    lora_dropout: float = field(
        default=0.0,
        metadata={
            "help": "dropout on each LoRA input; 0 (as Unsloth) because every adapter otherwise "
            "keeps a dropped copy of its input, which with all-linear LoRA costs memory and time "
            "(BENCHMARKS.md, SFT memory)"
        },
    )
    dtype: str | None = field(
        default="auto",
        metadata={"help": "weights dtype: auto (bf16 with bf16 training, else fp32) or a name"},
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision (default: only on a bf16 GPU)"}
    )
    pure_bf16: bool = field(
        default=False,
        metadata={
            "help": "full fine-tuning: keep the weights themselves in bf16/fp16, with no fp32 "
            "master copy (half the weight memory; Adam steps below bf16's resolution, e.g. lr "
            "1e-6 on weights of size 0.01-1, round away and the model barely moves). Default: "
            "fp32 weights with bf16 autocast, or the engine's fp32 masters under DeepSpeed"
        },
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    report_to: str | list[str] | None = field(
        default="all",
        metadata={"help": "trackers: all installed (TensorBoard, W&B, trackio), none, or names"},
    )
    lm_head_vocab_chunk: int | None = field(
        default=None,
        metadata={
            "help": "vocabulary columns per tile of TRL's fused LM head (TRL's chunk_size: each "
            "tile is up to 4,096 tokens x this many vocabulary entries, scored and folded into "
            "an online softmax; the result is the same for any width, only memory and kernel "
            "count change). Default: TRL's 32,768 on a GPU (5 tiles per 4,096 tokens for a "
            "152k vocabulary), 1,024 on CPU, where each tile's softmax is materialised in "
            "torch (BENCHMARKS.md, SFT memory)"
        },
    )

    def resolve_hardware(self) -> None:
        """Pick precision and padding for the machine, unless the recipe set them.

        Called before ``TrainingArguments.__post_init__`` so the choice is what TRL sees.
        """
        import torch

        cuda = torch.cuda.is_available()
        bf16_ok = cuda and torch.cuda.is_bf16_supported()
        if self.bf16 is None:
            self.bf16 = bool(bf16_ok and not self.fp16)
        if self.bf16 and not bf16_ok and not self.use_cpu and not cuda:
            log.warning(
                "bf16 requested on a machine without a bf16 GPU: training runs in bf16 on "
                "the CPU (slow); set bf16: false for fp32"
            )
        if not cuda:
            self.dataloader_pin_memory = False  # nothing to pin to without a GPU
        if self.report_to in ("all", ["all"]):
            self.report_to = headless_trackers()
        if self.lm_head_vocab_chunk is None:
            self.lm_head_vocab_chunk = lm_head_vocab_chunk_default()
        elif self.lm_head_vocab_chunk < 1:
            raise MedistillError(
                f"lm_head_vocab_chunk: {self.lm_head_vocab_chunk} is not a positive number of "
                f"vocabulary columns; remove it for the default"
            )
        half = "bfloat16" if self.bf16 else "float16" if self.fp16 else None
        # Full fine-tuning in half precision keeps fp32 weights (the master copy) and computes
        # in autocast, unless pure_bf16 or DeepSpeed (whose engine keeps fp32 masters). LoRA
        # trains fp32 adapters on a frozen base, which may load in half precision.
        needs_master = bool(half) and not self.use_peft
        needs_master = needs_master and not self.pure_bf16 and not deepspeed_launch()
        if self.dtype in (None, "auto"):
            self.dtype = "float32" if needs_master or not half else half
        elif needs_master and self.dtype in ("bfloat16", "float16", "half"):
            raise MedistillError(
                f"dtype: {self.dtype} with full fine-tuning trains the weights themselves in "
                f"{self.dtype}, with no fp32 master copy: updates below its resolution (lr 1e-6) "
                f"are lost. Remove dtype (auto: fp32 weights, {half} autocast) or set "
                f"pure_bf16: true to accept it"
            )
        if (self.load_in_4bit or self.load_in_8bit) and not cuda:
            raise MedistillError(QLORA_NEEDS_CUDA)

    @property
    def flash_attention(self) -> bool:
        """True when the attention kernel handles packed, padding-free batches."""
        return (self.attn_implementation or "") in FLASH_ATTENTION

    def model_init_kwargs_resolved(self) -> dict[str, Any]:
        """``from_pretrained`` arguments: dtype, attention, safetensors only, quantisation."""
        kwargs: dict[str, Any] = dict(self.model_init_kwargs or {})
        kwargs.setdefault("dtype", self.dtype)
        kwargs.setdefault("use_safetensors", True)
        kwargs.setdefault("trust_remote_code", self.trust_remote_code)
        if self.attn_implementation:
            kwargs.setdefault("attn_implementation", self.attn_implementation)
        if self.load_in_4bit or self.load_in_8bit:
            kwargs.update(quantized_loading_kwargs(self))
        kwargs.update({} if "device_map" in kwargs else single_process_device_map())
        return kwargs

    def require_engines(self) -> None:
        """Refuse, before any model loads, an optional engine the recipe asks for but this
        machine lacks (bitsandbytes for QLoRA, vLLM for generation).

        Kept out of construction so a GPU recipe still parses and validates on a laptop.
        """
        require_module(self.load_in_4bit or self.load_in_8bit, "bitsandbytes", "QLoRA")
        require_module(getattr(self, "use_vllm", False), "vllm", "use_vllm")

    def apply_lm_head_chunking(self) -> None:
        """Set the vocabulary width of TRL's fused-LM-head tiles (``lm_head_vocab_chunk``)."""
        apply_lm_head_vocab_chunk(int(self.lm_head_vocab_chunk or lm_head_vocab_chunk_default()))

    def trainer_args(self, **changes: Any) -> Any:
        """A copy of this config for the TRL trainer, with ``from_pretrained`` arguments resolved
        and the chat template left to the tokenizer (already applied by ``load_tokenizer``).

        The recipe object itself stays as written, so its :meth:`identity` is the run's.
        """
        self.require_engines()
        self.apply_lm_head_chunking()
        args = copy.copy(self)
        args.model_init_kwargs = self.model_init_kwargs_resolved()
        if hasattr(args, "chat_template_path"):
            args.chat_template_path = None
        for key, value in changes.items():
            setattr(args, key, value)
        return args

    def identity(self) -> dict[str, Any]:
        """The settings that define what is learned (everything but :data:`OPERATIONAL`)."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in OPERATIONAL or f.name.startswith("_") or not f.init:
                continue
            value = getattr(self, f.name)
            out[f.name] = value.value if hasattr(value, "value") else value
        return json.loads(json.dumps(out, default=str))

    def identity_hash(self) -> str:
        """A short hash of :meth:`identity`, recorded in the output's manifest."""
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def require(self, *names: str) -> None:
        """Fail with the recipe key's name when a required field is missing."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise MedistillError(
                f"missing {', '.join(missing)}: set it in the recipe or pass --{missing[0]}"
            )


def _post_init(self, trl_cls: type) -> None:
    self.resolve_hardware()
    ModelConfig.__post_init__(self)
    trl_cls.__post_init__(self)


@dataclass
class SFTRecipe(_StudentFields, ModelConfig, SFTConfig):
    """``medistill sft``: supervised fine-tuning on the teacher's traces (TRL ``SFTTrainer``).

    Every field of TRL's ``SFTConfig`` and ``ModelConfig`` is available. medistill's defaults:
    LoRA on all linear layers, loss on the completion only, traces longer than ``max_length``
    dropped and counted (``overlong``), fp32 on CPU, checkpoints every 50 steps.
    """

    output_dir: str | None = field(
        default="runs/sft", metadata={"help": "run folder: checkpoints, then the final model"}
    )
    max_length: int | None = field(
        default=2048, metadata={"help": "longest training sequence in tokens (prompt + trace)"}
    )
    overlong: str = field(
        default="drop",
        metadata={
            "help": "a trace longer than max_length: drop (counted) or truncate_middle (keep the "
            "prompt, the start of the reasoning and the final answer line)",
            "choices": OVERLONG,
        },
    )
    completion_only_loss: bool | None = field(
        default=True, metadata={"help": "loss on the assistant's completion tokens only"}
    )
    packing: bool | None = field(
        default=None,
        metadata={
            "help": "pack sequences (bfd, padding-free); default: on with FlashAttention, off "
            "otherwise (plain padding, length-grouped batches)"
        },
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs over the dataset"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate (LoRA)"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "share of steps warming up"})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "batch per device"})
    save_steps: float = field(default=50, metadata={"help": "checkpoint every N steps"})
    logging_steps: float = field(default=5, metadata={"help": "log every N steps"})

    def __post_init__(self) -> None:
        if self.overlong not in OVERLONG:
            raise ValueError(f"overlong: {self.overlong!r} is not one of {', '.join(OVERLONG)}")
        if self.packing is None:
            self.packing = self.flash_attention
        if (
            not self.packing
            and self.train_sampling_strategy == "random"
            and self.per_device_train_batch_size > 1
        ):
            self.train_sampling_strategy = "group_by_length"
        _post_init(self, SFTConfig)


@dataclass
class GRPORecipe(_StudentFields, ModelConfig, GRPOConfig):
    """``medistill grpo``: reinforcement learning from the SFT student (TRL ``GRPOTrainer``).

    Prompts, options and gold come from the curated dataset; ``rewards`` names functions of
    :mod:`medistill.train.rewards` with their weights and parameters.
    """

    output_dir: str | None = field(
        default="runs/grpo", metadata={"help": "run folder: checkpoints, then the final model"}
    )
    rewards: dict[str, Any] = field(
        default_factory=lambda: {
            "correctness": 1.0,
            "format": 0.5,
            "conciseness": {"weight": 0.5, "budget": 384, "buffer": 128},
        },
        metadata={
            "help": "reward name -> weight, or -> {weight: w, <parameters>}; names: "
            "correctness, format, conciseness, safety, rubric"
        },
    )
    max_completion_length: int | None = field(
        default=512,
        metadata={"help": "generation budget per completion; a cut-off answer earns nothing"},
    )
    max_prompts: int | None = field(
        default=None, metadata={"help": "use the first N distinct questions of the dataset"}
    )
    option_orders: int = field(
        default=1,
        metadata={
            "help": "each prompt appears in this many option orders (the curated one, then "
            "seeded shuffles, the gold moved with its option): with num_train_epochs 1, that "
            "many passes over the prompts, each in a new order, so a guessed letter is not "
            "rewarded for its position"
        },
    )
    cutoff_warning: float = field(
        default=0.2,
        metadata={"help": "warn when more than this share of completions is cut off"},
    )
    num_generations: int | None = field(default=4, metadata={"help": "completions per prompt"})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "completions per step"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate"})
    save_steps: float = field(default=10, metadata={"help": "checkpoint every N steps"})
    logging_steps: float = field(default=1, metadata={"help": "log every N steps"})

    def __post_init__(self) -> None:
        if not isinstance(self.rewards, dict) or not self.rewards:
            raise ValueError("rewards: a mapping of reward name -> weight (or parameters)")
        _post_init(self, GRPOConfig)
        half = self.bf16 or self.fp16
        if self.use_transformers_continuous_batching and half and not self.pure_bf16:
            raise ValueError(
                "use_transformers_continuous_batching with bf16/fp16: TRL 1.16 casts the whole "
                "model to half precision before each generation, the fp32 weights the optimiser "
                "updates included; use the default generation or use_vllm, or set pure_bf16: "
                "true to accept half-precision weights"
            )


@dataclass
class DistillRecipe(_StudentFields, ModelConfig, DistillationConfig):
    """``medistill distill``: on-policy distillation from a local open-weight teacher.

    The student generates; the teacher's next-token distribution on that text is the target
    (TRL ``DistillationTrainer`` when both share a tokenizer, ``GOLDTrainer`` across
    tokenizers). A teacher reached only through an API cannot be used: the loss needs its
    log-probabilities on the student's own tokens.
    """

    output_dir: str | None = field(
        default="runs/distill", metadata={"help": "run folder: checkpoints, then the final model"}
    )
    teacher: str | None = field(
        default=None,
        metadata={"help": "local open-weight teacher: hub id, folder or 'smollm2' (not an API)"},
    )
    cross_tokenizer: bool | None = field(
        default=None,
        metadata={
            "help": "use GOLD's cross-tokenizer loss; default: when the teacher's vocabulary "
            "differs from the student's"
        },
    )
    max_prompts: int | None = field(
        default=None, metadata={"help": "use the first N distinct questions of the dataset"}
    )
    max_completion_length: int | None = field(
        default=512, metadata={"help": "student generation budget per prompt"}
    )
    per_device_train_batch_size: int = field(default=4, metadata={"help": "prompts per step"})
    learning_rate: float = field(default=1e-5, metadata={"help": "peak learning rate"})
    save_steps: float = field(default=10, metadata={"help": "checkpoint every N steps"})
    logging_steps: float = field(default=1, metadata={"help": "log every N steps"})

    def __post_init__(self) -> None:
        _post_init(self, DistillationConfig)
