"""The ``export`` and ``eval-deployed`` stages of ``medistill run``: the file a hospital deploys,
measured.

``export`` writes the run's final student (``deploy.model``: by default the last trained stage,
grpo, else distill, else sft) as a standalone Hugging Face folder with its card
(``<root>/<name>/export/hf/``) and one GGUF per ``deploy.quantizations``
(``export/gguf-<quant>/<name>-<stage>-<quant>.gguf``, with its own card), through
:func:`medistill.deploy.export.export_model`.

``eval-deployed`` evaluates each GGUF through llama.cpp on this machine's CPU on the run's
benchmarks (MCQ and safety), with the student's own eval settings (prompt, budget, sampling,
extraction, metrics; the explanation audit is left out: it measures the reasoning, not the
file), each GGUF in its own child process so the peak memory recorded is that process's own.
Each run folder ``eval-deployed/<quant>-<benchmark>/`` holds what ``run_eval`` writes and a
``deployment.json``: which file (path, size, sha256), where it came from, the threads and
parallel sequences it ran with, the process's peak resident memory and the paired change
against the unquantised student's answers on the same questions
(:func:`medistill.evaluate.paired.compare_runs`). The figures then go into the export cards and
``measured.json`` (:func:`medistill.deploy.measured.write_measured`) and the report's
"as deployed" rows.

The recipe's ``deploy:`` section (:class:`DeployConfig`) configures both. Left unset, the two
stages run where llama-cpp-python and llama.cpp's converter are installed and are otherwise
left out with a "Not evaluated" note saying what to install.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.errors import MedistillError

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
    from medistill.deploy.gguf import converter_dir, llama_cpp_version

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
    from medistill.config import build
    from medistill.deploy.gguf import QUANTS

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
        if cfg.enabled:
            raise MedistillError(
                f"{path}: deploy.enabled is true but run.stages leaves out export and "
                "eval-deployed; add them to run.stages (or remove run.stages)"
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
    from medistill.config import build
    from medistill.data.safety import SAFETY_BENCHMARKS
    from medistill.evaluate.config import EvalConfig

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
    from medistill.backends.config import ENGINE_KEYS

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


# --------------------------------------------------------------------------- running


def run_export(cfg: ExportPlan, folder: Path) -> dict[str, Any]:
    """The ``export`` stage: the HF folder with its card, then one GGUF per quantisation."""
    from medistill.deploy.export import ExportModelConfig, export_model

    source = Path(cfg.source)
    evals = [r for r in cfg.eval_runs if (Path(r) / "metrics.json").is_file()]
    figures: dict[str, Any] = {"source_stage": cfg.source_stage, "files": {}}
    targets = [("hf", None), *[("gguf", q) for q in cfg.quantizations]]
    for fmt, quant in targets:
        out = folder / HF_FOLDER if fmt == "hf" else cfg.gguf(quant).parent
        summary = export_model(
            ExportModelConfig(
                model=str(source),
                format=fmt,
                quant=quant or "q8_0",
                out=str(out),
                name=cfg.name,
                eval_runs=evals,
                overwrite=True,
            )
        )
        key = quant or HF_FOLDER
        figures["files"][key] = {
            "out": summary["out"],
            "bytes": sum(summary["files"].values()),
            "sha256": summary["sha256"],
        }
    stale = {HF_FOLDER, *(f"gguf-{q}" for q in cfg.quantizations)}
    for old in sorted(folder.glob("gguf-*")):  # a quantisation no longer asked for
        if old.is_dir() and old.name not in stale:
            log.info("export: %s is not in deploy.quantizations any more: left as it is", old)
    return figures


def export_hash(cfg: ExportPlan) -> dict[str, Any]:
    """What the export produced, for its output hash: each file's sha256 (not its time)."""
    out = {}
    for sub in [HF_FOLDER, *(f"gguf-{q}" for q in cfg.quantizations)]:
        meta = Path(cfg.out) / sub / "medistill_export.json"
        data = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
        out[sub] = data.get("sha256")
    return out


