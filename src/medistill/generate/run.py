"""``run_generate``: the run's calls minus those already stored, through the teacher, into the
trace store.

The calls go through the one fan-out (:mod:`medistill.backends.fanout`, policy ``"stop"``: one
failed call stops the run, nothing is written for it, and a rerun asks again): concurrently
over HTTP (bounded, paced, retried) or in batches for local models. Each finished call is
committed on arrival (a burst of answers in one commit), so a killed run resumes where it
stopped and no finished call is ever paid for twice.

With ``contrast`` the run also makes the contrast calls (the teacher answering benign open
requests, :func:`~medistill.generate.requests.contrast_requests`) after the questions', through
the same fan-out, store and resume; the summary counts them apart (``contrast``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from medistill.backends import Generation, SamplingParams, fan_out
from medistill.backends.config import TeacherConfig
from medistill.backends.fanout import CommitError, ProgressBar
from medistill.errors import MedistillError
from medistill.generate.config import GenerateConfig
from medistill.generate.requests import Request, contrast_requests, source_requests
from medistill.store import TraceRecord, TraceStore, is_contrast

log = logging.getLogger(__name__)


class _Stats:
    """Live counters for the progress bar and the final summary."""

    def __init__(self, teacher: TeacherConfig) -> None:
        self.teacher = teacher
        self.t0 = time.perf_counter()
        self.calls = self.prompt_tokens = self.completion_tokens = self.truncated = 0
        self.retried_truncated = 0
        self.calls_wall_s = 0.0
        self.contrast_calls = 0
        self.errors: Counter[str] = Counter()

    def add(self, g: Generation, *, contrast: bool = False) -> None:
        self.calls += 1
        self.contrast_calls += contrast
        self.prompt_tokens += g.prompt_tokens or 0
        self.completion_tokens += g.output_tokens or 0
        self.truncated += g.truncated

    @property
    def cost(self) -> float:
        return self.teacher.cost(self.prompt_tokens, self.completion_tokens)

    def line(self, backend_errors: Counter[str] | None = None) -> str:
        """The progress-bar text: rates, cost so far, errors by kind (retried ones included)."""
        dt = max(time.perf_counter() - self.t0, 1e-9)
        errors = self.errors + (backend_errors or Counter())
        errs = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
        return (
            f"{self.calls / dt:.1f} req/s, {self.completion_tokens / dt:.0f} tok/s, "
            f"${self.cost:.4f}, errors: {errs}"
        )


def _record(req: Request, g: Generation, teacher: str, scrub) -> TraceRecord:
    return TraceRecord(
        key=req.key,
        question_id=req.question.id,
        sample_index=req.sample_index,
        teacher=teacher,
        messages=req.messages_json or req.messages,
        params=req.params_dict,
        text=g.text,
        finish_reason=g.finish_reason,
        source=req.question.source,
        question=req.question.question,
        options=req.options,
        gold=req.gold,
        permutation=req.permutation,
        subject=req.question.subject,
        split=req.question.split or None,
        source_file=req.source_file,
        reasoning=g.reasoning,
        prompt_tokens=g.prompt_tokens,
        completion_tokens=g.output_tokens,
        latency_s=g.latency_s,
        endpoint=scrub(g.endpoint) if g.endpoint else None,
        attempts=g.attempts,
    )


def run_generate(cfg: GenerateConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Generate traces into ``cfg.out``; return (and log) the run summary."""
    if cfg.samples < 1:
        raise MedistillError("--samples must be at least 1")
    requests, sources = source_requests(cfg)
    extra, contrast = contrast_requests(cfg)
    requests += extra
    with TraceStore(cfg.out) as store:
        done = store.done_keys()
        pending = [r for r in requests if r.key not in done]
        already = len(requests) - len(pending)
        for info in sources:
            keys = info.pop("_keys")
            info["wanted"], info["already_stored"] = len(keys), len(keys & done)
        if contrast is not None:
            contrast["wanted"] = len(extra)
            contrast["already_stored"] = sum(r.key in done for r in extra)
        stopped = None
        if cfg.max_requests is not None and len(pending) > cfg.max_requests:
            pending, stopped = pending[: cfg.max_requests], "max_requests"
        stats = _Stats(cfg.teacher)
        log.info(
            "%s: %d calls wanted, %d already stored, %d to make",
            cfg.out,
            len(requests),
            already,
            len(pending),
        )
        if pending:
            # Closed on the way out: a local (vLLM) teacher's engine gives its GPU memory
            # back before the next stage starts.
            with cfg.teacher.open() as backend:
                check = getattr(backend, "check_endpoints", None)
                if check is not None:
                    check()  # a wrong URL fails in seconds, not after every retry
                t_calls = time.perf_counter()
                with ProgressBar("generate", show_progress, len(requests), already) as bar:
                    run = _run(backend, pending, store, cfg, stats, bar)
                stopped = run or stopped
                stats.calls_wall_s = time.perf_counter() - t_calls
                stats.errors.update(getattr(backend, "errors", {}))
        totals = store.totals()
        if contrast is not None:
            contrast["new_calls"] = stats.contrast_calls
            contrast["in_store"] = store.count(contrast=True)
    summary = {
        "store": str(cfg.out),
        "teacher": cfg.teacher.model,
        "wanted": len(requests),
        "already_stored": already,
        "new_calls": stats.calls,
        "stopped_by": stopped,
        "truncated_new": stats.truncated,
        "retried_truncated": stats.retried_truncated,
        "errors": dict(stats.errors),
        "prompt_tokens_new": stats.prompt_tokens,
        "completion_tokens_new": stats.completion_tokens,
        "estimated_cost_new": round(stats.cost, 6),
        "estimated_cost_total": round(
            cfg.teacher.cost(totals["prompt_tokens"], totals["completion_tokens"]), 6
        ),
        "wall_s": round(time.perf_counter() - stats.t0, 3),
        "calls_wall_s": round(stats.calls_wall_s, 3),
        "requests_per_s": round(stats.calls / stats.calls_wall_s, 2)
        if stats.calls_wall_s
        else None,
        "store_totals": totals,
        "sources": sources,
        "contrast": contrast,
        "config": {k: v for k, v in asdict(cfg).items() if k != "teacher"},
    }
    log.info("generation summary: %s", {k: v for k, v in summary.items() if k != "config"})
    return summary


