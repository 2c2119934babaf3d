"""``medistill run recipe.yaml``: generate -> curate -> sft -> grpo -> eval -> report.

The pipeline composes the stages' own functions through the files they write (stages never
import each other). Every stage writes into ``<root>/<name>/<stage>/`` and leaves a
``pipeline.json`` manifest there: its resolved config and that config's hash, the hashes of
its inputs (the outputs of the stages it reads), package versions, timings and token counts.

A finished stage whose config hash and input hashes are unchanged is skipped on a rerun; a
change re-runs that stage and, as their inputs then change, the stages after it. A killed
stage resumes (each stage resumes on its own: the trace store, training checkpoints, eval
predictions). The whole recipe is validated before any stage starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.config import _unknown_message, build, load_recipe
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

STAGES = ("generate", "curate", "sft", "grpo", "distill", "eval", "report")
#: What a run includes unless ``run.stages`` says otherwise (``distill`` is opt-in: it needs
#: a local open-weight teacher).
DEFAULT_STAGES = ("generate", "curate", "sft", "grpo", "eval", "report")
MANIFEST = "pipeline.json"  # train.output.PIPELINE_MANIFEST keeps it beside a training run
#: Keys the pipeline sets itself: each stage's output location and the files it reads.
_OWNED = {
    "generate": ("out",),
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
    eval_benchmarks: list[str] = field(
        default_factory=lambda: ["sample_heldout"],
        metadata={"help": "benchmarks every model is evaluated on: name or name=path"},
    )
    eval_teacher: bool = field(
        default=True, metadata={"help": "evaluate the teacher too (local or HTTP teachers)"}
    )
    eval_base: bool = field(default=True, metadata={"help": "evaluate the untrained student"})
    title: str | None = field(default=None, metadata={"help": "report title"})


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """A validated recipe: the stage configs, ready to run."""

    recipe: Path
    run: RunConfig
    folder: Path
    configs: dict[str, Any]  # stage -> config object (eval: a list of (key, EvalConfig))

    def stage_dir(self, stage: str) -> Path:
        """``<root>/<name>/<stage>``."""
        return self.folder / stage


def plan(recipe: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Read and validate the whole recipe (every section, every key) into a :class:`Plan`.

    Nothing runs here: a bad key, a bad value or a missing section fails before any stage
    starts, naming the recipe file, section and key (and the valid choices).
    """
    from medistill.curate.config import CurateConfig
    from medistill.evaluate import EvalConfig
    from medistill.generate import GenerateConfig

    path = Path(recipe)
    data = load_recipe(path)
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    known = ("run", *STAGES)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise MedistillError(_unknown_message(f"{path}", unknown, list(known)))
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
    sec = {s: dict(data.get(s) or {}) for s in STAGES}
    d = {s: folder / s for s in STAGES}
    if "generate" in stages:
        if "teacher" not in sec["generate"]:
            raise MedistillError(f"{path}: generate.teacher is required (who writes the traces)")
        configs["generate"] = build(
            GenerateConfig,
            {**sec["generate"], "out": str(d["generate"] / "traces.db")},
            where=f"{path}: generate",
        )
    if "curate" in stages:
        values = {
            "eval_benchmarks": list(run.eval_benchmarks),
            **sec["curate"],
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
        student = configs["sft"].model
    if "grpo" in stages:
        from medistill.train.config import GRPORecipe

        start = str(d["sft"]) if "sft" in stages else sec["grpo"].get("model")
        if not start:
            raise MedistillError(f"{path}: grpo.model is required when the run has no sft stage")
        values = {**sec["grpo"], "model": start, "dataset": dataset, "output_dir": str(d["grpo"])}
        configs["grpo"] = build(GRPORecipe, values, where=f"{path}: grpo")
        from medistill.train.reward_builder import build_rewards

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
    if "eval" in stages:
        models = _eval_models(run, configs, sec, stages, student, d)
        runs = []
        for key, model_values in models:
            for bench in run.eval_benchmarks:
                name, _, bench_path = bench.partition("=")
                values = {
                    **sec["eval"],
                    **model_values,
                    "benchmark": name,
                    "path": bench_path or None,
                    "out": str(d["eval"] / f"{key}-{name}"),
                }
                runs.append((key, build(EvalConfig, values, where=f"{path}: eval")))
        configs["eval"] = runs
    if "report" in stages:
        if sec["report"]:
            raise MedistillError(
                f"{path}: report takes no keys (got {', '.join(sorted(sec['report']))}); "
                f"set its title with run.title"
            )
        configs["report"] = {"title": run.title or f"medistill run {run.name}"}
    return Plan(recipe=path, run=run, folder=folder, configs=configs)


def _eval_models(run, configs, sec, stages, student, d) -> list[tuple[str, dict[str, Any]]]:
    """(key, EvalConfig fields) of every model the run evaluates, in report order."""
    models: list[tuple[str, dict[str, Any]]] = []
    gen = configs.get("generate")
    if run.eval_teacher and gen is not None:
        t = gen.teacher
        if t.backend in ("transformers", "openai"):
            values: dict[str, Any] = {
                "model": t.model,
                "backend": t.backend,
                "label": f"teacher: {_short(t.model)}",
            }
            if t.backend == "openai":
                values["base_url"] = list(t.base_url)
                values["api_key_env"] = t.api_key_env
            models.append(("teacher", values))
    if run.eval_base and student:
        models.append(("base", {"model": student, "label": f"base: {_short(student)}"}))
    if "sft" in stages:
        models.append(("sft", {"model": str(d["sft"]), "label": "student: SFT"}))
    for stage, method in (("grpo", "GRPO"), ("distill", "on-policy distillation")):
        if stage in stages:
            label = f"student: SFT+{method}" if "sft" in stages else f"student: {method}"
            models.append((stage, {"model": str(d[stage]), "label": label}))
    return models


def _short(model: str) -> str:
    from medistill.models import SMOLLM2_ALIASES, SMOLLM2_NAME

    if model.strip().lower() in SMOLLM2_ALIASES:
        return SMOLLM2_NAME
    return Path(model.rstrip("/")).name or model


# --------------------------------------------------------------------------- hashing


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _config_dict(cfg: Any) -> Any:
    """A stage config as plain data: a training recipe's identity, else its fields."""
    if isinstance(cfg, list):
        return [[k, _config_dict(c)] for k, c in cfg]
    if hasattr(cfg, "identity") and hasattr(cfg, "identity_hash"):
        return cfg.identity()
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return cfg


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.name).encode())
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _output_hash(stage: str, out: Path, cfg: Any) -> str:
    """What the stage produced, as a hash its downstream stages record as their input."""
    if stage == "generate":
        from medistill.store import TraceStore

        with TraceStore(cfg.out) as store:
            keys = sorted(store.done_keys())
        return _digest(keys)
    if stage == "curate":
        files = [p for p in (out / "dataset").rglob("*.jsonl") if p.is_file()]
        return _hash_files(files)
    if stage in ("sft", "grpo", "distill"):
        from medistill.train.output import MANIFEST as TRAIN_MANIFEST

        return _hash_files([out / TRAIN_MANIFEST])
    if stage == "eval":
        return _hash_files(list(out.glob("*/metrics.json")))
    return _hash_files([out / "report.md"])


