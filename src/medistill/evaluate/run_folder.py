"""The eval run folder, one object for every kind of run (MCQ, option orders and samples,
safety, log-likelihood): :class:`RunFolder`.

On disk: ``config.json`` (what was run), ``predictions.jsonl`` (one row per question,
appended as each answer ends), ``progress.json`` (wall time) and ``metrics.json``. Reading
tolerates a torn last line; writing is durable and atomic. A run's life:

* :meth:`RunFolder.prepare` creates or reopens the folder (a rerun with other settings is
  refused, ``overwrite`` starts again) and reads the rows already finished;
* :meth:`RunFolder.pending` leaves out what is finished (an error row is asked again);
* :meth:`RunFolder.sending` opens the backend (endpoints checked first), the predictions
  file, the progress bar and the row writer, and closes them all;
* :meth:`RunFolder.rows`, :meth:`RunFolder.wall_s` and :meth:`RunFolder.save_metrics` give
  the metrics their rows and write ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medistill.backends import FINISH_ERROR, Generation, SamplingParams, generate_each
from medistill.backends.config import close_backend
from medistill.backends.fanout import ProgressBar
from medistill.errors import DataError, MedistillError
from medistill.evaluate.config import IDENTITY_KEYS, EvalConfig
from medistill.evaluate.metrics import validate_metrics

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"
METRICS = "metrics.json"
PROGRESS = "progress.json"


def read_predictions(path: Path) -> list[dict[str, Any]]:
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


def make_backend(cfg: EvalConfig) -> Any:
    """The backend for the model under evaluation, built from its
    :class:`~medistill.backends.config.BackendConfig` like a teacher's (one code path).
    The caller closes it (:func:`~medistill.backends.config.close_backend`)."""
    return cfg.backend_config().build(**cfg.backend_options())


def _write_json(path: Path, record: Any, indent: int | None = 2) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=indent), encoding="utf-8")
    os.replace(tmp, path)


class RowWriter:
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
        _write_json(self.progress_path, self.progress, indent=None)


def errors_text(errors: Mapping[str, int] | None) -> str:
    """The retried errors (rate limits, server errors) shown beside an eval's progress bar."""
    if not errors:
        return ""
    return "errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))


#: ``row(i, prompt, generation, control)``: the prediction row of answer ``i``
RowOf = Callable[[int, Any, Generation, Any], dict[str, Any]]


