"""Stage 5: evaluate a model on a benchmark -> an eval run folder.

A run folder holds ``config.json`` (what was run), ``predictions.jsonl`` (one row per
question, appended as each batch finishes) and ``metrics.json``. Killing a run loses at most
the batch in flight: a rerun with the same configuration skips every finished question, and
a rerun with a different one is refused rather than mixed in.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from medistill.answers import extract_answer
from medistill.backends import BACKENDS, SamplingParams
from medistill.data import Question, get_spec, load_benchmark
from medistill.errors import DataError, MedistillError
from medistill.metrics import compute_metrics, validate_metrics
from medistill.prompts import get_template

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"
METRICS = "metrics.json"
PROGRESS = "progress.json"

# Changing any of these changes the answers: a resumed run must match them.
_IDENTITY_KEYS = (
    "model",
    "benchmark",
    "path",
    "mode",
    "template",
    "sampling",
    "backend",
    "loader_kwargs",
)


@dataclass
class EvalConfig:
    """Everything that defines an eval run: ``medistill eval``'s options, a recipe's ``eval:``."""

    model: str = field(metadata={"help": "hub id, local folder, or 'smollm2' (packaged)"})
    benchmark: str = field(default="sample", metadata={"help": "registered benchmark name"})
    path: str | None = field(default=None, metadata={"help": "local benchmark file/folder"})
    out: str | None = field(
        default=None, metadata={"help": "run folder; none: runs/eval/<label>-<benchmark>-<mode>"}
    )
    label: str | None = field(default=None, metadata={"help": "model name shown in reports"})
    backend: str = field(default="transformers", metadata={"help": "transformers|openai|vllm"})
    mode: Literal["generate", "loglik"] = field(
        default="generate", metadata={"help": "generate + extract, or option-letter loglik"}
    )
    limit: int | None = field(default=None, metadata={"help": "first N questions only"})
    batch_size: int = field(default=8, metadata={"help": "generation batch size (local)"})
    max_new_tokens: int = field(default=2048, metadata={"help": "token budget per answer"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: top-p mass"})
    seed: int | None = field(default=0, metadata={"help": "sampling seed"})
    template: str = field(default="cot", metadata={"help": "prompt template name or YAML"})
    base_url: list[str] = field(
        default_factory=lambda: ["http://127.0.0.1:8000/v1"],
        metadata={"help": "OpenAI-compatible endpoint(s) for backend openai (balanced)"},
    )
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "env var with key"})
    concurrency: int = field(default=32, metadata={"help": "HTTP requests in flight"})
    skip_invalid: bool = field(
        default=False, metadata={"help": "skip bad benchmark rows (counted) instead of failing"}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow model code from the hub"}
    )
    loader_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'benchmark loader options as a mapping, e.g. {"cop_base": 1}'},
    )

    def sampling(self) -> SamplingParams:
        """The decoding parameters of this run."""
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )

    def run_label(self) -> str:
        """The display name: ``label`` or the model's last path component."""
        if self.label:
            return self.label
        from medistill.models import SMOLLM2_ALIASES, SMOLLM2_NAME

        if self.model.strip().lower() in SMOLLM2_ALIASES:
            return SMOLLM2_NAME
        return Path(self.model.rstrip("/")).name or self.model

    def out_dir(self) -> Path:
        """The run folder."""
        if self.out:
            return Path(self.out)
        return Path("runs") / "eval" / f"{self.run_label()}-{self.benchmark}-{self.mode}"

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the stored one."""
        tpl = get_template(self.template)
        ident = {
            "model": self.model,
            "benchmark": self.benchmark,
            "path": str(Path(self.path).resolve()) if self.path else None,
            "mode": self.mode,
            "template": tpl.to_dict(),
            "sampling": self.sampling().to_dict() if self.mode == "generate" else None,
            "backend": self.backend,
            "loader_kwargs": self.loader_kwargs,
        }
        return ident


@dataclass
class EvalCommandOptions:
    """Options of one ``medistill eval`` call that are not recipe keys."""

    overwrite: bool = field(
        default=False, metadata={"help": "discard a previous run in the run folder"}
    )
    cop_base: int | None = field(
        default=None,
        metadata={"help": "MedMCQA: 0- or 1-based cop (sets loader_kwargs cop_base)"},
    )


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    """Read finished rows; a torn last line (killed mid-write) is dropped and cut off."""
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
    return rows


def _prepare_run(cfg: EvalConfig, out: Path, *, overwrite: bool) -> list[dict[str, Any]]:
    """Create or reopen the run folder; return the rows already finished."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / CONFIG
    ident = cfg.identity()
    if overwrite:
        for name in (PREDICTIONS, METRICS, PROGRESS):
            (out / name).unlink(missing_ok=True)
    elif cfg_path.exists():
        stored = json.loads(cfg_path.read_text(encoding="utf-8")).get("identity", {})
        diff = [k for k in _IDENTITY_KEYS if (stored.get(k) or None) != (ident.get(k) or None)]
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


