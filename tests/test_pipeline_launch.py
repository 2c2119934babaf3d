"""`medistill run` on several processes: training stages under `accelerate launch` (two CPU
ranks over gloo here), everything else once; a pipeline started under a launcher is refused;
`overwrite` under several ranks never has a rank delete another's work; a killed pipeline
takes its ranks with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medistill.errors import MedistillError
from medistill.pipeline import decide, plan, run_pipeline
from medistill.pipeline.launch import PARENT_ENV, launch_command, launch_mode
from test_pipeline import teacher, write_recipe

from chat_server import ChatServer

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp: Path, **run) -> object:
    recipe = write_recipe(
        tmp, "http://127.0.0.1:9/v1", tmp / "model", **{f"run.{k}": v for k, v in run.items()}
    )
    return plan(recipe)


@pytest.mark.parametrize(
    ("run", "mode", "has", "lacks", "note"),
    [
        ({}, "inline", [], [], None),
        ({"num_processes": 2}, "accelerate", ["--multi_gpu", "--num_processes 2"], [], None),
        (
            {"accelerate_config": str(ROOT / "recipes/accelerate/ddp.yaml"), "num_processes": 2},
            "accelerate",
            ["--config_file", "--num_processes 2"],
            ["--multi_gpu"],
            "run on the CPU",
        ),
        (
            {"accelerate_config": str(ROOT / "recipes/accelerate/zero3.yaml"), "num_processes": 2},
            "accelerate",
            ["--multi_gpu", "--num_processes 2"],
            ["--config_file"],
            "plain data parallelism",
        ),
        (
            {"launcher": "process"},
            "process",
            ["-m medistill.cli sft --config"],
            ["accelerate"],
            None,
        ),
    ],
)
def test_training_stage_launch_commands_on_a_cpu(
    run: dict, mode: str, has: list, lacks: list, note: str | None, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("medistill.pipeline.launch.cuda_available", lambda: False)
    p = _run(tmp_path, **run)
    assert launch_mode(p.run) == mode
    if mode == "inline":
        return
    cmd, env, notes = launch_command(p.run, "sft", tmp_path / "l.yaml", mode=mode, gpu=False)
    line = " ".join(cmd)
    assert line.endswith(f"-m medistill.cli sft --config {tmp_path / 'l.yaml'}")
    for part in has:
        assert part in line, line
    for part in lacks:
        assert part not in line, line
    assert env[PARENT_ENV] == str(os.getpid())
    if mode == "accelerate":
        assert env["ACCELERATE_USE_CPU"] == "1"  # no CUDA: CPU ranks, and said so
    assert (note is None and not notes) or any(note in n for n in notes), notes


def test_launch_settings_are_checked_at_plan_time(tmp_path: Path) -> None:
    with pytest.raises(MedistillError, match=r"run.accelerate_config: nowhere.yaml not found"):
        _run(tmp_path, accelerate_config="nowhere.yaml")
    with pytest.raises(MedistillError, match=r"run.launcher: 'threads' is not one of"):
        _run(tmp_path, launcher="threads")
    with pytest.raises(MedistillError, match=r"run.num_processes must be at least 1"):
        _run(tmp_path, num_processes=0)


def test_a_pipeline_under_a_launcher_is_refused(tmp_path: Path, monkeypatch) -> None:
    """`accelerate launch medistill run` would generate on every rank, paying the teacher
    once per rank: refused before any stage, pointing at run.num_processes."""
    recipe = write_recipe(tmp_path, "http://127.0.0.1:9/v1", tmp_path / "model")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(MedistillError, match=r"run\.num_processes"):
        run_pipeline(recipe, show_progress=False)
    assert not (tmp_path / "runs").exists()


def test_overwrite_on_a_second_rank_removes_nothing(tmp_path: Path) -> None:
    """Under several ranks the main process prepares the folder first; a second rank running
    prepare_run with overwrite used to delete it again, under the main process's feet."""
    from medistill.train.config import SFTRecipe
    from medistill.train.output import prepare_run

    out = tmp_path / "sft"
    out.mkdir()
    (out / "started-by-main.txt").write_text("x")
    cfg = SFTRecipe(model="m", dataset="d", output_dir=str(out), overwrite=True)
    prepare_run(cfg, "sft", main=False)
    assert (out / "started-by-main.txt").is_file()
    prepare_run(cfg, "sft", main=True)  # the main process alone starts the folder again
    assert not (out / "started-by-main.txt").exists()


def _two_ranks(tmp: Path, url: str, model: Path, **changes) -> Path:
    return write_recipe(
        tmp,
        url,
        model,
        **{
            "run.stages": ["generate", "curate", "sft", "eval", "report"],
            "run.num_processes": 2,
            "run.eval_base": False,
            "sft.max_steps": 3,
            "sft.save_steps": 1,
            **changes,
        },
    )


@pytest.mark.slow
def test_a_two_process_run_trains_once_per_rank_and_reports_once(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with ChatServer(teacher) as srv:
        recipe = _two_ranks(tmp_path, srv.url, tiny_model_dir)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "medistill.cli", "run", str(recipe)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-4000:]
        # generate (12 questions) and the teacher's evaluation (4) ran once, not once per rank
        assert srv.stats["requests"] == 12 + 4
    run = tmp_path / "runs" / "tiny"
    sft = json.loads((run / "sft" / "pipeline.json").read_text())
    digests = sft["figures"]["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # one set of weights
    assert sft["figures"]["launcher"] == "accelerate"
    assert sft["figures"]["metrics"]["global_step"] == 3
    launched = yaml.safe_load((run / "sft" / "launch.yaml").read_text())["sft"]
    assert launched["output_dir"] == str(run / "sft") and launched["max_steps"] == 3
    assert sorted(p.name for p in (run / "eval").iterdir() if p.is_dir()) == [
        "sft-sample_heldout",
        "teacher-sample_heldout",
    ]
    assert len(list(run.rglob("report.md"))) == 1
    assert "| student: SFT |" in (run / "report" / "report.md").read_text()


def _ranks(marker: str) -> list[int]:
    """Pids whose command line names ``marker`` (the launched stage's config file)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and "medistill.cli sft" in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_killed_pipeline_takes_its_ranks_with_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    """SIGKILL the `medistill run` process while its two ranks train: they exit on their own
    (no orphan keeps a GPU), and the rerun resumes SFT from its checkpoint."""
    with ChatServer(teacher) as srv:
        recipe = _two_ranks(tmp_path, srv.url, tiny_model_dir, **{"sft.max_steps": 200})
        cmd = [sys.executable, "-m", "medistill.cli", "run", str(recipe)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sft = tmp_path / "runs/tiny/sft"
        deadline = time.time() + 400
        while time.time() < deadline and not list(sft.glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, "medistill run ended early"
            time.sleep(0.2)
        marker = str(sft / "launch.yaml")
        assert _ranks(marker), "no rank is running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 30
        while _ranks(marker) and time.time() < deadline:
            time.sleep(0.5)
        assert not _ranks(marker), "ranks outlived the pipeline"
        recipe = _two_ranks(tmp_path, srv.url, tiny_model_dir, **{"sft.max_steps": 200})
        steps = {s: r for s, _, r in decide(plan(recipe))}
        assert steps["sft"] == "unfinished: resumes"
