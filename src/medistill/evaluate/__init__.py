"""Stage 5: evaluate a model on a benchmark -> an eval run folder.

A run folder holds ``config.json`` (what was run), ``predictions.jsonl`` (one row per
question, appended as each answer ends) and ``metrics.json``. Killing a run loses at most
the answers in flight: a rerun with the same configuration skips every finished question,
and a rerun with a different one is refused rather than mixed in.

The run itself is :mod:`.run`; the folder every kind of run writes, :mod:`.run_folder`;
metrics, :mod:`.metrics`; safety runs, :mod:`.safety`; rescoring saved responses,
:mod:`.rescore`.
"""

from __future__ import annotations

from medistill.evaluate.config import EvalCommandOptions, EvalConfig
from medistill.evaluate.run import run_eval, write_metrics
from medistill.evaluate.run_folder import CONFIG, METRICS, PREDICTIONS, PROGRESS, RunFolder

__all__ = [
    "CONFIG",
    "METRICS",
    "PREDICTIONS",
    "PROGRESS",
    "EvalCommandOptions",
    "EvalConfig",
    "RunFolder",
    "run_eval",
    "write_metrics",
]
