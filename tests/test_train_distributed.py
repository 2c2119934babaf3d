"""Training beyond one process: data-parallel SFT under ``accelerate launch`` with two CPU
processes, and a run SIGKILLed mid-way that resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl")

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def test_ddp_sft_on_two_cpu_processes_ends_with_identical_weights(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    # accelerate 1.15 starts several CPU processes through torchrun only when asked for
    # --multi_gpu with ACCELERATE_USE_CPU set (its --cpu --num_processes N path needs MPI).
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT / "tests" / "ddp_sft.py"),
        str(tiny_model_dir),
        str(curated_dataset),
        str(out),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [(out / f"rank{i}.sha256").read_text().split() for i in range(2)]
    assert [x[1:] for x in ranks] == [["2", "DistributedType.MULTI_CPU"]] * 2
    assert ranks[0][0] == ranks[1][0]  # identical weights on both ranks
    manifest = json.loads((out / "medistill_train.json").read_text())
    assert manifest["status"] == "finished" and manifest["metrics"]["global_step"] == 3
    assert (out / "model.safetensors").is_file()


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_at_the_same_step(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cmd = [
        str(BIN / "medistill"),
        "sft",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(curated_dataset),
        "--output-dir",
        str(out),
        "--max-steps",
        "30",
        "--save-steps",
        "3",
        "--per-device-train-batch-size",
        "2",
        "--max-length",
        "1024",
        "--report-to",
        "none",
        "--logging-steps",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 200
    while not (out / "checkpoint-6" / "trainer_state.json").exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = json.loads((out / "medistill_train.json").read_text())
    assert manifest["status"] == "running"
    done = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert 6 <= done < 30
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming from checkpoint-{done}" in r.stderr.replace("\n", " ")
    manifest = json.loads((out / "medistill_train.json").read_text())
    assert manifest["status"] == "finished" and manifest["metrics"]["global_step"] == 30
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").open() if '"loss"' in x]
    assert steps == list(range(1, 31))  # every step logged once: none repeated, none lost
