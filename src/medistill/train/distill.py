"""On-policy distillation from a local open-weight teacher -> model folder.

The student writes its own answers to the curated questions and learns the teacher's
next-token distribution on exactly that text (Agarwal et al., "On-Policy Distillation of
Language Models"): imitation of the teacher's *judgement* at every token the student produces,
not only of the teacher's finished text. With a teacher of the same tokenizer this is TRL's
``DistillationTrainer`` (generalised JSD); across tokenizers (another model family) TRL's
``GOLDTrainer`` aligns the two vocabularies (ULD loss).

A teacher reached only through an API cannot be used: the loss needs the teacher's
log-probabilities over its whole vocabulary at every position of the student's text. For such
teachers, ``generate`` + ``curate`` + ``sft`` on their traces is the path.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError
from medistill.models import resolve_model
from medistill.train.config import DistillRecipe
from medistill.train.data import prompt_rows, read_rows, resolve_dataset
from medistill.train.hardware import single_process_device_map
from medistill.train.output import finish, prepare_run, start_manifest
from medistill.train.precision import keep_adapters_fp32
from medistill.train.sft import load_tokenizer, resolve_student

log = logging.getLogger(__name__)

_API_PREFIXES = ("openai:", "vllm:", "http://", "https://")


def resolve_teacher(spec: str | None) -> str:
    """A loadable local teacher, or a clear refusal for an API teacher."""
    if not spec:
        raise MedistillError("missing teacher: set it in the recipe or pass --teacher")
    if spec.startswith(_API_PREFIXES):
        raise MedistillError(
            f"teacher {spec!r} is reached through an API: on-policy distillation needs the "
            f"teacher's log-probabilities over its whole vocabulary on the student's own text, "
            f"which an API does not give. Distil such a teacher with medistill generate + "
            f"curate + sft on its traces, or give a local open-weight teacher (hub id or folder)."
        )
    path = resolve_model(spec)
    looks_local = spec.startswith((".", "/", "~")) or Path(spec).suffix
    if looks_local and not Path(path).expanduser().exists():
        raise MedistillError(f"teacher {spec}: no such folder")
    return path


def same_vocabulary(student_tok: Any, teacher_tok: Any) -> bool:
    """True when both tokenizers map every token string to the same id."""
    return student_tok.get_vocab() == teacher_tok.get_vocab()


def _gold_config(cfg: DistillRecipe, teacher_path: str) -> Any:
    """TRL's ``GOLDConfig`` with the recipe's values (GOLD subclasses ``SFTConfig`` instead)."""
    from trl.experimental.gold import GOLDConfig

    names = {f.name for f in dataclasses.fields(GOLDConfig) if f.init}
    values = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.init and f.name in names and f.name not in ("lmbda", "use_uld_loss")
    }
    values.update(
        teacher_model_name_or_path=teacher_path,
        teacher_tokenizer_name_or_path=teacher_path,
        use_uld_loss=True,
        lmbda=1.0,  # every batch on-policy: the student's own completions
        max_length=None,
        completion_only_loss=True,
    )
    return GOLDConfig(**values)


def run_distill(cfg: DistillRecipe) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into ``cfg.model`` on the dataset's prompts; return the manifest."""
    from accelerate import PartialState
    from datasets import Dataset
    from trl import DistillationTrainer, get_peft_config

    cfg.require("model", "dataset")
    started = time.perf_counter()
    state = PartialState()
    teacher_path = resolve_teacher(cfg.teacher)
    model_path = resolve_student(cfg)
    source = resolve_dataset(str(cfg.dataset))
    tokenizer = load_tokenizer(model_path, cfg)
    tokenizer.padding_side = "left"
    from transformers import AutoTokenizer

    teacher_tok = AutoTokenizer.from_pretrained(
        teacher_path, trust_remote_code=cfg.trust_remote_code
    )
    cross = cfg.cross_tokenizer
    if cross is None:
        cross = not same_vocabulary(tokenizer, teacher_tok)
    elif not cross and not same_vocabulary(tokenizer, teacher_tok):
        raise MedistillError(
            f"teacher {cfg.teacher} has another vocabulary than the student; DistillationTrainer "
            f"needs the same one: set cross_tokenizer: true (GOLD) or pick a same-family teacher"
        )
    with state.main_process_first():
        out, resume, done = prepare_run(cfg, "distill", main=state.is_main_process)
    if done is not None:
        return done
    method = "gold" if cross else "gkd-jsd"
    teacher_kwargs = dict(cfg.teacher_model_init_kwargs or {})
    # The frozen teacher needs no master weights: it loads in the compute dtype.
    teacher_kwargs.setdefault(
        "dtype", "bfloat16" if cfg.bf16 else "float16" if cfg.fp16 else cfg.dtype
    )
    teacher_kwargs.setdefault("use_safetensors", True)
    teacher_kwargs.setdefault("trust_remote_code", cfg.trust_remote_code)
    if "device_map" not in teacher_kwargs:  # on the student's device, not TRL's "auto"
        teacher_kwargs.update(single_process_device_map())
    args = cfg.trainer_args(teacher_model_init_kwargs=teacher_kwargs)
    if cross:
        rows = read_rows(source, "train")[: cfg.max_prompts or None]
        train = Dataset.from_list(
            [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
        )
        from trl.experimental.gold import GOLDTrainer

        trainer_cls, kwargs = GOLDTrainer, {"args": _gold_config(args, teacher_path)}
    else:
        rows = prompt_rows(source, limit=cfg.max_prompts)
        train = Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
        trainer_cls, kwargs = DistillationTrainer, {"args": args}
    data = {
        **source.card_summary,
        "distill_prompts": len(train),
        "method": method,
        "teacher": str(cfg.teacher),
    }
    if state.is_main_process:
        start_manifest(out, cfg, "distill", base_model=str(cfg.model), data=data)
    trainer = trainer_cls(
        model=model_path,
        teacher_model=teacher_path,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=get_peft_config(cfg),
        **kwargs,
    )
    keep_adapters_fp32(trainer, cfg)
    log.info(
        "on-policy distillation (%s) of %s into %s on %d prompts",
        method,
        cfg.teacher,
        cfg.model,
        len(train),
    )
    from medistill.train.cadence import CheckpointCadence

    trainer.add_callback(CheckpointCadence("distill"))  # save_steps against the real step count
    trainer.train(resume_from_checkpoint=resume)
    return finish(
        trainer,
        out,
        cfg,
        stage="distill",
        base_model=model_path,
        data=data,
        curve_keys=("loss",),
        started=started,
    )
