"""The ``medistill`` application: global options, one-line user errors, the commands' table.

User errors (:class:`MedistillError`) print one line and exit with status 2; no traceback. Every
command reads its options from its config class (:mod:`medistill.flags`), so typer passes a
command's arguments through untouched and ``medistill <command> --help`` is argparse's.
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from medistill.cli import stages, tools
from medistill.errors import MedistillError

app = typer.Typer(
    name="medistill",
    help="Distil medical reasoning from a teacher LLM into a small student model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("medistill")


def user_errors(fn):
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
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        force=True,
    )
    for noisy in ("httpx", "httpcore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: Every command, in ``medistill --help`` order: its name and its function.
COMMANDS = {
    "inspect": tools.inspect_cmd,
    "eval": stages.eval_cmd,
    "generate": stages.generate_cmd,
    "rubrics": stages.rubrics_cmd,
    "import-traces": tools.import_traces_cmd,
    "curate": stages.curate_cmd,
    "export": tools.export_cmd,
    "export-model": stages.export_model_cmd,
    "serve": stages.serve_cmd,
    "rescore": tools.rescore_cmd,
    "report": tools.report_cmd,
    "run": tools.run_cmd,
    "preflight": tools.preflight_cmd,
    **{name: stages.training_command(name) for name in stages.TRAINING},
}

# The arguments pass through typer untouched, --help included, to the command's own parser.
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

for _name, _fn in COMMANDS.items():
    app.command(_name, context_settings=PASSTHROUGH, add_help_option=False)(user_errors(_fn))
