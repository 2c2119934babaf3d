"""Running one stage of a plan (through the stage's own function), and the hashes and
manifests that decide whether it must run again."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from medistill.curate.run import run_curate
from medistill.errors import MedistillError
from medistill.evaluate import run_eval
from medistill.evaluate.run_folder import changed_settings
from medistill.generate import run_generate
from medistill.pipeline import deploy_plan, deploy_run
from medistill.pipeline.launch import (
    launch_mode,
    model_stage_in_process,
    run_model_stage,
    run_training_stage,
)
from medistill.pipeline.plan import MANIFEST, Plan
from medistill.report import build_report
from medistill.rubrics import run_rubrics
from medistill.store import TraceStore
from medistill.train.output import MANIFEST as TRAIN_MANIFEST
from medistill.train.output import read_manifest as read_train_manifest

# --------------------------------------------------------------------------- hashing


def digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def config_dict(cfg: Any) -> Any:
    """A stage config as plain data: a training recipe's identity, else its fields."""
    if isinstance(cfg, list):
        return [[k, config_dict(c)] for k, c in cfg]
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


def output_hash(stage: str, out: Path, cfg: Any) -> str:
    """What the stage produced, as a hash its downstream stages record as their input."""
    if stage == "generate":
        with TraceStore(cfg.out) as store:
            keys = sorted(store.done_keys())
        return digest(keys)
    if stage == "rubrics":
        with TraceStore(cfg.store) as store:
            return digest(sorted(([*k], v) for k, v in store.rubrics().items()))
    if stage == "curate":
        files = [p for p in (out / "dataset").rglob("*.jsonl") if p.is_file()]
        return _hash_files(files)
    if stage in ("sft", "grpo", "distill"):
        return _hash_files([out / TRAIN_MANIFEST])
    if stage == "eval":
        return _hash_files(list(out.glob("*/metrics.json")))
    if stage == "export":
        return digest(deploy_run.export_hash(cfg))
    if stage == "eval-deployed":
        return _hash_files(list(out.glob("*/metrics.json")) + list(out.glob("*/deployment.json")))
    return _hash_files([out / "report.md"])


