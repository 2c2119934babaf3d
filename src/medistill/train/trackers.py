"""``report_to: all`` made safe for unattended runs: the installed trackers that need no login."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: Trackers that write locally and never ask for a login.
LOCAL_TRACKERS = ("tensorboard", "trackio", "mlflow", "dvclive", "codecarbon")


def _wandb_ready() -> bool:
    """True when W&B can start without a login prompt: a key, offline mode or a netrc entry."""
    from pathlib import Path

    if os.environ.get("WANDB_API_KEY"):
        return True
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8")
    except OSError:
        return False


def headless_trackers() -> list[str] | str:
    """``report_to: all`` as the installed trackers that can run unattended.

    transformers' ``all`` includes every installed integration, so a W&B (or Comet, Neptune...)
    installed but not logged in stops a headless run at its login prompt or first call. Local
    trackers are kept, W&B only with credentials or ``WANDB_MODE=offline``; the others are left
    out (logged) and can be named explicitly in ``report_to``.
    """
    from transformers import integrations

    available = list(integrations.get_available_reporting_integrations())
    kept = [t for t in available if t in LOCAL_TRACKERS or (t == "wandb" and _wandb_ready())]
    left = [t for t in available if t not in kept]
    if left:
        log.info(
            "report_to all: leaving out %s (not logged in, or account-based trackers that could "
            "stop a headless run); name them in report_to to use them",
            ", ".join(left),
        )
    return kept or "none"
