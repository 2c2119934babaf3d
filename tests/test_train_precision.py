"""What a GPU run's weights really are, checked on the CPU against the installed TRL,
transformers, PEFT and accelerate: QLoRA adapters keep fp32 masters (TRL casts them to bf16),
the manifest records DeepSpeed's fp32 partitions, the LoRA merge after a ZeRO-3 run builds
its model outside ZeRO-3 (main built it inside ``deepspeed.zero.Init`` on one rank and hung),
and the fused LM head's setting is the vocabulary tile width TRL uses it as."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import pytest

pytest.importorskip("trl")

from medistill.config import build
from medistill.errors import MedistillError
from medistill.train.config import GRPORecipe, SFTRecipe
from medistill.train.sft import build_sft_trainer

ROOT = Path(__file__).resolve().parents[1]
FAST = {"report_to": "none", "logging_steps": 1, "save_steps": 1000, "seed": 0}


def recipe(model: Path, dataset: Path, out: Path, **kw) -> SFTRecipe:
    values = {"max_length": 1024, "per_device_train_batch_size": 2, "max_steps": 2, **FAST, **kw}
    return SFTRecipe(model=str(model), dataset=str(dataset), output_dir=str(out), **values)


def accelerate_launch_env(config: Path) -> dict[str, str]:
    """The ``ACCELERATE_*`` variables ``accelerate launch --config_file config`` gives every
    rank, computed by accelerate's own launcher code (as in its ``launch_command``)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "train.py"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    _, env = prepare_deepspeed_cmd_env(args)
    return {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}


def deepspeed_plugin(monkeypatch, config: Path):
    """accelerate's ``DeepSpeedPlugin`` as ``TrainingArguments`` builds it on a rank launched
    with ``config`` (it needs no DeepSpeed installed; registering it with transformers does)."""
    from accelerate.utils import DeepSpeedPlugin

    env = accelerate_launch_env(config)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
    return plugin


