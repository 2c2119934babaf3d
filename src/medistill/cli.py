"""The ``medistill`` command line: parses options, calls one library function, maps errors.

User errors (:class:`MedistillError`) print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from medistill.errors import MedistillError

app = typer.Typer(
    name="medistill",
    help="Distil medical reasoning from a teacher LLM into a small student model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("medistill")


def _user_errors(fn):
    """Turn MedistillError into a one-line message and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MedistillError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
) -> None:
    """Configure logging for every command."""
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=_err_console(), show_path=False)],
        force=True,
    )
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _err_console():
    from rich.console import Console

    return Console(stderr=True)


@app.command("inspect")
@_user_errors
def inspect_cmd(
    benchmark: Annotated[str, typer.Argument(help="registered benchmark name")],
    path: Annotated[Path | None, typer.Option(help="local file or folder")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="skip bad rows, count them")] = False,
    cop_base: Annotated[int | None, typer.Option(help="MedMCQA: 0- or 1-based cop")] = None,
) -> None:
    """Load a benchmark, validate every row, and print what was loaded and skipped."""
    from collections import Counter

    from medistill.data import load_benchmark

    kwargs = {"cop_base": cop_base} if cop_base is not None else {}
    data = load_benchmark(benchmark, path, skip_invalid=skip_invalid, **kwargs)
    rep = data.report
    typer.echo(rep.summary())
    for note in rep.notes:
        typer.echo(f"note: {note}")
    for s in rep.skipped:
        typer.echo(f"skipped: {s}")
    golds = Counter(q.gold or "none" for q in data.questions)
    typer.echo("gold letters: " + ", ".join(f"{k}={v}" for k, v in sorted(golds.items())))


def _preflight(section: str, cfg: object) -> None:
    """Refuse to start a stage whose settings this machine cannot run (one line: the key and
    the fix), before it loads a model or calls the teacher."""
    from medistill.preflight import check_stage

    check_stage(section, cfg)


# Stage commands read their options from their config classes (``medistill.config``): each field
# is a recipe key and a flag with its help and default, so ``--help`` is argparse's, not typer's.
_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command("eval", context_settings=_PASSTHROUGH, add_help_option=False)
@_user_errors
def eval_cmd(ctx: typer.Context) -> None:
    """Evaluate a model on a benchmark; resumes a killed run from its run folder.

    Options: medistill eval --help (or an eval: section of a --config recipe).
    """
    from medistill.config import build
    from medistill.evaluate import EvalCommandOptions, EvalConfig, run_eval
    from medistill.options import parse_stage_args

    args = parse_stage_args(
        EvalConfig, ctx.args, section="eval", prog="medistill eval", extra=EvalCommandOptions
    )
    cfg = build(EvalConfig, args.values, where=args.where)
    _preflight("eval", cfg)
    opts: EvalCommandOptions = args.options
    if opts.cop_base is not None:
        cfg.loader_kwargs = {**cfg.loader_kwargs, "cop_base": opts.cop_base}
    metrics = run_eval(cfg, overwrite=opts.overwrite, show_progress=sys.stderr.isatty())
    if metrics.get("kind") == "safety":
        typer.echo(_safety_line(metrics) + f" -> {cfg.out_dir()}")
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


def _safety_line(m: dict) -> str:
    """One line of a safety run's figures: refusal rate, and the judge's where judged."""
    line = f"{m['label']} on {m['benchmark']}: n={m['n']} refused {_pct(m['refusal_rate'])}"
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


@app.command("generate", context_settings=_PASSTHROUGH, add_help_option=False)
@_user_errors
def generate_cmd(ctx: typer.Context) -> None:
    """Generate teacher traces into a resumable SQLite store.

    Options: medistill generate --help (or a generate: section of a --config recipe).
    """
    from medistill.config import build
    from medistill.generate import GenerateConfig, run_generate
    from medistill.options import parse_stage_args

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
    _preflight("generate", cfg)
    summary = run_generate(cfg, show_progress=sys.stderr.isatty())
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


