"""The explanation audit of a generate-mode MCQ evaluation, beside accuracy.

Three readings of whether an answer's explanation supports it:

* **consistency** (no judge, every run): does the option the reasoning concludes match the
  answer line? Each prediction row carries ``reasoning_verdict`` and ``concluded``
  (:func:`medistill.answers.reasoning.reasoning_verdict`); the shares are over answered rows;
* **load-bearing reasoning** (no judge; transformers and llamacpp): early answering,
  :mod:`medistill.evaluate.early_answer` (``early_answering.jsonl``);
* **step errors** (optional, ``step_judge``): :mod:`medistill.evaluate.step_judge`
  (``step_errors.jsonl``).

:func:`run_audit` runs the two that need a model after the answers are in (resumable: rows
already in the run folder are kept); :func:`explanations` recomputes the ``explanations``
block of ``metrics.json`` from the run folder's files, so ``write_metrics`` after a resume or a
rescore gives the same figures.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medistill.answers.reasoning import INCONSISTENT, reasoning_verdict
from medistill.data import Question
from medistill.errors import MedistillError
from medistill.evaluate.config import EvalConfig
from medistill.evaluate.early_answer import (
    audited_rows,
    load_bearing,
    run_early_answering,
    skip_reason,
)
from medistill.evaluate.metrics import wilson_interval
from medistill.evaluate.run_folder import RunFolder
from medistill.evaluate.step_judge import judged_rows, run_step_judge, step_errors

log = logging.getLogger(__name__)

#: The ``config.json`` note the audit leaves (why load-bearing was skipped; seconds spent).
NOTE = "audit"
SHARES = ("consistent", "argues_other", "argues_none", "no_conclusion")


def run_audit(cfg: EvalConfig, run: RunFolder, questions: Sequence[Question]) -> None:
    """Early answering (unless :func:`~medistill.evaluate.early_answer.skip_reason` says why
    not, recorded) and, with ``step_judge``, the step judge, over the run's finished rows."""
    started = time.perf_counter()
    rows = [r for r in run.rows([q.id for q in questions]) if r.get("finish_reason") != "error"]
    reason = skip_reason(cfg)
    if reason is None:
        try:
            run_early_answering(cfg, run.path, questions, rows)
        except MedistillError as e:  # e.g. letters that are several tokens: said, not fatal
            reason = str(e)
            log.warning("%s: load-bearing audit skipped: %s", run.path, reason)
    else:
        log.info("%s: load-bearing audit skipped: %s", run.path, reason)
    if cfg.step_judge:
        run_step_judge(cfg, run.path, questions, rows)
    run.note(
        {
            NOTE: {
                "load_bearing_skipped": reason,
                "backend": cfg.backend,
                "seconds": round(time.perf_counter() - started, 2),
            }
        }
    )


def consistency(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Shares of the verdicts over answered rows (rows with an answer line and a verdict),
    and the inconsistent share (another option, or none) with its Wilson interval."""
    answered = [r for r in rows if r.get("reasoning_verdict") not in (None, "no_answer")]
    if not answered:
        return None
    n = len(answered)
    counts = Counter(r["reasoning_verdict"] for r in answered)
    bad = sum(counts[v] for v in INCONSISTENT)
    lo, hi = wilson_interval(bad, n)
    return {
        "n": n,
        **{v: counts[v] / n for v in SHARES},
        "inconsistent": bad / n,
        "inconsistent_ci": [lo, hi],
    }


def with_verdicts(
    rows: Sequence[dict[str, Any]], questions: Sequence[Question] = ()
) -> list[dict[str, Any]]:
    """``rows``, each with its ``reasoning_verdict``: rows written before the audit existed get
    theirs from their response and options (the row's own, else ``questions``')."""
    known = {q.id: q for q in questions}
    out = []
    for r in rows:
        q = known.get(r.get("id"))
        options = r.get("options") or (q.options if q else None)
        if "reasoning_verdict" not in r and r.get("response") is not None and options:
            v = reasoning_verdict(r["response"], options, question=q.question if q else None)
            r = {**r, "reasoning_verdict": v.verdict, "concluded": v.concluded}
        out.append(r)
    return out


def explanations(
    path: str | Path, rows: Sequence[dict[str, Any]], questions: Sequence[Question] = ()
) -> dict[str, Any] | None:
    """The ``explanations`` block of ``metrics.json`` from a run folder's prediction ``rows``
    and its audit files (``None`` for a run whose rows carry no verdicts: log-likelihood)."""
    run = RunFolder(path)
    block = consistency(with_verdicts(rows, questions))
    if block is None:
        return None
    note = run.config_record().get(NOTE) or {}
    out: dict[str, Any] = {"consistency": block}
    audited = audited_rows(run.path, rows)
    lb = load_bearing(audited, note.get("backend") or "unknown")
    out["load_bearing"] = lb
    if lb is None:
        out["load_bearing_skipped"] = (
            note.get("load_bearing_skipped") or "no early-answering rows in this run folder"
        )
    steps = step_errors(judged_rows(run.path, rows))
    if steps is not None:
        out["step_errors"] = steps
    return out
