"""GRPO and on-policy distillation on the real TRL trainers with tiny random models: a reward that
varies moves the weights, the health metrics and warnings are logged, distillation runs with a
same-tokenizer and with a different-tokenizer teacher, and API teachers are refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("trl")

from medistill.errors import MedistillError
from medistill.tiny_model import build_tiny_model
from medistill.train import rewards
from medistill.train.config import DistillRecipe, GRPORecipe
from medistill.train.distill import resolve_teacher, run_distill
from medistill.train.grpo import run_grpo

FAST = {"report_to": "none", "logging_steps": 1, "save_steps": 1000, "seed": 0}


def distinct_letters(completions, **kwargs):
    """A test reward that varies between sampled completions: the share of distinct characters.

    >>> distinct_letters(["aab"])
    [0.6666666666666666]
    """
    texts = [rewards.completion_text(c) for c in completions]
    return [len(set(t)) / max(len(t), 1) for t in texts]


@pytest.fixture
def varying_reward(monkeypatch):
    monkeypatch.setitem(rewards.REWARDS, "distinct_letters", distinct_letters)
    return "distinct_letters"


def adapter_weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def test_grpo_two_steps_with_a_varying_reward_change_the_weights(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path, varying_reward: str, caplog
) -> None:
    out = tmp_path / "grpo"
    cfg = GRPORecipe(
        model=str(tiny_model_dir),
        dataset=str(curated_dataset),
        output_dir=str(out),
        rewards={"correctness": 1.0, "format": 0.5, varying_reward: 1.0},
        max_steps=2,
        max_completion_length=12,
        learning_rate=0.05,
        **FAST,
    )
    with caplog.at_level(logging.WARNING, logger="medistill"):
        manifest = run_grpo(cfg)
    assert manifest["status"] == "finished" and manifest["metrics"]["global_step"] == 2
    logs = [json.loads(x) for x in (out / "log.jsonl").open() if '"step"' in x]
    steps = [h for h in logs if "reward" in h]
    assert len(steps) == 2
    for h in steps:
        assert h["rewards/distinct_letters/std"] > 0  # the reward varies within the batch
        assert "frac_reward_zero_std" in h and "completions/clipped_ratio" in h
        assert abs(sum(v for k, v in h.items() if k.startswith("letters/extracted_")) - 1) < 1e-6
        assert any(k.startswith("letters/gold_") for k in h)
    # A random model rarely stops within 12 tokens: most completions are cut off, which the run
    # says loudly for every such step, and correctness pays nothing.
    clipped = [h["completions/clipped_ratio"] for h in steps]
    assert max(clipped) > 0.2
    for h in steps:
        warned = f"step {h['step']}: " in caplog.text
        assert warned == (h["completions/clipped_ratio"] > 0.2)
    assert "were cut off at max_completion_length=12" in caplog.text
    assert all(h["rewards/correctness/mean"] == 0 for h in steps)
    assert manifest["data"]["mean_share_cut_off"] == pytest.approx(sum(clipped) / 2, abs=1e-4)
    lora_b = {k: v for k, v in adapter_weights(out).items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero
    assert (out / "model.safetensors").is_file() and "Not for clinical use" in (
        out / "README.md"
    ).read_text()


def test_grpo_recipe_errors_name_the_key(tiny_model_dir: Path, curated_dataset: Path, tmp_path):
    base = {"model": str(tiny_model_dir), "dataset": str(curated_dataset), **FAST}
    with pytest.raises(MedistillError, match="did you mean 'correctness'"):
        run_grpo(GRPORecipe(output_dir=str(tmp_path / "a"), rewards={"corectness": 1}, **base))
    from medistill.config import build

    # TRL's own validation, reported with the recipe file and section.
    with pytest.raises(MedistillError, match=r"r\.yaml: grpo: GRPO requires at least 2 gen"):
        build(GRPORecipe, {**base, "num_generations": 1, "output_dir": "x"}, where="r.yaml: grpo")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teachers")
    return {
        "same": build_tiny_model(root / "same", seed=1),
        "other": build_tiny_model(root / "other", seed=2, vocab_size=320),
    }


@pytest.mark.parametrize(("teacher", "method"), [("same", "gkd-jsd"), ("other", "gold")])
def test_distill_two_steps(
    tiny_model_dir: Path,
    curated_dataset: Path,
    tmp_path: Path,
    teachers: dict[str, Path],
    teacher: str,
    method: str,
) -> None:
    out = tmp_path / "distill"
    cfg = DistillRecipe(
        model=str(tiny_model_dir),
        teacher=str(teachers[teacher]),
        dataset=str(curated_dataset),
        output_dir=str(out),
        max_steps=2,
        max_completion_length=8,
        per_device_train_batch_size=2,
        learning_rate=0.05,
        **FAST,
    )
    manifest = run_distill(cfg)
    assert manifest["data"]["method"] == method
    assert manifest["metrics"]["global_step"] == 2
    losses = [h["loss"] for h in manifest_log(out) if "loss" in h]
    assert len(losses) == 2 and all(x > 0 for x in losses)
    lora_b = {k: v for k, v in adapter_weights(out).items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())
    assert (out / "model.safetensors").is_file()


def manifest_log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").open()]


@pytest.mark.parametrize(
    "spec", ["openai:gpt-4o", "vllm:Qwen/Qwen3-8B", "https://api.example.com/v1"]
)
def test_an_api_teacher_is_refused_with_the_reason(spec: str) -> None:
    with pytest.raises(MedistillError, match=r"log-probabilities.*sft on its traces"):
        resolve_teacher(spec)


def test_a_different_vocabulary_needs_the_cross_tokenizer_path(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path, teachers: dict[str, Path]
) -> None:
    cfg = DistillRecipe(
        model=str(tiny_model_dir),
        teacher=str(teachers["other"]),
        dataset=str(curated_dataset),
        output_dir=str(tmp_path / "d"),
        cross_tokenizer=False,
        **FAST,
    )
    with pytest.raises(MedistillError, match=r"another vocabulary.*cross_tokenizer: true"):
        run_distill(cfg)
    with pytest.raises(MedistillError, match="no such folder"):
        resolve_teacher(str(tmp_path / "nope"))
