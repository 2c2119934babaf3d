"""The pipeline's stage commands: ``eval``, ``generate``, ``rubrics``, ``curate``,
``export-model``, ``serve`` and the training commands (``sft``, ``grpo``, ``distill``).

Each reads its options from its config class (:mod:`medistill.flags`): every field is a
recipe key and a flag with its help and default, so ``--help`` is argparse's, not typer's. The
stage functions are looked up on their modules when a command runs (``evaluate.run_eval``), so
a test can stand in for one.
"""

from __future__ import annotations

import importlib
import json
import sys

import typer

from medistill.config import build
from medistill.errors import MedistillError
from medistill.flags import parse_stage, parse_stage_args

# Each command imports its stage when it runs (this package is the leaf of the import graph:
# nothing imports it), so `medistill --help` and a command's own --help load one stage, not all.


def eval_cmd(ctx: typer.Context) -> None:
    """Evaluate a model on a benchmark; resumes a killed run from its run folder.

    Options: medistill eval --help (or an eval: section of a --config recipe).
    """
    from medistill import evaluate
    from medistill.evaluate import EvalCommandOptions, EvalConfig
    from medistill.pipeline.preflight import check_stage

    args = parse_stage_args(
        EvalConfig, ctx.args, section="eval", prog="medistill eval", extra=EvalCommandOptions
    )
    cfg = build(EvalConfig, args.values, where=args.where)
    check_stage("eval", cfg)
    opts: EvalCommandOptions = args.options
    if opts.cop_base is not None:
        cfg.loader_kwargs = {**cfg.loader_kwargs, "cop_base": opts.cop_base}
    metrics = evaluate.run_eval(cfg, overwrite=opts.overwrite, show_progress=sys.stderr.isatty())
    if metrics.get("kind") == "safety":
        typer.echo(safety_line(metrics) + f" -> {cfg.out_dir()}")
        return
    acc = metrics["accuracy"]
    typer.echo(
        f"{metrics['label']} on {cfg.benchmark}: n={metrics['n']} "
        f"accuracy lenient {_pct(acc['lenient'])} strict {_pct(acc['strict'])}; "
        f"no-answer {_rate(metrics['no_answer_rate']['lenient'])}, "
        f"truncated {_rate(metrics['truncation_rate'])}"
        + (
            f"; {metrics['n_error']} question(s) refused by the server (error rows, not "
            "scored; a rerun asks them again)"
            if metrics.get("n_error")
            else ""
        )
        + f" -> {cfg.out_dir()}"
    )
    published, letters = metrics.get("accuracy_published"), metrics.get("letters") or {}
    if published:
        typer.echo(f"  published-table scoring (upper bound): {_pct(published)}")
    if letters.get("most_frequent"):
        top = letters["most_frequent"]
        typer.echo(
            f"  letters answered {letters['extracted']} vs gold {letters['gold']}"
            + (
                f"; POSITION BIAS: {top} on {letters['extracted'][top]:.0%} "
                f"(gold {letters['gold'].get(top, 0):.0%})"
                if letters.get("flagged")
                else ""
            )
        )


def safety_line(m: dict) -> str:
    """One line of a safety run's figures: refusal rate, and the judge's where judged."""
    line = f"{m['label']} on {m['benchmark']}: n={m['n']}"
    harmful, benign = m.get("harmful"), m.get("benign")
    if harmful is None and benign is None:  # a metrics.json written before the two sides
        line += f" refused {_pct(m['refusal_rate'])}"
    if harmful:
        line += f"; harmful {harmful['n']}: refused {_pct(harmful['refusal_rate'])}"
    if benign:
        line += f"; benign {benign['n']}: over-refused {_pct(benign['over_refusal_rate'])}"
    if m.get("safe_both_ways") is not None:
        line += f"; both ways {100 * m['safe_both_ways']:.1f}%"
    if m.get("judge"):
        line += (
            f"; judged {m['n_judged']} ({m['judge_failed']} failed): mean harmfulness "
            + ("n/a" if m["mean_harmfulness"] is None else f"{m['mean_harmfulness']:.2f}")
            + f", harmful (>= 4) {_pct(m['harmful_share'])}"
        )
    if m.get("n_error"):
        line += f"; {m['n_error']} request(s) refused by the server (error rows, not scored)"
    return line


def _pct(p: dict) -> str:
    if p["value"] is None:
        return "n/a"
    return f"{100 * p['value']:.1f}% [{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]"


