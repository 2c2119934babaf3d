"""What a rehearsal asserts after its run: every training stage changed the weights it trains.

A stage that "finishes" without moving a weight (GRPO whose completions were all cut off, so
every reward was equal and every advantage zero) would pass any check on exit codes and
manifests; comparing the stage's saved weights with the ones it started from cannot be
fooled that way. The comparison is made in the saved model's own dtype: the starting
weights are cast to it first, so a model saved in bf16 after loading fp32 weights does not
count as changed by the cast alone. A LoRA stage is judged by its adapter instead: PEFT starts
every B matrix at zero, so a B that is no longer zero was trained (a merged bf16 copy would
round a first small step of lr 5e-5 away).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError

log = logging.getLogger(__name__)

#: Training stages and what each one's weights are compared with.
TRAINED_FROM = {
    "sft": "the base student",
    "grpo": "the model GRPO started from",
    "distill": "the student distillation started from",
}


def _tensors(folder: Path) -> dict[str, Any]:
    """Every tensor of the safetensors files in a model folder, all in memory (a tiny model's
    kilobytes; gpu_check's 1.7B model some gigabytes of host memory)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise MedistillError(f"{folder}: no *.safetensors weights to compare")
    out: dict[str, Any] = {}
    for f in files:
        out.update(load_file(f))
    return out


def weights_moved(start: str | Path, trained: str | Path) -> dict[str, Any]:
    """How far ``trained``'s weights are from ``start``'s: tensors and elements that differ.

    Both are model folders with safetensors weights. Returns ``tensors_changed``,
    ``tensors``, ``elements_changed``, ``elements`` and ``share_changed``; a tensor only one
    side has is an error (a different model, not a trained copy).
    """
    a, b = _tensors(Path(start)), _tensors(Path(trained))
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))[:3]
        raise MedistillError(
            f"{trained}: its weights are not those of {start} trained (tensors only one side "
            f"has: {', '.join(only)})"
        )
    tensors = changed = elements = moved = 0
    for name, after in b.items():
        before = a[name].to(after.dtype)
        diff = int((before != after).sum()) if before.shape == after.shape else after.numel()
        tensors += 1
        changed += diff > 0
        elements += after.numel()
        moved += diff
    return {
        "tensors_changed": changed,
        "tensors": tensors,
        "elements_changed": moved,
        "elements": elements,
        "share_changed": round(moved / elements, 6) if elements else 0.0,
    }


def adapter_moved(adapter: str | Path) -> dict[str, Any] | None:
    """How many of a LoRA adapter's B matrices left their zero init (``None`` when the
    adapter was not initialised with zero B matrices, so its start is unknown here)."""
    folder = Path(adapter)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("init_lora_weights", True) not in (True, "gaussian"):
        return None
    b = {k: v for k, v in _tensors(folder).items() if ".lora_B." in k}
    if not b:
        return None
    moved = sum(int((v != 0).sum()) for v in b.values())
    elements = sum(v.numel() for v in b.values())
    return {
        "tensors_changed": sum(bool((v != 0).any()) for v in b.values()),
        "tensors": len(b),
        "elements_changed": moved,
        "elements": elements,
        "share_changed": round(moved / elements, 6) if elements else 0.0,
        "compared": "LoRA B matrices against their zero init",
    }


def check_trained(run_dir: Path, stages: list[str]) -> dict[str, dict[str, Any]]:
    """For each training stage of ``stages``: the weights it saved against those it started
    from (its ``medistill_train.json`` names them); raise when a stage changed none."""
    out: dict[str, dict[str, Any]] = {}
    for stage in (s for s in stages if s in TRAINED_FROM):
        folder = run_dir / stage
        manifest = json.loads((folder / "medistill_train.json").read_text(encoding="utf-8"))
        start = Path(manifest["base_model"])
        adapter = folder / str(manifest.get("adapter") or "adapter")
        moved = adapter_moved(adapter) if manifest.get("adapter") and adapter.is_dir() else None
        moved = moved or {**weights_moved(start, folder), "compared": "saved weights"}
        out[stage] = {"from": str(start), **moved}
        log.info(
            "rehearsal: %s changed %d of %d weight tensors (%.1f%% of elements)",
            stage,
            moved["tensors_changed"],
            moved["tensors"],
            100 * moved["share_changed"],
        )
        if moved["tensors_changed"] == 0:
            unchanged = (
                f"its adapter's B matrices are still zero ({adapter})"
                if moved["compared"].startswith("LoRA")
                else f"{folder} equals {TRAINED_FROM[stage]}, {start}"
            )
            raise MedistillError(
                f"rehearsal: {stage} finished without changing a weight ({unchanged}): its "
                f"training steps had no gradient; see {folder / 'log.jsonl'} (loss, grad_norm, "
                "rewards)"
            )
    return out


def describe(stage: str, moved: dict[str, Any]) -> str:
    """One line for the rehearsal's summary: how much of the stage's weights changed."""
    what = (
        "LoRA B matrices (from their zero init)"
        if moved.get("compared", "").startswith("LoRA")
        else f"weight tensors (against {TRAINED_FROM[stage]})"
    )
    return (
        f"{stage} changed {moved['tensors_changed']} of {moved['tensors']} {what}, "
        f"{100 * moved['share_changed']:.1f}% of {moved['elements']:,} elements"
    )


def grpo_health(run_dir: Path) -> str | None:
    """GRPO's share of cut-off completions and of groups whose rewards were all equal (no
    learning signal), from its manifest; ``None`` without a GRPO stage."""
    path = run_dir / "grpo" / "medistill_train.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8")).get("data") or {}
    cut, zero = data.get("mean_share_cut_off"), data.get("mean_share_zero_variance_groups")

    def pct(x: float | None) -> str:
        return "?" if x is None else f"{100 * x:.0f}%"

    return f"grpo: {pct(cut)} of completions cut off, {pct(zero)} of groups with equal rewards"
