"""Safety evaluation, both ways: does a model refuse harmful medical requests, and does it
answer benign ones? -> an eval run folder.

``medistill eval --benchmark medsafetybench`` (or ``safety_sample``, ``xstest``,
``benign_clinical``) sends each request as the only user turn, with no system prompt of
medistill's (a chat template that adds its own default system prompt, as SmolLM2's does, adds
it here too: that is the model as deployed), with the run's backend and sampling. The run
folder is an MCQ run's: ``config.json``, ``predictions.jsonl`` (one row per request, appended as
each answer ends; a killed run resumes) and ``metrics.json`` (``kind: safety``).

Each request says what a safe model does with it (``expect``, stored in its row): ``refuse``
a harmful one (MedSafetyBench, ``safety_sample``, XSTest's unsafe contrast prompts) or
``answer`` a benign one (``benign_clinical``, XSTest's safe prompts). The benign sets measure
over-refusal: a model that refuses everything is not safe, only useless. ``loader_kwargs``
``label: safe|unsafe`` keeps one side of XSTest.

Each answer is scored two ways:

* without a judge, by :func:`medistill.answers.refusal.is_refusal` (refused / complied,
  and the phrase family that decided it), in every row;
* with a judge (``judge_model`` at any OpenAI-compatible endpoint,
  :mod:`medistill.evaluate.safety_judge`): a 1-5 harmfulness score per answer to a harmful
  request against ``safety_policy.md``, cached in ``judge.sqlite``; failed judgements are
  counted and left out. Answers to benign requests are not judged (the scale measures
  compliance with a harmful request).

Metrics (:func:`medistill.evaluate.safety_metrics.compute_safety_metrics`): the refusal rate of
harmful requests and the over-refusal rate of benign ones, each with its 95% Wilson interval,
overall, per category and per source, and their combination ``safe_both_ways`` where a run has
both; where judged, mean harmfulness and the share scored >= 4, with ``judge_failed``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medistill.answers.refusal import refusal_family
from medistill.backends import FINISH_ERROR, Generation
from medistill.data.safety import SafetyRequest, load_safety
from medistill.errors import MedistillError
from medistill.evaluate.config import EvalConfig
from medistill.evaluate.run_folder import RunFolder
from medistill.evaluate.safety_judge import CACHE_FILE, SafetyJudge, policy_hash
from medistill.evaluate.safety_metrics import compute_safety_metrics

log = logging.getLogger(__name__)

#: The ``loader_kwargs`` a safety benchmark takes (:func:`medistill.data.safety.load_safety`).
LOADER_KEYS = ("split", "sources", "label")


def load_requests(cfg: EvalConfig) -> list[SafetyRequest]:
    """The requests of the run: the benchmark, its ``per_category`` slice, then ``limit``."""
    bad = sorted(set(cfg.loader_kwargs) - set(LOADER_KEYS))
    if bad:
        raise MedistillError(
            f"{cfg.benchmark}: loader_kwargs {bad} not understood; a safety benchmark takes "
            f"{', '.join(LOADER_KEYS)}"
        )
    kwargs = dict(cfg.loader_kwargs)
    if "sources" in kwargs:
        kwargs["sources"] = tuple(kwargs["sources"])
    reqs = load_safety(cfg.benchmark, path=cfg.path, per_category=cfg.per_category, **kwargs)
    return reqs[: cfg.limit] if cfg.limit is not None else reqs


def messages(req: SafetyRequest) -> list[dict[str, str]]:
    """The conversation a model is asked: the request as the one user turn."""
    return [{"role": "user", "content": req.request}]


def _row(req: SafetyRequest, prompt: Any, g: Generation) -> dict[str, Any]:
    text = g.full_text()
    error = g.finish_reason == FINISH_ERROR
    family = None if error else refusal_family(text)
    return {
        "id": req.id,
        "category": req.category,
        "source": req.source,
        "expect": req.expect,
        "prompt": prompt,
        "response": text,
        "refused": None if error else family is not None,
        "refusal_family": family,
        "finish_reason": g.finish_reason,
        "output_tokens": g.output_tokens,
        "prompt_tokens": g.prompt_tokens,
        "latency_s": g.latency_s,
        "endpoint": g.endpoint,
        **({"error": g.error} if error else {}),
    }


def run_safety_eval(cfg: EvalConfig, *, overwrite: bool = False, show_progress: bool = True):
    """Evaluate ``cfg.model`` on the safety benchmark ``cfg.benchmark``; write the run folder.

    Returns the metrics dict (also written to ``metrics.json``).
    """
    if cfg.mode != "generate":
        raise MedistillError(
            f"{cfg.benchmark}: a safety benchmark is open-ended: use mode generate"
        )
    requests = load_requests(cfg)
    run = RunFolder.prepare(cfg, overwrite=overwrite)
    pending = run.pending(requests)
    log.info("%s: %d requests, %d to run", run.path, len(requests), len(pending))
    if pending:
        with run.sending(
            cfg, total=len(requests), pending=len(pending), show_progress=show_progress
        ) as sending:
            pending.sort(key=lambda q: len(q.request))  # similar lengths batch together
            sending.generate(
                [messages(q) for q in pending],
                cfg.sampling(),
                lambda i, prompt, g, _control: _row(pending[i], prompt, g),
            )
    scores = judge_run(cfg, run.path, requests) if cfg.judge_model else None
    return write_safety_metrics(
        run.path,
        label=cfg.run_label(),
        model=cfg.model,
        benchmark=cfg.benchmark,
        wanted_ids=[q.id for q in requests],
        expects={q.id: q.expect for q in requests},
        scores=scores,
        judge=_judge_info(cfg) if cfg.judge_model else None,
    )


def _judge_info(cfg: EvalConfig) -> dict[str, Any]:
    return {"model": cfg.judge_model, "policy_sha": policy_hash(), "base_url": cfg.judge_base_url}


def judge_run(cfg: EvalConfig, out: Path, requests: list[SafetyRequest]) -> dict[str, int | None]:
    """Judge every answered row of a harmful request (the cached ones from
    ``judge.sqlite``): id -> harmfulness 1-5, or ``None`` where the judgement failed. Answers
    to benign requests are not judged."""
    by_id = {q.id: q for q in requests if q.expect == "refuse"}
    rows = [
        r
        for r in RunFolder(out).rows()
        if r["id"] in by_id and r.get("finish_reason") != FINISH_ERROR
    ]
    judge = SafetyJudge(
        cfg.judge_model or "",
        base_url=cfg.judge_base_url,
        api_key_env=cfg.judge_api_key_env,
        cache_path=out / CACHE_FILE,
        **cfg.judge_options,
    )
    try:
        pairs = [(by_id[r["id"]].request, r.get("response") or "") for r in rows]
        scores = judge.score(pairs)
    finally:
        judge.close()
    failed = sum(s is None for s in scores)
    if failed:
        log.warning(
            "safety judge %s: %d of %d judgements failed (counted, not scored; a rerun "
            "asks them again)",
            cfg.judge_model,
            failed,
            len(scores),
        )
    return {r["id"]: s for r, s in zip(rows, scores, strict=True)}


def write_safety_metrics(
    out: str | Path,
    *,
    label: str,
    model: str,
    benchmark: str,
    wanted_ids: list[str] | None = None,
    expects: dict[str, str] | None = None,
    scores: dict[str, int | None] | None = None,
    judge: dict[str, Any] | None = None,
) -> dict:
    """Recompute ``metrics.json`` from ``predictions.jsonl`` (and the judge's scores).

    ``expects`` (request id -> ``refuse`` | ``answer``) fills the ``expect`` of rows written
    without one; a row with neither is a harmful request."""
    run = RunFolder(out)
    rows = run.rows(wanted_ids)
    for r in rows:
        if "expect" not in r and expects and r["id"] in expects:
            r["expect"] = expects[r["id"]]
    for r in rows:  # the detector as it is now, so a resumed run is scored one way
        if r.get("finish_reason") != FINISH_ERROR:
            r["refusal_family"] = refusal_family(r.get("response") or "")
            r["refused"] = r["refusal_family"] is not None
    metrics = compute_safety_metrics(rows, scores, wall_s=run.wall_s())
    metrics.update({"label": label, "model": model, "benchmark": benchmark, "mode": "generate"})
    metrics["judge"] = judge
    return run.save_metrics(metrics)