@dataclass
class Sending:
    """An open run: its backend, row writer and progress bar (:meth:`RunFolder.sending`)."""

    backend: Any
    writer: RowWriter
    bar: ProgressBar

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Append finished rows and move the bar by as many (retried errors shown)."""
        self.writer.add(rows)
        self.bar.advance(lambda: errors_text(getattr(self.backend, "errors", None)), len(rows))

    def generate(
        self,
        msgs: list[Any],
        params: SamplingParams,
        row: RowOf,
        each: Callable[..., None] = generate_each,
    ) -> None:
        """Ask every conversation of ``msgs`` and append ``row(i, prompt, generation,
        control)`` as each answer ends; ``prompt`` is the conversation as the backend renders
        it, when it does. ``each`` sends them: :func:`generate_each` (the backends' fan-out
        under policy ``"error_row"``: a prompt the server rejects becomes an error row, asked
        again by a rerun), or the thinking-budget loop."""
        render = getattr(self.backend, "render", None)

        def on_result(i: int, g: Generation, control: dict[str, Any] | None = None) -> None:
            self.add([row(i, render(msgs[i]) if render else msgs[i], g, control)])

        each(self.backend, msgs, params, on_result)


class RunFolder:
    """One eval run folder (see the module docstring). ``RunFolder(path)`` reads one;
    :meth:`prepare` creates or reopens it for a run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: list[dict[str, Any]] = []  # the rows finished before this run

    @classmethod
    def prepare(cls, cfg: EvalConfig, *, overwrite: bool) -> RunFolder:
        """Create or reopen ``cfg``'s run folder; :attr:`done` holds the rows finished."""
        run = cls(cfg.out_dir())
        run.path.mkdir(parents=True, exist_ok=True)
        ident = cfg.identity()
        if overwrite:
            for name in (PREDICTIONS, METRICS, PROGRESS):
                (run.path / name).unlink(missing_ok=True)
        else:
            diff = changed_settings(cfg, run.path)
            if diff:
                raise MedistillError(
                    f"{run.path} holds a run with different settings ({', '.join(diff)}); use "
                    f"another --out, or --overwrite to start again"
                )
        record = {"identity": ident, "label": cfg.run_label(), "config": asdict(cfg)}
        _write_json(run.path / CONFIG, record)
        run.done = read_predictions(run.path / PREDICTIONS)
        return run

    def pending(self, items: list[Any]) -> list[Any]:
        """The ``items`` (anything with an ``id``) not finished yet. An error row (the server
        refused that one question) is asked again."""
        done_ids = {r["id"] for r in self.done if r.get("finish_reason") != FINISH_ERROR}
        return [x for x in items if x.id not in done_ids]

    def config_record(self) -> dict[str, Any]:
        """The run's ``config.json`` (empty when absent or unreadable)."""
        try:
            return json.loads((self.path / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def note(self, extra: dict[str, Any]) -> None:
        """Add facts learned during the run (fields a server refused) to ``config.json``."""
        path = self.path / CONFIG
        record = json.loads(path.read_text(encoding="utf-8"))
        record.update(extra)
        _write_json(path, record)

    def progress(self) -> dict[str, Any]:
        """``progress.json`` of the finished rows (a fresh one when none is finished)."""
        path = self.path / PROGRESS
        if path.exists() and self.done:
            return json.loads(path.read_text())
        return {"wall_s": 0.0}

    @contextmanager
    def sending(
        self, cfg: EvalConfig, *, total: int, pending: int, show_progress: bool
    ) -> Iterator[Sending]:
        """The run's backend (its endpoints checked first: a wrong URL fails in seconds, not
        after every retry), the predictions file open for appending, the progress bar (``total``
        items, ``pending`` of them still to run) and the row writer. After a run that ends
        normally the request fields a server dropped are noted in ``config.json``; everything
        is always closed (a vLLM engine gives its GPU memory back here)."""
        backend = make_backend(cfg)
        try:
            check = getattr(backend, "check_endpoints", None)
            if check is not None:
                check()
            with (
                open(self.path / PREDICTIONS, "a", encoding="utf-8") as fh,
                ProgressBar(
                    f"eval {cfg.run_label()}", show_progress, total, total - pending, elapsed=True
                ) as bar,
            ):
                writer = RowWriter(fh, self.progress(), self.path / PROGRESS)
                try:
                    yield Sending(backend, writer, bar)
                finally:
                    writer.close()
            dropped = getattr(backend, "dropped_fields", None)
            if dropped:
                self.note({"request_fields_dropped": dropped})
        finally:
            close_backend(backend)

    def rows(self, wanted_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """The finished rows (of ``wanted_ids`` only, when given)."""
        rows = read_predictions(self.path / PREDICTIONS)
        if wanted_ids is not None:
            wanted = set(wanted_ids)
            rows = [r for r in rows if r["id"] in wanted]
        return rows

    def wall_s(self) -> float | None:
        """The wall time spent on the finished rows (``None`` when unknown)."""
        path = self.path / PROGRESS
        if not path.exists():
            return None
        return json.loads(path.read_text()).get("wall_s") or None

    def save_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write ``metrics.json`` (checked against the one schema report reads); return it."""
        if metrics["n"]:
            validate_metrics(metrics, self.path / METRICS)
        tmp = self.path / (METRICS + ".tmp")
        tmp.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        os.replace(tmp, self.path / METRICS)
        return metrics
