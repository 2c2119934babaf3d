"""Stage 5: evaluate a model on a benchmark -> an eval run folder.

A run folder holds ``config.json`` (what was run), ``predictions.jsonl`` (one row per
question, appended as each answer ends) and ``metrics.json``. Killing a run loses at most
the answers in flight: a rerun with the same configuration skips every finished question,
and a rerun with a different one is refused rather than mixed in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medistill.answers import extract_answer
from medistill.answers.published import published_reading
from medistill.backends import BACKENDS, FINISH_ERROR, Generation, generate_each
from medistill.backends.config import close_backend
from medistill.backends.loops import mark_loop
from medistill.data import Question, get_spec, load_benchmark
from medistill.errors import MedistillError
from medistill.evaluate.config import EvalCommandOptions, EvalConfig
from medistill.evaluate.run_folder import (
    CONFIG,
    METRICS,
    PREDICTIONS,
    PROGRESS,
    _note_in_config,
    _prepare_run,
    _RowWriter,
    write_metrics,
)
from medistill.prompts import get_template, loglik_requests

log = logging.getLogger(__name__)

__all__ = [
    "CONFIG",
    "METRICS",
    "PREDICTIONS",
    "PROGRESS",
    "EvalCommandOptions",
    "EvalConfig",
    "run_eval",
    "write_metrics",
]


def _score_row(q: Question, response: str, truncated: bool) -> dict[str, Any]:
    lenient = extract_answer(response, q.options, mode="lenient", truncated=truncated)
    strict = extract_answer(response, q.options, mode="strict", truncated=truncated)
    return {
        "extracted": lenient.letter,
        "rule": lenient.rule,
        "extracted_strict": strict.letter,
        "correct": (lenient.letter == q.gold) if q.gold else None,
        "correct_strict": (strict.letter == q.gold) if q.gold else None,
        # the published tables' rule, reported beside ours as an upper bound
        "correct_published": published_reading(response, q.options, q.gold).correct
        if q.gold
        else None,
    }


def run_eval(cfg: EvalConfig, *, overwrite: bool = False, show_progress: bool = True) -> dict:
    """Evaluate ``cfg.model`` on ``cfg.benchmark`` and write the run folder.

    A safety benchmark (``medsafetybench``, ``safety_sample``) goes to
    :func:`medistill.evaluate.safety.run_safety_eval` (metrics ``kind: safety``). Returns the
    metrics dict (also written to ``metrics.json``).
    """
    if cfg.backend not in BACKENDS:
        raise MedistillError(
            f"unknown backend {cfg.backend!r}; choose one of: {', '.join(BACKENDS)}"
        )
    if cfg.mode not in ("generate", "loglik"):
        raise MedistillError(f"unknown mode {cfg.mode!r}; choose generate or loglik")
    if cfg.mode == "loglik" and cfg.backend != "transformers":
        raise MedistillError("log-likelihood scoring needs the transformers backend")
    from medistill.data.safety import SAFETY_BENCHMARKS
    from medistill.evaluate.sampling import resolve

    cfg, sampling_used = resolve(cfg)  # the recipe's sampling, else the model's, else greedy
    if cfg.mode == "generate":
        log.info("%s: sampling %s", cfg.run_label(), sampling_used)
    if cfg.benchmark in SAFETY_BENCHMARKS:  # open-ended harmful requests, not MCQs
        from medistill.evaluate.safety import run_safety_eval

        return run_safety_eval(cfg, overwrite=overwrite, show_progress=show_progress)
    cfg.check_variants()
    from medistill.evaluate.budget import check as check_budget

    check_budget(cfg.backend, cfg.thinking_budget, cfg.min_thinking_tokens, cfg.max_new_tokens)
    if cfg.budget() and cfg.variants():
        raise MedistillError(
            "thinking_budget / min_thinking_tokens with permute_options or samples: not yet "
            "(a model sampled by its generation_config.json gets sampled_samples: set "
            "samples: 1 for one budgeted answer per question)"
        )
    spec = get_spec(cfg.benchmark)
    data = load_benchmark(
        cfg.benchmark, cfg.path, skip_invalid=cfg.skip_invalid, limit=cfg.limit, **cfg.loader_kwargs
    )
    questions = data.questions
    out = cfg.out_dir()
    done = _prepare_run(cfg, out, overwrite=overwrite)
    if cfg.mode == "generate":
        _note_in_config(out, {"sampling_used": sampling_used})
    # An error row (the server refused that one question) is asked again on a rerun.
    done_ids = {r["id"] for r in done if r.get("finish_reason") != FINISH_ERROR}
    if cfg.variants():
        return _run_variants(cfg, spec, questions, out, done_ids, show_progress)
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
        with _backend_for(cfg, out) as backend:
            tpl = get_template(cfg.template)
            with (
                open(out / PREDICTIONS, "a", encoding="utf-8") as fh,
                _progress(
                    show_progress, len(questions), len(questions) - len(pending), cfg.run_label()
                ) as bar,
            ):
                writer = _RowWriter(fh, progress, progress_path)
                try:
                    if cfg.mode == "loglik":
                        # Questions of similar length share a forward pass: less padding.
                        pending.sort(
                            key=lambda q: len(q.question) + sum(map(len, q.options.values()))
                        )
                        step = 4 * backend.preferred_batch_size()
                        for i in range(0, len(pending), step):
                            chunk = pending[i : i + step]
                            writer.add(_loglik_rows(backend, tpl, chunk, cfg))
                            bar.advance(len(chunk))
                    else:
                        # Similar prompt lengths batch together: less padding, same results.
                        pending.sort(key=lambda q: len(tpl.user_message(q)))
                        _generate_rows(backend, cfg, tpl, pending, cfg.sampling(), writer, bar)
                finally:
                    writer.close()
    return write_metrics(
        out,
        label=cfg.run_label(),
        model=cfg.model,
        benchmark=cfg.benchmark,
        mode=cfg.mode,
        chance=spec.chance,
        wanted_ids=[q.id for q in questions],
    )


def _run_variants(cfg, spec, questions, out, done_ids, show_progress) -> dict:
    """Each question asked in several option orders and/or samples (:mod:`.variants`)."""
    from dataclasses import replace

    from medistill.evaluate.variants import expand

    variants = expand(questions, orders=cfg.permute_options, samples=cfg.samples, seed=cfg.seed)
    pending = [v for v in variants if v.id not in done_ids]
    progress_path = out / PROGRESS
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {"wall_s": 0.0}
    log.info("%s: %d variants, %d to run", out, len(variants), len(pending))
    if pending:
        with _backend_for(cfg, out) as backend:
            tpl = get_template(cfg.template)
            with (
                open(out / PREDICTIONS, "a", encoding="utf-8") as fh,
                _progress(
                    show_progress, len(variants), len(variants) - len(pending), cfg.run_label()
                ) as bar,
            ):
                writer = _RowWriter(fh, progress, progress_path)
                try:
                    for k in range(cfg.samples):  # one seed per sample: the samples differ
                        batch = [v for v in pending if v.sample == k]
                        if not batch:
                            continue

                        def ids(i: int, batch=batch) -> dict[str, Any]:
                            v = batch[i]
                            return dict(
                                id=v.id,
                                base_id=v.base.id,
                                shift=v.shift,
                                sample=v.sample,
                                options=v.shown.options,
                            )

                        params = replace(cfg.sampling(), seed=(cfg.seed or 0) + k)
                        shown = [v.shown for v in batch]
                        _generate_rows(backend, cfg, tpl, shown, params, writer, bar, extra=ids)
                finally:
                    writer.close()
    return write_metrics(
        out,
        label=cfg.run_label(),
        model=cfg.model,
        benchmark=cfg.benchmark,
        mode=cfg.mode,
        chance=spec.chance,
        wanted_ids=[v.id for v in variants],
    )


@contextmanager
def _backend_for(cfg: EvalConfig, out: Path) -> Iterator[Any]:
    """The run's backend, its endpoints checked first (a wrong URL fails in seconds, not
    after every retry). After a run that ends normally the request fields a server dropped
    are noted in ``config.json``; the backend is always closed (a vLLM engine gives its GPU
    memory back here)."""
    backend = _make(cfg)
    try:
        check = getattr(backend, "check_endpoints", None)
        if check is not None:
            check()
        yield backend
        dropped = getattr(backend, "dropped_fields", None)
        if dropped:
            _note_in_config(out, {"request_fields_dropped": dropped})
    finally:
        close_backend(backend)


def _generate_rows(
    backend: Any,
    cfg: EvalConfig,
    tpl: Any,
    questions: list[Question],
    params: Any,
    writer: _RowWriter,
    bar: Any,
    extra: Callable[[int], dict[str, Any]] | None = None,
) -> None:
    """Ask ``questions`` (under the thinking budget / minimum when the config sets one) and
    append each answer's prediction row (plus ``extra(i)``'s fields) as it finishes: one loop
    for plain, permuted and sampled runs, so they check, record and close alike."""
    msgs = [tpl.messages(q) for q in questions]
    render = getattr(backend, "render", None)

    def add(i: int, g: Generation, control: dict[str, Any] | None = None) -> None:
        g = mark_loop(g)  # a loop that ran to the budget is flagged alike on every backend
        row = _generation_row(questions[i], render(msgs[i]) if render else msgs[i], g)
        writer.add([{**row, **(control or {}), **(extra(i) if extra else {})}])
        bar.advance(1, errors=getattr(backend, "errors", None))

    if cfg.budget():
        from medistill.evaluate.budget import generate_budgeted

        generate_budgeted(
            backend,
            msgs,
            params,
            add,
            budget=cfg.thinking_budget,
            minimum=cfg.min_thinking_tokens,
        )
    else:
        generate_each(backend, msgs, params, add)


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


def _make(cfg: EvalConfig):
    """The backend for the model under evaluation, built from its
    :class:`~medistill.backends.config.BackendConfig` like a teacher's (one code path).
    The caller closes it (:func:`~medistill.backends.config.close_backend`)."""
    return cfg.backend_config().build(**cfg.backend_options())


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
