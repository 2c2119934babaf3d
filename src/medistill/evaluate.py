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
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from medistill.answers import extract_answer
from medistill.backends import BACKENDS, FINISH_ERROR, Generation, SamplingParams, generate_each
from medistill.data import Question, get_spec, load_benchmark
from medistill.errors import DataError, MedistillError
from medistill.metrics import compute_metrics, validate_metrics
from medistill.prompts import get_template, loglik_requests

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
    "request",
)

#: Last path components that say nothing about which model it is: the default label adds
#: the folder above (``sft/checkpoint-500``, ``grpo/final``).
_GENERIC_NAMES = re.compile(r"^(checkpoint-\d+|final|merged|model|best|last|output|latest)$")


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
    extra_body: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'extra JSON fields for every request (openai), e.g. {"top_k": 1}'},
    )
    neutral_penalties: bool = field(
        default=True,
        metadata={
            "help": "openai: send frequency/presence penalty 0 and repetition_penalty / "
            "repeat_penalty 1.0, so server defaults (llama.cpp: 1.1) do not alter decoding"
        },
    )
    stop_loops: bool = field(
        default=True,
        metadata={"help": "transformers: end a degenerate repetition loop early"},
    )
    loglik_preset: Literal["lm-eval", "medistill"] = field(
        default="lm-eval",
        metadata={
            "help": "loglik prompt: lm-eval (lm-evaluation-harness 0.4.13 task prompts, no "
            "added BOS unless the tokenizer adds one) or medistill (template, BOS first)"
        },
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
        """The display name: ``label``, else one that tells runs apart.

        The model's name (a checkpoint folder with its parent: ``sft/checkpoint-500``),
        followed by the backend when it is not transformers: the same model served over
        HTTP and run locally gives two labels, hence two rows of a report.
        """
        if self.label:
            return self.label
        from medistill.models import SMOLLM2_ALIASES, SMOLLM2_NAME

        if self.model.strip().lower() in SMOLLM2_ALIASES:
            name = SMOLLM2_NAME
        else:
            path = Path(self.model.rstrip("/"))
            name = path.name or self.model
            if _GENERIC_NAMES.match(name) and path.parent.name:
                name = f"{path.parent.name}/{name}"
        return name if self.backend == "transformers" else f"{name} ({self.backend})"

    def out_dir(self) -> Path:
        """The run folder."""
        if self.out:
            return Path(self.out)
        slug = re.sub(r"[^\w.+-]+", "-", self.run_label()).strip("-") or "model"
        return Path("runs") / "eval" / f"{slug}-{self.benchmark}-{self.mode}"

    def request(self) -> dict[str, Any]:
        """What each model call is asked to do, beyond the prompt: recorded in the run's
        ``config.json`` (``request``) and part of its identity.

        HTTP: every body field but the messages, exactly as sent. Local generation: what
        adds to ``sampling`` (the loop stop). Log-likelihood: the prompt preset.
        """
        if self.mode == "loglik":
            return {"loglik_preset": self.loglik_preset}
        if self.backend == "openai":
            from medistill.backends.openai_http import OpenAIBackend

            probe = OpenAIBackend(
                self.model, extra_body=self.extra_body, neutral_penalties=self.neutral_penalties
            )
            return probe.request_fields(self.sampling())
        if self.backend == "transformers":  # besides ``sampling``
            return {"stop_loops": self.stop_loops}
        return {}

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
            "request": self.request(),
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
    # An error row (the server refused that one question) is asked again on a rerun.
    done_ids = {r["id"] for r in done if r.get("finish_reason") != FINISH_ERROR}
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
        check = getattr(backend, "check_endpoints", None)
        if check is not None:
            check()  # a wrong URL fails in seconds, not after every retry
        tpl = get_template(cfg.template)
        with (
            open(out / PREDICTIONS, "a", encoding="utf-8") as fh,
            _progress(
                show_progress, len(questions), len(questions) - len(pending), cfg.run_label()
            ) as bar,
        ):
            writer = _RowWriter(fh, progress, progress_path)
            if cfg.mode == "loglik":
                # Questions of similar length share a forward pass: less padding.
                pending.sort(key=lambda q: len(q.question) + sum(map(len, q.options.values())))
                step = 4 * backend.preferred_batch_size()
                for i in range(0, len(pending), step):
                    chunk = pending[i : i + step]
                    writer.add(_loglik_rows(backend, tpl, chunk, cfg))
                    bar.advance(len(chunk))
            else:
                # Similar prompt lengths batch together: less padding, same results.
                pending.sort(key=lambda q: len(tpl.user_message(q)))
                msgs = [tpl.messages(q) for q in pending]
                render = getattr(backend, "render", None)

                def on_result(i: int, g: Generation) -> None:
                    q = pending[i]
                    writer.add([_generation_row(q, render(msgs[i]) if render else msgs[i], g)])
                    bar.advance(1, errors=getattr(backend, "errors", None))

                try:
                    generate_each(backend, msgs, cfg.sampling(), on_result)
                finally:
                    writer.close()
            writer.close()
        dropped = getattr(backend, "dropped_fields", None)
        if dropped:
            _note_in_config(out, {"request_fields_dropped": dropped})
    return write_metrics(
        out,
        label=cfg.run_label(),
        model=cfg.model,
        benchmark=cfg.benchmark,
        mode=cfg.mode,
        chance=spec.chance,
        wanted_ids=[q.id for q in questions],
    )


def _generation_row(q: Question, prompt: Any, g: Generation) -> dict[str, Any]:
    """One prediction row: the prompt, the response, the extracted letters and the cost."""
    if g.finish_reason == FINISH_ERROR:
        scored = {"extracted": None, "rule": "error", "extracted_strict": None}
        scored.update(correct=None, correct_strict=None, error=g.error)
    else:
        scored = _score_row(q, g.full_text(), g.finish_reason != "stop")
    return {
        **_base_row(q),
        "prompt": prompt,
        "response": g.full_text(),
        **scored,
        "finish_reason": g.finish_reason,
        "output_tokens": g.output_tokens,
        "prompt_tokens": g.prompt_tokens,
        "latency_s": g.latency_s,
        "endpoint": g.endpoint,
    }


def _note_in_config(out: Path, extra: dict[str, Any]) -> None:
    """Add facts learned during the run (fields a server refused) to ``config.json``."""
    path = out / CONFIG
    record = json.loads(path.read_text(encoding="utf-8"))
    record.update(extra)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)


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
        extra_body=cfg.extra_body,
    ).build(**_backend_options(cfg))


