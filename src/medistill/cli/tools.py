"""The commands around the stages: ``inspect``, ``import-traces``, ``export``, ``rescore``,
``report``, ``run`` and ``preflight``.

Like the stage commands, each reads its options from a config class (:mod:`medistill.flags`):
the library's own where it has one (``RescoreConfig``, ``ReportConfig``), else one declared here.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from medistill.data.mcq_options import COLUMNS_HELP, HOLDOUT_HELP, HOLDOUT_SEED_HELP
from medistill.errors import MedistillError
from medistill.flags import parse_stage

# Each command imports what it runs when it runs (see medistill.cli.stages).


@dataclass
class InspectOptions:
    """Load a benchmark, validate every row, and print what was loaded and skipped."""

    benchmark: str = field(metadata={"help": "registered benchmark name (mcq: your own file)"})
    path: str | None = field(default=None, metadata={"help": "local file or folder"})
    split: str | None = field(
        default=None, metadata={"help": "split to read; none: the benchmark's (mcq: test)"}
    )
    skip_invalid: bool = field(default=False, metadata={"help": "skip bad rows, count them"})
    cop_base: int | None = field(default=None, metadata={"help": "MedMCQA: 0- or 1-based cop"})
    columns: dict[str, Any] | None = field(default=None, metadata={"help": COLUMNS_HELP})
    holdout: float | None = field(default=None, metadata={"help": HOLDOUT_HELP})
    holdout_seed: int = field(default=0, metadata={"help": HOLDOUT_SEED_HELP})


def inspect_cmd(ctx: typer.Context) -> None:
    """Load a benchmark, validate every row, and print what was loaded and skipped."""
    from medistill.data import load_benchmark
    from medistill.data.mcq_options import mcq_kwargs

    opts = parse_stage(
        InspectOptions, ctx.args, section="inspect", prog="medistill inspect",
        positional=("benchmark",),
    )  # fmt: skip
    kwargs = {"cop_base": opts.cop_base} if opts.cop_base is not None else {}
    kwargs |= mcq_kwargs(opts.columns, opts.holdout, opts.holdout_seed)
    if opts.split:
        kwargs["split"] = opts.split
    path = Path(opts.path) if opts.path else None
    data = load_benchmark(opts.benchmark, path, skip_invalid=opts.skip_invalid, **kwargs)
    rep = data.report
    typer.echo(rep.summary())
    for note in rep.notes:
        typer.echo(f"note: {note}")
    for s in rep.skipped:
        typer.echo(f"skipped: {s}")
    golds = Counter(q.gold or "none" for q in data.questions)
    typer.echo("gold letters: " + ", ".join(f"{k}={v}" for k, v in sorted(golds.items())))


@dataclass
class ImportTracesOptions:
    """Import an existing trace dataset (HuatuoGPT-o1, m1K, MIRAGE outputs...) into a store."""

    file: str = field(metadata={"help": "JSON / JSONL / Parquet trace dataset"})
    store: str = field(metadata={"help": "SQLite trace store to import into"})
    origin: str = field(
        metadata={
            "help": "dataset name recorded as the traces' origin (the teacher); with a per-row "
            "teacher field (--preset mirage, or --map teacher=FIELD) the teacher becomes "
            "ORIGIN:MODEL, and ORIGIN alone where a row has none"
        }
    )
    preset: str | None = field(
        default=None,
        metadata={
            "help": "known field layout: huatuogpt-o1, medistill, or mirage (= mirage-medrag: "
            "MIRAGE's JSON-answer outputs, needs --questions)"
        },
    )
    map: str | None = field(
        default=None,
        metadata={
            "help": "ours=theirs pairs, e.g. question=Question,options=options,gold=answer_idx,"
            "reasoning=Complex_CoT,response=Response (fields: question, options, gold, "
            "reasoning, response, id, subject, finish_reason, teacher, dataset, "
            "json_reasoning, json_answer; without question/options rows are joined to "
            "--questions by id)"
        },
    )
    questions: list[str] | None = field(
        default=None,
        metadata={
            "help": "NAME[=PATH]: benchmark whose questions rows without question text are "
            "joined to by id, e.g. medmcqa=data/medmcqa/dev.jsonl (a bare name reads "
            "$MEDISTILL_DATA_DIR or the Hub); repeatable, a row's dataset field picks one"
        },
    )
    where: list[str] | None = field(
        default=None,
        metadata={
            "help": "FIELD=VALUE: import only rows whose top-level FIELD equals VALUE exactly, "
            "e.g. model=OpenAI/gpt-4-32k; repeatable (same field: any value; different "
            "fields: all); the rest are counted as filtered"
        },
    )
    skip_invalid: bool = field(default=False, metadata={"help": "skip bad rows, count them"})


def import_traces_cmd(ctx: typer.Context) -> None:
    """Import an existing trace dataset (HuatuoGPT-o1, m1K, MIRAGE outputs...) into a store."""
    from medistill.store.import_mapping import parse_mapping
    from medistill.store.importer import import_traces

    opts = parse_stage(
        ImportTracesOptions, ctx.args, section="import_traces", prog="medistill import-traces",
        positional=("file",),
    )  # fmt: skip
    summary = import_traces(
        Path(opts.file),
        Path(opts.store),
        origin=opts.origin,
        mapping=parse_mapping(opts.map, opts.preset),
        skip_invalid=opts.skip_invalid,
        questions=opts.questions,
        where=opts.where,
    )
    typer.echo(json.dumps(summary, indent=2))


@dataclass
class ExportOptions:
    """Export a trace store to JSONL, Parquet or a Hugging Face dataset folder."""

    store: str = field(metadata={"help": "SQLite trace store"})
    out: str = field(metadata={"help": "output file or folder"})
    format: str = field(default="jsonl", metadata={"help": "jsonl | parquet | hf"})


def export_cmd(ctx: typer.Context) -> None:
    """Export a trace store to JSONL, Parquet or a Hugging Face dataset folder."""
    from medistill.store import export_store

    opts = parse_stage(
        ExportOptions, ctx.args, section="export", prog="medistill export", positional=("store",)
    )
    typer.echo(f"wrote {export_store(Path(opts.store), Path(opts.out), opts.format)}")


def rescore_cmd(ctx: typer.Context) -> None:
    """Re-extract answers from saved responses (``--task refusal``: score responses to open
    requests for refusal with the shared detector); write the rows, a summary and a
    ``<out>.metrics.json`` in eval's schema (``medistill report`` reads it)."""
    from medistill.evaluate.rescore import RescoreConfig, rescore

    cfg = parse_stage(
        RescoreConfig, ctx.args, section="rescore", prog="medistill rescore", positional=("input",)
    )
    typer.echo(json.dumps(rescore(cfg), indent=2))


