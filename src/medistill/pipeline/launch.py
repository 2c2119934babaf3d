"""Stages that hold GPU memory in their own processes, so that memory a stage held (a vLLM
engine, a trained model) is the operating system's to free before the next one starts.

``medistill run`` stays one process that plans, curates and reports once. The training stages
(``sft``, ``grpo``, ``distill``) run as ``accelerate launch -m medistill.cli <stage> --config
<stage>/launch.yaml`` on several GPUs (or CPU ranks), or as one child process per stage where
CUDA is present (``run.launcher``). The stages that load a model into this machine's memory, a
local teacher in ``generate`` (vLLM, transformers, llama.cpp) and every local model ``eval``
scores, run as one child process each (``python -m medistill.pipeline.child <launch file>``)
wherever the training stages leave the pipeline's process (CUDA, or ``run.launcher:
process``); a teacher or model behind an HTTP server holds no memory here and stays inline.

Either way the resolved stage section is written to a launch file (the same values the
in-process path builds), the child's output goes to the terminal, and what it produced is read
back (a training manifest, a child's result file). Each child watches the ``medistill run``
process that launched it and exits when that process is gone, so a killed pipeline leaves no
process holding GPUs; the rerun resumes the stage.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from medistill.errors import MedistillError
from medistill.train.output import PIPELINE_LAUNCH as LAUNCH_FILE

log = logging.getLogger(__name__)

TRAINING_STAGES = ("sft", "grpo", "distill")
#: Backends that load the model into this machine's memory (a GPU's where there is one); the
#: ``openai`` backend calls a server and holds nothing here.
LOCAL_BACKENDS = ("transformers", "vllm", "llamacpp")
#: What a model stage's child writes beside its launch file: ``{"pid", "result"}``.
RESULT_SUFFIX = ".result.json"
#: The ``medistill run`` process a launched stage belongs to (the child side watches it).
PARENT_ENV = "MEDISTILL_PIPELINE_PID"
#: accelerate config types that shard the model: they need GPUs (FSDP, DeepSpeed ZeRO).
SHARDED = ("FSDP", "DEEPSPEED")


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False where torch is missing)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # no torch, or a broken CUDA install: not a GPU machine for us
        return False


def launch_mode(run: Any) -> str:
    """How the run's training stages run: ``accelerate``, ``process`` or ``inline``.

    ``run.launcher: auto`` picks ``accelerate`` when the recipe names an accelerate config or a
    process count, ``process`` where CUDA is present (each stage frees its GPU memory by
    exiting), else ``inline`` (the CPU demo: no start-up cost).
    """
    if run.launcher != "auto":
        return run.launcher
    if run.accelerate_config or run.num_processes:
        return "accelerate"
    return "process" if cuda_available() else "inline"


def model_stage_in_process(run: Any, backend: str) -> bool:
    """Whether a generate or eval run of a model on ``backend`` gets its own child process.

    Only a local backend holds memory worth freeing; it runs in a child wherever the training
    stages leave the pipeline's process: ``run.launcher: process``, or ``auto`` / ``accelerate``
    on a CUDA machine (where an engine left in the pipeline's process would keep its GPU memory
    through every later stage). ``inline`` and the CPU demo keep it in this process.
    """
    if backend not in LOCAL_BACKENDS or run.launcher == "inline":
        return False
    return run.launcher == "process" or cuda_available()


def accelerate_config_type(path: str | None) -> str | None:
    """The ``distributed_type`` an accelerate config file names (``None`` without a file)."""
    if not path:
        return None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise MedistillError(f"run.accelerate_config: cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise MedistillError(f"run.accelerate_config: {path} is not an accelerate config mapping")
    return str(data.get("distributed_type") or "NO").upper()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(
    run: Any, stage: str, config_file: Path, *, mode: str, gpu: bool
) -> tuple[list[str], dict[str, str], list[str]]:
    """The command, environment and notes (what was changed for this machine) of one stage.

    Without CUDA, several processes run as CPU ranks over gloo (accelerate starts them with
    ``--multi_gpu`` and ``ACCELERATE_USE_CPU``); a sharded config (FSDP, ZeRO) then becomes
    plain data parallelism, and the notes say so.
    """
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    stage_cmd = ["-m", "medistill.cli", stage, "--config", str(config_file)]
    notes: list[str] = []
    if mode == "process":
        return [sys.executable, *stage_cmd], env, notes
    args = [sys.executable, "-m", "accelerate.commands.launch"]
    kind = accelerate_config_type(run.accelerate_config)
    n = run.num_processes
    config = run.accelerate_config
    if not gpu:
        env["ACCELERATE_USE_CPU"] = "1"
        env.setdefault("OMP_NUM_THREADS", "1")
        if kind is not None and kind.startswith(SHARDED):
            notes.append(
                f"{config} ({kind}) needs GPUs: the {n or 'configured number of'} processes "
                "run as CPU ranks with plain data parallelism (DDP over gloo) instead"
            )
            config = None
        elif kind is not None:
            notes.append(f"no CUDA: the ranks of {config} run on the CPU (gloo)")
    if config:
        args += ["--config_file", str(config)]
    if n:
        args += ["--num_processes", str(n)]
    if not config:
        args += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if (n or 1) > 1:
            args.append("--multi_gpu")
    args += ["--main_process_port", str(_free_port())]
    return [*args, *stage_cmd], env, notes


def write_launch_file(config_file: Path, stage: str, section: dict[str, Any]) -> None:
    """Write ``{stage: section}``, the resolved section a launched stage rebuilds its config
    from (what the in-process path builds it from)."""
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(
        "# written by medistill run: the resolved section this stage was launched with\n"
        + yaml.safe_dump({stage: section}, sort_keys=True),
        encoding="utf-8",
    )


def run_training_stage(
    run: Any, stage: str, values: dict[str, Any], folder: Path, *, fresh: bool, mode: str
) -> None:
    """Run one training stage in its own process(es) and wait for it.

    ``values`` is the stage's resolved recipe section (what the in-process path builds its
    config from); ``fresh`` becomes ``overwrite``. A failing child is an error naming the
    stage, its exit status and the command; the pipeline's kill takes its ranks with it.
    """
    config_file = folder / LAUNCH_FILE
    write_launch_file(config_file, stage, {**values, "overwrite": fresh})
    cmd, env, notes = launch_command(run, stage, config_file, mode=mode, gpu=cuda_available())
    for note in notes:
        log.warning("%s: %s", stage, note)
    _wait(stage, cmd, env)


def run_model_stage(stage: str, section: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """Run one generate or eval run in a child process and return what it recorded.

    The child (:mod:`medistill.pipeline.child`) builds the stage's config from ``section``,
    runs the stage's own function, writes ``{"pid": its pid, "result": the function's
    return}`` beside ``config_file`` and exits, so the model it loaded leaves this machine's
    memory with it. The child's single-process device rule is the training stages' (one GPU,
    or the ``tensor_parallel_size`` GPUs its vLLM engine takes).
    """
    write_launch_file(config_file, stage, section)
    result_file = config_file.with_name(config_file.stem + RESULT_SUFFIX)
    result_file.unlink(missing_ok=True)
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    _wait(stage, [sys.executable, "-m", "medistill.pipeline.child", str(config_file)], env)
    try:
        return json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise MedistillError(
            f"stage {stage}: its process exited without a readable result ({result_file}: {e})"
        ) from None


def _wait(stage: str, cmd: list[str], env: dict[str, str]) -> None:
    """Start ``cmd`` in its own process group, wait for it; stop it with the pipeline."""
    log.info("%s: %s", stage, " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        rc = proc.wait()
    except BaseException:
        stop_group(proc)
        raise
    if rc != 0:
        raise MedistillError(
            f"stage {stage} exited with status {rc} (its output is above); it ran: {' '.join(cmd)}"
        )


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a launched stage and every rank it started (its own process group): SIGTERM, then
    SIGKILL after ``grace`` seconds, so no rank is left holding a GPU."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def watch_parent(interval: float = 1.0) -> None:
    """In a launched stage: exit as soon as the ``medistill run`` that launched it is gone.

    A no-op outside a pipeline launch. A daemon thread polls the pid from
    :data:`PARENT_ENV`; when it disappears (killed, even by SIGKILL) this rank exits at once,
    so no orphaned rank keeps a GPU or writes into a run folder the rerun is resuming.
    """
    pid = os.environ.get(PARENT_ENV)
    if not pid or not pid.isdigit():
        return

    def watch() -> None:
        while _alive(int(pid)):
            time.sleep(interval)
        log.error("medistill run (pid %s) is gone: this stage's process stops", pid)
        os._exit(1)

    threading.Thread(target=watch, name="medistill-parent-watch", daemon=True).start()
