"""A recipe read and validated into a :class:`Plan`: one config per stage, linked by the
files each writes (``<root>/<name>/<stage>/``). Nothing runs here."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.backends.config import served_name
from medistill.config import build, load_recipe, unknown_message
from medistill.curate.config import CurateConfig
from medistill.data.safety import SAFETY_BENCHMARKS
from medistill.errors import MedistillError
from medistill.evaluate.config import EvalConfig
from medistill.generate import GenerateConfig
from medistill.models import model_name
from medistill.pipeline import deploy_plan, launch
from medistill.pipeline.checks import check_lengths
from medistill.pipeline.entries import EvalEntry, absent, own_file_rule, parse_entries, skip_note
from medistill.rubrics import RubricsConfig
from medistill.train.reward_builder import build_rewards

log = logging.getLogger(__name__)

STAGES = (
    "generate",
    "rubrics",
    "curate",
    "sft",
    "grpo",
    "distill",
    "eval",
    "export",
    "eval-deployed",
    "report",
)
#: What a run includes unless ``run.stages`` says otherwise (``distill`` is opt-in: it needs
#: a local open-weight teacher; ``rubrics``, per-question grading rubrics written by the
#: teacher for the GRPO ``rubric`` reward, is opt-in too: it costs a teacher call per question;
#: ``export`` and ``eval-deployed`` run where llama.cpp is installed: see ``deploy:``).
DEFAULT_STAGES = (
    "generate",
    "curate",
    "sft",
    "grpo",
    "eval",
    "export",
    "eval-deployed",
    "report",
)
MANIFEST = "pipeline.json"  # train.output.PIPELINE_MANIFEST keeps it beside a training run
#: Keys the pipeline sets itself: each stage's output location and the files it reads.
_OWNED = {
    "generate": ("out",),
    "rubrics": ("store",),
    "curate": ("store", "out"),
    "sft": ("dataset", "output_dir", "overwrite"),
    "grpo": ("dataset", "output_dir", "overwrite"),  # and model, when the run has sft
    "distill": ("dataset", "output_dir", "overwrite"),  # and model, when the run has sft
    "eval": ("model", "benchmark", "path", "out", "label", "backend", "base_url"),
}


@dataclass
class RunConfig:
    """The recipe's ``run:`` section: what the pipeline runs and evaluates."""

    name: str | None = field(
        default=None, metadata={"help": "run name: <root>/<name>/ (default: the recipe's stem)"}
    )
    root: str = field(default="runs", metadata={"help": "folder holding every run"})
    stages: list[str] = field(
        default_factory=lambda: list(DEFAULT_STAGES),
        metadata={
            "help": f"stages to include, of {', '.join(STAGES)} (default: all but distill, "
            "the on-policy distillation from a local open teacher)"
        },
    )
    eval_benchmarks: list[str | dict[str, Any]] = field(
        default_factory=lambda: ["sample_heldout"],
        metadata={
            "help": "benchmarks every model is evaluated on: name, name=path, or a mapping "
            "{benchmark, path, per_category, limit, label, max_new_tokens, optional} giving "
            "that benchmark its own slice (optional: skipped, with a note, when its data is "
            "not on this machine)"
        },
    )
    eval_teacher: bool = field(
        default=True, metadata={"help": "evaluate the teacher too (local or HTTP teachers)"}
    )
    eval_base: bool = field(default=True, metadata={"help": "evaluate the untrained student"})
    eval_backend: str = field(
        default="auto",
        metadata={
            "help": "backend that evaluates the base model and the students: auto (vllm where "
            "CUDA and vLLM are installed, else transformers), transformers or vllm; the "
            "engine settings (tensor_parallel_size, max_model_len, ...) come from eval:"
        },
    )
    title: str | None = field(default=None, metadata={"help": "report title"})
    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "accelerate config file for the training stages (e.g. "
            "recipes/accelerate/ddp.yaml): sft, grpo and distill then run under `accelerate "
            "launch`; generate, curate, eval and report still run once"
        },
    )
    num_processes: int | None = field(
        default=None,
        metadata={
            "help": "training processes (GPUs) for `accelerate launch`; overrides the "
            "accelerate config's num_processes"
        },
    )
    launcher: str = field(
        default="auto",
        metadata={
            "help": "how training stages run: auto (accelerate when accelerate_config or "
            "num_processes is set, else a child process per stage where CUDA is present, else "
            "in this process), accelerate, process or inline. Where CUDA is present (or with "
            "process), generate with a local teacher and the evaluation of each local model run "
            "in a child process too, so each frees its GPU memory by exiting"
        },
    )


