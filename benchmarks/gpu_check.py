"""GPU check: medistill's four training paths on a random Qwen3-1.7B-shaped model, one command.

    python benchmarks/gpu_check.py --out runs/gpu-check/gpu_check.json   # one H100: ~4-5 min
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check.json      # CPU smoke run, ~1 min

No download: the student is ``transformers.Qwen3ForCausalLM`` built from Qwen3-1.7B's
configuration (:data:`QWEN3_1_7B`, the values of the Hub's ``Qwen/Qwen3-1.7B/config.json``) with
random weights; the distillation teacher is a second random model of the same shape and
vocabulary (another seed; the real recipe's teacher is Qwen3-8B). Token ids come from
medistill's small ChatML tokenizer (``medistill.tiny_model.build_tiny_model``), so every row uses
ids below 512 while the embedding and LM head keep Qwen3's 151,936 rows: the compute per token
is Qwen3-1.7B's. Rows are synthetic questions with options, a gold letter and a reasoning of
random words cut to a fixed token length.

Stages, each in its own child process (started as ``medistill run``'s launcher starts a training
stage: a new process session, waited for, killed with its group when over time), so the memory a
stage held is freed by its exit; the parent reads ``torch.cuda.mem_get_info`` before and after
each child and reports whether the memory came back:

* ``build`` - the two random models and the synthetic rows (written to ``--work``);
* ``sft_full`` - full-weight SFT through ``medistill.train.sft.build_sft_trainer`` (TRL
  ``SFTTrainer``), bf16 autocast with fp32 master weights (``SFTRecipe``'s default for full
  tuning with bf16), lr 1e-6 constant: step time, tokens/s, MFU, peak memory and the share of
  weight elements the steps changed;
* ``sft_lora`` - the same with LoRA (r 64, alpha 128, lr 1e-4: ``recipes/qwen3-1.7b-gpu.yaml``);
* ``grpo`` - one step of ``medistill.train.grpo.run_grpo`` (TRL ``GRPOTrainer``, generation by
  transformers, no vLLM), full weights, lr 1e-6, the recipe's rewards; the model's
  ``generation_config.json`` counts one token id in 64 as end of sequence, so a random model's
  completions end at different lengths and the rewards (conciseness) have spread: with every
  completion cut off, all rewards are equal and GRPO's update is exactly zero;
* ``distill`` - one step of ``medistill.train.distill.run_distill`` (TRL
  ``DistillationTrainer``, the student generates, the teacher scores), full weights, lr 1e-6.

For GRPO and distillation the share of weights moved compares the stage's saved model (fp32)
with the starting weights. MFU = model FLOPs / step time / the card's dense bf16 peak
(:data:`PEAK_BF16_TFLOPS`); model FLOPs per sequence of T tokens = 6 N T + 12 L H d T^2 (PaLM's
count: N the matmul parameters, the tied LM head included; L layers, H query heads of size d),
with 4 N T instead of 6 N T for LoRA (the frozen weights get no weight gradient) plus 6 N_lora T;
activation checkpointing's recomputation is not counted (it is work, not model FLOPs).

``--max-seconds`` bounds the whole run: an SFT stage stops its steps early when its share of the
time is spent (and says so), a child past the deadline is killed (status ``killed``) and later
stages are ``skipped``. Prints one JSON object and a Markdown table; ``--out FILE`` writes the
JSON there and the table beside it (``FILE`` with ``.md``). Exit status 1 unless every stage ran
(``ok``, or ``stopped_early`` with its figures).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from medistill.pipeline.launch import stop_group

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
#: Free GPU memory after a stage may be this much below its value before and still count as
#: returned (allocator and driver bookkeeping; a stage's model alone holds gigabytes).
RETURNED_SLACK = 256 * 1024**2

#: Qwen/Qwen3-1.7B's config.json (architecture fields), as published on the Hub.
QWEN3_1_7B: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "tie_word_embeddings": True,
    "attention_bias": False,
}
#: The same architecture, small enough for a CPU test (``--tiny``).
TINY: dict[str, Any] = {
    **QWEN3_1_7B,
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 4096,
}

#: Dense (no sparsity) bf16 tensor-core peak per GPU, TFLOP/s, from NVIDIA's data sheets; the
#: first entry whose every word appears in ``torch.cuda.get_device_name`` wins.
PEAK_BF16_TFLOPS: list[tuple[tuple[str, ...], float]] = [
    (("H100", "PCIE"), 756.0),
    (("H100", "NVL"), 835.0),
    (("H100",), 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    (("H200",), 989.0),
    (("GH200",), 989.0),
    (("A100",), 312.0),
]

#: One token id in this many ends a GRPO / distillation completion (see the module docstring).
STOP_EVERY = 64

#: Per-mode sizes. ``train_cap``: seconds an SFT stage's steps may run at most; ``reserve``: the
#: seconds kept for each later stage when an SFT stage decides to stop early.
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "config": QWEN3_1_7B,
        "seq_len": 2048,
        "sft_batch": 4,
        "sft_steps": 20,
        "grpo_prompts": 2,
        "grpo_generations": 8,
        "distill_prompts": 4,
        "completion_len": 64,
        "train_cap": 90.0,
        "threads": None,
        "reserve": {"sft_full": 60.0, "sft_lora": 60.0, "grpo": 90.0, "distill": 110.0},
        "max_seconds": 420.0,
    },
    "tiny": {
        "config": TINY,
        "seq_len": 256,
        "sft_batch": 2,
        "sft_steps": 2,
        "grpo_prompts": 2,
        "grpo_generations": 4,
        "distill_prompts": 2,
        "completion_len": 24,
        "train_cap": 30.0,
        "threads": 1,
        "reserve": {"sft_full": 10.0, "sft_lora": 10.0, "grpo": 15.0, "distill": 15.0},
        "max_seconds": 300.0,
    },
}
STAGES = ("build", "sft_full", "sft_lora", "grpo", "distill")
TRAINING = STAGES[1:]
WORDS = [  # words of the synthetic questions and reasonings
    "patient", "presents", "with", "fever", "cough", "dyspnea", "chest", "pain", "history", "of",
    "hypertension", "diabetes", "examination", "reveals", "tachycardia", "murmur", "crackles",
    "edema", "laboratory", "shows", "elevated", "troponin", "creatinine", "potassium", "sodium",
    "lactate", "the", "most", "likely", "diagnosis", "is", "therefore", "because", "renal",
    "hepatic", "cardiac", "pulmonary", "infection", "inflammation", "ischemia", "therapy",
    "first", "line", "management", "contraindicated", "pregnancy", "warfarin", "heparin",
    "aspirin", "clopidogrel", "insulin", "metformin",
]  # fmt: skip
OPTIONS = {"A": "warfarin", "B": "heparin", "C": "aspirin", "D": "clopidogrel"}


# ------------------------------------------------------------------------------------ helpers


def peak_tflops(device_name: str | None) -> float | None:
    """The card's dense bf16 peak in TFLOP/s from :data:`PEAK_BF16_TFLOPS` (None: unknown)."""
    if not device_name:
        return None
    name = device_name.upper()
    for words, tflops in PEAK_BF16_TFLOPS:
        if all(w in name for w in words):
            return tflops
    return None


