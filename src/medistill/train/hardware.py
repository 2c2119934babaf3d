"""What this machine offers a training stage, and how the student loads on it: CUDA, a
DeepSpeed launch, optional engines (bitsandbytes, vLLM) and the device map and quantisation
of ``from_pretrained`` (:meth:`medistill.train.config.SFTRecipe.model_init_kwargs_resolved`).

``torch`` and TRL are imported inside the functions that need them.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from medistill.errors import MedistillError

QLORA_NEEDS_CUDA = (
    "QLoRA (load_in_4bit / load_in_8bit) needs a CUDA GPU and bitsandbytes; on this machine "
    "use plain LoRA (use_peft: true) or full fine-tuning"
)
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn")


def deepspeed_launch() -> bool:
    """True under ``accelerate launch`` with a DeepSpeed config (its engine keeps fp32 masters)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")


def quantized_loading_kwargs(cfg: Any) -> dict[str, Any]:
    """QLoRA's ``from_pretrained`` arguments: TRL's ``BitsAndBytesConfig`` for the recipe and a
    device map putting the whole quantised model on this process's own GPU.

    TRL 1.16 still has ``get_quantization_config`` but no longer ``get_kbit_device_map``; its
    former body (``{"": local process index}``) is written out here, from ``LOCAL_RANK``, which
    ``accelerate launch`` / torchrun set for every rank (0 in a single process).
    """
    from trl import get_quantization_config

    if not torch_cuda_available():
        raise MedistillError(QLORA_NEEDS_CUDA)
    return {
        "quantization_config": get_quantization_config(cfg),
        "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))},
    }


def single_process_device_map() -> dict[str, Any]:
    """``{"device_map": {"": LOCAL_RANK}}`` for a single-process stage on a CUDA machine, else
    ``{}``.

    TRL 1.16's ``create_model_from_path`` loads with ``device_map="auto"`` when none is given
    and the process is on a GPU: in one process on a multi-GPU machine that is naive model
    parallelism over every GPU (slow, and a distillation student's and teacher's heads may land
    on different devices). Pinned here to this process's own GPU. Under several processes TRL
    sets ``None`` itself (DDP, DeepSpeed) and FSDP places the shards, so nothing is added.
    """
    world = os.environ.get("WORLD_SIZE", "1")
    if (world.isdigit() and int(world) > 1) or not torch_cuda_available():
        return {}
    return {"device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))}}


def torch_cuda_available() -> bool:
    """True on a machine with a usable CUDA device."""
    import torch

    return torch.cuda.is_available()


def require_module(wanted: bool, module: str, what: str) -> None:
    """A clear error, before any model loads, when an optional engine is asked for but absent."""
    if wanted and importlib.util.find_spec(module) is None:
        raise MedistillError(
            f"{what} needs {module}: pip install -e '.[gpu]' (the pinned GPU stack, on a "
            "CUDA machine)"
        )
