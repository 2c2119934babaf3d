"""Is the reasoning load-bearing? Early answering (Lanham et al. 2023, arXiv 2307.13702).

For each answered question of a generate-mode run, the model is given its own reasoning cut at
0%, 25%, 50%, 75% and 100% of its tokens (:data:`FRACTIONS`; the reasoning is the response up
to its final answer statement, :func:`medistill.answers.reasoning.split_reasoning`), then the
template's answer cue (:func:`medistill.evaluate.budget.answer_cue`: ``The answer is``), and
the option letters' next-token log-probabilities are read. The prompt and the reasoning go
through the model once; each cut reuses the cached keys and values up to it and computes only
the cue (the backend's ``score_branches``), so five cuts cost about one pass over the answer.
An answer whose letter is already the final one with no reasoning at all (0%) did not need its
reasoning: the share of those is ``fixed_before_reasoning``; the curve of the final letter's
probability over the cuts shows where the answer settles.

Rows go to ``early_answering.jsonl`` in the run folder as each batch ends, keyed by question
and by a hash of the response, so a killed run resumes where it stopped and a rerun that
changed an answer recomputes that one only. Backends without letter log-probabilities (openai,
vllm) are skipped with the reason recorded (``load_bearing_skipped``), never silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medistill.answers.reasoning import split_reasoning
from medistill.backends.config import close_backend
from medistill.data import Question
from medistill.errors import MedistillError
from medistill.evaluate.budget import answer_cue
from medistill.evaluate.config import EvalConfig
from medistill.evaluate.metrics import wilson_interval
from medistill.evaluate.run_folder import make_backend, read_predictions
from medistill.prompts import get_template

log = logging.getLogger(__name__)

FILE = "early_answering.jsonl"
FRACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Backends whose ``score_choices`` reads the letters' log-probabilities.
SCORING_BACKENDS = ("transformers", "llamacpp")


def response_hash(row: dict[str, Any]) -> str:
    """A short hash of a prediction row's prompt and response: an audit row belongs to this
    answer to this prompt only (a rerun that changed either recomputes it)."""
    blob = json.dumps([row.get("prompt"), row.get("response") or ""], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def skip_reason(cfg: EvalConfig) -> str | None:
    """Why this run gets no load-bearing audit (``None``: it gets one)."""
    if not cfg.audit:
        return "audit is off (audit: false)"
    if cfg.variants():
        return "option orders / samples: the audit reads runs that ask each question once"
    if cfg.budget():
        return "thinking budget: the answer was forced, so cutting its reasoning means little"
    if cfg.backend not in SCORING_BACKENDS:
        return (
            f"backend {cfg.backend} gives no option-letter log-probabilities here "
            f"(the audit needs {' or '.join(SCORING_BACKENDS)})"
        )
    return None


def letter_tokens(backend: Any, letters: Sequence[str]) -> dict[str, int]:
    """The token of each option letter as it follows the answer cue (``" B"``)."""
    out = {}
    for letter in letters:
        ids = backend.token_ids(f" {letter}")
        if len(ids) != 1:
            raise MedistillError(
                f"early answering: the letter {letter!r} is {len(ids)} tokens for this model's "
                "tokenizer; set audit: false"
            )
        out[letter] = ids[0]
    return out


def branches(
    backend: Any, tpl: Any, q: Question, reasoning: str
) -> tuple[list[int], list[tuple[int, list[int]]], int]:
    """The early-answering contexts of one answer as token ids: the trunk (the rendered prompt,
    then the reasoning), and per fraction of the reasoning's tokens a branch ``(cut, cue)``:
    the trunk cut after the prompt and that many reasoning tokens, then the answer cue
    (:func:`~medistill.evaluate.budget.answer_cue`, which closes a think block left open).
    Also returns the reasoning's token count."""
    render = getattr(backend, "chat_prompt", None) or backend.render  # llama.cpp, transformers
    prompt = backend.token_ids(render(tpl.messages(q)))
    ids = backend.token_ids(reasoning)
    n = len(ids)
    out = []
    for f in FRACTIONS:
        k = round(f * n)
        cue = answer_cue(backend.token_text(ids[:k]) if k else "").rstrip()
        out.append((len(prompt) + k, backend.token_ids(cue)))
    return prompt + ids, out, n


