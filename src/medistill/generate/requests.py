"""The teacher calls a ``generate`` run wants: one per (question, sample index), keyed for the
trace store, read from every source in order; with ``contrast``, one per (open request, sample
index) too (:func:`contrast_requests`)."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from medistill.backends import SamplingParams
from medistill.data import Question, load_benchmark, sample_questions
from medistill.data.options import permute
from medistill.data.safety import load_safety
from medistill.errors import MedistillError
from medistill.generate.config import CONTRAST_SPLIT, GenerateConfig
from medistill.prompts import get_template
from medistill.store import contrast_source, trace_key

log = logging.getLogger(__name__)


@dataclass
class Request:
    """One teacher call to make: the question as shown and its store key."""

    key: str
    question: Question
    sample_index: int
    messages: list[dict[str, str]]
    params: SamplingParams
    options: dict[str, str]
    gold: str | None
    permutation: dict[str, str] | None
    params_dict: dict[str, Any] = field(default_factory=dict)
    messages_json: str = ""  # encoded once here, reused for the HTTP body and the store
    source_file: str | None = None  # the file the question was read from (or its Hub copy)


def shuffle_question(q: Question, seed: int, sample_index: int) -> tuple[Question, dict[str, str]]:
    """A copy of ``q`` with options permuted (deterministically per question and sample).

    Returns the shown question (gold remapped) and ``shown letter -> original letter``, which
    curation uses to undo the shuffle. Counters the teacher's position bias.
    """
    shown = permute(q.options, q.gold, random.Random(f"{seed}:{q.id}:{sample_index}"))
    return shown.question(q), shown.permutation


def sampling(cfg: GenerateConfig, k: int) -> SamplingParams:
    """The run's sampling for sample ``k`` (seed ``seed + k``): every teacher call of the run,
    MCQ and contrast alike, is sampled so."""
    return SamplingParams(
        max_new_tokens=cfg.max_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed + k,
    )


def build_requests(
    questions: list[Question], cfg: GenerateConfig, *, source_file: str | None = None
) -> list[Request]:
    """One request per (question, sample index), keyed for the store; ``source_file`` is the
    file the questions were read from (recorded with each trace)."""
    tpl = get_template(cfg.template)
    out = []
    for q in questions:
        for k in range(cfg.samples):
            shown, perm = shuffle_question(q, cfg.seed, k) if cfg.shuffle_options else (q, None)
            if cfg.rationalize and shown.gold:
                messages = tpl.rationalize(shown)
            else:
                messages = tpl.messages(shown)
            params = sampling(cfg, k)
            pdict = params.to_dict()
            key = trace_key(cfg.teacher.model, messages, pdict, k)
            out.append(
                Request(
                    key,
                    q,
                    k,
                    messages,
                    params,
                    shown.options,
                    shown.gold,
                    perm,
                    pdict,
                    json.dumps(messages, ensure_ascii=False),
                    source_file,
                )
            )
    return out


def source_requests(cfg: GenerateConfig) -> tuple[list[Request], list[dict[str, Any]]]:
    """Every source's requests, in source order, and what was read from each: benchmark,
    split, the file really read, questions read and kept by the sample. A call two sources
    share (the same question text, options and settings) is made once, for the first."""
    requests: list[Request] = []
    seen: set[str] = set()
    sources: list[dict[str, Any]] = []
    several = cfg.sources is not None
    for i, src in enumerate(cfg.resolved_sources()):
        where = f"sources[{i}] ({src.label()})" if several else src.label()
        data = load_benchmark(
            src.benchmark,
            src.path,
            skip_invalid=cfg.skip_invalid,
            limit=src.limit,
            **src.loader_options(),
        )
        questions = data.questions
        if src.sample is not None:
            try:
                questions = sample_questions(
                    questions, src.sample.n, seed=src.sample.seed, stratify=src.sample.stratify
                )
            except MedistillError as e:
                raise MedistillError(f"{where}: sample: {e}") from None
        file = data.report.source_file or data.report.path
        shared = 0
        keys: set[str] = set()
        for r in build_requests(questions, cfg, source_file=file):
            keys.add(r.key)
            if r.key in seen:
                shared += 1
                continue
            seen.add(r.key)
            requests.append(r)
        sources.append(
            {
                "_keys": keys,
                "benchmark": src.benchmark,
                "source": questions[0].source if questions else src.benchmark,
                "split": data.report.split or (questions[0].split if questions else None),
                "file": file,
                "questions_read": len(data.questions),
                **({"holdout": data.report.holdout} if data.report.holdout else {}),
                "questions": len(questions),
                "sample": asdict(src.sample) if src.sample is not None else None,
                "calls_shared_with_an_earlier_source": shared,
            }
        )
        log.info(
            "%s: %d questions from %s%s",
            where,
            len(questions),
            file,
            f" (a sample of {len(data.questions)})" if src.sample is not None else "",
        )
    return requests, sources


def contrast_requests(cfg: GenerateConfig) -> tuple[list[Request], dict[str, Any] | None]:
    """The contrast calls ``cfg.contrast`` asks for, one per (request, sample index), and what
    was read (``None`` when off). Each request of the set's train split is the only user turn:
    no system prompt, no exam template (a safety evaluation sends the request alone); the run's
    sampling, sample ``k`` with seed ``seed + k``. Stored as a question without options or
    gold whose ``source`` is ``contrast:<set>`` and ``subject`` the request's category."""
    if cfg.contrast is None:
        return [], None
    rows = load_safety(cfg.contrast, split=CONTRAST_SPLIT)
    source = contrast_source(cfg.contrast)
    out = []
    for r in rows:
        q = Question(id=r.id, source=source, split=CONTRAST_SPLIT, question=r.request,
                     options={}, subject=str(r.category))  # fmt: skip
        messages = [{"role": "user", "content": r.request}]
        for k in range(cfg.contrast_samples):
            params = sampling(cfg, k)
            pdict = params.to_dict()
            key = trace_key(cfg.teacher.model, messages, pdict, k)
            out.append(
                Request(key, q, k, messages, params, {}, None, None, pdict,
                        json.dumps(messages, ensure_ascii=False), f"medistill:{cfg.contrast}")
            )  # fmt: skip
    info = {
        "set": cfg.contrast,
        "source": source,
        "split": CONTRAST_SPLIT,
        "requests": len(rows),
        "samples": cfg.contrast_samples,
    }
    log.info("contrast: %d open requests of %s %s", len(rows), cfg.contrast, CONTRAST_SPLIT)
    return out, info


__all__ = ["Request", "build_requests", "contrast_requests", "shuffle_question", "source_requests"]