def _run(
    backend: Any,
    pending: list[Request],
    store: TraceStore,
    cfg: GenerateConfig,
    stats: _Stats,
    bar: ProgressBar,
) -> str | None:
    """Every pending call through the fan-out, each answer committed as it arrives (answers
    arriving together over HTTP in one commit); ``"max_cost"`` when the cost cap stopped it."""
    buffer: list[TraceRecord] = []
    scrub = getattr(backend, "scrub", None) or (lambda s: s)

    def on_result(i: int, g: Generation) -> None:
        buffer.append(_record(pending[i], g, cfg.teacher.model, scrub))
        stats.add(g, contrast=is_contrast(pending[i].question.source))
        bar.advance(lambda: stats.line(Counter(getattr(backend, "errors", {}))))

    def flush() -> None:
        rows, buffer[:] = buffer[:], []
        store.put_many(rows)

    def retry(req: Request, g: Generation) -> SamplingParams | None:
        if not (g.truncated and cfg.retry_truncated):
            return None
        stats.retried_truncated += 1
        return SamplingParams(
            **{**req.params_dict, "max_new_tokens": 2 * req.params.max_new_tokens}
        )

    def spent() -> bool:
        return cfg.max_cost is not None and stats.cost >= cfg.max_cost

    try:
        return fan_out(
            backend, pending, on_result, policy="stop", concurrency=cfg.teacher.concurrency,
            spent=spent, flush=flush, retry=retry, label=f"teacher {cfg.teacher.model}",
        )  # fmt: skip
    except CommitError as e:
        raise MedistillError(
            f"{cfg.out}: could not write to the trace store ({e.__cause__ or e})"
        ) from None


__all__ = ["run_generate"]