def _backend_options(cfg: EvalConfig) -> dict[str, Any]:
    """The eval-only options of the backend under test."""
    if cfg.backend == "openai":
        return {"neutral_penalties": cfg.neutral_penalties}
    if cfg.backend == "transformers":
        return {"stop_loops": cfg.stop_loops}
    return {}


def _base_row(q: Question) -> dict[str, Any]:
    return {"id": q.id, "subject": q.subject, "gold": q.gold}


def _loglik_rows(backend, tpl, chunk: list[Question], cfg: EvalConfig) -> list[dict[str, Any]]:
    requests = loglik_requests(chunk, cfg.loglik_preset, benchmark=cfg.benchmark, template=tpl)
    contexts = [r.context for r in requests]
    scores = backend.score_choices(requests)
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


class _progress:
    """A rich progress bar (or nothing), used as ``with _progress(...) as bar``; the bar's
    text shows the retried errors (rate limits, server errors) as they happen."""

    def __init__(self, enabled: bool, total: int, completed: int, label: str, console=None) -> None:
        self.enabled, self.total, self.completed, self.label = enabled, total, completed, label
        self.console = console
        self._bar = None
        self._task = None

    def __enter__(self):
        if self.enabled:
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
                TextColumn("{task.fields[errors]}"),
                transient=False,
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                f"eval {self.label}", total=self.total, completed=self.completed, errors=""
            )
        return self

    def advance(self, n: int, errors=None) -> None:
        """Move the bar by ``n`` answers; ``errors`` (kind -> count) is shown beside it."""
        if self._bar is None:
            return
        text = ""
        if errors:
            text = "errors: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
        self._bar.update(self._task, advance=n, errors=text)

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