LAUNCHERS = ("auto", "accelerate", "process", "inline")
EVAL_BACKENDS = ("auto", "transformers", "vllm")


def student_eval_backend(run: RunConfig) -> str:
    """The backend the run's own models are evaluated with (``run.eval_backend`` resolved):
    vLLM's batched decoding is minutes per model where the transformers backend takes about
    an hour of a GPU on MedQA + MedMCQA, so ``auto`` takes it wherever it can run."""
    if run.eval_backend != "auto":
        return run.eval_backend
    return (
        "vllm" if launch.cuda_available() and importlib.util.find_spec("vllm") else "transformers"
    )


@dataclass
class Plan:
    """A validated recipe: the stage configs, ready to run."""

    recipe: Path
    run: RunConfig
    folder: Path
    configs: dict[str, Any]  # stage -> config object (eval: a list of (key, EvalConfig))
    #: stage -> the resolved section its config was built from (what a launched process
    #: rebuilds the same config from); ``eval``: run name (``<model key>-<benchmark>``) ->
    #: that run's section
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``run.eval_benchmarks`` read (optional entries whose data is missing left out)
    evals: list[EvalEntry] = field(default_factory=list)
    #: what the run leaves out and why (an optional benchmark not on this machine)
    notes: list[str] = field(default_factory=list)

    def stage_dir(self, stage: str) -> Path:
        """``<root>/<name>/<stage>``."""
        return self.folder / stage


