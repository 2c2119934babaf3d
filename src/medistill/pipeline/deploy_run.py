"""Running the ``export`` and ``eval-deployed`` stages of ``medistill run`` (planned by
:mod:`medistill.pipeline.deploy_plan`): the file a hospital deploys, measured.

``export`` writes the final student as a standalone Hugging Face folder with its card and one
GGUF per quantisation, through :func:`medistill.deploy.export.export_model`.

``eval-deployed`` evaluates each GGUF through llama.cpp on this machine's CPU on the run's
benchmarks (MCQ and safety), with the student's own eval settings (prompt, budget, sampling,
extraction, metrics; the explanation audit is left out: it measures the reasoning, not the
file), each GGUF in its own child process (:func:`run_deployed_child`) so the peak memory
recorded is that process's own. Each run folder ``eval-deployed/<quant>-<benchmark>/`` holds
what ``run_eval`` writes and a ``deployment.json``: which file (path, size, sha256), where it
came from, the threads and parallel sequences it ran with, the process's peak resident memory
and the paired change against the unquantised student's answers on the same questions
(:func:`medistill.evaluate.paired.compare_runs`). The figures then go into the export cards and
``measured.json`` (:func:`medistill.deploy.measured.write_measured`) and the report's
"as deployed" rows.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
from pathlib import Path
from typing import Any

from medistill.backends import llamacpp
from medistill.config import build
from medistill.deploy.export import ExportModelConfig, export_model
from medistill.deploy.gguf import llama_cpp_version
from medistill.deploy.measured import write_measured
from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval
from medistill.evaluate.paired import compare_runs
from medistill.evaluate.sampling import RESOLVED_KEYS
from medistill.pipeline.deploy_plan import DEPLOYMENT, HF_FOLDER, DeployedEvalPlan, ExportPlan
from medistill.pipeline.launch import run_model_stage
from medistill.pipeline.preflight import check_stage

log = logging.getLogger(__name__)


def run_export(cfg: ExportPlan, folder: Path) -> dict[str, Any]:
    """The ``export`` stage: the HF folder with its card, then one GGUF per quantisation."""
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
    write_measured(Path(cfg.export_dir), deployed)  # the cards' "as deployed" figures
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
    unset = [k for k in RESOLVED_KEYS if values.get(k) is None]
    if not unset:
        return {}
    baseline = cfg.unquantised.get(benchmark)
    recorded = Path(baseline) / "config.json" if baseline else None
    if recorded is not None and recorded.is_file():
        decided = json.loads(recorded.read_text(encoding="utf-8")).get("config") or {}
    else:
        hf = {**values, "model": cfg.source, "backend": "transformers"}
        hf.pop("n_parallel", None)
        resolved = EvalConfig(**hf).resolved()
        decided = {k: getattr(resolved, k) for k in RESOLVED_KEYS}
    return {k: decided[k] for k in unset if decided.get(k) is not None}


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
    out = Path(values["out"])
    peak = result["peak_rss_bytes"]
    try:  # a resumed run of the same file may load no model: keep the peak it was measured at
        old = json.loads((out / DEPLOYMENT).read_text(encoding="utf-8"))
        if old.get("sha256") == sha and sha is not None:
            peak = max(peak, int(old.get("peak_rss_bytes") or 0))
    except (OSError, ValueError):
        pass
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
        "peak_rss_bytes": peak,
        "rss_before_model_bytes": result["rss_before_bytes"],
        "llama_cpp_version": version,
        "comparison": comparison,
    }


# --------------------------------------------------------------------------- the child


def run_deployed_child(section: dict[str, Any], where: str) -> dict[str, Any]:
    """In the child process of one GGUF: every benchmark's eval run, then this process's
    peak resident memory (what serving the file took here, the interpreter included;
    ``rss_before_bytes`` is the interpreter's before any model was loaded)."""
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
