"""The eval run folder on disk: ``config.json`` (what was run), ``predictions.jsonl`` (one row
per question, appended as each answer ends), ``progress.json`` (wall time) and
``metrics.json``. Reading tolerates a torn last line; writing is durable and atomic."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medistill.errors import DataError, MedistillError
from medistill.evaluate.config import IDENTITY_KEYS, EvalConfig
from medistill.evaluate.metrics import compute_metrics, validate_metrics

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"
METRICS = "metrics.json"
PROGRESS = "progress.json"


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    """Read finished rows; a torn last line (killed mid-write) is dropped and cut off.

    A question asked again (an error row retried by a rerun) keeps its last row only.
    """
    if not path.exists():
        return []
    rows = []
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    good_bytes = 0
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            good_bytes += len(raw) + 1
            continue
        try:
            rows.append(json.loads(raw))
        except json.JSONDecodeError:
            if i == len(lines) or all(not x.strip() for x in lines[i:]):
                log.warning("%s: dropping a torn last line (interrupted write)", path)
                with open(path, "r+b") as fh:
                    fh.truncate(good_bytes)
                break
            raise DataError("malformed JSON in a finished run", path=str(path), line=i) from None
        good_bytes += len(raw) + 1
    last = {r.get("id"): i for i, r in enumerate(rows)}
    return [r for i, r in enumerate(rows) if last[r.get("id")] == i]


def changed_settings(cfg: EvalConfig, out: Path) -> list[str]:
    """The identity keys in which the run stored in ``out`` differs from ``cfg`` (empty when
    there is none, or it is the same run): what a resume refuses."""
    cfg_path = out / CONFIG
    if not cfg_path.exists():
        return []
    try:
        stored = json.loads(cfg_path.read_text(encoding="utf-8")).get("identity", {})
    except (OSError, json.JSONDecodeError):
        return [f"{CONFIG} unreadable"]
    ident = cfg.identity()
    return [k for k in IDENTITY_KEYS if (stored.get(k) or None) != (ident.get(k) or None)]


def _prepare_run(cfg: EvalConfig, out: Path, *, overwrite: bool) -> list[dict[str, Any]]:
    """Create or reopen the run folder; return the rows already finished."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / CONFIG
    ident = cfg.identity()
    if overwrite:
        for name in (PREDICTIONS, METRICS, PROGRESS):
            (out / name).unlink(missing_ok=True)
    else:
        diff = changed_settings(cfg, out)
        if diff:
            raise MedistillError(
                f"{out} holds a run with different settings ({', '.join(diff)}); use another "
                f"--out, or --overwrite to start again"
            )
    record = {"identity": ident, "label": cfg.run_label(), "config": asdict(cfg)}
    tmp = cfg_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, cfg_path)
    return _read_predictions(out / PREDICTIONS)


def _config_record(out: Path) -> dict[str, Any]:
    """The run's ``config.json`` (empty when absent or unreadable)."""
    try:
        return json.loads((out / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _note_in_config(out: Path, extra: dict[str, Any]) -> None:
    """Add facts learned during the run (fields a server refused) to ``config.json``."""
    path = out / CONFIG
    record = json.loads(path.read_text(encoding="utf-8"))
    record.update(extra)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)


class _RowWriter:
    """Appends finished rows durably and keeps ``progress.json``'s wall time up to date.

    Rows are flushed at once and synced to disk at most every ``sync_s`` seconds (and at
    the end), so streaming one row per answer costs no more than a batch did.
    """

    def __init__(self, fh, progress: dict, progress_path: Path, sync_s: float = 1.0) -> None:
        self.fh, self.progress, self.progress_path = fh, progress, progress_path
        self.sync_s = sync_s
        self.base_wall = progress.get("wall_s", 0.0)
        self.started = time.perf_counter()
        self.last_sync = 0.0
        self.dirty = False

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Append rows; sync if the last sync is older than ``sync_s``."""
        self.fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        self.fh.flush()
        self.dirty = True
        if time.perf_counter() - self.last_sync >= self.sync_s:
            self.close()

    def close(self) -> None:
        """Sync the rows written so far and record the wall time spent on them."""
        if not self.dirty:
            return
        os.fsync(self.fh.fileno())
        now = time.perf_counter()
        self.last_sync, self.dirty = now, False
        self.progress["wall_s"] = self.base_wall + (now - self.started)
        tmp = self.progress_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.progress), encoding="utf-8")
        os.replace(tmp, self.progress_path)


def write_metrics(
    out: str | Path,
    *,
    label: str,
    model: str,
    benchmark: str,
    mode: str,
    chance: float | None,
    wanted_ids: list[str] | None = None,
) -> dict:
    """Recompute ``metrics.json`` from ``predictions.jsonl`` (also used after a resume)."""
    out = Path(out)
    rows = _read_predictions(out / PREDICTIONS)
    if wanted_ids is not None:
        wanted = set(wanted_ids)
        rows = [r for r in rows if r["id"] in wanted]
    progress_path = out / PROGRESS
    wall = None
    if progress_path.exists():
        wall = json.loads(progress_path.read_text()).get("wall_s") or None
    from medistill.evaluate.sampling import per_question_intervals
    from medistill.evaluate.variants import aggregate

    sampling = _config_record(out).get("sampling_used")
    vote = (sampling or {}).get("vote")
    # one row per question (and order) when asked several times; every sample's, vote mean
    rows, variants = aggregate(rows, vote=vote)
    metrics = compute_metrics(rows, chance=chance, wall_s=wall)
    if variants:
        metrics["variants"] = variants
        spread = (variants.get("vote") or {}).get("samples_accuracy")
        if spread:
            metrics["samples_accuracy"] = spread
        if vote == "mean" and "vote" in variants:
            per_question_intervals(metrics, rows)
    if sampling:  # what decoding was used, and where each value came from
        metrics["sampling"] = sampling
    controlled = [r for r in rows if "forced_answer" in r]
    if controlled:  # budget control (thinking_budget, min_thinking_tokens)
        n = len(controlled)
        metrics["budget"] = {
            "forced_answer_share": sum(bool(r["forced_answer"]) for r in controlled) / n,
            "waited_share": sum(bool(r.get("waits")) for r in controlled) / n,
            "waits": sum(int(r.get("waits") or 0) for r in controlled),
        }
    metrics.update({"label": label, "model": model, "benchmark": benchmark, "mode": mode})
    if mode == "loglik":
        metrics["truncation_rate"] = 0.0
    if metrics["n"]:  # the file report reads: written to the one schema it checks
        validate_metrics(metrics, out / METRICS)
    tmp = out / (METRICS + ".tmp")
    tmp.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    os.replace(tmp, out / METRICS)
    return metrics