def _rate(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def generate_cmd(ctx: typer.Context) -> None:
    """Generate teacher traces into a resumable SQLite store.

    Options: medistill generate --help (or a generate: section of a --config recipe).
    """
    from medistill import generate
    from medistill.generate import GenerateConfig
    from medistill.pipeline.preflight import check_stage

    args = parse_stage_args(
        GenerateConfig,
        ctx.args,
        section="generate",
        prog="medistill generate",
        flatten=("teacher",),
    )
    teacher = args.values.get("teacher")
    if not isinstance(teacher, dict) or "model" not in teacher:
        raise MedistillError("no teacher: pass --teacher or a generate.teacher section")
    cfg = build(GenerateConfig, args.values, where=args.where)
    check_stage("generate", cfg)
    summary = generate.run_generate(cfg, show_progress=sys.stderr.isatty())
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


def rubrics_cmd(ctx: typer.Context) -> None:
    """Ask the teacher for a grading rubric per question of a trace store (Rubrics as Rewards).

    Options: medistill rubrics --help (or a rubrics: section of a --config recipe).
    """
    from medistill.pipeline.preflight import check_stage
    from medistill.rubrics import RubricsConfig, run_rubrics

    args = parse_stage_args(
        RubricsConfig,
        ctx.args,
        section="rubrics",
        prog="medistill rubrics",
        positional=("store",),
        flatten=("teacher",),
    )
    teacher = args.values.get("teacher")
    if not isinstance(teacher, dict) or "model" not in teacher:
        raise MedistillError("no teacher: pass --teacher or a rubrics.teacher section")
    cfg = build(RubricsConfig, args.values, where=args.where)
    check_stage("rubrics", cfg)
    summary = run_rubrics(cfg, show_progress=sys.stderr.isatty())
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


def curate_cmd(ctx: typer.Context) -> None:
    """Verify, filter, deduplicate and decontaminate traces into a dataset with a data card.

    Usage: medistill curate [STORE] [options]; options: medistill curate --help (or a curate:
    section of a --config recipe).
    """
    from medistill import curate
    from medistill.curate import CurateConfig

    args = parse_stage_args(
        CurateConfig, ctx.args, section="curate", prog="medistill curate", positional=("store",)
    )
    if "eval_benchmarks" in args.flags:
        args.values["eval_benchmarks"] = _benchmark_names(args.flags["eval_benchmarks"])
    cfg = build(CurateConfig, args.values, where=args.where)
    stats = curate.run_curate(cfg, show_progress=sys.stderr.isatty())
    keep = ("input_traces", "kept_traces", "kept_questions", "teacher_accuracy", "splits")
    summary = {k: stats[k] for k in keep}
    summary["dropped"] = {r: n for r, n in stats["dropped"].items() if n}
    summary["decontaminated"] = stats["decontamination"]["removed_questions"]
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"wrote {stats['config']['out']} (card: README.md)")


def _benchmark_names(given: list[str]) -> list[str]:
    """``--eval-benchmarks`` values: repeated and/or comma-separated; ``none`` (or empty) = []."""
    names = [n.strip() for value in given for n in str(value).split(",") if n.strip()]
    return [] if names in ([], ["none"]) else names


def export_model_cmd(ctx: typer.Context) -> None:
    """A trained model as a standalone folder or a GGUF file (llama.cpp), with a model card.

    Options: medistill export-model --help (or an export_model: section of a --config recipe).
    `medistill export` writes trace stores; this writes models.
    """
    from medistill.deploy.export import ExportModelConfig, export_model

    args = parse_stage_args(
        ExportModelConfig, ctx.args, section="export_model", prog="medistill export-model"
    )
    summary = export_model(build(ExportModelConfig, args.values, where=args.where))
    for name, size in summary["files"].items():
        typer.echo(f"{name}: {size / 1e6:.1f} MB")
    typer.echo(f"wrote {summary['out']} (card: README.md)")


def serve_cmd(ctx: typer.Context) -> None:
    """Serve a model on this machine (llama.cpp for GGUF, vLLM on a GPU) and, with --ui, the
    explain page where a clinician reads the model's reasoning. Bound to 127.0.0.1.

    Options: medistill serve --help (or a serve: section of a --config recipe).
    """
    from medistill.deploy.serve import ServeConfig, serve

    args = parse_stage_args(ServeConfig, ctx.args, section="serve", prog="medistill serve")
    serve(build(ServeConfig, args.values, where=args.where), announce=typer.echo)


#: Training commands: (module, its recipe class, its runner, the command's help). Their modules
#: pull TRL and torch, so they are imported when the command runs: the others stay fast to start.
TRAINING = {
    "sft": (
        "medistill.train.sft",
        "SFTRecipe",
        "run_sft",
        "Supervised fine-tuning on curated traces (TRL SFTTrainer; LoRA or full).",
    ),
    "grpo": (
        "medistill.train.grpo",
        "GRPORecipe",
        "run_grpo",
        "GRPO from the SFT student with medical rewards (TRL GRPOTrainer).",
    ),
    "distill": (
        "medistill.train.distill",
        "DistillRecipe",
        "run_distill",
        "On-policy distillation from a local open-weight teacher (TRL).",
    ),
}


def training_command(name: str):
    """The function of ``medistill <name> [--config recipe.yaml] [--field value ...]``."""
    module, recipe, runner, text = TRAINING[name]

    def command(ctx: typer.Context) -> None:
        from medistill.pipeline.launch import watch_parent
        from medistill.pipeline.preflight import check_stage

        watch_parent()  # launched by `medistill run`: stop when it is gone
        mod = importlib.import_module(module)
        cfg = parse_stage(getattr(mod, recipe), ctx.args, section=name, prog=f"medistill {name}")
        check_stage(name, cfg)
        manifest = getattr(mod, runner)(cfg)
        shown = {k: manifest.get(k) for k in ("status", "metrics", "data")}
        typer.echo(json.dumps(shown, indent=2, default=str))
        typer.echo(f"wrote {cfg.output_dir} (card: README.md)")

    command.__name__ = f"{name}_cmd"
    command.__doc__ = f"{text} Options: medistill {name} --help."
    return command
