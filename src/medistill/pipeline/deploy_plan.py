"""The recipe's ``deploy:`` section and the plan of the ``export`` and ``eval-deployed`` stages
of ``medistill run``: the file a hospital deploys, measured.

``export`` writes the run's final student (``deploy.model``: by default the last trained stage,
grpo, else distill, else sft) as a standalone Hugging Face folder with its card
(``<root>/<name>/export/hf/``) and one GGUF per ``deploy.quantizations``
(``export/gguf-<quant>/<name>-<stage>-<quant>.gguf``, with its own card). ``eval-deployed``
evaluates each GGUF through llama.cpp on this machine's CPU on the run's benchmarks (MCQ and
safety), with the student's own eval settings; :mod:`medistill.pipeline.deploy_run` runs both.

This module holds what the plan needs: :class:`DeployConfig` (the recipe's ``deploy:`` section),
:func:`read_deploy` (the section checked, ``run.stages`` resolved), :func:`plan_stages` (the two
stages' configs) and :func:`deploy_unavailable`. Left unset, the two stages run where
llama-cpp-python and llama.cpp's converter are installed and are otherwise left out with a "Not
evaluated" note saying what to install.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.backends.config import ENGINE_KEYS
from medistill.config import build
from medistill.data.safety import SAFETY_BENCHMARKS
from medistill.deploy.gguf import QUANTS, converter_dir, llama_cpp_version
from medistill.errors import MedistillError
from medistill.evaluate.config import EvalConfig

log = logging.getLogger(__name__)

#: The two stages, in run order.
DEPLOY_STAGES = ("export", "eval-deployed")
#: Trained stages a deployment can start from, the default first (the last trained stage).
TRAINED = ("grpo", "distill", "sft")
#: What each deployed run folder holds beside run_eval's files.
DEPLOYMENT = "deployment.json"
#: The Hugging Face export's folder under ``export/``.
HF_FOLDER = "hf"


@dataclass
class DeployConfig:
    """The recipe's ``deploy:`` section: the final student exported and measured as deployed
    (the ``export`` and ``eval-deployed`` stages of ``medistill run``)."""

    enabled: bool | None = field(
        default=None,
        metadata={
            "help": "export the final student and evaluate its GGUF file(s) with llama.cpp on "
            "the CPU: none (default) = where llama-cpp-python and llama.cpp's converter are "
            "installed (else left out with a note saying what to install); true = required "
            "(the plan fails without them); false = off"
        },
    )
    quantizations: list[str] = field(
        default_factory=lambda: ["q4_k_m"],
        metadata={"help": "GGUF types to export and evaluate: q4_k_m, q5_k_m, q8_0, f16, bf16"},
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "trained stage to deploy: sft, grpo or distill; none: the last trained "
            "stage of the run (grpo, else distill, else sft)"
        },
    )
    n_parallel: int | None = field(
        default=None,
        metadata={"help": "llama.cpp: sequences decoded together; none: the backend's default"},
    )
    n_threads: int | None = field(
        default=None, metadata={"help": "llama.cpp: CPU threads; none: every core"}
    )
    limit: int | None = field(
        default=None,
        metadata={
            "help": "questions per benchmark for the deployed evaluation (the first N of each "
            "benchmark's slice); none: all. A CPU evaluates a GPU recipe's benchmarks slowly: "
            "the plan logs the work"
        },
    )


@dataclass
class ExportPlan:
    """What the ``export`` stage writes (the stage's config: its hash decides reruns)."""

    source_stage: str
    source: str  # the trained stage's output folder
    name: str  # the model's name in cards and file names
    out: str  # <root>/<name>/export
    quantizations: list[str]
    #: the student's HF eval run folders (``eval/<stage>-<benchmark>``): the cards' table
    eval_runs: list[str] = field(default_factory=list)

    def gguf(self, quant: str) -> Path:
        """Where the GGUF of ``quant`` is written."""
        return Path(self.out) / f"gguf-{quant}" / f"{self.name}-{quant}.gguf"


@dataclass
class DeployedEvalPlan:
    """What the ``eval-deployed`` stage runs: per GGUF, one eval section per benchmark."""

    export_dir: str
    source_stage: str
    source: str
    n_threads: int | None
    #: quant -> {"gguf": path, "runs": {benchmark: resolved eval section}}
    quants: dict[str, dict[str, Any]]
    #: benchmark -> the unquantised student's HF eval run folder (``None``: not in this run)
    unquantised: dict[str, str | None]


# --------------------------------------------------------------------------- planning


def deploy_unavailable() -> str | None:
    """Why GGUF export and llama.cpp evaluation cannot run here (``None`` when they can)."""
    try:
        llama_cpp_version("export and eval-deployed")
        if importlib.util.find_spec("llama_cpp") is None:
            raise MedistillError(
                "llama-cpp-python is not importable: `make install` in a medistill checkout, "
                "or pip install 'medistill[serve]'"
            )
        converter_dir()
    except MedistillError as e:
        return str(e)
    return None


def read_deploy(path: Path, data: dict[str, Any], run: Any, notes: list[str]) -> DeployConfig:
    """The recipe's ``deploy:`` section, checked, and ``run.stages`` resolved: the deploy
    stages left out where they are off (``deploy.enabled: false``) or cannot run here (with a
    note in ``notes``, unless the recipe asked for them: then an error naming the keys)."""
    for section in DEPLOY_STAGES:
        if section in data:
            raise MedistillError(
                f"{path}: section '{section}' is set by the pipeline; configure the export and "
                "its evaluation under deploy: (enabled, quantizations, model, n_parallel, "
                "n_threads, limit)"
            )
    cfg = build(DeployConfig, dict(data.get("deploy") or {}), where=f"{path}: deploy")
    quants = cfg.quantizations
    if not quants:
        raise MedistillError(f"{path}: deploy.quantizations is empty; name one of {QUANTS}")
    for q in quants:
        if q not in QUANTS:
            raise MedistillError(
                f"{path}: deploy.quantizations: unknown {q!r}; choose from {', '.join(QUANTS)}"
            )
    if len(set(quants)) != len(quants):
        raise MedistillError(f"{path}: deploy.quantizations lists a type twice: {quants}")
    for key in ("n_parallel", "n_threads", "limit"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise MedistillError(f"{path}: deploy.{key} must be at least 1 (or none)")
    if cfg.model is not None and cfg.model not in TRAINED:
        raise MedistillError(
            f"{path}: deploy.model: {cfg.model!r} is not a trained stage; choose sft, grpo "
            "or distill"
        )
    asked = [s for s in DEPLOY_STAGES if s in run.stages]
    explicit = "stages" in (data.get("run") or {})  # run.stages names them itself
    if not asked:
        if cfg.enabled or (data.get("deploy") and cfg.enabled is None and explicit):
            # A deploy: section the run would never use is a setting silently dropped.
            why = "deploy.enabled is true" if cfg.enabled else "deploy: is set"
            raise MedistillError(
                f"{path}: {why} but run.stages leaves out export and eval-deployed; add them "
                "to run.stages (or set deploy.enabled: false)"
            )
        return cfg
    if "eval-deployed" in asked and "export" not in asked:
        raise MedistillError(
            f"{path}: run.stages has eval-deployed without export (it evaluates the files "
            "export writes); add export"
        )
    if cfg.enabled is False:
        if explicit:
            raise MedistillError(
                f"{path}: run.stages lists {' and '.join(asked)} but deploy.enabled is false; "
                "remove one of the two"
            )
        _leave_out(run)
        log.info("%s: deploy.enabled is false: no export, no deployed evaluation", path)
        return cfg
    trained = [s for s in TRAINED if s in run.stages]
    if not trained:
        raise MedistillError(
            f"{path}: run.stages: export needs a trained student (sft, grpo or distill) in the run"
        )
    if cfg.model is not None and cfg.model not in run.stages:
        raise MedistillError(
            f"{path}: deploy.model: {cfg.model} is not a stage of this run "
            f"({', '.join(trained)} are)"
        )
    why = deploy_unavailable()
    if why is not None:
        if cfg.enabled or explicit:
            key = "deploy.enabled" if cfg.enabled else "run.stages"
            raise MedistillError(
                f"{path}: {key} asks for the GGUF export and its evaluation, which cannot run "
                f"here: {why}"
            )
        _leave_out(run)
        notes.append(
            "export and eval-deployed (the student as a GGUF file, evaluated with llama.cpp on "
            f"the CPU): not run on this machine: {why}; or set deploy.enabled: false"
        )
        log.warning("%s: %s", path, notes[-1])
    return cfg


def _leave_out(run: Any) -> None:
    run.stages = [s for s in run.stages if s not in DEPLOY_STAGES]


def plan_stages(
    path: Path,
    deploy: DeployConfig,
    run: Any,
    stages: list[str],
    configs: dict[str, Any],
    resolved: dict[str, dict[str, Any]],
    eval_section: dict[str, Any],
    evals: list[Any],
    folder: Path,
) -> None:
    """Add the ``export`` and ``eval-deployed`` configs (and their resolved sections) to a plan
    being built, when ``stages`` has them."""
    if "export" not in stages:
        return
    source_stage = deploy.model or next(s for s in TRAINED if s in stages)
    source = folder / source_stage
    export_dir = folder / "export"
    hf_runs = {
        e.benchmark: str(folder / "eval" / f"{source_stage}-{e.benchmark}")
        for e in evals
        if "eval" in stages
    }
    exp = ExportPlan(
        source_stage=source_stage,
        source=str(source),
        name=f"{run.name}-{source_stage}",
        out=str(export_dir),
        quantizations=list(deploy.quantizations),
        eval_runs=list(hf_runs.values()),
    )
    configs["export"] = exp
    if "eval-deployed" not in stages:
        return
    first = f"{source_stage}-{evals[0].benchmark}" if evals else ""
    base_label = resolved.get("eval", {}).get(first, {}).get("label") or f"student: {source_stage}"
    quants: dict[str, dict[str, Any]] = {}
    resolved["eval-deployed"] = {}
    questions = 0
    for quant in deploy.quantizations:
        gguf = exp.gguf(quant)
        runs: dict[str, dict[str, Any]] = {}
        for entry in evals:
            values = entry.eval_values(
                {
                    **eval_section,
                    "model": str(gguf),
                    "backend": "llamacpp",
                    "label": f"{base_label}, GGUF {quant.upper()}",
                }
            )
            for key in ENGINE_KEYS:  # the vLLM engine's keys: not llama.cpp's
                values.pop(key, None)
            values["out"] = str(folder / "eval-deployed" / f"{quant}-{entry.benchmark}")
            values["audit"] = False  # the explanation audit measures reasoning, not the file
            if deploy.limit is not None:
                values["limit"] = min(values.get("limit") or deploy.limit, deploy.limit)
            if deploy.n_parallel is not None:
                values["n_parallel"] = deploy.n_parallel
            if deploy.n_threads is not None:
                values["n_threads"] = deploy.n_threads
            name = f"{quant}-{entry.benchmark}"
            build(EvalConfig, dict(values), where=f"{path}: eval (deployed {name})")
            runs[entry.benchmark] = values
            resolved["eval-deployed"][name] = values
            if quant == deploy.quantizations[0]:
                questions += values.get("limit") or 0
        quants[quant] = {"gguf": str(gguf), "runs": runs}
    unquantised = {e.benchmark: hf_runs.get(e.benchmark) for e in evals}
    configs["eval-deployed"] = DeployedEvalPlan(
        export_dir=str(export_dir),
        source_stage=source_stage,
        source=str(source),
        n_threads=deploy.n_threads,
        quants=quants,
        unquantised=unquantised,
    )
    first_runs = quants[deploy.quantizations[0]]["runs"]
    unlimited = [
        b for b, v in first_runs.items() if not v.get("limit") and not v.get("per_category")
    ]
    safety = sum(e.benchmark in SAFETY_BENCHMARKS for e in evals)
    log.info(
        "%s: eval-deployed: %d GGUF file(s) (%s) x %d benchmark(s) (%d safety) on %d CPU "
        "thread(s), %s questions per file%s",
        path,
        len(deploy.quantizations),
        ", ".join(deploy.quantizations),
        len(evals),
        safety,
        deploy.n_threads or os.cpu_count() or 1,
        f"at most {questions}" if questions else "all",
        f" ({', '.join(unlimited)}: every question; deploy.limit caps them)" if unlimited else "",
    )