# --------------------------------------------------------------------------- running


def _inputs(stage: str, plan_: Plan, done: dict[str, dict]) -> dict[str, str | None]:
    """The output hashes of the stages this one reads (``None`` when not in this run)."""
    reads = {
        "generate": (),
        "curate": ("generate",),
        "sft": ("curate",),
        "grpo": ("sft", "curate"),
        "distill": ("sft", "curate"),
        "eval": ("sft", "grpo", "distill"),
        "report": ("eval",),
    }[stage]
    return {r: (done.get(r) or {}).get("output_hash") for r in reads if r in plan_.configs}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A stage's ``pipeline.json``, or ``None``."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


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
        config_hash = _digest(_config_dict(plan_.configs[stage]))
        inputs = _inputs(stage, plan_, recorded)
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
) -> dict[str, Any]:
    """Run the recipe's stages in order (see the module docstring); return a summary."""
    p = plan(recipe, overrides)
    steps = decide(p, from_stage=from_stage, only=only)
    summary: dict[str, Any] = {"folder": str(p.folder), "stages": {}}
    for stage, action, reason in steps:
        log.info("%-8s %s (%s)", stage, action, reason)
        summary["stages"][stage] = {"action": action, "reason": reason}
    if dry_run:
        return summary
    recorded = {s: read_manifest(p.stage_dir(s)) or {} for s in p.configs}
    for stage, action, reason in steps:
        if action == "skip":
            if only is None and recorded[stage].get("status") != "finished":
                raise MedistillError(f"{p.stage_dir(stage)}: stage {stage} has not finished")
            continue
        if only is not None:
            missing = [up for up, h in _inputs(stage, p, recorded).items() if h is None]
            if missing:
                raise MedistillError(
                    f"--only {stage}: it reads the output of {', '.join(missing)}, which has "
                    f"not finished; run the pipeline without --only first"
                )
        folder = p.stage_dir(stage)
        cfg = p.configs[stage]
        config_hash = _digest(_config_dict(cfg))
        inputs = _inputs(stage, p, recorded)
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
            "config": _config_dict(cfg),
            "inputs": inputs,
            "versions": _versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "reason": reason,
        }
        _write_manifest(folder, manifest)
        t0 = time.perf_counter()
        figures = _run_stage(
            stage, cfg, p, folder, fresh=not resuming, progress=show_progress, previous=old
        )
        manifest.update(
            status="finished",
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            seconds=round(time.perf_counter() - t0, 2),
            figures=figures,
            output_hash=_output_hash(stage, folder, cfg),
        )
        _write_manifest(folder, manifest)
        recorded[stage] = manifest
        summary["stages"][stage]["seconds"] = manifest["seconds"]
    summary["report"] = str(p.stage_dir("report") / "report.md") if "report" in p.configs else None
    return summary


