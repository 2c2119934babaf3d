"""A generate or eval run of ``medistill run`` in its own process:
``python -m medistill.pipeline.child <launch file>``.

The launch file holds ``{stage: resolved section}`` (written by
:func:`medistill.pipeline.launch.run_model_stage`); this process builds the stage's config from
it, runs the stage's own function, writes ``{"pid": os.getpid(), "result": ...}`` beside the
launch file and exits, taking the model it loaded (a vLLM engine, a transformers model) out of
memory with it. It stops at once when the ``medistill run`` that started it is gone.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from medistill.config import build
from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval
from medistill.generate import GenerateConfig, run_generate
from medistill.pipeline.deploy_run import run_deployed_child
from medistill.pipeline.launch import RESULT_SUFFIX, watch_parent
from medistill.pipeline.preflight import check_stage

log = logging.getLogger(__name__)


def run_child(config_file: Path) -> dict[str, Any]:
    """Run the stage ``config_file`` describes; write and return its result record."""
    data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or len(data) != 1:
        raise MedistillError(f"{config_file}: expected one stage section, got {list(data)}")
    stage, section = next(iter(data.items()))
    section = dict(section or {})
    where = f"{config_file}: {stage}"
    progress = sys.stderr.isatty()
    if stage == "generate":
        gen = build(GenerateConfig, section, where=where)
        check_stage("generate", gen)  # what a stage command checks in its own process
        result = run_generate(gen, show_progress=progress)
        result = {k: v for k, v in result.items() if k != "config"}
    elif stage == "eval":
        overwrite = bool(section.pop("overwrite", False))
        cfg = build(EvalConfig, section, where=where)
        check_stage("eval", cfg)
        result = run_eval(cfg, overwrite=overwrite, show_progress=progress)
    elif stage == "eval-deployed":  # one GGUF's benchmarks, and this process's peak memory
        result = run_deployed_child(section, where)
    else:
        raise MedistillError(f"{config_file}: stage {stage!r} does not run as a model child")
    record = {"stage": stage, "pid": os.getpid(), "result": result}
    out = config_file.with_name(config_file.stem + RESULT_SUFFIX)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, out)
    return record


def main(argv: list[str] | None = None) -> int:
    """Entry point: one argument, the launch file; a user error is one line and status 1."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m medistill.pipeline.child <launch file>\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    watch_parent()  # launched by `medistill run`: stop when it is gone
    try:
        run_child(Path(args[0]))
    except MedistillError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a process
    sys.exit(main())
