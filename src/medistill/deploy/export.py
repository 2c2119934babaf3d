"""``medistill export-model``: a trained student as a standalone folder or a GGUF file, with
a model card a hospital can read before it deploys anything.

The export folder holds the model (Hugging Face files, or one ``<name>-<quant>.gguf``) and a
``README.md`` card: intended use and its limits, the training-data card's summary, the
evaluation table with 95% confidence intervals, and the not-for-clinical-use notice. The card
is built from the files the other stages wrote (the training manifest, the curated dataset's
card, eval run folders); nothing is imported from those stages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medistill.deploy.card import write_export_card
from medistill.deploy.gguf import check_quant, to_gguf
from medistill.errors import MedistillError
from medistill.models import model_name, resolve_model

log = logging.getLogger(__name__)

#: Files of a training run folder that are not part of the model.
_RUN_ARTEFACTS = {
    "README.md",
    "log.jsonl",
    "medistill_train.json",
    "pipeline.json",
    "training_args.bin",
    "training_curve.png",
}


@dataclass
class ExportModelConfig:
    """What ``medistill export-model`` writes: its options and a recipe's ``export_model:``."""

    model: str = field(
        metadata={
            "help": "model folder (a training run's output, any HF folder, a LoRA "
            "adapter folder) or 'smollm2' (packaged)"
        }
    )
    format: Literal["hf", "gguf"] = field(
        default="gguf", metadata={"help": "hf (standalone merged folder) or gguf (llama.cpp)"}
    )
    quant: str = field(
        default="q8_0", metadata={"help": "gguf type: q8_0, q4_k_m, q5_k_m, f16 or bf16"}
    )
    out: str | None = field(
        default=None, metadata={"help": "export folder; none: runs/export/<name>-<format>"}
    )
    name: str | None = field(
        default=None, metadata={"help": "model name in the card and file name; none: folder"}
    )
    eval_runs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "eval run folders for the card's table; none: the eval runs of the "
            "same pipeline run (runs/<name>/eval/*), when there are any"
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "curated dataset folder whose card is summarised; none: the one "
            "the training manifest names"
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing export"})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow model code from the hub (adapter merge)"}
    )

    def display_name(self) -> str:
        """The name used for the card title and the GGUF file: ``--name`` or the folder's."""
        if self.name:
            return self.name
        path = Path(self.model.rstrip("/"))
        generic = {"final", "merged", "model", "output", "sft", "grpo", "distill"}
        if path.name in generic and path.parent.name:
            return f"{path.parent.name}-{path.name}"
        return model_name(self.model) or "model"

    def out_dir(self) -> Path:
        """The export folder."""
        if self.out:
            return Path(self.out)
        suffix = f"gguf-{self.quant}" if self.format == "gguf" else "hf"
        return Path("runs") / "export" / f"{self.display_name()}-{suffix}"


def export_model(cfg: ExportModelConfig) -> dict[str, Any]:
    """Write the export folder (model + card) and return a summary of what was written."""
    if cfg.format not in ("hf", "gguf"):
        raise MedistillError(f"unknown --format {cfg.format!r}; choose one of: hf, gguf")
    if cfg.format == "gguf":
        check_quant(cfg.quant)
    source = _source_folder(cfg.model)
    out = cfg.out_dir()
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise MedistillError(f"{out} already holds an export; pass --overwrite to replace it")
        shutil.rmtree(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.perf_counter()
    try:
        files = _write_model(cfg, source, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed export leaves nothing behind
        raise
    if (source / "training_curve.png").is_file():
        shutil.copy2(source / "training_curve.png", staging / "training_curve.png")
    sizes = {f: (staging / f).stat().st_size for f in files}
    export = {
        "format": cfg.format,
        "quant": cfg.quant if cfg.format == "gguf" else None,
        "source": str(source),
        "files": sizes,
        "sha256": {f: _sha256(staging / f) for f in files if f.endswith((".gguf", ".safetensors"))},
        "seconds": round(time.perf_counter() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    evals = [Path(p) for p in cfg.eval_runs] or _pipeline_eval_runs(source)
    write_export_card(
        staging,
        name=cfg.display_name(),
        export=export,
        training=_read_json(source / "medistill_train.json"),
        dataset=Path(cfg.dataset) if cfg.dataset else None,
        eval_runs=evals,
        source=source,
    )
    (staging / "medistill_export.json").write_text(json.dumps(export, indent=2), encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out)
    return {**export, "out": str(out)}


def _write_model(cfg: ExportModelConfig, source: Path, staging: Path) -> list[str]:
    """The model files in ``staging``: copied (hf) or converted (gguf); their names."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _merged(source, Path(tmp), cfg.trust_remote_code)
        if cfg.format == "hf":
            return _copy_model_files(model_dir, staging)
        gguf = staging / f"{cfg.display_name()}-{cfg.quant}.gguf"
        log.info("converting %s to GGUF %s (llama.cpp's converter)", model_dir, cfg.quant)
        return [to_gguf(model_dir, gguf, cfg.quant).name]


def _source_folder(model: str) -> Path:
    """The model folder to export (``smollm2`` resolves to the packaged weights)."""
    path = Path(resolve_model(model))
    if not path.is_dir():
        raise MedistillError(f"--model {model}: not a local folder (export a downloaded model)")
    has_model = (path / "config.json").is_file()
    if not has_model and not (path / "adapter_config.json").is_file():
        raise MedistillError(
            f"{path}: no config.json (a model) or adapter_config.json (a LoRA adapter)"
        )
    if has_model and not list(path.glob("*.safetensors")):
        raise MedistillError(f"{path}: no *.safetensors weights (pickled weights are not loaded)")
    return path


def _merged(source: Path, tmp: Path, trust_remote_code: bool) -> Path:
    """``source`` itself, or for a LoRA adapter folder, the adapter merged into its base."""
    if (source / "config.json").is_file():
        return source
    adapter = _read_json(source / "adapter_config.json") or {}
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise MedistillError(f"{source}/adapter_config.json: no base_model_name_or_path")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("merging the LoRA adapter %s into %s", source, base)
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    merged = PeftModel.from_pretrained(model, str(source)).merge_and_unload()
    out = tmp / "merged"
    merged.save_pretrained(str(out))
    tokenizer_from = source if (source / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(str(out))
    return out


def _copy_model_files(src: Path, dst: Path) -> list[str]:
    """Copy the model's own files (weights, config, tokenizer, chat template), nothing else."""
    names = []
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in _RUN_ARTEFACTS and not f.name.endswith(".tmp"):
            shutil.copy2(f, dst / f.name)
            names.append(f.name)
    return names


def _pipeline_eval_runs(source: Path) -> list[Path]:
    """Eval run folders of the same ``medistill run`` (``runs/<name>/eval/*``), if any."""
    eval_dir = source.parent / "eval"
    if not eval_dir.is_dir():
        return []
    return sorted(p for p in eval_dir.iterdir() if (p / "metrics.json").is_file())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