@app.command("rubrics", context_settings=_PASSTHROUGH, add_help_option=False)
@_user_errors
def rubrics_cmd(ctx: typer.Context) -> None:
    """Ask the teacher for a grading rubric per question of a trace store (Rubrics as Rewards).

    Options: medistill rubrics --help (or a rubrics: section of a --config recipe).
    """
    from medistill.config import build
    from medistill.options import parse_stage_args
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
    _preflight("rubrics", cfg)
    summary = run_rubrics(cfg, show_progress=sys.stderr.isatty())
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


@app.command("import-traces")
@_user_errors
def import_traces_cmd(
    file: Annotated[Path, typer.Argument(help="JSON / JSONL / Parquet trace dataset")],
    store: Annotated[Path, typer.Option(help="SQLite trace store to import into")],
    origin: Annotated[
        str,
        typer.Option(
            help="dataset name recorded as the traces' origin (the teacher); with a per-row "
            "teacher field (--preset mirage, or --map teacher=FIELD) the teacher becomes "
            "ORIGIN:MODEL, and ORIGIN alone where a row has none"
        ),
    ],
    preset: Annotated[
        str | None,
        typer.Option(
            help="known field layout: huatuogpt-o1, medistill, or mirage (= mirage-medrag: "
            "MIRAGE's JSON-answer outputs, needs --questions)"
        ),
    ] = None,
    map: Annotated[
        str | None,
        typer.Option(
            help="ours=theirs pairs, e.g. question=Question,options=options,gold=answer_idx,"
            "reasoning=Complex_CoT,response=Response (fields: question, options, gold, "
            "reasoning, response, id, subject, finish_reason, teacher, dataset, "
            "json_reasoning, json_answer; without question/options rows are joined to "
            "--questions by id)"
        ),
    ] = None,
    questions: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME[=PATH]: benchmark whose questions rows without question text are "
            "joined to by id, e.g. medmcqa=data/medmcqa/dev.jsonl (a bare name reads "
            "$MEDISTILL_DATA_DIR or the Hub); repeatable, a row's dataset field picks one"
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="FIELD=VALUE: import only rows whose top-level FIELD equals VALUE exactly, "
            "e.g. model=OpenAI/gpt-4-32k; repeatable (same field: any value; different "
            "fields: all); the rest are counted as filtered"
        ),
    ] = None,
    skip_invalid: Annotated[bool, typer.Option(help="skip bad rows, count them")] = False,
) -> None:
    """Import an existing trace dataset (HuatuoGPT-o1, m1K, MIRAGE outputs...) into a store."""
    from medistill.curate import import_traces, parse_mapping

    summary = import_traces(
        file,
        store,
        origin=origin,
        mapping=parse_mapping(map, preset),
        skip_invalid=skip_invalid,
        questions=questions,
        where=where,
    )
    typer.echo(json.dumps(summary, indent=2))


@app.command("curate", context_settings=_PASSTHROUGH, add_help_option=False)
@_user_errors
def curate_cmd(ctx: typer.Context) -> None:
    """Verify, filter, deduplicate and decontaminate traces into a dataset with a data card.

    Usage: medistill curate [STORE] [options]; options: medistill curate --help (or a curate:
    section of a --config recipe).
    """
    from medistill.config import build
    from medistill.curate import CurateConfig, run_curate
    from medistill.options import parse_stage_args

    args = parse_stage_args(
        CurateConfig, ctx.args, section="curate", prog="medistill curate", positional=("store",)
    )
    if "eval_benchmarks" in args.flags:
        args.values["eval_benchmarks"] = _benchmark_names(args.flags["eval_benchmarks"])
    cfg = build(CurateConfig, args.values, where=args.where)
    stats = run_curate(cfg, show_progress=sys.stderr.isatty())
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


@app.command("export")
@_user_errors
def export_cmd(
    store: Annotated[Path, typer.Argument(help="SQLite trace store")],
    out: Annotated[Path, typer.Option(help="output file or folder")],
    format: Annotated[str, typer.Option(help="jsonl | parquet | hf")] = "jsonl",
) -> None:
    """Export a trace store to JSONL, Parquet or a Hugging Face dataset folder."""
    from medistill.store import export_store

    typer.echo(f"wrote {export_store(store, out, format)}")