def _row(q: Question, pred: dict, final: str, n_tokens: int, scores: list[dict]) -> dict:
    probs, argmax = [], []
    for lp in scores:
        top = max(lp.values())
        norm = sum(math.exp(v - top) for v in lp.values())
        probs.append(round(math.exp(lp[final] - top) / norm, 6))
        argmax.append(max(lp, key=lp.__getitem__))
    return {
        "id": q.id,
        "response_sha": response_hash(pred),
        "final": final,
        "n_tokens": n_tokens,
        "fractions": list(FRACTIONS),
        "prob_final": probs,
        "argmax": argmax,
        "logprobs": [{k: round(v, 4) for k, v in lp.items()} for lp in scores],
    }


def audited_rows(path: Path, predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The early-answering rows of ``path`` (a run folder) that belong to the current
    ``predictions`` (same question, same response)."""
    wanted = {r["id"]: response_hash(r) for r in predictions if r.get("response")}
    return [
        r for r in read_predictions(path / FILE) if wanted.get(r.get("id")) == r.get("response_sha")
    ]


def run_early_answering(
    cfg: EvalConfig, path: Path, questions: Sequence[Question], predictions: Sequence[dict]
) -> int:
    """Score the early answers of up to ``cfg.audit_limit`` answered questions not scored
    yet, appending to ``path / FILE``; returns how many were scored now. The caller checks
    :func:`skip_reason` first. Builds its own backend (the run's is closed by then, so the
    run's wall time and throughput stay the generation's own)."""
    by_id = {q.id: q for q in questions}
    answered = [
        r
        for r in predictions
        if r.get("id") in by_id and r.get("extracted_strict") and r.get("response")
    ]
    answered = answered[: cfg.audit_limit] if cfg.audit_limit is not None else answered
    done = {r["id"] for r in audited_rows(path, answered)}
    todo = [r for r in answered if r["id"] not in done]
    if not todo:
        return 0
    log.info("%s: early answering on %d answers (%d done)", path, len(todo), len(done))
    tpl = get_template(cfg.template)
    backend = make_backend(cfg)
    try:
        with open(path / FILE, "a", encoding="utf-8") as fh:
            for r in todo:
                q = by_id[r["id"]]
                reasoning, final = split_reasoning(r["response"], q.options, question=q.question)
                if final is None:  # read differently now (the extractor changed): not scored
                    continue
                trunk, cuts, n = branches(backend, tpl, q, reasoning)
                scores = backend.score_branches(trunk, cuts, letter_tokens(backend, q.options))
                fh.write(json.dumps(_row(q, r, final, n, scores)) + "\n")
                fh.flush()
    finally:
        close_backend(backend)
    return len(todo)


def load_bearing(rows: Sequence[dict[str, Any]], backend: str) -> dict[str, Any] | None:
    """The ``load_bearing`` block of ``metrics.json`` from early-answering rows (``None``
    when there are none)."""
    if not rows:
        return None
    n = len(rows)
    k = len(FRACTIONS)
    match = [sum(r["argmax"][i] == r["final"] for r in rows) / n for i in range(k)]
    mean = [statistics.fmean(r["prob_final"][i] for r in rows) for i in range(k)]
    fixed = sum(r["argmax"][0] == r["final"] for r in rows)
    lo, hi = wilson_interval(fixed, n)
    return {
        "n": n,
        "fractions": list(FRACTIONS),
        "match_final": [round(x, 4) for x in match],
        "mean_prob_final": [round(x, 4) for x in mean],
        "fixed_before_reasoning": fixed / n,
        "fixed_ci": [lo, hi],
        "backend": backend,
    }
