"""SFT on the real TRL trainer with a tiny random model: label masking token by token, the
over-long policy, loss and parameters moving, the standalone output evaluating as it is, the
run folder's refusals, the dataset contract and the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import curate_traces, synthetic_traces

pytest.importorskip("trl")

from medistill.cli import app
from medistill.errors import DataError, MedistillError
from medistill.prompts import answer_line_regex
from medistill.train.config import SFTRecipe
from medistill.train.data import check_row, resolve_dataset, tokenize_sft
from medistill.train.sft import build_sft_trainer, load_tokenizer, run_sft

FAST = {"report_to": "none", "logging_steps": 1, "save_steps": 1000, "seed": 0}


def recipe(model: Path, dataset: Path, out: Path, **kw) -> SFTRecipe:
    values = {"max_length": 1024, "per_device_train_batch_size": 2, "max_steps": 2, **FAST, **kw}
    return SFTRecipe(model=str(model), dataset=str(dataset), output_dir=str(out), **values)


def test_defaults_are_safe_on_cpu(tmp_path: Path) -> None:
    import torch
    from trl import SFTConfig

    if torch.cuda.is_available():
        pytest.skip("CPU defaults")
    # The trap: TRL 1.16 turns bf16 on by default, even on a CPU (where transformers refuses).
    with pytest.raises(ValueError, match="bf16"):
        SFTConfig(output_dir=str(tmp_path))
    assert SFTConfig(output_dir=str(tmp_path), use_cpu=True).bf16 is True
    cfg = SFTRecipe(output_dir=str(tmp_path))
    assert cfg.bf16 is False and cfg.dtype == "float32"
    assert cfg.packing is False and cfg.train_sampling_strategy == "group_by_length"
    assert cfg.completion_only_loss is True and cfg.use_peft and cfg.overlong == "drop"
    assert SFTRecipe(output_dir=str(tmp_path), attn_implementation="flash_attention_2").packing
    with pytest.raises(MedistillError, match="QLoRA"):
        SFTRecipe(output_dir=str(tmp_path), load_in_4bit=True)
    from medistill.train.config import GRPORecipe

    vllm_recipe = GRPORecipe(output_dir=str(tmp_path), use_vllm=True)  # parses anywhere
    if importlib.util.find_spec("vllm") is None:
        wanted = r"use_vllm needs vllm: pip install -e '\.\[gpu\]'"
        with pytest.raises(MedistillError, match=wanted):
            vllm_recipe.trainer_args()


def test_labels_are_masked_everywhere_but_the_completion(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path
) -> None:
    trainer, _ = build_sft_trainer(recipe(tiny_model_dir, curated_dataset, tmp_path / "o"))
    tok = trainer.processing_class
    rows = [json.loads(x) for x in (curated_dataset / "prompt_completion/train.jsonl").open()]
    ds = trainer.train_dataset
    assert len(ds) == len(rows)
    for row, ex in zip(rows, ds, strict=True):
        prompt_ids = tok.apply_chat_template(
            row["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        ids, labels = ex["input_ids"], ex["labels"]
        n = len(prompt_ids)
        assert ids[:n] == list(prompt_ids)
        for i, (t, lab) in enumerate(zip(ids, labels, strict=True)):
            assert lab == (-100 if i < n else t), f"token {i}"
        trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
        assert trained == row["completion"][0]["content"] + "<|im_end|>\n"
    # The collator keeps the mask and masks the padding too.
    batch = trainer.data_collator([ds[0], ds[1]])
    for i in range(2):
        n_real = len(ds[i]["input_ids"])
        assert (batch["labels"][i, n_real:] == -100).all()
        assert batch["labels"][i, :n_real].tolist() == ds[i]["labels"]


@pytest.mark.parametrize("policy", ["drop", "truncate_middle"])
def test_an_overlong_trace_never_trains_without_its_answer_line(
    tiny_model_dir: Path, tmp_path: Path, policy: str
) -> None:
    data = curate_traces(synthetic_traces(8, long_every=4), tmp_path / "c", validation_fraction=0)
    cfg = recipe(tiny_model_dir, data, tmp_path / "o", max_length=700, overlong=policy)
    trainer, ctx = build_sft_trainer(cfg)
    tok = trainer.processing_class
    line = answer_line_regex("ABCD")
    if policy == "drop":
        assert ctx["data"]["overlong_dropped"] == 2 and len(trainer.train_dataset) == 6
    else:
        assert ctx["data"]["overlong_truncated_middle"] == 2 and len(trainer.train_dataset) == 8
    for ex in trainer.train_dataset:
        assert len(ex["input_ids"]) <= 700
        trained = tok.decode(
            [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != -100]
        )
        body = trained.removesuffix("<|im_end|>\n")
        assert line.fullmatch(body.rsplit("\n", 1)[-1]), body[-80:]
    # TRL's own keep_start truncation would have cut the line off instead.
    row = check_row(
        json.loads((data / "prompt_completion/train.jsonl").open().readline()), path="x", line=1
    )
    enc = tokenize_sft(row, tok, max_length=700, overlong="truncate_middle")
    assert enc["status"] == "truncated_middle"
    assert line.search(tok.decode(enc["input_ids"][-16:]))
    assert not line.search(tok.decode(enc["input_ids"][:700][-16:])) or len(enc["input_ids"]) <= 700


@pytest.mark.parametrize("use_peft", [True, False], ids=["lora", "full"])
def test_sft_lowers_the_loss_and_changes_every_trainable_parameter(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path, use_peft: bool
) -> None:
    cfg = recipe(
        tiny_model_dir,
        curated_dataset,
        tmp_path / "o",
        max_steps=12,
        learning_rate=5e-3 if use_peft else 2e-3,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        use_peft=use_peft,
    )
    trainer, _ = build_sft_trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and (any("lora_" in n for n in before) == use_peft)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    unchanged = [n for n, p in before.items() if bool((after[n].detach() == p).all())]
    assert not unchanged
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_the_merged_output_evaluates_directly(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from medistill.evaluate import EvalConfig, run_eval

    out = tmp_path / "sft"
    cfg = recipe(tiny_model_dir, curated_dataset, out, max_steps=3, learning_rate=1e-2)
    manifest = run_sft(cfg)
    assert manifest["status"] == "finished" and manifest["metrics"]["global_step"] == 3
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "README.md",
        "training_curve.png",
        "log.jsonl",
        "adapter/adapter_model.safetensors",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not list(out.glob("adapter/*.bin"))
    card = (out / "README.md").read_text()
    assert "Not for clinical use" in card and "kept_traces" in card and "learning_rate" in card
    # The merge is exact: merged weights = base + adapter.
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        unmerged = PeftModel.from_pretrained(base, out / "adapter").eval()  # wraps base in place
        assert torch.allclose(merged(ids).logits, unmerged(ids).logits, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, base_logits, atol=1e-4)
    assert load_tokenizer(str(out), cfg).chat_template
    metrics = run_eval(
        EvalConfig(model=str(out), limit=3, max_new_tokens=8, out=str(tmp_path / "ev")),
        show_progress=False,
    )
    assert metrics["n"] == 3
    # Same settings again: nothing to do. Other settings: refused, naming what changed.
    assert run_sft(cfg)["finished"] == manifest["finished"]
    with pytest.raises(MedistillError, match="learning_rate"):
        run_sft(recipe(tiny_model_dir, curated_dataset, out, max_steps=3, learning_rate=1e-3))


def test_the_dataset_contract(tmp_path: Path, curated_dataset: Path) -> None:
    v1 = tmp_path / "v1"
    (v1 / "prompt_completion").mkdir(parents=True)
    (v1 / "stats.json").write_text(json.dumps({"format_version": 1, "store": "runs/t.db"}))
    with pytest.raises(MedistillError, match=r"format_version 1.*medistill curate runs/t\.db"):
        resolve_dataset(str(v1))
    good = json.loads((curated_dataset / "prompt_completion/train.jsonl").open().readline())
    bad = tmp_path / "rows.jsonl"
    rows = [good, {**good, "gold": "Z"}]
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    src = resolve_dataset(str(bad))
    from medistill.train.data import read_rows

    with pytest.raises(DataError, match=r"rows\.jsonl:2: field 'gold'"):
        read_rows(src)
    no_opts = {k: v for k, v in good.items() if k != "options"}
    with pytest.raises(DataError, match=r"field 'options'.*format_version 1"):
        check_row(no_opts, path="f.jsonl", line=3)
    msgs = {
        "messages": good["prompt"] + good["completion"],
        "options": good["options"],
        "gold": good["gold"],
    }
    assert check_row(msgs, path="f", line=1)["completion"] == good["completion"]


def test_cli_recipe_overrides_and_errors(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path
) -> None:
    r = tmp_path / "r.yaml"
    out = tmp_path / "o"
    r.write_text(
        f"sft:\n  model: {tiny_model_dir}\n  dataset: {curated_dataset}\n  output_dir: {out}\n"
        "  max_steps: 5\n  max_length: 1024\n  learning_rate: 1e-4\n  report_to: none\n"
    )
    res = CliRunner().invoke(app, ["sft", "--config", str(r), "--max-steps", "1"])
    assert res.exit_code == 0, res.output
    man = json.loads((out / "medistill_train.json").read_text())
    assert man["metrics"]["global_step"] == 1 and man["identity"]["learning_rate"] == 1e-4
    r.write_text("sft:\n  lerning_rate: 1e-4\n")
    res = CliRunner().invoke(app, ["sft", "--config", str(r)])
    assert res.exit_code == 2 and "did you mean 'learning_rate'" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["sft", "--max-steps", "x"])
    assert res.exit_code == 2 and "invalid int value" in res.output
    res = CliRunner().invoke(app, ["sft", "--dataset", str(curated_dataset)])
    assert res.exit_code == 2 and "missing model" in res.output
    res = CliRunner().invoke(app, ["sft", "--help"])
    assert res.exit_code == 0 and "--overlong" in res.output and "truncate_middle" in res.output


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).parents[1] / "recipes").glob("*.yaml"))
)
def test_every_training_section_of_every_recipe_builds(name: str) -> None:
    from medistill.config import build, load_recipe
    from medistill.train.config import DistillRecipe, GRPORecipe

    path = Path(__file__).parents[1] / "recipes" / name
    classes = {"sft": SFTRecipe, "grpo": GRPORecipe, "distill": DistillRecipe}
    for section, values in load_recipe(path).items():
        if section in classes:
            cfg = build(classes[section], values, where=f"{name}: {section}")
            assert cfg.identity_hash()


def test_resume_skips_a_checkpoint_killed_while_saving(tmp_path: Path) -> None:
    """The Trainer writes trainer_state.json last: a folder without it (or with half of it)
    is a checkpoint killed mid-save, and the newest complete one is resumed instead."""
    from medistill.train.output import last_checkpoint

    assert last_checkpoint(tmp_path / "missing") is None
    for step, state in ((2, '{"global_step": 2}'), (10, '{"global_step": 10}'), (11, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-12").mkdir()
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')  # cut off
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # 10 > 2 numerically
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").unlink()
    assert last_checkpoint(tmp_path) is None


def test_qlora_loading_arguments_build_with_the_pinned_trl(tmp_path: Path, monkeypatch) -> None:
    """QLoRA's from_pretrained arguments come from what TRL 1.16 and transformers provide
    (main imported TRL's removed ``get_kbit_device_map`` and failed); only the CUDA check is
    patched, since this machine has no GPU."""
    from transformers import BitsAndBytesConfig

    import medistill.train.hardware as train_hardware

    cfg = SFTRecipe(output_dir=str(tmp_path), dtype="bfloat16", report_to="none")
    cfg.load_in_4bit = True  # set after construction: resolve_hardware refuses QLoRA on a CPU
    with pytest.raises(MedistillError, match="QLoRA"):
        cfg.model_init_kwargs_resolved()
    monkeypatch.setattr(train_hardware, "torch_cuda_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    kwargs = cfg.model_init_kwargs_resolved()
    q = kwargs["quantization_config"]
    assert isinstance(q, BitsAndBytesConfig) and q.load_in_4bit and not q.load_in_8bit
    assert q.bnb_4bit_quant_type == cfg.bnb_4bit_quant_type
    assert str(q.bnb_4bit_compute_dtype).endswith("bfloat16")
    assert kwargs["device_map"] == {"": 3}  # each rank's whole model on its own GPU
    assert kwargs["use_safetensors"] is True and kwargs["trust_remote_code"] is False


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_full_weight_bf16_at_a_gpu_learning_rate_moves_the_weights(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path
) -> None:
    """3 full-weight steps in bf16 at lr 1e-6 (every GPU recipe's GRPO/distill rate) change at
    least half of the weight elements. On main ``dtype: auto`` loaded bf16 weights with no fp32
    master copy and Adam's ~1e-6 steps rounded away. Compared with the starting weights rounded
    to the saved dtype, so a dtype change alone counts as no change."""
    import torch

    cfg = recipe(
        tiny_model_dir,
        curated_dataset,
        tmp_path / "full",
        use_peft=False,
        bf16=True,
        use_cpu=True,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        warmup_ratio=0.0,
        max_steps=3,
    )
    assert cfg.dtype == "float32"  # fp32 master weights, bf16 autocast
    manifest = run_sft(cfg)
    assert manifest["precision"]["trainable_weights"] == ["float32"]
    assert manifest["precision"]["compute"] == "bfloat16 (autocast)"
    start, end = _weights(tiny_model_dir), _weights(tmp_path / "full")
    changed = total = 0
    for name, w in end.items():
        before = start[name].to(w.dtype)
        changed += int((w != before).sum())
        total += w.numel()
    assert changed / total >= 0.5, f"{changed}/{total} weight elements changed"
    # Explicit bf16 weights for full fine-tuning need the explicit opt-in.
    with pytest.raises(MedistillError, match="pure_bf16"):
        recipe(
            tiny_model_dir,
            curated_dataset,
            tmp_path / "x",
            use_peft=False,
            bf16=True,
            use_cpu=True,
            dtype="bfloat16",
        )
    pure = recipe(
        tiny_model_dir,
        curated_dataset,
        tmp_path / "pure",
        use_peft=False,
        bf16=True,
        use_cpu=True,
        dtype="bfloat16",
        pure_bf16=True,
    )
    assert pure.dtype == "bfloat16"
    assert torch.finfo(torch.bfloat16).eps > 1e-3  # why: 1e-6 steps vanish at bf16's resolution


def test_report_to_all_never_stops_a_headless_run(tmp_path: Path, monkeypatch) -> None:
    """``report_to: all`` (every GPU recipe) took every installed tracker, so a W&B installed
    but not logged in stopped the run at its login prompt. Now W&B joins only with
    credentials or offline mode; local trackers stay."""
    import transformers.integrations

    monkeypatch.setattr(
        transformers.integrations,
        "get_available_reporting_integrations",
        lambda: ["tensorboard", "wandb", "comet_ml"],
    )
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert SFTRecipe(output_dir=str(tmp_path), report_to="all").report_to == ["tensorboard"]
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert SFTRecipe(output_dir=str(tmp_path), report_to="all").report_to == [
        "tensorboard",
        "wandb",
    ]
    explicit = SFTRecipe(output_dir=str(tmp_path), report_to=["comet_ml"]).report_to
    assert explicit == ["comet_ml"]  # a tracker named in the recipe is the user's choice
