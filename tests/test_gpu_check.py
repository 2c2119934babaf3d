"""benchmarks/gpu_check.py, the prepared GPU check: its ``--tiny`` mode runs every stage on this
CPU through the same code (child processes, medistill's SFT / GRPO / distillation paths), so the
command handed to a GPU machine is known to work before any GPU time is spent on it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
TRAINING = ("sft_full", "sft_lora", "grpo", "distill")


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, *args: str, timeout: int = 280) -> tuple[Any, dict]:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--work", str(tmp_path / "work"), "--out",
         str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )  # fmt: skip
    assert out.exists(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_tiny_run_reports_every_stage_and_each_training_stage_moves_its_weights(
    tmp_path: Path,
) -> None:
    proc, report = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["mode"] == "tiny" and report["model"]["config"]["head_dim"] == 16
    assert list(report["stages"]) == ["build", *TRAINING]
    for key in ("device", "cuda", "peak_bf16_tflops", "versions", "max_seconds", "wall_seconds"):
        assert key in report, key
    for name in TRAINING:
        stage = report["stages"][name]
        assert stage["status"] == "ok", (name, stage)
        assert stage["steps"] >= 1 and stage["step_time_s"] > 0, (name, stage)
        assert stage["weights_moved"] > 0 and stage["weights_moved_share"] > 0, (name, stage)
        for key in ("peak_memory_gib", "peak_rss_gib", "gpu_free_before_gib",
                    "gpu_free_after_gib", "memory_returned", "wall_seconds"):  # fmt: skip
            assert key in stage, (name, key)
        assert stage["precision"]["trainable_weights"] == ["float32"], (name, stage)
    for name in ("sft_full", "sft_lora"):
        stage = report["stages"][name]
        assert stage["tokens_per_s"] > 0 and stage["model_tflops_per_s"] > 0
        assert "mfu" in stage  # None here: a CPU has no bf16 peak in the table
        assert stage["precision"]["compute"] == "bfloat16 (autocast)"  # over fp32 masters
    # Full fine-tuning trains every weight; LoRA only its adapters (far fewer).
    full, lora = report["stages"]["sft_full"], report["stages"]["sft_lora"]
    assert lora["trainable_parameters"] < full["trainable_parameters"]
    assert full["trainable_parameters"] == report["stages"]["grpo"]["trainable_parameters"]
    # GRPO had reward spread (some completions ended, some were cut off), else no update.
    assert report["stages"]["grpo"]["zero_std_group_share"] < 1
    # stdout: the JSON, then the Markdown table, one row per stage (also written beside --out).
    table = (tmp_path / "report.md").read_text()
    assert table.strip() == report["table"].strip() and table.strip() in proc.stdout
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == [
        "build",
        *TRAINING,
    ]


def test_max_seconds_skips_what_does_not_fit_and_says_so(tmp_path: Path) -> None:
    proc, report = _run(tmp_path, "--max-seconds", "0.01", timeout=120)
    assert proc.returncode == 1  # the check did not run: never a silent success
    assert {s["status"] for s in report["stages"].values()} == {"skipped"}
    assert all("--max-seconds" in s["error"] for s in report["stages"].values())


def test_peak_table_and_flop_count_match_the_cards_and_the_model() -> None:
    """The MFU's two inputs: the card's bf16 peak from its CUDA name, and the matmul parameters
    of the real transformers Qwen3 model built (on the meta device) from the script's config."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    gc = _module()
    assert gc.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gc.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gc.peak_tflops("NVIDIA H200") == 989.0
    assert gc.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gc.peak_tflops("NVIDIA GeForce RTX 4090") is None
    with torch.device("meta"):
        model = Qwen3ForCausalLM(Qwen3Config(**gc.QWEN3_1_7B))
    params = {n: p.numel() for n, p in model.named_parameters()}
    norms = sum(v for n, v in params.items() if "norm" in n)
    assert gc.matmul_parameters(gc.QWEN3_1_7B) == sum(params.values()) - norms
    embedding = params["model.embed_tokens.weight"]
    assert "lm_head.weight" not in params  # tied, as Qwen3-1.7B's card says
    # Qwen3-1.7B's model card: 1.7B parameters, 1.4B without the embedding.
    assert 1.68e9 < sum(params.values()) < 1.76e9
    assert 1.38e9 < sum(params.values()) - embedding < 1.45e9


def test_the_full_check_without_cuda_stops_in_one_line() -> None:
    """Without a GPU the full check (a 1.7B model) would run for hours: it refuses at once and
    names --tiny. On a CUDA machine the full check is the point, so there is nothing to refuse."""
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--max-seconds", "5"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "gpu_check: no CUDA device here; the full check trains a 1.7B model and needs a GPU "
        "(run with --tiny for the CPU smoke run of the same code)"
    ]
