"""Step errors: an LLM judge rates each step of an answer's reasoning (optional).

A distilled student can gain accuracy while its reasoning gets worse (arXiv 2605.28301: a
Qwen3-8B student from 74.7% to 84.4% on MedQA while the share of its reasoning steps judged
factually wrong rose from 30.6% to 50.3%). With ``step_judge`` on, the reasoning of each
answered question (the response up to its final answer statement, think block included,
:func:`medistill.answers.reasoning.split_reasoning`) is split into steps (:func:`split_steps`:
paragraphs and list items), and any OpenAI-compatible judge (``judge_model`` at
``judge_base_url``, the keys the safety judge uses) rates each step ``correct``, ``wrong`` or
``cant_tell`` against the question and its gold answer. The asking, caching and counting are
the one cached judge's (:class:`~medistill.backends.judging.CachedJudge`), in the run's
``judge.sqlite`` (its own table): a step judged once is never asked again, a failed judgement
(HTTP after retries, or no verdict word) is counted and asked again by a rerun.

Per answer the verdicts go to ``step_errors.jsonl``; ``metrics.json`` gets the share of wrong
steps (over judged steps, and per answer), the share the judge could not tell, and the failed
count. A judge whose name gives a size under 7B parameters is flagged ``weak_judge``.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medistill.answers.reasoning import reasoning_text, split_reasoning
from medistill.backends.config import BackendConfig
from medistill.backends.judging import CachedJudge, CacheLayout, JudgeCache, Verdict, cache_key
from medistill.data import Question
from medistill.data.options import format_options
from medistill.errors import MedistillError
from medistill.evaluate.config import EvalConfig
from medistill.evaluate.early_answer import response_hash
from medistill.evaluate.run_folder import read_predictions

FILE = "step_errors.jsonl"
CACHE_FILE = "judge.sqlite"  # the run's one judge cache (the safety judge's file)
CACHE_LAYOUT = CacheLayout(
    "step_judgements", "TEXT", extra_columns=("reply TEXT", "model TEXT"), label="step judge cache"
)
VERDICTS = ("correct", "wrong", "cant_tell")
#: Steps judged per answer (the first ones; a longer reasoning is counted as cut).
MAX_STEPS = 12
#: Changing the prompt changes every verdict: part of the cache key.
PROMPT_VERSION = "step-v1"
STEP_SYSTEM = (
    "You check one step of a student's reasoning on a medical multiple-choice question. You "
    "are given the question, its options, the correct answer and one step of the reasoning. "
    "Judge only that step: is what it states medically and logically correct? Answer with "
    "one word: CORRECT, WRONG or CANT_TELL (the step states nothing you can check)."
)
_VERDICT = r"INCORRECT|CORRECT|WRONG|CANT[ _]?TELL|CAN'T[ _]TELL|CANNOT[ _]TELL"
_WORD = re.compile(rf"\b({_VERDICT})\b")  # in capitals, as asked
_WORD_I = re.compile(_VERDICT, re.I)  # a line that is only the word
_ITEM = re.compile(r"\n(?=[ \t]*(?:\d+[.)]|[-*•]|Step\s+\d+)[ \t])")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
#: Paragraphs longer than this are judged sentence by sentence.
LONG = 300
#: The structured verdict a schema-constrained judge writes (llama.cpp's and vLLM's servers
#: constrain output to it through ``judge_options``' ``extra_body.response_format``).
STEP_VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["CORRECT", "WRONG", "CANT_TELL"]}},
    "required": ["verdict"],
}
_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([MB])(?![a-z])", re.I)


def _sentences(text: str) -> list[str]:
    """A long paragraph (over :data:`LONG` characters) as its sentences; a short one whole."""
    if len(text) <= LONG:
        return [text]
    return [s for s in _SENTENCE.split(text) if s.strip()]


def split_steps(reasoning: str) -> list[str]:
    """The steps of a reasoning: its paragraphs, a paragraph listing items split into them, a
    long one into its sentences; fragments under 15 characters (headings, "Step 1:") are
    joined to the next step."""
    steps: list[str] = []
    carry = ""
    for para in re.split(r"\n\s*\n", reasoning_text(reasoning)):
        parts = [p for item in _ITEM.split(para) for p in _sentences(item)]
        for part in parts:
            text = " ".join(f"{carry} {part}".split())
            if len(text) < 15:
                carry = text
                continue
            steps.append(text)
            carry = ""
    if carry and steps:
        steps[-1] += " " + carry
    return steps


def parse_verdict(reply: str) -> str | None:
    """The judge's verdict, or ``None``: the last verdict word written in capitals
    (``CORRECT``, ``WRONG``, ``CANT_TELL``; a JSON ``"verdict"`` field is one), else a line that
    is nothing but the word. A word inside a sentence ("the correct step is...") is no verdict.

    >>> parse_verdict("The dose is right.\\nCORRECT"), parse_verdict("**Incorrect**")
    ('correct', 'wrong')
    >>> parse_verdict("The correct step is to examine the artery.") is None
    True
    """
    text = (reply or "").replace("*", "")
    words = _WORD.findall(text)
    if not words:
        lines = [ln.strip(" .!:`\"'") for ln in text.splitlines() if ln.strip()]
        words = [ln for ln in lines[-1:] if _WORD_I.fullmatch(ln)]
    if not words:
        return None
    last = words[-1].lower().replace("'", "").replace(" ", "_").replace("cannot", "cant")
    if last in ("incorrect", "wrong"):
        return "wrong"
    return "correct" if last == "correct" else "cant_tell"


def weak_judge(model: str) -> bool | None:
    """Whether the judge's name gives a size under 7B parameters (``SmolLM2-135M``: True);
    ``None`` when it gives none (``gpt-4o``, a served alias): unknown, not strong."""
    sizes = [float(n) * (1e-3 if u.upper() == "M" else 1.0) for n, u in _SIZE.findall(model)]
    return max(sizes) < 7 if sizes else None


def step_messages(q: Question, step: str) -> list[dict[str, str]]:
    """The judge's chat request for one step."""
    user = (
        f"## Question\n{q.question}\n\n## Options\n{format_options(q.options)}\n\n"
        f"## Correct answer\n{q.gold}. {q.options.get(q.gold or '', '')}\n\n"
        f"## Step of the student's reasoning\n{step}\n\n"
        "Is this step correct? Answer CORRECT, WRONG or CANT_TELL."
    )
    return [{"role": "system", "content": STEP_SYSTEM}, {"role": "user", "content": user}]