def stage_inputs(stage: str, plan_: Plan, done: dict[str, dict]) -> dict[str, str | None]:
    """The output hashes of the stages this one reads (``None`` when not in this run)."""
    reads = {
        "generate": (),
        "rubrics": ("generate",),
        "curate": ("generate", "rubrics"),
        "sft": ("curate",),
        "grpo": ("sft", "curate"),
        "distill": ("sft", "curate"),
        "eval": ("sft", "grpo", "distill"),
        "export": ("sft", "grpo", "distill"),
        # the unquantised student's answers are what each deployed file is compared with
        "eval-deployed": ("export", "eval"),
        "report": ("eval", "eval-deployed"),
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


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def run_stage(stage, cfg, p: Plan, folder: Path, *, fresh: bool, progress: bool, previous):
    """Call the stage's own function; return the figures its manifest records."""
    if stage == "generate":
        child: dict[str, Any] = {}
        if model_stage_in_process(p.run, cfg.teacher.backend):
            # A local teacher (a vLLM engine over the GPUs) lives and dies in its own process,
            # so its memory is free before training starts.
            rec = run_model_stage("generate", p.values["generate"], folder / "launch.yaml")
            s, child = rec["result"], {"launcher": "process", "pid": rec["pid"]}
        else:
            s = run_generate(cfg, show_progress=progress)
        keys = (
            "new_calls",
            "prompt_tokens_new",
            "completion_tokens_new",
            "truncated_new",
            "estimated_cost_new",
            "errors",
        )
        return {k: s.get(k) for k in keys if k in s} | child
    if stage == "rubrics":
        s = run_rubrics(cfg, show_progress=progress)
        keys = (
            "new_calls",
            "new_valid",
            "new_invalid",
            "invalid_by_reason",
            "with_valid_rubric",
            "without_valid_rubric",
            "estimated_cost_new",
        )
        return {k: s.get(k) for k in keys if k in s}
    if stage == "curate":
        run_curate(cfg, show_progress=progress)
        s = json.loads((Path(cfg.out) / "stats.json").read_text(encoding="utf-8"))
        keys = ("input_traces", "kept_traces", "kept_questions", "dropped", "teacher_accuracy")
        return {k: s.get(k) for k in keys if k in s}
    if stage in ("sft", "grpo", "distill"):
        mode = launch_mode(p.run)
        if mode == "inline":
            import importlib

            mod = importlib.import_module(f"medistill.train.{stage}")
            cfg.overwrite = fresh  # a killed run of the same settings resumes from its checkpoint
            m = getattr(mod, f"run_{stage}")(cfg)
        else:
            run_training_stage(p.run, stage, p.values[stage], folder, fresh=fresh, mode=mode)
            m = read_train_manifest(folder) or {}
            if m.get("status") != "finished":
                raise MedistillError(f"{folder}: stage {stage} ended without finishing its run")
        figures = {"metrics": m.get("metrics"), "data": m.get("data"), "launcher": mode}
        if m.get("rank_weight_digests"):
            figures["rank_weight_digests"] = m["rank_weight_digests"]
        return figures
    if stage == "eval":
        used = (previous or {}).get("figures", {}).get("models", {})
        models = {}
        figures: dict[str, Any] = {"runs": {}}
        for key, ecfg in cfg:
            model_hash = _model_hash(p, key)
            # A retrained model keeps its folder: its old predictions must not be resumed;
            # nor may a run whose eval settings changed.
            changed = changed_settings(ecfg, Path(ecfg.out))
            overwrite = (fresh and used.get(key) != model_hash) or bool(changed)
            name = f"{key}-{ecfg.benchmark}"
            pid = None
            if model_stage_in_process(p.run, ecfg.backend):
                # Each local model is loaded, scored and freed in its own process: the next
                # model's engine gets the whole GPU memory.
                section = {**p.values["eval"][name], "overwrite": overwrite}
                rec = run_model_stage("eval", section, folder / f"launch-{name}.yaml")
                m, pid = rec["result"], rec["pid"]
            else:
                m = run_eval(ecfg, overwrite=overwrite, show_progress=progress)
            models[key] = model_hash
            # A safety run has a refusal rate (an over-refusal rate where it asked benign
            # requests, and a judge's harmfulness), not an accuracy.
            score = (
                {"refusal_rate": m["refusal_rate"]["value"]}
                | (
                    {"over_refusal_rate": m["benign"]["over_refusal_rate"]["value"]}
                    if m.get("benign")
                    else {}
                )
                | ({"mean_harmfulness": m.get("mean_harmfulness")} if m.get("judge") else {})
                if m.get("kind") == "safety"
                else {"accuracy": m["accuracy"]["lenient"]["value"]}
            )
            figures["runs"][name] = {
                **score,
                "n": m["n"],
                "output_tokens": (m.get("output_tokens") or {}).get("total"),
            } | ({"launcher": "process", "pid": pid} if pid is not None else {})
        figures["models"] = models
        return figures
    if stage == "export":
        return deploy_run.run_export(cfg, folder)
    if stage == "eval-deployed":
        return deploy_run.run_eval_deployed(cfg, folder, fresh=fresh, previous=previous)
    # In the plan's order: teacher, base student, SFT, SFT+GRPO, SFT+distillation.
    runs = [
        Path(e.out)
        for _, e in p.configs.get("eval", [])
        if (Path(e.out) / "metrics.json").is_file()
    ]
    dataset = p.stage_dir("curate") / "dataset" if "curate" in p.configs else None
    deployed = [
        Path(values["out"])
        for spec in getattr(p.configs.get("eval-deployed"), "quants", {}).values()
        for values in spec["runs"].values()
        if (Path(values["out"]) / deploy_plan.DEPLOYMENT).is_file()
    ]
    rep = build_report(runs, folder, title=cfg["title"], dataset=dataset, deployed=deployed)
    notes = cfg.get("notes") or []  # what the plan left out (an optional benchmark not here)
    if notes:
        with open(folder / "report.md", "a", encoding="utf-8") as fh:
            fh.write("\n## Not evaluated\n\n" + "".join(f"- {n}\n" for n in notes))
    return {"warnings": len(rep.warnings), "not_evaluated": len(notes)}


def _model_hash(p: Plan, key: str) -> str | None:
    """The output hash of a model trained in this run (``None`` for teacher and base)."""
    if key in ("sft", "grpo", "distill"):
        m = read_manifest(p.stage_dir(key)) or {}
        return m.get("output_hash")
    return None
