"""Which precision a run's trainable weights really live in, kept and recorded truthfully.

Two places decide it besides the recipe: TRL, which casts a quantised (QLoRA) model's adapters
to bf16 after building it, and DeepSpeed, whose engine casts the module to bf16 but keeps the
weights the optimiser updates as fp32 partitions of its own. :func:`keep_adapters_fp32` undoes
the first (an adapter with no fp32 copy loses every Adam step below bf16's resolution, as GRPO
and distillation take at lr 1e-6); :func:`precision` records the second in the manifest.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def keep_adapters_fp32(trainer: Any, cfg: Any) -> int:
    """Cast a LoRA model's half-precision trainable weights back to fp32 before training.

    TRL 1.16's ``SFTTrainer``, ``GRPOTrainer`` and ``DistillationTrainer`` cast every trainable
    parameter of a quantised (``is_loaded_in_4bit`` / ``8bit``) model to bf16 after
    ``get_peft_model``, following the QLoRA paper; the optimiser then updates bf16 weights with
    no fp32 master, and a step of lr 1e-6 on an adapter weight of size ~0.05 rounds away.
    Computation is unaffected: the Trainer's autocast (or PEFT's own cast without it) runs the
    adapters in the compute dtype. Left alone: full fine-tuning (its dtype is chosen in
    ``resolve_hardware``), ``pure_bf16`` (asked for), and DeepSpeed, whose engine keeps fp32
    master partitions itself and needs one dtype across its (ZeRO-3) parameters.

    Returns the number of parameters cast (logged).
    """
    import torch
    from peft import PeftModel

    model = trainer.model
    if not isinstance(model, PeftModel) or getattr(cfg, "pure_bf16", False):
        return 0
    if getattr(trainer, "is_deepspeed_enabled", False):
        return 0
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            cast += 1
    if cast:
        log.info(
            "kept %d adapter weights in float32 (TRL cast them to half precision for the "
            "quantised base): the optimiser needs an fp32 copy for small steps",
            cast,
        )
    return cast


def _enabled(section: Any, fallback: bool) -> bool:
    """A DeepSpeed ``{"enabled": ...}`` flag (``"auto"`` is what the Trainer fills in)."""
    value = (section or {}).get("enabled", False)
    if isinstance(value, str):
        return fallback if value.lower() == "auto" else value.lower() == "true"
    return bool(value)


def deepspeed_precision(ds_config: dict[str, Any], cfg: Any) -> tuple[str, str] | None:
    """``(module dtype, master dtype)`` under DeepSpeed, from its config, or ``None`` when it
    runs without bf16/fp16 (it then updates the module's own weights).

    With ``bf16`` (or ``fp16``) enabled, DeepSpeed casts the module to half precision and its
    ZeRO optimiser keeps fp32 partitions of the trainable weights, which it updates;
    ``bf16_master_weights_and_grads`` (``fp16_master_weights_and_grads``) keeps those in half
    precision instead.
    """
    for name, half in (("bf16", "bfloat16"), ("fp16", "float16")):
        section = ds_config.get(name) or {}
        if _enabled(section, bool(getattr(cfg, name, False))):
            return half, half if section.get(f"{name}_master_weights_and_grads") else "float32"
    return None


def precision_record(
    module_dtypes: list[str],
    cfg: Any,
    *,
    distributed: str,
    deepspeed_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest's ``precision``: the dtype of the weights the optimiser updates
    (``trainable_weights``), how the run loaded and computed, and who keeps the master copy.

    ``module_dtypes`` are the dtypes of the model's trainable parameters as the module holds
    them; under DeepSpeed with half precision these are the engine's half copies, not what it
    trains (``deepspeed_config`` decides, see :func:`deepspeed_precision`).
    """
    compute = "bfloat16" if cfg.bf16 else "float16" if cfg.fp16 else "float32"
    record: dict[str, Any] = {
        "trainable_weights": list(module_dtypes),
        "loaded_as": cfg.dtype,
        "compute": compute + (" (autocast)" if compute != "float32" else ""),
        "pure_bf16": bool(getattr(cfg, "pure_bf16", False)),
        "distributed": distributed,
    }
    if deepspeed_config is None:
        return record
    stage = (deepspeed_config.get("zero_optimization") or {}).get("stage", 0)
    dtypes = deepspeed_precision(deepspeed_config, cfg)
    if dtypes is not None:
        half, master = dtypes
        record.update(
            {
                "trainable_weights": [master],
                "module_weights": list(module_dtypes),
                "master_weights": f"{master}, kept by the DeepSpeed ZeRO-{stage} optimizer",
                "compute": f"{half} (DeepSpeed casts the module)",
            }
        )
    return record


def precision(trainer: Any, cfg: Any) -> dict[str, Any]:
    """:func:`precision_record` for a built trainer: its trainable parameters' dtypes, its
    distributed type and, under DeepSpeed, the engine's config as accelerate holds it."""
    module_dtypes = sorted(
        {str(p.dtype).removeprefix("torch.") for p in trainer.model.parameters() if p.requires_grad}
    )
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return precision_record(
        module_dtypes,
        cfg,
        distributed=str(trainer.accelerator.distributed_type).split(".")[-1],
        deepspeed_config=getattr(plugin, "deepspeed_config", None),
    )