def sequence_flops(cfg: dict[str, Any], length: int, *, matmul_params: int, lora: int) -> float:
    """Model FLOPs of one training pass (forward + backward) over a sequence of ``length``."""
    attention = 12 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * cfg["head_dim"]
    dense = (4 * matmul_params + 6 * lora) if lora else 6 * matmul_params
    return dense * length + attention * length * length


def matmul_parameters(cfg: dict[str, Any]) -> int:
    """Weights that take part in a matrix product: every layer's, plus the LM head (tied to the
    embedding, whose lookup is no matmul; a separate head would count the same)."""
    h, kv = cfg["hidden_size"], cfg["num_key_value_heads"] * cfg["head_dim"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * cfg["intermediate_size"]
    return cfg["num_hidden_layers"] * per_layer + cfg["vocab_size"] * h


def _gib(n: float | None) -> float | None:
    return None if n is None else round(n / GIB, 2)


def _free_gpu() -> int | None:
    """Free GPU memory in bytes (``torch.cuda.mem_get_info``), None without CUDA."""
    import torch

    return int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else None


# ---------------------------------------------------------------------------------- the build


def _row(i: int, rng: random.Random, reasoning: str) -> dict[str, Any]:
    gold = "ABCD"[i % 4]
    question = " ".join(rng.choice(WORDS) for _ in range(16))
    opts = "\n".join(f"{k}. {v}" for k, v in OPTIONS.items())
    return {
        "prompt": [{"role": "user", "content": f"Question {i}: {question}?\n{opts}"}],
        "completion": [{"role": "assistant", "content": f"{reasoning}\n\nThe answer is {gold}."}],
        "options": OPTIONS,
        "gold": gold,
        "question_id": f"q{i}",
        "source": "synthetic",
    }


def _fixed_length_rows(tok: Any, n: int, length: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rows whose chat-formatted prompt + completion is ``length`` tokens or just under
    (the longest reasoning of random words that fits, by bisection on the word count)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pool = [rng.choice(WORDS) for _ in range(length)]

        def size(k: int, i: int = i, pool: list[str] = pool) -> int:
            row = _row(i, random.Random(i), " ".join(pool[:k]))
            ids = tok.apply_chat_template(
                row["prompt"] + row["completion"], tokenize=True, return_dict=True
            )["input_ids"]
            return len(ids)

        lo, hi = 1, length
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if size(mid) <= length else (lo, mid - 1)
        rows.append(_row(i, random.Random(i), " ".join(pool[:lo])))
    return rows


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """The student and teacher folders (random Qwen3 weights, bf16) and the rows file."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    from medistill.tiny_model import build_tiny_model

    work = Path(spec["work"])
    tok_dir = build_tiny_model(work / "tokenizer", seed=0, model_type="qwen3")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.model_max_length = spec["config"]["max_position_embeddings"]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out: dict[str, Any] = {}
    for name, seed in (("student", 0), ("teacher", 1)):
        folder = work / name
        config = Qwen3Config(
            **spec["config"], eos_token_id=eos, pad_token_id=pad, bos_token_id=None
        )
        torch.manual_seed(seed)
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)  # built in bf16: half the memory, as on the Hub
        try:
            with torch.device(device):
                model = Qwen3ForCausalLM(config)
        finally:
            torch.set_default_dtype(default)
        stops = [eos, *range(STOP_EVERY - 1, config.vocab_size, STOP_EVERY)]
        model.generation_config = GenerationConfig(
            eos_token_id=sorted(set(stops)), pad_token_id=pad, bos_token_id=None
        )
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        out[f"{name}_parameters"] = sum(p.numel() for p in model.parameters())
        del model
    n = max(spec["sft_batch"] * spec["sft_steps"], spec["grpo_prompts"], spec["distill_prompts"])
    rows = _fixed_length_rows(tok, n, spec["seq_len"], seed=0)
    path = work / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lengths = [
        len(tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True,
                                    return_dict=True)["input_ids"])
        for r in rows
    ]  # fmt: skip
    out.update(rows=len(rows), row_tokens_min=min(lengths), row_tokens_max=max(lengths))
    return out


# ------------------------------------------------------------------------------ the stages


def _snapshot(model: Any) -> dict[str, Any]:
    return {
        n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad
    }


def _moved(model: Any, before: dict[str, Any]) -> tuple[int, int]:
    changed = total = 0
    for n, p in model.named_parameters():
        if n in before:
            changed += int((p.detach() != before[n].to(p.device)).sum())
            total += p.numel()
    return changed, total


def _moved_on_disk(start: Path, end: Path) -> tuple[int, int]:
    """Elements of the saved model ``end`` that differ from ``start`` (rounded to ``end``'s
    dtype, so a dtype change alone is no change), by the rehearsal's own weight check."""
    from medistill.pipeline.rehearse_checks import weights_moved

    moved = weights_moved(start, end)
    return moved["elements_changed"], moved["elements"]


def _sft(spec: dict[str, Any], lora: bool) -> dict[str, Any]:
    import torch
    from transformers import TrainerCallback

    from medistill.train.config import SFTRecipe
    from medistill.train.precision import precision
    from medistill.train.sft import build_sft_trainer

    cuda = torch.cuda.is_available()
    lr = 1e-4 if lora else 1e-6
    extra = {"lora_r": 64, "lora_alpha": 128} if lora else {}
    cfg = SFTRecipe(
        model=spec["student"],
        dataset=spec["rows"],
        output_dir=str(Path(spec["work"]) / spec["stage"]),
        overwrite=True,
        use_peft=lora,
        bf16=True,
        use_cpu=not cuda,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_ratio=0.0,
        max_steps=spec["sft_steps"],
        per_device_train_batch_size=spec["sft_batch"],
        max_length=spec["seq_len"] + 64,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        **extra,
    )
    trainer, _ = build_sft_trainer(cfg)
    lengths: list[list[int]] = []
    collate = trainer.data_collator

    def recording(features: Any) -> Any:
        batch = collate(features)
        mask = batch.get("attention_mask")
        if mask is not None:
            lengths.append([int(x) for x in mask.sum(dim=1)])
        else:
            lengths.append([int(batch["input_ids"].shape[1])] * int(batch["input_ids"].shape[0]))
        return batch

    trainer.data_collator = recording
    marks: list[float] = []
    stopped: list[int] = []
    stop_at = float(spec["stop_at"])

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
            if time.time() > stop_at and state.global_step < args.max_steps:
                control.should_training_stop = True
                stopped.append(state.global_step)

    trainer.add_callback(Clock())
    before = _snapshot(trainer.model)
    trainer.train()
    changed, total = _moved(trainer.model, before)
    steps = len(marks) - 1
    times = [b - a for a, b in itertools.pairwise(marks)]
    timed = times[1:] if len(times) > 1 else times  # the first step warms up
    timed_lengths = lengths[1:steps] if steps > 1 else lengths[:steps]
    n_lora = sum(p.numel() for p in before.values()) if lora else 0
    mm = matmul_parameters(spec["config"])
    flops = sum(
        sequence_flops(spec["config"], t, matmul_params=mm, lora=n_lora)
        for batch in timed_lengths
        for t in batch
    )
    tokens = sum(sum(b) for b in timed_lengths)
    seconds = sum(timed)
    result: dict[str, Any] = {
        "steps": steps,
        "timed_steps": len(timed),
        "step_time_s": round(statistics.median(timed), 4) if timed else None,
        "tokens_per_step": round(tokens / len(timed)) if timed else None,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "model_tflops_per_s": float(f"{flops / seconds / 1e12:.4g}") if seconds else None,
        "learning_rate": lr,
        "trainable_parameters": total,
        "weights_moved": changed,
        "weights_moved_share": round(changed / total, 4) if total else None,
        "precision": precision(trainer, cfg),
        "gradient_checkpointing": bool(cfg.gradient_checkpointing),
        "attention": str(getattr(trainer.model.config, "_attn_implementation", None)),
    }
    if lora:
        result["lora"] = {"r": 64, "alpha": 128}
    if stopped:
        result["stopped_early"] = (
            f"stopped after {stopped[0]} of {spec['sft_steps']} steps: --max-seconds"
        )
    return result


def _history(out: Path) -> list[dict[str, Any]]:
    path = out / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _grpo(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from medistill.train.config import GRPORecipe
    from medistill.train.grpo import run_grpo

    n = spec["completion_len"]
    out = Path(spec["work"]) / "grpo"
    cfg = GRPORecipe(
        model=spec["student"],
        dataset=spec["rows"],
        output_dir=str(out),
        overwrite=True,
        use_peft=False,
        bf16=True,
        use_cpu=not torch.cuda.is_available(),
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        beta=0.0,
        temperature=1.0,
        max_prompts=spec["grpo_prompts"],
        num_generations=spec["grpo_generations"],
        per_device_train_batch_size=spec["grpo_prompts"] * spec["grpo_generations"],
        max_completion_length=n,
        max_steps=1,
        rewards={
            "correctness": 1.0,
            "format": 0.5,
            "conciseness": {"weight": 0.5, "budget": n, "buffer": (3 * n) // 4},
            "safety": 0.5,
        },
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    manifest = run_grpo(cfg)
    changed, total = _moved_on_disk(Path(spec["student"]), out)
    step = next((h for h in _history(out) if "reward" in h), {})
    runtime = manifest.get("metrics", {}).get("train_runtime")
    completions = spec["grpo_prompts"] * spec["grpo_generations"]
    mean_len = step.get("completions/mean_length")
    return {
        "steps": manifest.get("metrics", {}).get("global_step"),
        "step_time_s": runtime,
        "completions": completions,
        "completion_tokens_per_s": (
            round(completions * mean_len / runtime, 1) if runtime and mean_len else None
        ),
        "completion_mean_length": mean_len,
        "cut_off_share": step.get("completions/clipped_ratio"),
        "reward_mean": step.get("reward"),
        "reward_std": step.get("reward_std"),
        "zero_std_group_share": step.get("frac_reward_zero_std"),
        "loss": step.get("loss"),
        "learning_rate": 1e-6,
        "trainable_parameters": total,
        "weights_moved": changed,
        "weights_moved_share": round(changed / total, 4) if total else None,
        "precision": manifest.get("precision"),
        "stage_seconds": manifest.get("seconds"),
    }


def _distill(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from medistill.train.config import DistillRecipe
    from medistill.train.distill import run_distill

    out = Path(spec["work"]) / "distill"
    cfg = DistillRecipe(
        model=spec["student"],
        teacher=spec["teacher"],
        dataset=spec["rows"],
        output_dir=str(out),
        overwrite=True,
        use_peft=False,
        bf16=True,
        use_cpu=not torch.cuda.is_available(),
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        beta=0.5,
        max_prompts=spec["distill_prompts"],
        per_device_train_batch_size=spec["distill_prompts"],
        max_completion_length=spec["completion_len"],
        max_steps=1,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    manifest = run_distill(cfg)
    changed, total = _moved_on_disk(Path(spec["student"]), out)
    step = next((h for h in _history(out) if "loss" in h), {})
    runtime = manifest.get("metrics", {}).get("train_runtime")
    mean_len = step.get("completions/mean_length")
    return {
        "steps": manifest.get("metrics", {}).get("global_step"),
        "step_time_s": runtime,
        "prompts": spec["distill_prompts"],
        "completion_tokens_per_s": (
            round(spec["distill_prompts"] * mean_len / runtime, 1) if runtime and mean_len else None
        ),
        "completion_mean_length": mean_len,
        "method": manifest.get("data", {}).get("method"),
        "loss": step.get("loss"),
        "learning_rate": 1e-6,
        "trainable_parameters": total,
        "weights_moved": changed,
        "weights_moved_share": round(changed / total, 4) if total else None,
        "precision": manifest.get("precision"),
        "stage_seconds": manifest.get("seconds"),
    }


def child(stage: str, spec_path: str, result_path: str) -> None:
    """One stage in this process: run it, write its figures (or its error) to ``result_path``."""
    import torch

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    cuda = torch.cuda.is_available()
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])  # a tiny model: threads only add overhead
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        if stage == "build":
            result = build(spec)
        elif stage in ("sft_full", "sft_lora"):
            result = _sft(spec, lora=stage == "sft_lora")
        elif stage == "grpo":
            result = _grpo(spec)
        else:
            result = _distill(spec)
        result["status"] = "stopped_early" if result.get("stopped_early") else "ok"
    except Exception as e:  # reported in the table; the parent exits 1
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
    result["child_seconds"] = round(time.perf_counter() - started, 1)
    result["peak_memory_gib"] = _gib(torch.cuda.max_memory_allocated()) if cuda else None
    result["peak_reserved_gib"] = _gib(torch.cuda.max_memory_reserved()) if cuda else None
    result["peak_rss_gib"] = _gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    Path(result_path).write_text(json.dumps(result, default=str), encoding="utf-8")


# ------------------------------------------------------------------------------ the parent


def run_stage(stage: str, spec: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Run ``stage`` in a child process until it ends or ``deadline`` passes; add the GPU's free
    memory before and after (the memory the child held must be back once it has exited)."""
    work = Path(spec["work"])
    spec_path = work / f"{stage}.spec.json"
    result_path = work / f"{stage}.result.json"
    spec_path.write_text(json.dumps({**spec, "stage": stage}), encoding="utf-8")
    result_path.unlink(missing_ok=True)
    free_before = _free_gpu()
    started = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", stage, str(spec_path),
           str(result_path)]  # fmt: skip
    # The child's output goes to stderr: stdout carries only the JSON and the table.
    proc = subprocess.Popen(cmd, stdout=sys.stderr, start_new_session=True)
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        stop_group(proc, grace=15)
        rc = None
    except BaseException:
        stop_group(proc, grace=15)
        raise
    if result_path.exists():
        result = json.loads(result_path.read_text(encoding="utf-8"))
    else:
        result = {"status": "killed" if rc is None else "failed"}
    if rc is None:
        result.update(status="killed", error="ran past --max-seconds; stopped with its group")
    elif rc != 0 and result.get("status") != "failed":
        result.update(status="failed", error=f"exit status {rc}")
    free_after = _free_gpu()
    for _ in range(5):  # the driver may take a moment to tear down an exited process's context
        if free_before is None or free_after >= free_before - RETURNED_SLACK:
            break
        time.sleep(1.0)
        free_after = _free_gpu()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["gpu_free_before_gib"] = _gib(free_before)
    result["gpu_free_after_gib"] = _gib(free_after)
    result["memory_returned"] = (
        None if free_before is None else bool(free_after >= free_before - RETURNED_SLACK)
    )
    return result


def _fmt(v: Any, pattern: str = "{}") -> str:
    return "-" if v is None else pattern.format(v)


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per stage."""
    rows = [
        "| stage | status | steps | step time | tokens/s | MFU | peak GPU memory "
        "| weights moved | GPU free before -> after | wall |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for stage in report["stages"]:
        r = report["stages"][stage]
        tps = r.get("tokens_per_s")
        if tps is None and r.get("completion_tokens_per_s") is not None:
            tps = f"{r['completion_tokens_per_s']} (completions)"
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        if r.get("stopped_early"):
            status += f" ({r['stopped_early']})"
        free = "-"
        if r.get("gpu_free_before_gib") is not None:
            back = "returned" if r.get("memory_returned") else "NOT returned"
            free = f"{r['gpu_free_before_gib']} -> {r['gpu_free_after_gib']} GiB ({back})"
        peak = _fmt(r.get("peak_memory_gib"), "{} GiB")
        if r.get("peak_memory_gib") is None and r.get("peak_rss_gib") is not None:
            peak = f"{r['peak_rss_gib']} GiB RSS (CPU)"
        rows.append(
            f"| {stage} | {status} | {_fmt(r.get('steps'))} | {_fmt(r.get('step_time_s'), '{} s')}"
            f" | {_fmt(tps)} | {_fmt(r.get('mfu'), '{:.1%}')} | {peak}"
            f" | {_fmt(r.get('weights_moved_share'), '{:.1%}')} | {free}"
            f" | {_fmt(r.get('wall_seconds'), '{} s')} |"
        )
    return "\n".join(rows)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("medistill", "torch", "transformers", "trl", "peft", "accelerate"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every stage in its own process; print (and write) the JSON report and the table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        child(*argv[1:4])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny same-architecture model (CPU test)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON here (table: .md)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp)")
    p.add_argument("--max-seconds", type=float, default=None, help="bound on the whole run")
    p.add_argument("--sft-steps", type=int, default=None, help="steps of each SFT stage")
    p.add_argument("--sft-batch", type=int, default=None, help="sequences per SFT step")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per SFT sequence")
    p.add_argument("--stages", default=",".join(TRAINING), help="training stages to run")
    a = p.parse_args(argv)
    import tempfile

    import torch

    mode = "tiny" if a.tiny else "full"
    plan = dict(PLANS[mode])
    for key in ("sft_steps", "sft_batch", "seq_len"):
        if getattr(a, key):
            plan[key] = getattr(a, key)
    wanted = [s for s in a.stages.split(",") if s]
    unknown = sorted(set(wanted) - set(TRAINING))
    if unknown:
        p.error(f"--stages: unknown {', '.join(unknown)}; choose from {', '.join(TRAINING)}")
    if mode == "full" and not torch.cuda.is_available():
        p.exit(
            2,
            "gpu_check: no CUDA device here; the full check trains a 1.7B model and needs a GPU "
            "(run with --tiny for the CPU smoke run of the same code)\n",
        )
    max_seconds = a.max_seconds or plan["max_seconds"]
    start = time.time()
    deadline = start + max_seconds
    work = a.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else None
    peak = peak_tflops(name)
    cfg = plan["config"]
    spec = {
        **{k: v for k, v in plan.items() if k not in ("reserve", "max_seconds")},
        "work": str(work),
        "student": str(work / "student"),
        "teacher": str(work / "teacher"),
        "rows": str(work / "rows.jsonl"),
    }
    report: dict[str, Any] = {
        "mode": mode,
        "device": name or "cpu",
        "cuda": cuda,
        "peak_bf16_tflops": peak,
        "model": {
            "shape": "Qwen3-1.7B" if mode == "full" else "tiny Qwen3",
            "config": cfg,
            "matmul_parameters": matmul_parameters(cfg),
        },
        "plan": {k: v for k, v in spec.items() if k not in ("config", "work")},
        "max_seconds": max_seconds,
        "versions": _versions(),
        "stages": {},
    }
    if not cuda:
        report["note"] = "no CUDA device: a CPU smoke run of the same paths, not a benchmark"
    elif peak is None:
        report["note"] = f"no bf16 peak known for {name}: MFU not computed"
    order = ["build", *[s for s in TRAINING if s in wanted]]
    for i, stage in enumerate(order):
        left = deadline - time.time()
        later = sum(plan["reserve"].get(s, 0.0) for s in order[i + 1 :])
        if left < 5:
            report["stages"][stage] = {"status": "skipped", "error": "--max-seconds spent"}
            continue
        stop_at = min(time.time() + plan["train_cap"], deadline - later)
        spec["stop_at"] = max(stop_at, time.time() + 1)
        print(f"gpu_check: {stage} ...", file=sys.stderr, flush=True)
        result = run_stage(stage, spec, deadline)
        if stage == "build":
            report["model"]["parameters"] = result.get("student_parameters")
            if result["status"] != "ok":
                report["stages"][stage] = result
                for s in order[1:]:
                    report["stages"][s] = {"status": "skipped", "error": "the build failed"}
                break
        if stage in ("sft_full", "sft_lora"):
            tflops = result.get("model_tflops_per_s")
            result["mfu"] = round(tflops / peak, 4) if peak and tflops is not None else None
        report["stages"][stage] = result
    report["wall_seconds"] = round(time.time() - start, 1)
    report["table"] = table(report)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    print()
    print(report["table"])
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n", encoding="utf-8")
        a.out.with_suffix(".md").write_text(report["table"] + "\n", encoding="utf-8")
    done = ("ok", "stopped_early")
    return 0 if all(r["status"] in done for r in report["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