def test_qlora_adapters_keep_fp32_masters_and_move_at_lr_1e6(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    """TRL 1.16 casts a quantised model's trainable weights to bf16 after ``get_peft_model``;
    at lr 1e-6 Adam's steps then round away. The base is loaded in bf16 and marked quantised
    exactly as transformers' bitsandbytes quantiser marks it (``is_loaded_in_4bit``), the flag
    TRL's cast reads (bitsandbytes itself needs CUDA). On main the adapters stayed bf16 and
    lora_A did not move."""
    import torch
    import trl.trainer.sft_trainer as sft_trainer

    loaded = sft_trainer.create_model_from_path

    def load_marked(*args, **kwargs):
        model = loaded(*args, **kwargs)
        model.is_loaded_in_4bit = True  # what quantizer_bnb_4bit sets after loading
        return model

    monkeypatch.setattr(sft_trainer, "create_model_from_path", load_marked)
    cfg = recipe(
        tiny_model_dir,
        curated_dataset,
        tmp_path / "q",
        bf16=True,
        use_cpu=True,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        warmup_ratio=0.0,
        max_steps=3,
    )
    assert cfg.dtype == "bfloat16"  # LoRA: the frozen base loads in half precision
    trainer, _ = build_sft_trainer(cfg)
    base = [p for n, p in trainer.model.named_parameters() if "lora_" not in n]
    assert base and {p.dtype for p in base} == {torch.bfloat16}
    adapters = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    assert {p.dtype for p in adapters.values()} == {torch.float32}
    # The mark has done its work (TRL's cast in __init__); transformers' parameter count in
    # train() would import bitsandbytes for a marked model, so training runs unmarked.
    del trainer.model.get_base_model().is_loaded_in_4bit
    before = {n: p.detach().clone() for n, p in adapters.items()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    moved = total = 0
    for name, old in before.items():
        if "lora_A" in name:  # random init ~0.05: a 1e-6 step is below bf16's resolution
            moved += int((after[name].detach() != old).sum())
            total += old.numel()
    assert total and moved / total >= 0.5, f"{moved}/{total} lora_A elements moved"


def test_the_manifest_records_deepspeed_fp32_master_partitions(monkeypatch) -> None:
    """Under ``recipes/accelerate/zero3.yaml`` (bf16) DeepSpeed casts the module to bf16 and
    its ZeRO optimiser updates fp32 partitions; main recorded the module's bf16 as the
    trainable weights."""
    from medistill.train.precision import precision_record

    cfg = SFTRecipe(output_dir="unused", report_to="none", use_peft=False)
    cfg.bf16 = True  # as on a bf16 GPU
    plugin = deepspeed_plugin(monkeypatch, ROOT / "recipes/accelerate/zero3.yaml")
    record = precision_record(
        ["bfloat16"], cfg, distributed="DEEPSPEED", deepspeed_config=plugin.deepspeed_config
    )
    assert record["trainable_weights"] == ["float32"]
    assert record["module_weights"] == ["bfloat16"]
    assert "ZeRO-3" in record["master_weights"]
    assert record["compute"].startswith("bfloat16")
    # DeepSpeed's own opt-in for bf16 masters is recorded as such.
    plugin.deepspeed_config["bf16"]["bf16_master_weights_and_grads"] = True
    record = precision_record(
        ["bfloat16"], cfg, distributed="DEEPSPEED", deepspeed_config=plugin.deepspeed_config
    )
    assert record["trainable_weights"] == ["bfloat16"]
    # Without DeepSpeed the module's weights are the ones trained.
    plain = precision_record(["float32"], cfg, distributed="NO")
    assert plain["trainable_weights"] == ["float32"] and "master_weights" not in plain


def test_a_lora_run_after_zero3_training_merges_outside_zero3_and_a_rerun_finishes(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    """accelerate keeps the ZeRO-3 config registered with transformers after training, so
    main's merge on the main rank alone called ``from_pretrained`` with
    ``is_deepspeed_zero3_enabled()`` true, inside ``deepspeed.zero.Init`` (a collective the
    returned ranks never join: a hang on GPUs, ModuleNotFoundError here), and the manifest
    stayed ``running``. Here the first run stops where that one hung (trained and
    checkpointed, never finished); the rerun resumes from the final checkpoint without
    training again and finishes under the same registration. The registration is the real
    one (transformers' ``set_hf_deepspeed_config`` with accelerate's config object, as
    ``DeepSpeedPlugin.set_deepspeed_weakref`` does); ``from_pretrained``'s own check is
    observed through the real function."""
    import time

    import transformers.modeling_utils as modeling_utils
    from transformers.integrations import deepspeed as hf_deepspeed

    from medistill.train.output import finish, read_manifest

    cfg = recipe(tiny_model_dir, curated_dataset, tmp_path / "o")
    trainer, ctx = build_sft_trainer(cfg)
    trainer.train()  # then the process hung in the merge and was killed
    assert read_manifest(ctx["out"])["status"] == "running"
    trainer, ctx = build_sft_trainer(cfg)  # the rerun
    assert ctx["resume"] and ctx["resume"].endswith("checkpoint-2")
    trainer.train(resume_from_checkpoint=ctx["resume"])
    # transformers 5.25 takes one more step when resuming a checkpoint at max_steps (its loop
    # checks for the end only after a step); the rerun did not start again from zero.
    assert trainer.state.global_step in (2, 3)
    plugin = deepspeed_plugin(monkeypatch, ROOT / "recipes/accelerate/zero3.yaml")
    seen: list[bool] = []
    real = modeling_utils.is_deepspeed_zero3_enabled

    def observed() -> bool:
        seen.append(real())
        return seen[-1]

    monkeypatch.setattr(modeling_utils, "is_deepspeed_zero3_enabled", observed)
    hf_deepspeed.set_hf_deepspeed_config(plugin.hf_ds_config)
    try:
        assert hf_deepspeed.is_deepspeed_zero3_enabled()
        manifest = finish(
            trainer,
            ctx["out"],
            cfg,
            stage="sft",
            base_model=ctx["model_path"],
            data=ctx["data"],
            curve_keys=("loss",),
            started=time.perf_counter(),
        )
        assert hf_deepspeed.is_deepspeed_zero3_enabled()  # the engine's state is given back
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    assert seen and not any(seen), seen
    assert manifest["status"] == "finished"
    assert manifest["metrics"]["global_step"] == trainer.state.global_step
    assert (ctx["out"] / "model.safetensors").is_file()
    assert read_manifest(ctx["out"])["status"] == "finished"


def test_lm_head_vocab_chunk_is_trls_vocabulary_tile_width(tmp_path: Path) -> None:
    """TRL 1.16 passes ``_CHUNKED_LOGPROB_CHUNK_SIZE`` as ``chunk_size`` to its chunked
    log-prob kernel, which slices the vocabulary with it (4,096 tokens per tile are its own
    constant). Main called it ``lm_head_chunk_tokens`` and set 1,024 everywhere: 149 tiles per
    4,096 tokens of Qwen3's vocabulary on a GPU."""
    import trl.kernels.chunked_logprob as kernel
    import trl.trainer.utils as trl_utils

    from medistill.train import lm_head

    # What TRL does with the constant, read from the installed source.
    source = Path(trl_utils.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    default = next(
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign)
        and any(getattr(t, "id", None) == lm_head.TRL_LM_HEAD_CONSTANT for t in n.targets)
    )
    assert default == lm_head.TRL_LM_HEAD_VOCAB_CHUNK
    kernel_src = Path(kernel.__file__).read_text(encoding="utf-8")
    assert "for start in range(0, vocab, chunk_size):" in kernel_src
    assert kernel.TOKEN_CHUNK_SIZE == 4096
    # The field, its help and its default.
    cfg = SFTRecipe(output_dir=str(tmp_path), report_to="none")
    help_text = next(
        f.metadata["help"] for f in dataclasses.fields(cfg) if f.name == "lm_head_vocab_chunk"
    )
    assert "vocabulary" in help_text and "32,768" in help_text
    import torch

    expected = 32768 if torch.cuda.is_available() else 1024
    assert cfg.lm_head_vocab_chunk == expected
    wide = SFTRecipe(output_dir=str(tmp_path), report_to="none", lm_head_vocab_chunk=8192)
    wide.apply_lm_head_chunking()
    assert getattr(trl_utils, lm_head.TRL_LM_HEAD_CONSTANT) == 8192
    cfg.apply_lm_head_chunking()
    assert getattr(trl_utils, lm_head.TRL_LM_HEAD_CONSTANT) == expected
    # The old key is refused with the new name and why; a non-positive width too.
    with pytest.raises(MedistillError, match="'lm_head_chunk_tokens' is now lm_head_vocab_chunk"):
        build(GRPORecipe, {"lm_head_chunk_tokens": 1024}, where="r.yaml: grpo")
    with pytest.raises(MedistillError, match="lm_head_vocab_chunk: 0 is not a positive"):
        SFTRecipe(output_dir=str(tmp_path), report_to="none", lm_head_vocab_chunk=0)
    assert os.environ.get("ACCELERATE_USE_DEEPSPEED") is None  # no leak from the tests above


def test_grpo_refuses_a_generation_path_that_casts_the_trained_weights(tmp_path: Path) -> None:
    """TRL 1.16's continuous-batching generation casts the whole model to bf16 before each
    generation (read from its source below), which would discard the fp32 weights kept above;
    main accepted it silently."""
    import trl.trainer.grpo_trainer as grpo_trainer

    source = Path(grpo_trainer.__file__).read_text(encoding="utf-8")
    branch = source[source.index("elif self.use_transformers_continuous_batching:") :]
    assert "unwrapped_model.to(torch.bfloat16)" in branch[: branch.index("else:")]
    with pytest.raises(ValueError, match="use_transformers_continuous_batching with bf16"):
        GRPORecipe(
            output_dir=str(tmp_path),
            report_to="none",
            bf16=True,
            use_cpu=True,
            use_transformers_continuous_batching=True,
        )
    ok = GRPORecipe(
        output_dir=str(tmp_path),
        report_to="none",
        bf16=True,
        use_cpu=True,
        use_transformers_continuous_batching=True,
        pure_bf16=True,
    )
    assert ok.use_transformers_continuous_batching
