"""Stages that hold GPU memory own their process and pin their device.

- On a CUDA machine (here: ``run.launcher: process``) generate with a local teacher and the
  evaluation of every local model run in child processes, and the pipeline's results are the
  same as inline.
- A single-process training stage on a CUDA machine loads its model onto one device, not TRL's
  ``device_map="auto"`` over every GPU (defect 8), checked against the installed TRL's rule.
- Checkpoint cadence: an integer ``save_steps`` at or past the run's total steps is flagged
  (defect 3).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path

import pytest

from test_pipeline import write_recipe

# ------------------------------------------------------------------ defect 8: device pinning


def _trl_default_device_map_rule() -> str:
    """The line of the installed TRL that picks a device map when none is given."""
    from trl.trainer import utils as trl_utils

    src = inspect.getsource(trl_utils.create_model_from_path)
    assert 'if "device_map" not in kwargs:' in src  # the pinned TRL decides only when unset
    assert '"auto"' in src.split('if "device_map" not in kwargs:', 1)[1].splitlines()[1]
    return src


def test_a_single_process_stage_on_cuda_pins_its_device(tmp_path: Path, monkeypatch) -> None:
    """TRL 1.16 gives a model loaded on a GPU ``device_map="auto"`` unless the kwargs name one:
    in one process on an 8-GPU machine that spreads the model over every GPU. The kwargs we
    hand TRL name this process's own device."""
    _trl_default_device_map_rule()
    from medistill.train.config import GRPORecipe, SFTRecipe

    monkeypatch.setattr("medistill.train.hardware.torch_cuda_available", lambda: True)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    want = {"": 0}  # the one GPU a single process is given
    for cls in (SFTRecipe, GRPORecipe):
        cfg = cls(model="m", dataset="d", output_dir=str(tmp_path / cls.__name__))
        assert cfg.model_init_kwargs_resolved()["device_map"] == want
    # a recipe's own device_map is kept, never replaced
    cfg = SFTRecipe(
        model="m",
        dataset="d",
        output_dir=str(tmp_path / "own"),
        model_init_kwargs={"device_map": "balanced"},
    )
    assert cfg.model_init_kwargs_resolved()["device_map"] == "balanced"