def _score_row(q: Question, response: str, truncated: bool) -> dict[str, Any]:
    lenient = extract_answer(response, q.options, mode="lenient", truncated=truncated)
    strict = extract_answer(response, q.options, mode="strict", truncated=truncated)
    return {
        "extracted": lenient.letter,
        "rule": lenient.rule,
        "extracted_strict": strict.letter,
        "correct": (lenient.letter == q.gold) if q.gold else None,
        "correct_strict": (strict.letter == q.gold) if q.gold else None,
    }


def run_eval(cfg: EvalConfig, *, overwrite: bool = False, show_progress: bool = True) -> dict:
    """Evaluate ``cfg.model`` on ``cfg.benchmark`` and write the run folder.

    Returns the metrics dict (also written to ``metrics.json``).
    """
    if cfg.backend not in BACKENDS:
        raise MedistillError(
            f"unknown backend {cfg.backend!r}; choose one of: {', '.join(BACKENDS)}"
        )
    if cfg.mode not in ("generate", "loglik"):
        raise MedistillError(f"unknown mode {cfg.mode!r}; choose generate or loglik")
    if cfg.mode == "loglik" and cfg.backend != "transformers":
        raise MedistillError("log-likelihood scoring needs the transformers backend")
    spec = get_spec(cfg.benchmark)
    data = load_benchmark(
        cfg.benchmark, cfg.path, skip_invalid=cfg.skip_invalid, limit=cfg.limit, **cfg.loader_kwargs
    )
    questions = data.questions
    out = cfg.out_dir()
    done = _prepare_run(cfg, out, overwrite=overwrite)
    done_ids = {r["id"] for r in done}
    pending = [q for q in questions if q.id not in done_ids]
    progress_path = out / PROGRESS
    progress = (
        json.loads(progress_path.read_text())
        if progress_path.exists() and done
        else {"wall_s": 0.0}
    )
    log.info(
        "%s: %d questions, %d already done, %d to run",
        out,
        len(questions),
        len(questions) - len(pending),
        len(pending),
    )
    if pending:
        backend = _make(cfg)
        tpl = get_template(cfg.template)
        with (
            open(out / PREDICTIONS, "a", encoding="utf-8") as fh,
            _progress(
                show_progress, len(questions), len(questions) - len(pending), cfg.run_label()
            ) as advance,
        ):
            if cfg.mode == "loglik":
                step = backend.preferred_batch_size()
                for i in range(0, len(pending), step):
                    chunk = pending[i : i + step]
                    t0 = time.perf_counter()
                    rows = _loglik_rows(backend, tpl, chunk)
                    _append(fh, rows, progress, progress_path, time.perf_counter() - t0)
                    advance(len(chunk))
            else:
                # Similar prompt lengths batch together: less padding, same results.
                pending.sort(key=lambda q: len(tpl.user_message(q)))
                step = backend.preferred_batch_size()
                params = cfg.sampling()
                for i in range(0, len(pending), step):
                    chunk = pending[i : i + step]
                    t0 = time.perf_counter()
                    msgs = [tpl.messages(q) for q in chunk]
                    gens = backend.generate(msgs, params)
                    rows = []
                    for q, m, g in zip(chunk, msgs, gens, strict=True):
                        response = g.full_text()
                        rows.append(
                            {
                                **_base_row(q),
                                "prompt": backend.render(m) if hasattr(backend, "render") else m,
                                "response": response,
                                **_score_row(q, response, g.truncated),
                                "finish_reason": g.finish_reason,
                                "output_tokens": g.output_tokens,
                                "prompt_tokens": g.prompt_tokens,
                                "latency_s": g.latency_s,
                                "endpoint": g.endpoint,
                            }
                        )
                    _append(fh, rows, progress, progress_path, time.perf_counter() - t0)
                    advance(len(chunk))
    return write_metrics(
        out,
        label=cfg.run_label(),
        model=cfg.model,
        benchmark=cfg.benchmark,
        mode=cfg.mode,
        chance=spec.chance,
        wanted_ids=[q.id for q in questions],
    )