def run_step_judge(
    cfg: EvalConfig, path: Path, questions: Sequence[Question], predictions: Sequence[dict]
) -> int:
    """Judge the steps of up to ``cfg.audit_limit`` answered questions with a gold answer
    whose verdicts are missing or incomplete; append them to ``path / FILE``. Returns how
    many answers were judged now."""
    if not cfg.judge_model:
        raise MedistillError("step_judge: true needs judge_model (and judge_base_url)")
    by_id = {q.id: q for q in questions}
    rows = [
        r
        for r in predictions
        if r.get("id") in by_id and by_id[r["id"]].gold and r.get("extracted_strict")
    ]
    rows = rows[: cfg.audit_limit] if cfg.audit_limit is not None else rows
    done = {  # judged by this judge, nothing failed
        r["id"]
        for r in judged_rows(path, rows)
        if not r["failed"] and r["judge"] == cfg.judge_model
    }
    todo = [r for r in rows if r["id"] not in done]
    if not todo:
        return 0
    try:
        backend = BackendConfig(
            model=cfg.judge_model,
            backend="openai",
            base_url=list(cfg.judge_base_url),
            api_key_env=cfg.judge_api_key_env,
            **cfg.judge_options,
        )
    except TypeError as e:
        raise MedistillError(f"eval judge_options: {e}") from None
    judge = CachedJudge(
        backend,
        JudgeCache(path / CACHE_FILE, CACHE_LAYOUT),
        name="step judge",
        max_tokens=24,
        build_kwargs={"neutral_penalties": False},
    )
    items: list[tuple[int, Question, str]] = []
    answers = []
    for a, r in enumerate(todo):
        q = by_id[r["id"]]
        reasoning, _ = split_reasoning(r["response"], q.options, question=q.question)
        steps = split_steps(reasoning)
        answers.append((r, len(steps)))
        items.extend((a, q, s) for s in steps[:MAX_STEPS])

    def read(i: int, text: str) -> Verdict:
        verdict = parse_verdict(text)
        if verdict is None:
            return Verdict(problem="no_verdict")
        return Verdict(verdict, stored=(text, judge.model))

    keys = [
        cache_key([PROMPT_VERSION, q.question, q.gold, s, cfg.judge_model], ensure_ascii=False)
        for _, q, s in items
    ]
    try:
        verdicts = asyncio.run(
            judge.judge(keys, lambda i: step_messages(items[i][1], items[i][2]), read)
        )
    finally:
        judge.close()
    per: list[list[str | None]] = [[] for _ in answers]
    for (a, _, _), v in zip(items, verdicts, strict=True):
        per[a].append(v)
    with open(path / FILE, "a", encoding="utf-8") as fh:
        for (r, n_steps), vs in zip(answers, per, strict=True):
            row = {
                "id": r["id"],
                "response_sha": response_hash(r),
                "n_steps": n_steps,
                "verdicts": vs,
                "failed": sum(v is None for v in vs),
                "judge": cfg.judge_model,
            }
            fh.write(json.dumps(row) + "\n")
    return len(todo)


def judged_rows(path: Path, predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The step-judge rows of ``path`` that belong to the current ``predictions``."""
    wanted = {r["id"]: response_hash(r) for r in predictions if r.get("response")}
    return [
        r for r in read_predictions(path / FILE) if wanted.get(r.get("id")) == r.get("response_sha")
    ]


def step_errors(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``step_errors`` block of ``metrics.json`` (``None`` without rows)."""
    if not rows:
        return None
    counts: Counter[str] = Counter()
    per_answer = []
    for r in rows:
        judged = [v for v in r["verdicts"] if v is not None]
        counts.update(judged)
        if judged:
            per_answer.append(sum(v == "wrong" for v in judged) / len(judged))
    n_steps = sum(counts.values())
    judge = rows[-1].get("judge") or ""
    return {
        "n_answers": len(per_answer),
        "n_steps": n_steps,
        "wrong_share": counts["wrong"] / n_steps if n_steps else None,
        "wrong_per_answer": statistics.fmean(per_answer) if per_answer else None,
        "cant_tell_share": counts["cant_tell"] / n_steps if n_steps else None,
        "failed": sum(int(r["failed"]) for r in rows),
        "judge": judge,
        "weak_judge": weak_judge(judge),
    }