def report_cmd(ctx: typer.Context) -> None:
    """Build a Markdown table, a bar chart with error bars and a self-contained HTML report."""
    from medistill.report import ReportConfig, build_report

    cfg = parse_stage(
        ReportConfig, ctx.args, section="report", prog="medistill report", positional=("runs",)
    )
    rep = build_report(
        [Path(r) for r in cfg.runs],
        Path(cfg.out),
        metric=cfg.metric,
        title=cfg.title,
        dataset=Path(cfg.dataset) if cfg.dataset else None,
    )
    typer.echo(rep.markdown)
    typer.echo(f"\nwrote {rep.markdown_path}, {rep.html_path} and {rep.png_path}")


@dataclass
class RunOptions:
    """The whole pipeline: generate -> curate -> sft -> grpo -> eval -> report."""

    recipe: str = field(metadata={"help": "recipe YAML (sections run, generate, ...)"})
    from_stage: str | None = field(
        default=None, metadata={"help": "re-run from this stage on", "aliases": ("--from",)}
    )
    only: str | None = field(default=None, metadata={"help": "run this stage alone"})
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "print the plan (run/skip and why) and run the preflight only: fails when "
            "this machine cannot run the stages planned"
        },
    )
    benchmark: str | None = field(
        default=None,
        metadata={
            "help": "also evaluate every model of the run on this benchmark, e.g. --benchmark "
            "mcq --path bank.csv (added to run.eval_benchmarks, so curation decontaminates "
            "against it too)"
        },
    )
    path: str | None = field(default=None, metadata={"help": "that benchmark's file"})
    columns: dict[str, Any] | None = field(default=None, metadata={"help": COLUMNS_HELP})
    holdout: float | None = field(default=None, metadata={"help": HOLDOUT_HELP})
    holdout_seed: int = field(default=0, metadata={"help": HOLDOUT_SEED_HELP})
    rehearse: bool = field(
        default=False,
        metadata={
            "help": "run the recipe on this CPU in minutes: tiny models of the same "
            "architectures, a local stand-in teacher, stand-in files for missing splits, small "
            "sizes, CPU paths for what needs a GPU (each swap is printed); into "
            "<root>/<name>-rehearsal"
        },
    )