@app.command("export-model", context_settings=_PASSTHROUGH, add_help_option=False)
@_user_errors
def export_model_cmd(ctx: typer.Context) -> None:
    """A trained model as a standalone folder or a GGUF file (llama.cpp), with a model card.

    Options: medistill export-model --help (or an export_model: section of a --config recipe).
    `medistill export` writes trace stores; this writes models.
    """
    from medistill.config import build
    from medistill.deploy.export import ExportModelConfig, export_model
    from medistill.options import parse_stage_args

    args = parse_stage_args(
        ExportModelConfig, ctx.args, section="export_model", prog="medistill export-model"
    )
    summary = export_model(build(ExportModelConfig, args.values, where=args.where))
    for name, size in summary["files"].items():
        typer.echo(f"{name}: {size / 1e6:.1f} MB")
    typer.echo(f"wrote {summary['out']} (card: README.md)")


@app.command("serve", context_settings=_PASSTHROUGH, add_help_option=False)
@_user_errors
def serve_cmd(ctx: typer.Context) -> None:
    """Serve a model on this machine (llama.cpp for GGUF, vLLM on a GPU) and, with --ui, the
    explain page where a clinician reads the model's reasoning. Bound to 127.0.0.1.

    Options: medistill serve --help (or a serve: section of a --config recipe).
    """
    from medistill.config import build
    from medistill.deploy.serve import ServeConfig, serve
    from medistill.options import parse_stage_args

    args = parse_stage_args(ServeConfig, ctx.args, section="serve", prog="medistill serve")
    serve(build(ServeConfig, args.values, where=args.where), announce=typer.echo)


@app.command("rescore")
@_user_errors
def rescore_cmd(
    input: Annotated[Path, typer.Argument(help="JSONL of saved responses")],
    out: Annotated[Path, typer.Option(help="output JSONL (every input row + extraction)")],
    response_field: Annotated[str, typer.Option(help="field with the response text")] = "response",
    gold_field: Annotated[str, typer.Option(help="field with the gold letter")] = "gold",
    options_field: Annotated[str | None, typer.Option(help="field with the options")] = None,
    benchmark: Annotated[str | None, typer.Option(help="take options from this benchmark")] = None,
    benchmark_path: Annotated[Path | None, typer.Option(help="local file for --benchmark")] = None,
    id_field: Annotated[str, typer.Option(help="row field joined to benchmark ids")] = "id",
    mode: Annotated[str, typer.Option(help="strict | lenient")] = "lenient",
    agree_field: Annotated[str | None, typer.Option(help="compare with a boolean mark")] = None,
    finish_field: Annotated[
        str, typer.Option(help="field whose value 'length' marks a cut-off response")
    ] = "finish_reason",
    label: Annotated[str | None, typer.Option(help="run label in <out>.metrics.json")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="skip bad rows, count them")] = False,
) -> None:
    """Re-extract answers from saved responses; write the rows, a summary and a
    ``<out>.metrics.json`` in eval's schema (``medistill report`` reads it)."""
    from medistill.evaluate.rescore import RescoreConfig, rescore

    summary = rescore(
        RescoreConfig(
            input=str(input),
            out=str(out),
            response_field=response_field,
            gold_field=gold_field,
            options_field=options_field,
            benchmark=benchmark,
            benchmark_path=str(benchmark_path) if benchmark_path else None,
            id_field=id_field,
            mode=mode,
            agree_field=agree_field,
            finish_field=finish_field,
            label=label,
            skip_invalid=skip_invalid,
        )
    )
    typer.echo(json.dumps(summary, indent=2))


@app.command("report")
@_user_errors
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="eval run folders")],
    out: Annotated[Path, typer.Option(help="report folder")] = Path("runs/report"),
    metric: Annotated[str, typer.Option(help="lenient | strict")] = "lenient",
    title: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="curated dataset folder: its data card goes in the HTML")
    ] = None,
) -> None:
    """Build a Markdown table, a bar chart with error bars and a self-contained HTML report."""
    from medistill.report import build_report

    rep = build_report(runs, out, metric=metric, title=title, dataset=dataset)
    typer.echo(rep.markdown)
    typer.echo(f"\nwrote {rep.markdown_path}, {rep.html_path} and {rep.png_path}")


