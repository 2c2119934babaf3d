"""Stage 3: supervised fine-tuning on the curated traces (TRL ``SFTTrainer``) -> model folder.

``run_sft`` reads the curated dataset, tokenises it with the student's chat template (the loss
covers the assistant's completion only, and an over-long trace is dropped or cut in the
middle, never stripped of its answer line), trains full weights or a LoRA adapter, resumes a
killed run from its last checkpoint, and ends with a standalone model folder
(:mod:`medistill.train.output`). The same code runs on one CPU and under ``accelerate launch``
(DDP, FSDP, DeepSpeed): TRL and accelerate do the distributed work.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError
from medistill.models import resolve_model
from medistill.train.config import SFTRecipe
from medistill.train.data import read_rows, resolve_dataset, sft_dataset
from medistill.train.output import finish, prepare_run, start_manifest
from medistill.train.precision import keep_adapters_fp32

log = logging.getLogger(__name__)


def load_tokenizer(model_path: str, cfg: Any) -> Any:
    """The student's tokenizer with the chat template it will be trained and served with.

    The template is the student's own, or ``chat_template_path`` (a ``.jinja`` file or another
    tokenizer's folder / hub id). A tokenizer with neither is refused: SFT on chat rows needs one.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.trust_remote_code)
    spec = getattr(cfg, "chat_template_path", None)
    if spec:
        path = Path(spec)
        if path.is_file():
            tok.chat_template = path.read_text(encoding="utf-8")
        else:
            other = AutoTokenizer.from_pretrained(spec, trust_remote_code=cfg.trust_remote_code)
            if not other.chat_template:
                raise MedistillError(f"chat_template_path {spec}: that tokenizer has no template")
            tok.chat_template = other.chat_template
    if not getattr(tok, "chat_template", None):
        raise MedistillError(
            f"{model_path}: the student's tokenizer has no chat template; set chat_template_path "
            f"(a .jinja file or a tokenizer folder whose template to use)"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def resolve_student(cfg: Any) -> str:
    """The student's loadable path (``smollm2`` becomes the packaged, converted folder)."""
    cfg.require("model")
    return resolve_model(str(cfg.model))


def build_sft_trainer(cfg: SFTRecipe) -> tuple[Any, dict[str, Any]]:
    """The ``SFTTrainer`` for ``cfg`` and the run's context (folder, resume point, data counts).

    When the same run has already finished, the trainer is ``None`` and ``context["done"]``
    holds its manifest.
    """
    from accelerate import PartialState
    from trl import SFTTrainer, get_peft_config

    cfg.require("model", "dataset")
    state = PartialState()
    model_path = resolve_student(cfg)
    source = resolve_dataset(str(cfg.dataset))
    with state.main_process_first():
        out, resume, done = prepare_run(cfg, "sft", main=state.is_main_process)
    ctx: dict[str, Any] = {"out": out, "resume": resume, "done": done, "model_path": model_path}
    if done is not None:
        return None, ctx
    tokenizer = load_tokenizer(model_path, cfg)
    rows = read_rows(source, "train")
    if not rows:
        raise MedistillError(f"dataset {cfg.dataset}: no training rows")
    train, counts = sft_dataset(rows, tokenizer, max_length=cfg.max_length, overlong=cfg.overlong)
    if len(train) == 0:
        raise MedistillError(
            f"all {len(rows)} traces are longer than max_length={cfg.max_length}; raise "
            f"max_length or set overlong: truncate_middle"
        )
    val_rows = read_rows(source, "validation")
    evals = None
    if val_rows and cfg.eval_strategy != "no":
        evals, _ = sft_dataset(
            val_rows, tokenizer, max_length=cfg.max_length, overlong=cfg.overlong
        )
    ctx["data"] = {
        **source.card_summary,
        "sft_rows": len(rows),
        "sft_safety_rows": sum(r["kind"] == "safety" for r in rows),
        "sft_rows_trained": len(train),
        "overlong_dropped": counts["dropped"],
        "overlong_truncated_middle": counts["truncated_middle"],
        "trained_tokens_per_epoch": sum(sum(m) for m in train["completion_mask"]),
    }
    if state.is_main_process:
        start_manifest(out, cfg, "sft", base_model=str(cfg.model), data=ctx["data"])
    trainer = SFTTrainer(
        model=model_path,
        args=cfg.trainer_args(),
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tokenizer,
        peft_config=get_peft_config(cfg),
    )
    keep_adapters_fp32(trainer, cfg)
    log.info(
        "SFT %s on %d traces (%d dropped as too long), %s, %s",
        cfg.model,
        len(train),
        counts["dropped"],
        "LoRA" if cfg.use_peft else "full fine-tuning",
        "bf16" if cfg.bf16 else "fp32",
    )
    return trainer, ctx


def run_sft(cfg: SFTRecipe) -> dict[str, Any]:
    """Fine-tune ``cfg.model`` on ``cfg.dataset``; return the run's manifest."""
    started = time.perf_counter()
    trainer, ctx = build_sft_trainer(cfg)
    if trainer is None:
        return ctx["done"]
    from medistill.train.cadence import CheckpointCadence

    trainer.add_callback(CheckpointCadence("sft"))  # save_steps against the real step count
    trainer.train(resume_from_checkpoint=ctx["resume"])
    return finish(
        trainer,
        ctx["out"],
        cfg,
        stage="sft",
        base_model=ctx["model_path"],
        data=ctx["data"],
        curve_keys=("loss", "mean_token_accuracy"),
        started=started,
    )