def run_eval_deployed(
    cfg: DeployedEvalPlan, folder: Path, *, fresh: bool, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``eval-deployed`` stage: each GGUF in its own process, then ``deployment.json`` in
    each run folder, the export cards' measured figures and the stage's figures."""
    from medistill.deploy.gguf import llama_cpp_version
    from medistill.pipeline.launch import run_model_stage

    used = (previous or {}).get("figures", {}).get("files", {})
    figures: dict[str, Any] = {"files": {}, "runs": {}}
    deployed: list[Path] = []
    version = llama_cpp_version("eval-deployed")
    for quant, spec in cfg.quants.items():
        gguf = Path(spec["gguf"])
        if not gguf.is_file():
            raise MedistillError(f"{gguf}: the export stage wrote no such file; rerun export")
        sha = _export_sha(gguf)
        # A re-exported file keeps its path: its old answers must not be resumed.
        overwrite = fresh and used.get(quant, {}).get("sha256") != sha
        sections = [
            {**values, **_student_sampling(cfg, benchmark, values), "overwrite": overwrite}
            for benchmark, values in spec["runs"].items()
        ]
        section = {"runs": sections, "n_threads": cfg.n_threads}
        rec = run_model_stage("eval-deployed", section, folder / f"launch-{quant}.yaml")
        result = rec["result"]
        figures["files"][quant] = {
            "sha256": sha,
            "pid": rec["pid"],
            "peak_rss_bytes": result["peak_rss_bytes"],
        }
        for benchmark, values in spec["runs"].items():
            out = Path(values["out"])
            m = result["metrics"][values["out"]]
            record = _deployment(cfg, quant, gguf, sha, benchmark, values, result, version)
            (out / DEPLOYMENT).write_text(json.dumps(record, indent=2), encoding="utf-8")
            deployed.append(out)
            figures["runs"][out.name] = _score(m) | {
                "n": m.get("n"),
                "seconds_per_answer": m.get("seconds_per_answer"),
                "changed": (record["comparison"] or {}).get("changed"),
                "mcnemar_p": (record["comparison"] or {}).get("mcnemar_p"),
            }
    _write_measured(Path(cfg.export_dir), deployed)
    figures["deployed"] = [str(p) for p in deployed]
    return figures


def _student_sampling(
    cfg: DeployedEvalPlan, benchmark: str, values: dict[str, Any]
) -> dict[str, Any]:
    """The unquantised student's decided sampling (temperature, top_p, top_k, samples, vote)
    for the keys the recipe leaves unset: a GGUF carries no ``generation_config.json``, so
    without this a student its own settings make sample would be answered greedily. Read from
    the student's HF eval of the same benchmark (``config.json``), else decided from the
    trained folder as that eval would."""
    from medistill.evaluate.sampling import RESOLVED_KEYS

    unset = [k for k in RESOLVED_KEYS if values.get(k) is None]
    if not unset:
        return {}
    baseline = cfg.unquantised.get(benchmark)
    recorded = Path(baseline) / "config.json" if baseline else None
    if recorded is not None and recorded.is_file():
        decided = json.loads(recorded.read_text(encoding="utf-8")).get("config") or {}
    else:
        from medistill.evaluate import EvalConfig

        hf = {**values, "model": cfg.source, "backend": "transformers"}
        hf.pop("n_parallel", None)
        resolved = EvalConfig(**hf).resolved()
        decided = {k: getattr(resolved, k) for k in RESOLVED_KEYS}
    return {k: decided[k] for k in unset if decided.get(k) is not None}


def _write_measured(export_dir: Path, deployed: list[Path]) -> None:
    """The cards' "as deployed" figures (:mod:`medistill.deploy.measured`)."""
    try:
        from medistill.deploy.measured import write_measured
    except ImportError:  # pragma: no cover - the module lands with the report rows
        log.warning("medistill.deploy.measured is not installed: the cards are not updated")
        return
    write_measured(export_dir, deployed)


def _export_sha(gguf: Path) -> str | None:
    meta = gguf.parent / "medistill_export.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8"))["sha256"][gguf.name]
    except (OSError, KeyError, json.JSONDecodeError):
        return None


def _score(m: dict[str, Any]) -> dict[str, Any]:
    if m.get("kind") == "safety":
        return {"refusal_rate": (m.get("refusal_rate") or {}).get("value")}
    return {"accuracy": m["accuracy"]["lenient"]["value"]}


def _deployment(
    cfg: DeployedEvalPlan,
    quant: str,
    gguf: Path,
    sha: str | None,
    benchmark: str,
    values: dict[str, Any],
    result: dict[str, Any],
    version: str,
) -> dict[str, Any]:
    """One run folder's ``deployment.json`` (see the module docstring)."""
    from medistill.evaluate.paired import compare_runs

    out = Path(values["out"])
    baseline = cfg.unquantised.get(benchmark)
    if baseline and not (Path(baseline) / "predictions.jsonl").is_file():
        baseline = None
    comparison = compare_runs(out, baseline) if baseline else None
    return {
        "file": str(gguf.resolve()),
        "file_name": gguf.name,
        "quant": quant,
        "size_bytes": gguf.stat().st_size,
        "sha256": sha,
        "source_model": str(Path(cfg.source).resolve()),
        "source_stage": cfg.source_stage,
        "benchmark": benchmark,
        "unquantised_run": str(Path(baseline).resolve()) if baseline else None,
        "n_threads": result["n_threads"],
        "cpu_count": os.cpu_count(),
        "n_parallel": result["n_parallel"],
        "peak_rss_bytes": result["peak_rss_bytes"],
        "rss_before_model_bytes": result["rss_before_bytes"],
        "llama_cpp_version": version,
        "comparison": comparison,
    }


# --------------------------------------------------------------------------- the child


def run_deployed_child(section: dict[str, Any], where: str) -> dict[str, Any]:
    """In the child process of one GGUF: every benchmark's eval run, then this process's
    peak resident memory (what serving the file took here, the interpreter included;
    ``rss_before_bytes`` is the interpreter's before any model was loaded)."""
    from medistill.backends import llamacpp
    from medistill.config import build
    from medistill.evaluate import EvalConfig, run_eval
    from medistill.pipeline.preflight import check_stage

    before = _peak_rss()
    progress = sys.stderr.isatty()
    metrics: dict[str, Any] = {}
    n_parallel = None
    for values in section.get("runs") or []:
        values = dict(values)
        overwrite = bool(values.pop("overwrite", False))
        cfg = build(EvalConfig, values, where=where)
        check_stage("eval", cfg)
        metrics[values["out"]] = run_eval(cfg, overwrite=overwrite, show_progress=progress)
        n_parallel = getattr(cfg, "n_parallel", None) or getattr(llamacpp, "DEFAULT_N_PARALLEL", 1)
    return {
        "metrics": metrics,
        "peak_rss_bytes": _peak_rss(),
        "rss_before_bytes": before,
        "n_threads": section.get("n_threads") or os.cpu_count() or 1,
        "n_parallel": n_parallel,
    }


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: Linux's ``VmHWM`` (this program's own,
    from its start: ``ru_maxrss`` keeps the high-water mark of the parent it was forked
    from), else ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