def run_cmd(ctx: typer.Context) -> None:
    """The whole pipeline: generate -> curate -> sft -> grpo -> eval -> report.

    Each stage writes into runs/<name>/<stage>/ with a manifest; an unchanged finished stage
    is skipped, a change re-runs that stage and those after it, a killed run resumes.
    """
    from medistill.pipeline import run_pipeline
    from medistill.pipeline.preflight import one_line
    from medistill.pipeline.rehearse import rehearse as rehearse_recipe

    opts = parse_stage(
        RunOptions, ctx.args, section="run", prog="medistill run", positional=("recipe",),
        recipe=False,
    )  # fmt: skip
    recipe = Path(opts.recipe)
    kwargs = {
        "from_stage": opts.from_stage,
        "only": opts.only,
        "dry_run": opts.dry_run,
        "show_progress": sys.stderr.isatty(),
    }
    overrides = _added_benchmark(opts, recipe)
    if overrides and opts.rehearse:
        raise MedistillError(
            "--rehearse with --benchmark: list the benchmark in the recipe's run.eval_benchmarks "
            "to rehearse it"
        )
    if overrides:
        kwargs["overrides"] = overrides
    if opts.rehearse:
        summary = rehearse_recipe(recipe, **kwargs)
        typer.echo(f"rehearsal of {recipe} (recipe as run: {summary['rehearsal']['recipe']})")
        shown = summary["rehearsal"]
        words = {"preflight": "preflight of the recipe as written", "swapped": "swapped"}
        words |= {"as_is": "as is", "checks": "checked"}
        for key, word in words.items():
            for note in shown.get(key, []):
                typer.echo(f"  {word}: {note}")
    else:
        summary = run_pipeline(recipe, **kwargs)
    for stage, info in summary["stages"].items():
        took = f" ({info['seconds']:.0f} s)" if "seconds" in info else ""
        typer.echo(f"{stage:<9} {info['action']:<4} {info['reason']}{took}")
    if not opts.rehearse and summary.get("preflight"):  # a dry run: the plan, then its problems
        raise MedistillError(one_line(summary["preflight"], recipe))
    report = summary.get("report")
    if report and not opts.dry_run and Path(report).is_file():
        typer.echo("\n" + Path(report).read_text(encoding="utf-8"))
        typer.echo(f"report: {report}")


def _added_benchmark(opts: RunOptions, recipe: Path) -> dict[str, Any] | None:
    """``--benchmark`` (with ``--path``, ``--columns``, ``--holdout``) as the recipe's
    ``run.eval_benchmarks`` plus that entry (``None`` when not given)."""
    from medistill.config import load_recipe
    from medistill.data.mcq_options import mcq_kwargs
    from medistill.pipeline.plan import RunConfig

    extra = mcq_kwargs(opts.columns, opts.holdout, opts.holdout_seed)
    if opts.benchmark is None:
        if opts.path or extra:
            raise MedistillError("--path, --columns and --holdout go with --benchmark NAME")
        return None
    run = load_recipe(recipe).get("run") or {}
    listed = run.get("eval_benchmarks")
    if listed is None:
        default = next(f for f in dataclasses.fields(RunConfig) if f.name == "eval_benchmarks")
        listed = default.default_factory()
    entry = {"benchmark": opts.benchmark, **({"path": opts.path} if opts.path else {}), **extra}
    return {"run": {"eval_benchmarks": [*listed, entry]}}


@dataclass
class PreflightOptions:
    """Everything the recipe needs that this machine lacks, one line each with its fix."""

    recipe: str = field(metadata={"help": "recipe YAML (sections run, generate, ...)"})


def preflight_cmd(ctx: typer.Context) -> None:
    """Everything the recipe needs that this machine lacks, one line each with its fix:
    DeepSpeed, vLLM, FlashAttention, bitsandbytes, CUDA GPUs, the teacher's key, each split.

    Every stage is checked (``medistill run`` checks the stages it will run, before any).
    """
    from medistill.pipeline.preflight import recipe_problems

    opts = parse_stage(
        PreflightOptions, ctx.args, section="preflight", prog="medistill preflight",
        positional=("recipe",), recipe=False,
    )  # fmt: skip
    recipe = Path(opts.recipe)
    problems = recipe_problems(recipe)
    for problem in problems:
        typer.echo(f"missing: {problem}")
    if problems:
        raise MedistillError(f"{recipe}: {len(problems)} problem(s); this machine cannot run it")
    typer.echo(f"{recipe}: nothing missing on this machine")
