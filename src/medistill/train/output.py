"""The run folder every training stage writes, and the standalone model it ends with.

Layout of ``output_dir`` (the contract with evaluation, export and the pipeline)::

    config.json, model.safetensors, tokenizer*, chat template, generation_config.json
                           the final model: LoRA merged, loads with from_pretrained as it is
    adapter/               the LoRA adapter alone (PEFT), when trained with LoRA
    checkpoint-N/          Trainer checkpoints (the last ones), for resuming a killed run
    README.md              model card: base model, data card summary, settings, curve, figures
    training_curve.png     loss (and reward) per step
    log.jsonl              every logged step, one JSON object per line
    medistill_train.json   the manifest: stage, status, settings and their hash, figures

A run is "finished" once the manifest says so; it is written last. A rerun of a finished run
with the same settings does nothing; with other settings it is refused unless ``overwrite``.
A killed run resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError
from medistill.notice import NOT_FOR_CLINICAL_USE
from medistill.train.precision import precision

log = logging.getLogger(__name__)

MANIFEST = "medistill_train.json"
#: The pipeline's own manifest for this stage (``medistill run``): kept beside the run, not
#: counted as content and not removed when ``overwrite`` starts the run again.
PIPELINE_MANIFEST = "pipeline.json"
#: The resolved section ``medistill run`` launched this stage with (kept likewise).
PIPELINE_LAUNCH = "launch.yaml"
PIPELINE_FILES = (PIPELINE_MANIFEST, PIPELINE_LAUNCH)
LOG = "log.jsonl"


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The run's manifest, or ``None`` when there is none (or it is unreadable)."""
    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (a kill never leaves half a file)."""
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def last_checkpoint(out: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``out``, if any."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not out.is_dir():
        return None
    steps = []
    for folder in out.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = folder.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if folder.is_dir() and step.isdigit():
            steps.append((int(step), folder))
    for _, folder in sorted(steps, reverse=True):
        # The Trainer writes trainer_state.json last: a run killed while saving leaves a
        # folder without it (or with half of it), which cannot be resumed from.
        try:
            json.loads((folder / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s is incomplete (killed while saving?); not resuming from it", folder)
            continue
        return str(folder)
    return None


def prepare_run(
    cfg: Any, stage: str, *, main: bool = True
) -> tuple[Path, str | None, dict[str, Any] | None]:
    """Open ``cfg.output_dir`` for a run of ``stage``.

    Returns the folder, the checkpoint to resume from (or ``None``) and, when the same run has
    already finished, its manifest (the caller then has nothing to do). A folder holding another
    run (other stage or settings) is refused unless ``cfg.overwrite``. Only the main process
    (``main``) ever removes or creates the folder: under several ranks the others run after it
    (``main_process_first``) and only read what it prepared, so ``overwrite`` never has a rank
    delete what another has started writing.
    """
    out = Path(cfg.output_dir)
    manifest = read_manifest(out)
    ident = cfg.identity_hash()
    if manifest is not None:
        same = manifest.get("stage") == stage and manifest.get("identity_hash") == ident
        if not same and not cfg.overwrite:
            changed = _changed_keys(manifest.get("identity") or {}, cfg.identity())
            raise MedistillError(
                f"{out} holds a {manifest.get('stage')} run with other settings "
                f"({', '.join(changed[:8]) or 'stage'}); use another output_dir, or overwrite: "
                f"true to start again"
            )
        if same and manifest.get("status") == "finished" and not cfg.overwrite:
            log.info("%s: this %s run has already finished; nothing to do", out, stage)
            return out, None, manifest
    elif (
        out.is_dir()
        and any(p.name not in PIPELINE_FILES for p in out.iterdir())
        and not cfg.overwrite
    ):
        raise MedistillError(
            f"{out} is not empty and holds no medistill run; use another output_dir, or "
            f"overwrite: true to replace it"
        )
    resumable = manifest is not None and manifest.get("identity_hash") == ident
    if not main:
        resume = last_checkpoint(out)
        return out, resume, None
    if cfg.overwrite and out.is_dir() and not (resumable and manifest.get("status") != "finished"):
        saved = {n: (out / n).read_bytes() for n in PIPELINE_FILES if (out / n).is_file()}
        shutil.rmtree(out)  # overwrite keeps only an unfinished run of the same settings
        out.mkdir(parents=True)
        for name, blob in saved.items():
            (out / name).write_bytes(blob)
    out.mkdir(parents=True, exist_ok=True)
    resume = last_checkpoint(out)
    if resume:
        log.info("%s: resuming from %s", out, Path(resume).name)
    return out, resume, None


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def start_manifest(out: Path, cfg: Any, stage: str, **extra: Any) -> dict[str, Any]:
    """Record that a run started (status ``running``), with its settings and versions."""
    manifest = read_manifest(out) or {}
    manifest.update(
        {
            "stage": stage,
            "status": "running",
            "identity_hash": cfg.identity_hash(),
            "identity": cfg.identity(),
            "started": manifest.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": versions(),
            **extra,
        }
    )
    write_manifest(out, manifest)
    return manifest


def versions() -> dict[str, str]:
    """Versions of the packages a run depends on (recorded in the manifest)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("medistill", "torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def rank_weight_digests(trainer: Any) -> list[str] | None:
    """Under data parallelism on several ranks: a SHA-256 of each rank's trainable weights, in
    rank order (every rank must call it: it gathers). Identical digests prove the ranks ended
    with the same model; ``None`` for one process, or for sharded engines (FSDP, ZeRO), whose
    ranks hold different shards by design.
    """
    import hashlib

    import torch

    acc = trainer.accelerator
    kind = str(acc.distributed_type).rsplit(".", 1)[-1]
    if acc.num_processes < 2 or not kind.startswith("MULTI_"):
        return None
    h = hashlib.sha256()
    model = acc.unwrap_model(trainer.model)
    for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if param.requires_grad:
            h.update(name.encode())
            data = param.detach().to("cpu").contiguous()
            h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    from accelerate.utils import gather_object

    return list(gather_object([h.hexdigest()]))


@contextlib.contextmanager
def outside_zero3() -> Iterator[None]:
    """Hide DeepSpeed ZeRO-3 from transformers and PEFT for code that runs on one rank only.

    Under ``accelerate launch`` with a ZeRO-3 config, accelerate (and ``TrainingArguments``)
    register the config in transformers' module-level weak reference for the whole process, so
    ``is_deepspeed_zero3_enabled()`` stays true after training: ``from_pretrained`` then builds
    the model inside ``deepspeed.zero.Init`` and PEFT gathers parameters with
    ``GatheredParameters``, collectives that the other ranks, already returned, never join (the
    run hangs with its manifest unfinished, and so does every rerun). The reference is unset
    with transformers' own ``unset_hf_deepspeed_config`` and put back afterwards, so the rest
    of the process sees the engine as before.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


def save_final_model(trainer: Any, out: Path, *, base_model: str, cfg: Any) -> dict[str, Any]:
    """Write the standalone model into ``out`` (and the adapter into ``out/adapter``).

    With LoRA the adapter is saved through the trainer (which gathers it under FSDP/DeepSpeed),
    then merged into a fresh, unquantised copy of the base model on the main process, so QLoRA
    students merge too; that copy is built outside ZeRO-3 (:func:`outside_zero3`), since no
    other rank takes part. Full fine-tuning saves the trained weights directly.
    """
    from peft import PeftModel

    tokenizer = trainer.processing_class
    is_peft = isinstance(trainer.model, PeftModel) or hasattr(trainer.model, "peft_config")
    if is_peft:
        trainer.save_model(str(out / "adapter"))
    else:
        trainer.save_model(str(out))
    trainer.accelerator.wait_for_everyone()
    info: dict[str, Any] = {"adapter": "adapter" if is_peft else None}
    if not trainer.accelerator.is_main_process:
        return info
    for pickled in (out / "training_args.bin", out / "adapter" / "training_args.bin"):
        pickled.unlink(missing_ok=True)  # a pickle; the manifest records the settings
    if is_peft:
        import torch
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if cfg.bf16 else torch.float16 if cfg.fp16 else torch.float32
        with outside_zero3():  # this rank alone: no collective may start here
            base = AutoModelForCausalLM.from_pretrained(
                base_model,
                dtype=dtype,
                use_safetensors=True,
                trust_remote_code=cfg.trust_remote_code,
            )
            merged = PeftModel.from_pretrained(base, str(out / "adapter")).merge_and_unload()
            merged.generation_config = _generation_config(trainer, merged)
            merged.save_pretrained(str(out))
        info["merged"] = True
    tokenizer.save_pretrained(str(out))
    return info


def _generation_config(trainer: Any, model: Any) -> Any:
    """The trained model's generation config: it must stop at the chat template's end of turn."""
    gen = model.generation_config
    trained = getattr(trainer.model, "generation_config", None)
    if trained is not None and trained.eos_token_id is not None:
        gen.eos_token_id = trained.eos_token_id
    tok = trainer.processing_class
    if gen.pad_token_id is None and tok.pad_token_id is not None:
        gen.pad_token_id = tok.pad_token_id
    return gen


def write_log(out: Path, history: list[dict[str, Any]]) -> None:
    """Every logged step as one JSON line (the plain log, trackers or not)."""
    with open(out / LOG, "w", encoding="utf-8") as fh:
        for entry in history:
            fh.write(json.dumps(entry, default=float) + "\n")


def plot_curve(out: Path, history: list[dict[str, Any]], keys: tuple[str, ...]) -> str | None:
    """A PNG of the logged ``keys`` against the step; ``None`` when nothing was logged."""
    series = {k: [(h["step"], h[k]) for h in history if k in h and "step" in h] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.2), squeeze=False)
    for ax, (key, points) in zip(axes[0], series.items(), strict=True):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "training_curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_card(out: Path, manifest: dict[str, Any], *, title: str, curve: str | None) -> None:
    """The model card (``README.md``): what it is, what it was trained on, how, and its limits."""
    ident = manifest.get("identity") or {}
    data = manifest.get("data") or {}
    metrics = manifest.get("metrics") or {}
    settings_keys = (
        "model",
        "dataset",
        "teacher",
        "use_peft",
        "lora_r",
        "lora_alpha",
        "lora_target_modules",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "overlong",
        "max_completion_length",
        "num_generations",
        "rewards",
        "beta",
        "bf16",
        "dtype",
        "seed",
    )
    rows = [(k, json.dumps(ident[k])) for k in settings_keys if k in ident and ident[k] is not None]
    parts = [
        f"---\nlibrary_name: transformers\nbase_model: {manifest.get('base_model')}\n"
        f"tags: [medistill, medical, {manifest.get('stage')}]\n---",
        f"# {title}",
        NOT_FOR_CLINICAL_USE,
        f"Trained with `medistill {manifest.get('stage')}` from **{manifest.get('base_model')}** "
        f"on `{ident.get('dataset')}`. It answers medical multiple-choice questions with its "
        f"reasoning, then a final line `The answer is X.`. Load it with "
        f"`AutoModelForCausalLM.from_pretrained` or evaluate it with "
        f"`medistill eval --model {out}`."
        + (" The LoRA adapter alone is in `adapter/`." if manifest.get("adapter") else ""),
        "## Training data\n\n"
        + ("\n".join(f"- {k}: {json.dumps(v)}" for k, v in data.items()) or "- (no data card)"),
        "## Settings\n\n" + _table(("setting", "value"), rows),
        "## Figures\n\n"
        + (
            _table(("metric", "value"), [(k, _fmt(v)) for k, v in metrics.items()])
            if metrics
            else "(none logged)"
        )
        + (f"\n\n![training curve]({curve})" if curve else ""),
        "## Intended use and limits\n\nResearch on distilling medical reasoning into small, "
        "private models, and teaching. Accuracy on medical benchmarks is measured separately "
        "(`medistill eval`, `medistill report`); a small student is often near chance. The model "
        "inherits its teacher's errors and biases, and the safety rewards, where used, are "
        "rule-based checks, not a clinical validation.",
        "## Reproduce\n\n```bash\nmedistill "
        + str(manifest.get("stage"))
        + " --config <recipe.yaml>\n```\n\nVersions: "
        + ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items()),
    ]
    tmp = out / "README.md.tmp"
    tmp.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    os.replace(tmp, out / "README.md")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v)


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {a} | {str(b).replace('|', '/')} |" for a, b in rows]
    return "\n".join(lines)


def finish(
    trainer: Any,
    out: Path,
    cfg: Any,
    *,
    stage: str,
    base_model: str,
    data: dict[str, Any],
    curve_keys: tuple[str, ...],
    started: float,
) -> dict[str, Any]:
    """Save the model, the log, the curve, the card, and mark the run finished."""
    digests = rank_weight_digests(trainer)
    info = save_final_model(trainer, out, base_model=base_model, cfg=cfg)
    manifest = read_manifest(out) or {}
    if not trainer.accelerator.is_main_process:
        return manifest
    if digests is not None:
        manifest["rank_weight_digests"] = digests
    history = list(trainer.state.log_history)
    write_log(out, history)
    curve = plot_curve(out, history, curve_keys)
    summary = next((h for h in reversed(history) if "train_runtime" in h), {})
    metrics = {k: v for k, v in summary.items() if k != "step"}
    metrics["global_step"] = trainer.state.global_step
    args = trainer.args
    metrics["examples_seen"] = (
        trainer.state.global_step
        * args.per_device_train_batch_size
        * args.gradient_accumulation_steps
        * max(1, args.world_size)
    )
    manifest.update(
        {
            "status": "finished",
            "precision": precision(trainer, cfg),
            "base_model": str(cfg.model),
            "data": data,
            "metrics": metrics,
            "adapter": info.get("adapter"),
            "seconds": round(time.perf_counter() - started, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    title = cfg.label or f"{Path(str(cfg.model)).name} + medistill {stage}"
    write_card(out, manifest, title=title, curve=curve)
    write_manifest(out, manifest)
    return manifest
