"""What a run will pay its teacher, before it starts: every teacher call the plan makes.

A paid teacher is called twice in a run: ``generate`` (questions x samples) and, with
``run.eval_teacher``, the evaluation of the teacher on every ``run.eval_benchmarks`` entry
(questions x answers per question x option orders). Both are priced with the teacher's
``price_input_per_mtok`` / ``price_output_per_mtok``. Question counts come from the published
sizes of the registered splits (a split of unknown size is listed, not guessed); tokens per call
are a typical figure (:data:`TYPICAL_PROMPT_TOKENS`, :data:`TYPICAL_COMPLETION_TOKENS`) and an
upper bound (every call uses its whole token budget; a cut-off call that ``retry_truncated``
asks again, with twice the budget, comes on top).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medistill.data.registry import get_spec
from medistill.data.safety import SAFETY_BENCHMARKS, TRAIN_SETS

#: Questions in each registered split (benchmark, split), as published.
KNOWN_QUESTIONS: dict[tuple[str, str], int] = {
    ("medqa", "train"): 10_178,
    ("medqa", "dev"): 1_272,
    ("medqa", "test"): 1_273,
    ("medqa5", "train"): 10_178,
    ("medqa5", "dev"): 1_272,
    ("medqa5", "test"): 1_273,
    ("medmcqa", "train"): 182_822,
    ("medmcqa", "dev"): 4_183,
    ("pubmedqa", "test"): 500,
    ("mmlu_medical", "test"): 1_089,
    ("sample", "sample"): 60,
    ("sample_train", "train"): 30,
    ("sample_heldout", "test"): 30,
    ("medsafetybench", "test"): 900,
    ("medsafetybench", "train"): 900,
    ("xstest", "test"): 450,
    # embedded (medistill.data.safety; tests/test_safety_data.py checks these sizes)
    ("safety_sample", "test"): 18,
    ("benign_clinical", "test"): 99,
    ("benign_clinical", "train"): 54,
    ("safety_train_sample", "train"): 36,
}
#: A multiple-choice prompt (question, options, instructions) in tokens, typically.
TYPICAL_PROMPT_TOKENS = 350
#: A reasoning model's trace on a medical MCQ in tokens, typically (R1-class teachers write
#: ~1,000-2,000; the budget is the upper bound).
TYPICAL_COMPLETION_TOKENS = 1_500


def question_count(benchmark: str, split: str | None, limit: int | None = None) -> int | None:
    """Questions a run reads from ``benchmark``'s ``split`` (``None``: size unknown)."""
    if benchmark in SAFETY_BENCHMARKS + TRAIN_SETS:  # open requests: their own splits
        split = split or ("train" if benchmark in TRAIN_SETS else "test")
    else:
        split = split or get_spec(benchmark).split
    n = KNOWN_QUESTIONS.get((benchmark, split))
    if n is None:
        return limit
    return min(n, limit) if limit else n


def eval_samples(ecfg: Any) -> int:
    """Answers per question of an eval run: ``samples``; else (unset) ``sampled_samples``
    where it samples: a temperature above 0, or none given for a model that may have a
    ``generation_config.json`` to sample by (a Hub id or a folder; a hosted API's alias such
    as ``deepseek-reasoner`` has none and is decoded once per question); else 1."""
    if getattr(ecfg, "samples", None):
        return int(ecfg.samples)
    temperature = getattr(ecfg, "temperature", 0.0)
    may_sample = "/" in ecfg.model or Path(ecfg.model).expanduser().is_dir()
    if (temperature is None and may_sample) or (temperature or 0) > 0:
        return int(getattr(ecfg, "sampled_samples", 1) or 1)
    return 1


def _calls(calls: int, budget: int, prices: tuple[float, float]) -> dict[str, Any]:
    """Token and dollar figures of ``calls`` calls with a completion budget of ``budget``."""
    pin, pout = prices
    prompt = calls * TYPICAL_PROMPT_TOKENS
    typical = calls * min(TYPICAL_COMPLETION_TOKENS, budget)
    upper = calls * budget
    return {
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens_typical": typical,
        "completion_tokens_upper": upper,
        "cost_typical": round((prompt * pin + typical * pout) / 1e6, 2),
        "cost_upper": round((prompt * pin + upper * pout) / 1e6, 2),
    }


def teacher_cost(plan_: Any) -> dict[str, Any] | None:
    """The teacher's calls and their price in a planned run: ``generate``, ``teacher_eval``
    (its evaluation), their total, and the splits whose size is unknown (``None`` without a
    generate stage)."""
    gen = plan_.configs.get("generate")
    if gen is None:
        return None
    t = gen.teacher
    prices = (t.price_input_per_mtok, t.price_output_per_mtok)
    unknown: list[str] = []
    gen_calls = 0
    for src in gen.resolved_sources():
        n = question_count(src.benchmark, src.split, src.limit)
        if src.sample is not None:
            n = src.sample.n if n is None else min(n, src.sample.n)
        if n is None:
            unknown.append(f"generate: {src.label()}")
            continue
        gen_calls += n * gen.samples
    gen_calls += gen.contrast_calls()  # benign requests the teacher answers for the mix
    out: dict[str, Any] = {
        "teacher": t.model,
        "price_input_per_mtok": prices[0],
        "price_output_per_mtok": prices[1],
        "generate": _calls(gen_calls, gen.max_tokens, prices),
    }
    eval_calls, budget = 0, 0
    for key, ecfg in plan_.configs.get("eval", []):
        if key != "teacher":
            continue
        n = question_count(ecfg.benchmark, None, ecfg.limit)
        if n is None:
            unknown.append(f"eval: {ecfg.benchmark}")
            continue
        eval_calls += n * eval_samples(ecfg) * max(1, ecfg.permute_options or 1)
        budget = max(budget, ecfg.max_new_tokens)
    out["teacher_eval"] = _calls(eval_calls, budget, prices)
    out["total_typical"] = round(
        out["generate"]["cost_typical"] + out["teacher_eval"]["cost_typical"], 2
    )
    out["total_upper"] = round(out["generate"]["cost_upper"] + out["teacher_eval"]["cost_upper"], 2)
    out["unknown_sizes"] = unknown
    return out


def cost_line(est: dict[str, Any]) -> str:
    """One line for the log: calls and dollars of generation and of the teacher's evaluation."""
    g, e = est["generate"], est["teacher_eval"]
    line = (
        f"teacher {est['teacher']} at ${est['price_input_per_mtok']:g}/M in, "
        f"${est['price_output_per_mtok']:g}/M out: generate {g['calls']:,} calls "
        f"~${g['cost_typical']:,.2f} (at most ${g['cost_upper']:,.2f}), its evaluation "
        f"{e['calls']:,} calls ~${e['cost_typical']:,.2f} (at most ${e['cost_upper']:,.2f}); "
        f"total ~${est['total_typical']:,.2f} (at most ${est['total_upper']:,.2f})"
    )
    if est["unknown_sizes"]:
        line += f"; not counted (size unknown): {', '.join(est['unknown_sizes'])}"
    return line