@app.command("run")
@_user_errors
def run_cmd(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML (sections run, generate, ...)")],
    from_stage: Annotated[
        str | None, typer.Option("--from", help="re-run from this stage on")
    ] = None,
    only: Annotated[str | None, typer.Option(help="run this stage alone")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="print the plan (run/skip and why) and run the preflight only: fails when "
            "this machine cannot run the stages planned",
        ),
    ] = False,
    rehearse: Annotated[
        bool,
        typer.Option(
            "--rehearse",
            help="run the recipe on this CPU in minutes: tiny models of the same "
            "architectures, a local stand-in teacher, stand-in files for missing splits, small "
            "sizes, CPU paths for what needs a GPU (each swap is printed); into "
            "<root>/<name>-rehearsal",
        ),
    ] = False,
) -> None:
    """The whole pipeline: generate -> curate -> sft -> grpo -> eval -> report.

    Each stage writes into runs/<name>/<stage>/ with a manifest; an unchanged finished stage
    is skipped, a change re-runs that stage and those after it, a killed run resumes.
    """
    from medistill.pipeline import run_pipeline

    kwargs = {
        "from_stage": from_stage,
        "only": only,
        "dry_run": dry_run,
        "show_progress": sys.stderr.isatty(),
    }
    if rehearse:
        from medistill.pipeline.rehearse import rehearse as rehearse_recipe

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
    if not rehearse and summary.get("preflight"):  # a dry run: the plan, then its problems
        from medistill.preflight import one_line

        raise MedistillError(one_line(summary["preflight"], recipe))
    report = summary.get("report")
    if report and not dry_run and Path(report).is_file():
        typer.echo("\n" + Path(report).read_text(encoding="utf-8"))
        typer.echo(f"report: {report}")


@app.command("preflight")
@_user_errors
def preflight_cmd(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML (sections run, generate, ...)")],
) -> None:
    """Everything the recipe needs that this machine lacks, one line each with its fix:
    DeepSpeed, vLLM, FlashAttention, bitsandbytes, CUDA GPUs, the teacher's key, each split.

    Every stage is checked (``medistill run`` checks the stages it will run, before any).
    """
    from medistill.preflight import recipe_problems

    problems = recipe_problems(recipe)
    for problem in problems:
        typer.echo(f"missing: {problem}")
    if problems:
        raise MedistillError(f"{recipe}: {len(problems)} problem(s); this machine cannot run it")
    typer.echo(f"{recipe}: nothing missing on this machine")


# Training commands parse their own arguments from their config classes (TRL's, with hundreds
# of fields), so ``medistill sft --help`` lists every option and the others stay fast to start.


def _train_command(name: str, module: str, recipe: str, runner: str) -> None:
    """Register ``medistill <name> [--config recipe.yaml] [--field value ...]``."""

    @app.command(name, context_settings=_PASSTHROUGH, add_help_option=False)
    @_user_errors
    def command(ctx: typer.Context) -> None:
        import importlib

        from medistill.options import parse_stage
        from medistill.pipeline.launch import watch_parent

        watch_parent()  # launched by `medistill run`: stop when it is gone
        mod = importlib.import_module(module)
        cfg = parse_stage(getattr(mod, recipe), ctx.args, section=name, prog=f"medistill {name}")
        _preflight(name, cfg)
        manifest = getattr(mod, runner)(cfg)
        shown = {k: manifest.get(k) for k in ("status", "metrics", "data")}
        typer.echo(json.dumps(shown, indent=2, default=str))
        typer.echo(f"wrote {cfg.output_dir} (card: README.md)")

    command.__doc__ = {
        "sft": "Supervised fine-tuning on curated traces (TRL SFTTrainer; LoRA or full).",
        "grpo": "GRPO from the SFT student with medical rewards (TRL GRPOTrainer).",
        "distill": "On-policy distillation from a local open-weight teacher (TRL).",
    }[name] + f" Options: medistill {name} --help."


_train_command("sft", "medistill.train.sft", "SFTRecipe", "run_sft")
_train_command("grpo", "medistill.train.grpo", "GRPORecipe", "run_grpo")
_train_command("distill", "medistill.train.distill", "DistillRecipe", "run_distill")


if __name__ == "__main__":  # pragma: no cover
    app()
