"""The shipped GPU recipes say what a run will do: checkpoints from the real step count, counts
that match what curation keeps, the teacher named and priced as its API serves it now, a cost
estimate that includes the teacher's evaluation calls, and on 8 GPUs a teacher that owns the
GPUs only while generate runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from medistill.pipeline import plan
from medistill.pipeline.cost import cost_line, teacher_cost

ROOT = Path(__file__).resolve().parents[1]
GPU_RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.yaml") if p.stem != "demo")
MEDQA_TRAIN, MEDMCQA_SAMPLE, MEDQA_TEST, MEDMCQA_DEV = 10_178, 10_000, 1_273, 4_183


def test_every_gpu_recipe_plans() -> None:
    assert len(GPU_RECIPES) == 3
    for recipe in GPU_RECIPES:
        assert plan(recipe).configs


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=lambda p: p.stem)
def test_checkpoint_cadence_follows_the_real_step_count(recipe: Path) -> None:
    """An epoch-based training stage checkpoints by a share of its real steps (packing makes
    them far fewer than rows / batch: the 8B SFT has ~70-140 against the old save_steps 200);
    a max_steps one saves more than once before its end."""
    p = plan(recipe)
    for stage in ("sft", "grpo", "distill"):
        cfg = p.configs.get(stage)
        if cfg is None:
            continue
        if cfg.max_steps and cfg.max_steps > 0:
            assert cfg.save_steps < 1 or cfg.save_steps * 2 <= cfg.max_steps, (stage, recipe)
        else:
            assert 0 < cfg.save_steps < 1, f"{recipe.name}: {stage}.save_steps {cfg.save_steps}"


def test_trace_counts_match_what_curation_keeps() -> None:
    """selection k with k 2 keeps at most 2 traces per MedQA train question: 20,356, not
    ~25k; selection all of 2 samples of 20,178 questions keeps at most 40,356."""
    eight = (ROOT / "recipes/qwen3-8b-8gpu.yaml").read_text()
    data = yaml.safe_load(eight)
    assert data["curate"]["selection"] == "k"
    assert f"{data['curate']['k'] * MEDQA_TRAIN:,}" in eight
    assert "25k" not in eight
    small = (ROOT / "recipes/qwen3-1.7b-gpu.yaml").read_text()
    data = yaml.safe_load(small)
    questions = MEDQA_TRAIN + MEDMCQA_SAMPLE
    assert f"{questions * data['generate']['samples']:,}" in small


def test_deepseek_teacher_is_named_and_priced_as_served_now() -> None:
    """``deepseek-reasoner`` serves DeepSeek-V3.2 in thinking mode at $0.28 / $0.42 per
    million tokens (input on a cache miss / output; DeepSeek's list price, 2026-12): the
    recipe prices it so, and its report row and title name that model, not R1."""
    recipe = ROOT / "recipes/qwen3-1.7b-gpu.yaml"
    p = plan(recipe)
    t = p.configs["generate"].teacher
    assert t.model == "deepseek-reasoner"
    assert (t.price_input_per_mtok, t.price_output_per_mtok) == (0.28, 0.42)
    labels = {e.label for key, e in p.configs["eval"] if key == "teacher"}
    assert labels == {"teacher: DeepSeek-V3.2 (thinking mode, deepseek-reasoner)"}
    assert "V3.2" in p.configs["report"]["title"] and "R1" not in p.configs["report"]["title"]


def test_the_cost_estimate_counts_the_teachers_evaluation_calls() -> None:
    """The teacher is paid for generation (questions x samples) and for its own evaluation
    on run.eval_benchmarks (questions x answers each): both are in the estimate."""
    recipe = ROOT / "recipes/qwen3-1.7b-gpu.yaml"
    est = teacher_cost(plan(recipe))
    assert est["generate"]["calls"] == (MEDQA_TRAIN + MEDMCQA_SAMPLE) * 2
    # a hosted alias has no generation_config.json: one greedy answer per question
    assert est["teacher_eval"]["calls"] == MEDQA_TEST + MEDMCQA_DEV
    per_call = (350 * 0.28 + 1_500 * 0.42) / 1e6
    assert est["teacher_eval"]["cost_typical"] == pytest.approx(
        (MEDQA_TEST + MEDMCQA_DEV) * per_call, abs=0.01
    )
    assert est["total_typical"] == pytest.approx(
        est["generate"]["cost_typical"] + est["teacher_eval"]["cost_typical"], abs=0.01
    )
    assert 25 < est["generate"]["cost_typical"] < 35  # ~$30, what the recipe's comment says
    assert "its evaluation 5,456 calls" in cost_line(est)
    # without the teacher's evaluation, only generation is paid
    off = teacher_cost(plan(recipe, {"run": {"eval_teacher": False}}))
    assert off["teacher_eval"]["calls"] == 0
    assert off["total_typical"] == est["generate"]["cost_typical"]
    # evaluated with 3 sampled answers per question, the teacher is asked 3 times as often
    three = teacher_cost(plan(recipe, {"eval": {"samples": 3, "temperature": 0.6}}))
    assert three["teacher_eval"]["calls"] == 3 * (MEDQA_TEST + MEDMCQA_DEV)


def test_the_8gpu_teacher_is_a_vllm_engine_in_its_own_process(monkeypatch) -> None:
    """Defect 1: no teacher servers on the GPUs ZeRO-3 training needs. The teacher is a vLLM
    engine over the 8 GPUs, run (and freed) in generate's own process on a CUDA machine; its
    evaluation likewise."""
    from medistill.pipeline.launch import launch_mode, model_stage_in_process

    p = plan(ROOT / "recipes/qwen3-8b-8gpu.yaml")
    t = p.configs["generate"].teacher
    assert (t.backend, t.tensor_parallel_size) == ("vllm", 8)
    assert t.max_model_len >= 512 + 2 * p.configs["generate"].max_tokens  # a retried call fits
    assert p.run.num_processes == 8 and launch_mode(p.run) == "accelerate"
    monkeypatch.setattr("medistill.pipeline.launch.cuda_available", lambda: True)
    assert model_stage_in_process(p.run, t.backend)
    teacher_evals = [e for key, e in p.configs["eval"] if key == "teacher"]
    assert teacher_evals and all(
        e.backend == "vllm" and e.tensor_parallel_size == 8 for e in teacher_evals
    )
    assert all(model_stage_in_process(p.run, e.backend) for e in teacher_evals)
    # the launch file a child rebuilds the teacher from is the resolved section
    assert p.values["generate"]["teacher"]["tensor_parallel_size"] == 8
    run = SimpleNamespace(launcher="auto")
    assert model_stage_in_process(run, "vllm")  # auto on CUDA: a child too


def test_the_cost_estimate_counts_the_contrast_calls() -> None:
    """Benign requests the teacher answers for the safety mix are paid calls too: the set's
    54 train requests x contrast_samples, on top of the MCQ sources."""
    recipe = ROOT / "recipes/qwen3-1.7b-gpu.yaml"
    off = teacher_cost(plan(recipe, {"generate": {"contrast": None}}))
    on = teacher_cost(
        plan(recipe, {"generate": {"contrast": "benign_clinical", "contrast_samples": 2}})
    )
    assert on["generate"]["calls"] == off["generate"]["calls"] + 54 * 2
    assert on["generate"]["cost_typical"] > off["generate"]["cost_typical"]
