"""Stage 5: evaluate a model on a benchmark -> an eval run folder (:mod:`.run_folder`).

An MCQ run asks every question (generation, scored by the shared extractor, or the option
letters' log-likelihood); a run with option orders or samples asks each question as several
variants (:mod:`.variants`); a safety benchmark goes to :mod:`.safety`. Killing a run loses at
most the answers in flight: a rerun with the same configuration skips every finished question,
and a rerun with a different one is refused rather than mixed in.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from medistill.answers import extract_answer
from medistill.answers.published import published_reading
from medistill.answers.reasoning import reasoning_verdict
from medistill.backends import (
    BACKENDS,
    FINISH_ERROR,
    Generation,
    SamplingParams,
    generate_each,
)
from medistill.backends.loops import mark_loop
from medistill.data import Question, get_spec, load_benchmark
from medistill.data.safety import SAFETY_BENCHMARKS
from medistill.errors import MedistillError
from medistill.evaluate.audit import explanations, run_audit
from medistill.evaluate.budget import check as check_budget
from medistill.evaluate.budget import generate_budgeted
from medistill.evaluate.config import EvalConfig
from medistill.evaluate.metrics import compute_metrics
from medistill.evaluate.run_folder import RunFolder, Sending
from medistill.evaluate.safety import run_safety_eval
from medistill.evaluate.sampling import per_question_intervals, resolve
from medistill.evaluate.variants import aggregate, expand
from medistill.prompts import get_template, loglik_requests

log = logging.getLogger(__name__)


def score_row(q: Question, response: str, truncated: bool) -> dict[str, Any]:
    """The letters extracted from ``response`` (lenient and strict) and whether each is right."""
    ask = {"truncated": truncated, "question": q.question}  # as curation and rewards read
    lenient = extract_answer(response, q.options, mode="lenient", **ask)
    strict = extract_answer(response, q.options, mode="strict", **ask)
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
    cfg, sampling_used = resolve(cfg)  # the recipe's sampling, else the model's, else greedy
    if cfg.mode == "generate":
        log.info("%s: sampling %s", cfg.run_label(), sampling_used)
    if cfg.benchmark in SAFETY_BENCHMARKS:  # open-ended harmful requests, not MCQs
        return run_safety_eval(cfg, overwrite=overwrite, show_progress=show_progress)
    cfg.check_variants()
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
    run = RunFolder.prepare(cfg, overwrite=overwrite)
    if cfg.mode == "generate":
        run.note({"sampling_used": sampling_used})
    if cfg.variants():
        wanted = _run_variants(cfg, run, questions, show_progress)
    else:
        _run_questions(cfg, run, questions, show_progress)
        wanted = [q.id for q in questions]
    if cfg.mode == "generate":  # the explanation audit, after the answers (its own backend)
        run_audit(cfg, run, questions)
    return write_metrics(
        run.path,
        label=cfg.run_label(),
        model=cfg.model,
        benchmark=cfg.benchmark,
        mode=cfg.mode,
        # your own file: the mean of 1/options over its questions (2 to 10 options each)
        chance=(
            sum(1 / len(q.options) for q in questions) / len(questions)
            if spec.needs_path
            else spec.chance
        ),
        wanted_ids=wanted,
        questions=questions,
    )


def _run_questions(
    cfg: EvalConfig, run: RunFolder, questions: list[Question], show_progress: bool
) -> None:
    """Each question asked once: generated and extracted, or scored by log-likelihood."""
    pending = run.pending(questions)
    log.info(
        "%s: %d questions, %d already done, %d to run",
        run.path,
        len(questions),
        len(questions) - len(pending),
        len(pending),
    )
    if not pending:
        return
    with run.sending(
        cfg, total=len(questions), pending=len(pending), show_progress=show_progress
    ) as sending:
        tpl = get_template(cfg.template)
        if cfg.mode == "loglik":
            # Questions of similar length share a forward pass: less padding.
            pending.sort(key=lambda q: len(q.question) + sum(map(len, q.options.values())))
            step = 4 * sending.backend.preferred_batch_size()
            for i in range(0, len(pending), step):
                sending.add(_loglik_rows(sending.backend, tpl, pending[i : i + step], cfg))
        else:
            # Similar prompt lengths batch together: less padding, same results.
            pending.sort(key=lambda q: len(tpl.user_message(q)))
            _generate_rows(sending, cfg, tpl, pending, cfg.sampling())


def _run_variants(
    cfg: EvalConfig, run: RunFolder, questions: list[Question], show_progress: bool
) -> list[str]:
    """Each question asked in several option orders and/or samples (:mod:`.variants`);
    returns the ids of every variant."""
    variants = expand(questions, orders=cfg.permute_options, samples=cfg.samples, seed=cfg.seed)
    pending = run.pending(variants)
    log.info("%s: %d variants, %d to run", run.path, len(variants), len(pending))
    if pending:
        with run.sending(
            cfg, total=len(variants), pending=len(pending), show_progress=show_progress
        ) as sending:
            tpl = get_template(cfg.template)
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
                _generate_rows(sending, cfg, tpl, shown, params, extra=ids)
    return [v.id for v in variants]


def _generate_rows(
    sending: Sending,
    cfg: EvalConfig,
    tpl: Any,
    questions: list[Question],
    params: SamplingParams,
    extra: Callable[[int], dict[str, Any]] | None = None,
) -> None:
    """Ask ``questions`` (under the thinking budget / minimum when the config sets one) and
    append each answer's prediction row (plus ``extra(i)``'s fields) as it finishes: one loop
    for plain, permuted and sampled runs, so they check, record and close alike."""

    def row(i: int, prompt: Any, g: Generation, control: dict[str, Any] | None) -> dict:
        g = mark_loop(g)  # a loop that ran to the budget is flagged alike on every backend
        return {
            **generation_row(questions[i], prompt, g),
            **(control or {}),
            **(extra(i) if extra else {}),
        }

    each = generate_each
    if cfg.budget():
        each = functools.partial(
            generate_budgeted, budget=cfg.thinking_budget, minimum=cfg.min_thinking_tokens
        )
    sending.generate([tpl.messages(q) for q in questions], params, row, each=each)


def generation_row(q: Question, prompt: Any, g: Generation) -> dict[str, Any]:
    """One prediction row: the prompt, the response, the extracted letters and the cost."""
    if g.finish_reason == FINISH_ERROR:
        scored = {"extracted": None, "rule": "error", "extracted_strict": None}
        scored.update(correct=None, correct_strict=None, error=g.error)
    else:
        scored = score_row(q, g.full_text(), g.finish_reason != "stop")
        # the explanation audit's consistency: does the reasoning argue for the answer line?
        verdict = reasoning_verdict(g.full_text(), q.options, question=q.question)
        scored.update(reasoning_verdict=verdict.verdict, concluded=verdict.concluded)
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


def write_metrics(
    out: str | Path,
    *,
    label: str,
    model: str,
    benchmark: str,
    mode: str,
    chance: float | None,
    wanted_ids: list[str] | None = None,
    questions: list[Question] | None = None,
) -> dict:
    """Recompute an MCQ run's ``metrics.json`` from ``predictions.jsonl`` (also used after a
    resume; ``questions`` give the options of rows written before the explanation audit)."""
    run = RunFolder(out)
    rows = run.rows(wanted_ids)
    sampling = run.config_record().get("sampling_used")
    vote = (sampling or {}).get("vote")
    # one row per question (and order) when asked several times; every sample's, vote mean
    rows, variants = aggregate(rows, vote=vote)
    metrics = compute_metrics(rows, chance=chance, wall_s=run.wall_s())
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
    else:  # consistency, load-bearing, step errors (:mod:`.audit`), from the rows and files
        metrics["explanations"] = explanations(out, run.rows(wanted_ids), questions or ())
    return run.save_metrics(metrics)