def plan(recipe: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Read and validate the whole recipe (every section, every key) into a :class:`Plan`.

    Nothing runs here: a bad key, a bad value or a missing section fails before any stage
    starts, naming the recipe file, section and key (and the valid choices).
    """
    path = Path(recipe)
    data = load_recipe(path)
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    known = ("run", "deploy", *STAGES)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise MedistillError(unknown_message(f"{path}", unknown, list(known)))
    for section, value in data.items():
        if value is not None and not isinstance(value, dict):
            raise MedistillError(f"{path}: section '{section}' must be a mapping")
    run = build(RunConfig, dict(data.get("run") or {}), where=f"{path}: run")
    bad = [s for s in run.stages if s not in STAGES]
    if bad:
        raise MedistillError(
            f"{path}: run.stages: unknown stage(s) {bad}; choose from {', '.join(STAGES)}"
        )
    run.name = run.name or path.stem
    _check_launch(run, path)
    evals, notes = _read_evals(run, path)
    deploy = deploy_plan.read_deploy(path, data, run, notes)  # run.stages: deploy resolved
    folder = Path(run.root) / run.name
    stages = [s for s in STAGES if s in run.stages]
    for section in STAGES:
        keys = _OWNED.get(section, ()) + (
            ("model",) if section == "grpo" and "sft" in stages else ()
        )
        owned = [k for k in keys if k in (data.get(section) or {})]
        if owned:
            raise MedistillError(
                f"{path}: {section}.{owned[0]} is set by the pipeline (it links the stages "
                f"under {folder}); remove it from the recipe"
            )
    configs: dict[str, Any] = {}
    resolved: dict[str, dict[str, Any]] = {}
    sec = {s: dict(data.get(s) or {}) for s in STAGES}
    d = {s: folder / s for s in STAGES}
    if "generate" in stages:
        if "teacher" not in sec["generate"]:
            raise MedistillError(f"{path}: generate.teacher is required (who writes the traces)")
        values = {**sec["generate"], "out": str(d["generate"] / "traces.db")}
        configs["generate"] = build(GenerateConfig, values, where=f"{path}: generate")
        resolved["generate"] = values
    if "rubrics" in stages:
        teacher = sec["rubrics"].get("teacher") or (sec["generate"] or {}).get("teacher")
        if not teacher:
            raise MedistillError(f"{path}: rubrics.teacher (or generate.teacher) is required")
        values = {**sec["rubrics"], "teacher": teacher, "store": str(d["generate"] / "traces.db")}
        configs["rubrics"] = build(RubricsConfig, values, where=f"{path}: rubrics")
    own_mcq = own_file_rule(path, configs.get("generate"), evals)  # your own file, split
    if "curate" in stages:
        # Decontamination covers every benchmark the run evaluates on, whatever else the
        # recipe's curate.eval_benchmarks adds: a model is never scored on what it trained on.
        # Safety benchmarks are harmful requests, not MCQs: no trace answers one, so they are
        # not decontaminated against (a safety mix in curation names its own data).
        listed = list(sec["curate"].get("eval_benchmarks") or [])
        names = {b.partition("=")[0] for b in listed} | set(SAFETY_BENCHMARKS)
        values = {
            **sec["curate"],
            "eval_benchmarks": listed + [e.text() for e in evals if e.benchmark not in names],
            **({"eval_mcq": own_mcq} if own_mcq and "eval_mcq" not in sec["curate"] else {}),
            "store": str(d["generate"] / "traces.db"),
            "out": str(d["curate"] / "dataset"),
        }
        configs["curate"] = build(CurateConfig, values, where=f"{path}: curate")
    dataset = str(d["curate"] / "dataset")
    student = sec["sft"].get("model") or sec["grpo"].get("model")
    if "sft" in stages:
        from medistill.train.config import SFTRecipe

        values = {**sec["sft"], "dataset": dataset, "output_dir": str(d["sft"])}
        configs["sft"] = build(SFTRecipe, values, where=f"{path}: sft")
        resolved["sft"] = values
        student = configs["sft"].model
    if "grpo" in stages:
        from medistill.train.config import GRPORecipe

        start = str(d["sft"]) if "sft" in stages else sec["grpo"].get("model")
        if not start:
            raise MedistillError(f"{path}: grpo.model is required when the run has no sft stage")
        values = {**sec["grpo"], "model": start, "dataset": dataset, "output_dir": str(d["grpo"])}
        configs["grpo"] = build(GRPORecipe, values, where=f"{path}: grpo")
        resolved["grpo"] = values
        try:  # reward names and parameters, checked now rather than after SFT
            build_rewards(configs["grpo"].rewards)
        except MedistillError as e:
            raise MedistillError(f"{path}: grpo.rewards: {e}") from None
    if "distill" in stages:
        from medistill.train.config import DistillRecipe

        start = str(d["sft"]) if "sft" in stages else sec["distill"].get("model")
        if not start:
            raise MedistillError(f"{path}: distill.model is required when the run has no sft stage")
        values = {
            **sec["distill"],
            "model": start,
            "dataset": dataset,
            "output_dir": str(d["distill"]),
        }
        configs["distill"] = build(DistillRecipe, values, where=f"{path}: distill")
        resolved["distill"] = values
    if "eval" in stages:
        models = _eval_models(run, configs, sec, stages, student, d)
        runs = []
        resolved["eval"] = {}  # run name (<model key>-<benchmark>) -> its resolved section
        for key, model_values in models:
            for entry in evals:
                name = entry.benchmark
                values = {
                    **entry.eval_values({**sec["eval"], **model_values}),
                    "out": str(d["eval"] / f"{key}-{name}"),
                }
                runs.append((key, build(EvalConfig, values, where=f"{path}: eval")))
                resolved["eval"][f"{key}-{name}"] = values
        configs["eval"] = runs
    deploy_plan.plan_stages(
        path, deploy, run, stages, configs, resolved, sec["eval"], evals, folder
    )
    if "report" in stages:
        if sec["report"]:
            raise MedistillError(
                f"{path}: report takes no keys (got {', '.join(sorted(sec['report']))}); "
                f"set its title with run.title"
            )
        configs["report"] = {"title": run.title or f"medistill run {run.name}"}
        if notes:  # what the report says the run left out
            configs["report"]["notes"] = notes
    from medistill.train.cadence import cadence_problem

    check_lengths(path, configs)
    for stage in ("sft", "grpo", "distill"):
        # An epoch-based run's step count is known when its trainer starts (flagged there).
        c = configs.get(stage)
        problem = c is not None and cadence_problem(stage, c.save_steps, c.max_steps)
        if problem:
            log.warning("%s: %s", path, problem)
    return Plan(
        recipe=path,
        run=run,
        folder=folder,
        configs=configs,
        values=resolved,
        evals=evals,
        notes=notes,
    )


def _read_evals(run: RunConfig, path: Path) -> tuple[list[EvalEntry], list[str]]:
    """``run.eval_benchmarks`` read; an optional entry whose data is not here is left out,
    with a warning and a note saying where to put it."""
    evals, notes = [], []
    for i, entry in enumerate(parse_entries(run.eval_benchmarks, str(path))):
        why = absent(entry) if entry.optional else None
        if why is None:
            evals.append(entry)
        else:
            notes.append(skip_note(i, entry, why))
            log.warning("%s: %s", path, notes[-1])
    return evals, notes


def _check_launch(run: RunConfig, path: Path) -> None:
    """``run.launcher``, ``run.accelerate_config`` and ``run.num_processes``, checked now."""
    if run.eval_backend not in EVAL_BACKENDS:
        raise MedistillError(
            f"{path}: run.eval_backend: {run.eval_backend!r} is not one of "
            f"{', '.join(EVAL_BACKENDS)}"
        )
    if run.launcher not in LAUNCHERS:
        raise MedistillError(
            f"{path}: run.launcher: {run.launcher!r} is not one of {', '.join(LAUNCHERS)}"
        )
    if run.num_processes is not None and run.num_processes < 1:
        raise MedistillError(f"{path}: run.num_processes must be at least 1")
    if run.accelerate_config and not Path(run.accelerate_config).is_file():
        beside = path.parent / run.accelerate_config
        if not beside.is_file():
            raise MedistillError(
                f"{path}: run.accelerate_config: {run.accelerate_config} not found (looked in "
                f"{Path.cwd()} and {path.parent})"
            )
        run.accelerate_config = str(beside)
    if run.launcher == "inline" and (run.accelerate_config or (run.num_processes or 1) > 1):
        raise MedistillError(
            f"{path}: run.launcher: inline runs one process; remove it to launch "
            f"run.num_processes / run.accelerate_config with accelerate"
        )


def _eval_models(run, configs, sec, stages, student, d) -> list[tuple[str, dict[str, Any]]]:
    """(key, EvalConfig fields) of every model the run evaluates, in report order."""
    models: list[tuple[str, dict[str, Any]]] = []
    gen = configs.get("generate")
    if run.eval_teacher and gen is not None:
        # Every teacher backend is evaluated, with its own endpoints and engine settings.
        t = gen.teacher
        values = EvalConfig.values_from_backend(t)
        values["label"] = f"teacher: {served_name(t)}"  # what a hosted alias serves now
        models.append(("teacher", values))
    backend = student_eval_backend(run)
    if run.eval_base and student:
        label = f"base: {model_name(student)}"
        models.append(("base", {"model": student, "backend": backend, "label": label}))
    if "sft" in stages:
        models.append(
            ("sft", {"model": str(d["sft"]), "backend": backend, "label": "student: SFT"})
        )
    for stage, method in (("grpo", "GRPO"), ("distill", "on-policy distillation")):
        if stage in stages:
            label = f"student: SFT+{method}" if "sft" in stages else f"student: {method}"
            models.append((stage, {"model": str(d[stage]), "backend": backend, "label": label}))
    return models
