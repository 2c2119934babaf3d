"""The pipeline's run: which stages of a plan must run (:func:`decide`) and running them in
order with their manifests (:func:`run_pipeline`); see :mod:`medistill.pipeline`."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError
from medistill.pipeline.cost import cost_line, teacher_cost
from medistill.pipeline.plan import Plan, plan
from medistill.pipeline.preflight import one_line, plan_problems
from medistill.pipeline.stages import (
    config_dict,
    digest,
    output_hash,
    read_manifest,
    run_stage,
    stage_inputs,
    write_manifest,
)
from medistill.train.output import versions

log = logging.getLogger(__name__)


def decide(plan_: Plan, *, from_stage: str | None = None, only: str | None = None):
    """For each stage of the plan: ``(stage, action, reason)``, action ``run`` or ``skip``.

    Inputs are the recorded outputs of the stages before (a stage that will re-run is taken
    to change them).
    """
    for s in (from_stage, only):
        if s is not None and s not in plan_.configs:
            raise MedistillError(
                f"stage {s!r} is not in this run; its stages: {', '.join(plan_.configs)}"
            )
    order = list(plan_.configs)
    out: list[tuple[str, str, str]] = []
    changed: set[str] = set()
    recorded: dict[str, dict] = {}
    for stage in order:
        folder = plan_.stage_dir(stage)
        old = read_manifest(folder)
        recorded[stage] = old or {}
        config_hash = digest(config_dict(plan_.configs[stage]))
        inputs = stage_inputs(stage, plan_, recorded)
        if only is not None and stage != only:
            out.append((stage, "skip", "--only " + only))
            continue
        reason = None
        if from_stage is not None and order.index(stage) >= order.index(from_stage):
            reason = f"--from {from_stage}"
        elif old is None:
            reason = "never run"
        elif old.get("status") != "finished":
            reason = "unfinished: resumes"
        elif old.get("config_hash") != config_hash:
            reason = "config changed"
        elif any(up in changed for up in inputs):
            reason = f"input changed ({', '.join(up for up in inputs if up in changed)})"
        elif old.get("inputs") != inputs:
            reason = "input changed"
        if reason is None:
            out.append((stage, "skip", "unchanged"))
        else:
            changed.add(stage)
            out.append((stage, "run", reason))
    return out


def run_pipeline(
    recipe: str | Path,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    dry_run: bool = False,
    show_progress: bool = True,
    overrides: dict[str, dict[str, Any]] | None = None,
    preflight: bool = True,
) -> dict[str, Any]:
    """Run the recipe's stages in order (see :mod:`medistill.pipeline`); return a summary.

    Before any stage, the preflight (:mod:`medistill.pipeline.preflight`) checks what the
    stages that will run need from this machine: a problem stops the run with one line naming
    the recipe key and the fix, before the teacher is paid. A ``dry_run`` returns the plan with
    the problems under ``summary["preflight"]`` (``medistill run --dry-run`` prints the plan,
    then fails on them). ``preflight=False`` is for the rehearsal alone: it reports the
    preflight of the recipe as written itself, and its rewritten recipe runs sharded configs as
    CPU ranks.
    """
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1:
        raise MedistillError(
            f"medistill run is running under a launcher with WORLD_SIZE={world}: every rank "
            "would generate (paying the teacher once per rank), curate and evaluate. Run it as "
            "one process and set run.num_processes (and run.accelerate_config) in the recipe: "
            "its training stages are then launched with accelerate"
        )
    p = plan(recipe, overrides)
    steps = decide(p, from_stage=from_stage, only=only)
    summary: dict[str, Any] = {"folder": str(p.folder), "stages": {}, "notes": p.notes}
    for stage, action, reason in steps:
        log.info("%-8s %s (%s)", stage, action, reason)
        summary["stages"][stage] = {"action": action, "reason": reason}
    summary["teacher_cost"] = estimate = teacher_cost(p)  # generation and the teacher's eval
    if estimate and (estimate["price_input_per_mtok"] or estimate["price_output_per_mtok"]):
        log.info("cost estimate: %s", cost_line(estimate))
    if preflight:
        problems = plan_problems(p, [stage for stage, action, _ in steps if action == "run"])
        summary["preflight"] = problems
        if problems and not dry_run:
            raise MedistillError(one_line(problems, p.recipe))
    if dry_run:
        return summary
    recorded = {s: read_manifest(p.stage_dir(s)) or {} for s in p.configs}
    for stage, action, reason in steps:
        if action == "skip":
            if only is None and recorded[stage].get("status") != "finished":
                raise MedistillError(f"{p.stage_dir(stage)}: stage {stage} has not finished")
            continue
        if only is not None:
            missing = [up for up, h in stage_inputs(stage, p, recorded).items() if h is None]
            if missing:
                raise MedistillError(
                    f"--only {stage}: it reads the output of {', '.join(missing)}, which has "
                    f"not finished; run the pipeline without --only first"
                )
        folder = p.stage_dir(stage)
        cfg = p.configs[stage]
        config_hash = digest(config_dict(cfg))
        inputs = stage_inputs(stage, p, recorded)
        old = recorded[stage]
        resuming = (
            old.get("status") == "running"
            and old.get("config_hash") == config_hash
            and old.get("inputs") == inputs
        )
        manifest = {
            "stage": stage,
            "status": "running",
            "config_hash": config_hash,
            "config": config_dict(cfg),
            "inputs": inputs,
            "versions": versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "reason": reason,
        }
        write_manifest(folder, manifest)
        t0 = time.perf_counter()
        figures = run_stage(
            stage, cfg, p, folder, fresh=not resuming, progress=show_progress, previous=old
        )
        manifest.update(
            status="finished",
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            seconds=round(time.perf_counter() - t0, 2),
            figures=figures,
            output_hash=output_hash(stage, folder, cfg),
        )
        write_manifest(folder, manifest)
        recorded[stage] = manifest
        summary["stages"][stage]["seconds"] = manifest["seconds"]
    summary["report"] = str(p.stage_dir("report") / "report.md") if "report" in p.configs else None
    for note in p.notes:  # said again after the stages' logs: what this run left out
        log.warning("%s", note)
    return summary