def test_several_ranks_and_cpu_leave_the_device_map_to_trl(tmp_path: Path, monkeypatch) -> None:
    """Under several ranks TRL sets ``None`` itself (DDP, DeepSpeed); on a CPU TRL picks
    ``None``: nothing is added there."""
    from medistill.train.config import SFTRecipe

    cfg = SFTRecipe(model="m", dataset="d", output_dir=str(tmp_path / "s"))
    monkeypatch.setattr("medistill.train.hardware.torch_cuda_available", lambda: False)
    assert "device_map" not in cfg.model_init_kwargs_resolved()
    monkeypatch.setattr("medistill.train.hardware.torch_cuda_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert "device_map" not in cfg.model_init_kwargs_resolved()


# ------------------------------------------------------ generate and eval in their own process


def _local_recipe(tmp: Path, model: Path, launcher: str) -> Path:
    """Teacher and base student both local transformers models (the tiny one): generate,
    evaluate both, report."""
    return write_recipe(
        tmp,
        "http://127.0.0.1:9/v1",
        model,
        **{
            "run.stages": ["generate", "eval", "report"],
            "run.launcher": launcher,
            "generate.teacher": {"model": str(model), "backend": "transformers", "batch_size": 4},
            "generate.limit": 3,
            "generate.max_tokens": 8,
            "generate.temperature": 0.0,
            "eval.limit": 3,
            "eval.max_new_tokens": 8,
        },
    )


def _results(tmp: Path) -> dict:
    """What the run produced: the stored responses, and each eval run's predictions."""
    from medistill.store import TraceStore

    run = tmp / "runs" / "tiny"
    with TraceStore(str(run / "generate" / "traces.db")) as store:
        keys = sorted(map(str, store.done_keys()))
    preds = {}
    for folder in sorted((run / "eval").iterdir()):
        if (folder / "metrics.json").is_file():
            m = json.loads((folder / "metrics.json").read_text())
            rows = [
                json.loads(line)["response"]
                for line in (folder / "predictions.jsonl").read_text().splitlines()
                if line.strip()
            ]
            preds[folder.name] = (m["n"], m["accuracy"]["lenient"]["value"], rows)
    return {"traces": keys, "eval": preds}


@pytest.mark.slow
def test_process_launcher_runs_local_generate_and_eval_in_children(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """``run.launcher: process`` (what ``auto`` is on a CUDA machine): the local teacher's
    generation and each local model's evaluation run in a child process (its pid, not this
    one's, in the manifest and beside the launch file), and produce what the inline run does."""
    from medistill.pipeline import run_pipeline

    inline, process = tmp_path / "inline", tmp_path / "process"
    for folder, launcher in ((inline, "inline"), (process, "process")):
        folder.mkdir()
        run_pipeline(_local_recipe(folder, tiny_model_dir, launcher), show_progress=False)
    run = process / "runs" / "tiny"
    gen = json.loads((run / "generate" / "pipeline.json").read_text())["figures"]
    assert gen["launcher"] == "process" and gen["pid"] != os.getpid()
    assert gen["new_calls"] == 3
    written = json.loads((run / "generate" / "launch.result.json").read_text())
    assert written["pid"] == gen["pid"]
    ev = json.loads((run / "eval" / "pipeline.json").read_text())["figures"]["runs"]
    assert set(ev) == {"teacher-sample_heldout", "base-sample_heldout"}
    pids = {r["pid"] for r in ev.values()}
    assert len(pids) == 2 and os.getpid() not in pids and gen["pid"] not in pids
    assert (run / "eval" / "launch-teacher-sample_heldout.yaml").is_file()
    # the inline run kept everything in this process
    inline_gen = json.loads((inline / "runs/tiny/generate/pipeline.json").read_text())["figures"]
    assert "pid" not in inline_gen
    assert _results(process) == _results(inline)


def test_http_teachers_and_inline_runs_stay_in_the_pipeline_process(monkeypatch) -> None:
    """Only a local backend gets a child; ``inline`` and the CPU demo (``auto`` without CUDA)
    keep every stage in the pipeline's process."""
    from types import SimpleNamespace

    from medistill.pipeline.launch import model_stage_in_process

    def run(launcher: str) -> SimpleNamespace:
        return SimpleNamespace(launcher=launcher)

    monkeypatch.setattr("medistill.pipeline.launch.cuda_available", lambda: False)
    assert not model_stage_in_process(run("auto"), "vllm")
    assert model_stage_in_process(run("process"), "transformers")
    assert not model_stage_in_process(run("process"), "openai")
    monkeypatch.setattr("medistill.pipeline.launch.cuda_available", lambda: True)
    for launcher in ("auto", "accelerate", "process"):
        assert model_stage_in_process(run(launcher), "vllm")
    assert not model_stage_in_process(run("inline"), "vllm")
    assert not model_stage_in_process(run("auto"), "openai")


# ---------------------------------------------------------- defect 3: checkpoint cadence


def test_save_steps_past_the_runs_steps_is_flagged(caplog) -> None:
    """A run of 96 optimizer steps with ``save_steps: 200`` never checkpoints: flagged with
    the figures and the fix, at the trainer's start (where the real count is known)."""
    from transformers import TrainerState, TrainingArguments

    from medistill.train.cadence import CheckpointCadence

    cb = CheckpointCadence("sft")
    state = TrainerState()
    state.max_steps = 96
    with caplog.at_level(logging.WARNING, logger="medistill.train.cadence"):
        cb.on_train_begin(TrainingArguments(output_dir="x", save_steps=200), state, None)
    assert any(
        "sft.save_steps: 200" in r.message and "96 optimizer steps" in r.message
        for r in caplog.records
    ), caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medistill.train.cadence"):
        cb.on_train_begin(TrainingArguments(output_dir="x", save_steps=0.1), state, None)
        cb.on_train_begin(TrainingArguments(output_dir="x", save_steps=50), state, None)
    assert not caplog.records


def test_an_sft_run_that_would_never_checkpoint_says_so(
    tiny_model_dir: Path, curated_dataset: Path, tmp_path: Path, caplog
) -> None:
    """The real trainer: an epoch-based run of a few steps with ``save_steps: 1000`` is flagged
    when training starts (its real step count in the line), and the setting is kept."""
    from medistill.train.config import SFTRecipe
    from medistill.train.sft import run_sft

    cfg = SFTRecipe(
        model=str(tiny_model_dir),
        dataset=str(curated_dataset),
        output_dir=str(tmp_path / "sft"),
        num_train_epochs=1,
        per_device_train_batch_size=8,
        max_length=1024,
        save_steps=1000,
        report_to="none",
    )
    with caplog.at_level(logging.WARNING, logger="medistill.train.cadence"):
        manifest = run_sft(cfg)
    steps = manifest["metrics"]["global_step"]
    assert 0 < steps < 1000
    assert f"sft.save_steps: 1000 but this run has {steps} optimizer steps" in caplog.text
    assert cfg.save_steps == 1000  # flagged, never changed


def test_a_failing_model_child_is_one_error_naming_the_stage(tmp_path: Path) -> None:
    """A child whose section is bad exits with one line (no traceback) and the pipeline's
    error names the stage and the command it ran."""
    from medistill.errors import MedistillError
    from medistill.pipeline.launch import run_model_stage

    section = {"model": "m", "benchmark": "no_such_benchmark", "out": str(tmp_path / "e")}
    with pytest.raises(MedistillError, match=r"stage eval exited with status 1") as err:
        run_model_stage("eval", section, tmp_path / "launch-x.yaml")
    assert "medistill.pipeline.child" in str(err.value)
    assert not (tmp_path / "launch-x.result.json").exists()