def _versions() -> dict[str, str]:
    from medistill.train.output import versions

    return versions()


def _run_stage(stage, cfg, p: Plan, folder: Path, *, fresh: bool, progress: bool, previous):
    """Call the stage's own function; return the figures its manifest records."""
    if stage == "generate":
        from medistill.generate import run_generate

        s = run_generate(cfg, show_progress=progress)
        keys = ("new_calls", "prompt_tokens", "completion_tokens", "truncated_new")
        return {k: s.get(k) for k in keys if k in s}
    if stage == "curate":
        from medistill.curate.run import run_curate

        run_curate(cfg, show_progress=progress)
        s = json.loads((Path(cfg.out) / "stats.json").read_text(encoding="utf-8"))
        keys = ("input_traces", "kept_traces", "kept_questions", "dropped", "teacher_accuracy")
        return {k: s.get(k) for k in keys if k in s}
    if stage in ("sft", "grpo", "distill"):
        import importlib

        mod = importlib.import_module(f"medistill.train.{stage}")
        cfg.overwrite = fresh  # a killed run of the same settings resumes from its checkpoint
        m = getattr(mod, f"run_{stage}")(cfg)
        return {"metrics": m.get("metrics"), "data": m.get("data")}
    if stage == "eval":
        from medistill.evaluate import run_eval

        used = (previous or {}).get("figures", {}).get("models", {})
        models = {}
        figures: dict[str, Any] = {"runs": {}}
        for key, ecfg in cfg:
            model_hash = _model_hash(p, key)
            # A retrained model keeps its folder: its old predictions must not be resumed;
            # nor may a run whose eval settings changed.
            overwrite = (fresh and used.get(key) != model_hash) or _settings_changed(ecfg)
            m = run_eval(ecfg, overwrite=overwrite, show_progress=progress)
            models[key] = model_hash
            acc = m["accuracy"]["lenient"]
            figures["runs"][f"{key}-{ecfg.benchmark}"] = {
                "accuracy": acc["value"],
                "n": m["n"],
                "output_tokens": (m.get("output_tokens") or {}).get("total"),
            }
        figures["models"] = models
        return figures
    from medistill.report import build_report

    # In the plan's order: teacher, base student, SFT, SFT+GRPO, SFT+distillation.
    runs = [
        Path(e.out)
        for _, e in p.configs.get("eval", [])
        if (Path(e.out) / "metrics.json").is_file()
    ]
    dataset = p.stage_dir("curate") / "dataset" if "curate" in p.configs else None
    rep = build_report(runs, folder, title=cfg["title"], dataset=dataset)
    return {"warnings": len(rep.warnings)}


def _settings_changed(ecfg) -> bool:
    """True when the eval run folder holds a run with other settings."""
    stored = Path(ecfg.out) / "config.json"
    if not stored.is_file():
        return False
    try:
        old = json.loads(stored.read_text(encoding="utf-8")).get("identity")
    except (OSError, json.JSONDecodeError):
        return True
    return old != json.loads(json.dumps(ecfg.identity()))


def _model_hash(p: Plan, key: str) -> str | None:
    """The output hash of a model trained in this run (``None`` for teacher and base)."""
    if key in ("sft", "grpo", "distill"):
        m = read_manifest(p.stage_dir(key)) or {}
        return m.get("output_hash")
    return None