def _make(cfg: EvalConfig):
    """The backend for the model under evaluation (built like a teacher's: one code path)."""
    from medistill.teacher import TeacherConfig

    return TeacherConfig(
        model=cfg.model,
        backend=cfg.backend,
        base_url=cfg.base_url,
        api_key_env=cfg.api_key_env,
        concurrency=cfg.concurrency,
        batch_size=cfg.batch_size,
        trust_remote_code=cfg.trust_remote_code,
    ).build()


def _base_row(q: Question) -> dict[str, Any]:
    return {"id": q.id, "subject": q.subject, "gold": q.gold}


def _loglik_rows(backend, tpl, chunk: list[Question]) -> list[dict[str, Any]]:
    contexts = [tpl.loglik_context(q) for q in chunk]
    scores = backend.letter_logprobs(contexts, [q.letters for q in chunk])
    rows = []
    for q, ctx, lp in zip(chunk, contexts, scores, strict=True):
        best = max(lp, key=lp.__getitem__)
        rows.append(
            {
                **_base_row(q),
                "prompt": ctx,
                "logprobs": lp,
                "extracted": best,
                "extracted_strict": best,
                "rule": "loglik",
                "correct": (best == q.gold) if q.gold else None,
                "correct_strict": (best == q.gold) if q.gold else None,
            }
        )
    return rows


def _append(fh, rows, progress: dict, progress_path: Path, wall: float) -> None:
    """Append finished rows durably, then record the wall time they took."""
    fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    fh.flush()
    os.fsync(fh.fileno())
    progress["wall_s"] = progress.get("wall_s", 0.0) + wall
    tmp = progress_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress), encoding="utf-8")
    os.replace(tmp, progress_path)


class _progress:
    """A rich progress bar (or nothing), used as ``with _progress(...) as advance``."""

    def __init__(self, enabled: bool, total: int, completed: int, label: str) -> None:
        self.enabled, self.total, self.completed, self.label = enabled, total, completed, label
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.__enter__()
        task = self._bar.add_task(f"eval {self.label}", total=self.total, completed=self.completed)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False


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
    metrics = compute_metrics(rows, chance=chance, wall_s=wall)
    metrics.update({"label": label, "model": model, "benchmark": benchmark, "mode": mode})
    if mode == "loglik":
        metrics["truncation_rate"] = 0.0
    if metrics["n"]:  # the file report reads: written to the one schema it checks
        validate_metrics(metrics, out / METRICS)
    tmp = out / (METRICS + ".tmp")
    tmp.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    os.replace(tmp, out / METRICS)
    return metrics
