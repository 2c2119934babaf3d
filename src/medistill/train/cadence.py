"""Checkpoint cadence against the run's real step count.

``save_steps`` counts optimizer steps. Packing (on with FlashAttention) folds several traces
into each row, so a recipe's epoch-based run can have far fewer steps than its author assumed:
the 8B SFT has ~70-140, and ``save_steps: 200`` then never checkpoints before the end (a
preemption restarts hours of work from step 0). The real count is known only when the trainer
starts; there an integer ``save_steps`` at or past it is flagged, with the fix (a ratio such as
``0.1``: transformers reads ``save_steps`` in (0, 1) as a share of the total steps). The setting
itself is never changed.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)


def cadence_problem(stage: str, save_steps: float, total_steps: int) -> str | None:
    """Why ``save_steps`` writes no checkpoint before a run of ``total_steps`` ends (``None``
    when it does, or when it is a ratio of the steps)."""
    if save_steps < 1 or total_steps <= 0 or save_steps < total_steps:
        return None
    return (
        f"{stage}.save_steps: {save_steps:g} but this run has {total_steps} optimizer steps: no "
        f"checkpoint is written before the end, so an interrupted run restarts from step 0; set "
        f"{stage}.save_steps below {total_steps}, or a ratio such as 0.1 (every 10% of the steps)"
    )


class CheckpointCadence(TrainerCallback):
    """Flags, when training starts, a ``save_steps`` that never checkpoints this run."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Compare ``args.save_steps`` with ``state.max_steps`` (the trainer's real count)."""
        strategy = getattr(args, "save_strategy", "steps")
        if str(getattr(strategy, "value", strategy)) != "steps" or not args.save_steps:
            return
        problem = cadence_problem(self.stage, float(args.save_steps), int(state.max_steps or 0))
        if problem:
            log.warning("%s", problem)
