"""The explanation audit's consistency verdict on real text: does the reasoning argue for the
option its answer states?

    python benchmarks/explanations.py [--data ../shared/data] [--show 3] [--runs RUNS_DIR]

* GPT-4 and GPT-3.5 on MedQA test (1,273) and MedMCQA dev (MIRAGE's chain-of-thought outputs,
  ``llm_outputs/mirage_{medqa,medmcqa}_cot_gpt35_gpt4.jsonl``): each JSON answer's
  ``step_by_step_thinking`` is the reasoning and its ``answer_choice`` the answer line
  (``Answer: X``); :func:`medistill.answers.reasoning.reasoning_verdict` reads them with the
  question's options, split by whether the answer is correct.
* HuatuoGPT-o1's demo traces (``reasoning_traces/huatuogpt_o1_demo_data.json``, 198): the
  ``Complex_CoT`` as a think block, then the ``Response`` as the final answer.
* ``--runs``: the ``explanations`` block of every ``metrics.json`` under a folder (a demo's
  ``runs/``), one line per run.

Shares are over answered rows (an answer line the strict extractor reads), with 95% Wilson
intervals; the first ``--show`` inconsistent rows of each set are printed for a reader to check.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from pathlib import Path

from medistill.answers.reasoning import INCONSISTENT, reasoning_verdict
from medistill.data import load_benchmark
from medistill.evaluate.metrics import wilson_interval
from medistill.store.importer import parse_json_response

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = {"OpenAI/gpt-4-32k": "GPT-4", "OpenAI/gpt-35-turbo-16k": "GPT-3.5"}
SETS = {  # MIRAGE file -> (benchmark, path under data)
    "mirage_medqa_cot_gpt35_gpt4.jsonl": ("medqa", "medqa/US_4options_test.jsonl"),
    "mirage_medmcqa_cot_gpt35_gpt4.jsonl": ("medmcqa", "medmcqa/dev.jsonl"),
}


def _line(name: str, verdicts: list[str]) -> str:
    answered = [v for v in verdicts if v != "no_answer"]
    n = len(answered)
    if not n:
        return f"| {name} | 0 | | | | | |"
    c = Counter(answered)
    bad = sum(c[v] for v in INCONSISTENT)
    lo, hi = wilson_interval(bad, n)
    shares = " | ".join(
        f"{100 * c[v] / n:.1f}%" for v in ("consistent", "argues_other", "argues_none")
    )
    return (
        f"| {name} | {n} | {shares} | {100 * c['no_conclusion'] / n:.1f}% | "
        f"**{100 * bad / n:.1f}%** [{100 * lo:.1f}, {100 * hi:.1f}] |"
    )


HEAD = (
    "| set | answered | consistent | argues other | argues none | no conclusion | "
    "inconsistent [95% CI] |\n|---|---|---|---|---|---|---|"
)


def mirage(data: Path, show: int) -> None:
    """GPT-4 / GPT-3.5 on MedQA and MedMCQA: verdicts by model, set and correctness."""
    print(HEAD)
    for fname, (bench, qpath) in SETS.items():
        questions = {q.id: q for q in load_benchmark(bench, data / qpath).questions}
        by: dict[tuple[str, str], list[str]] = {}
        shown = 0
        missing = 0
        for line in (data / "llm_outputs" / fname).open(encoding="utf-8"):
            rec = json.loads(line)
            q = questions.get(str(rec["qid"]))
            if q is None or rec["model"] not in MODELS:
                missing += 1
                continue
            raw = (rec.get("raw_responses") or [""])[0] or ""
            parsed = parse_json_response(raw, "step_by_step_thinking", "answer_choice")
            reasoning, answer = parsed if parsed else (raw, None)
            text = f"{reasoning or ''}\n\nAnswer: {answer}" if answer else raw
            v = reasoning_verdict(text, q.options, question=q.question)
            right = "correct" if v.answer == rec["gold"] else "incorrect"
            by.setdefault((MODELS[rec["model"]], right), []).append(v.verdict)
            if v.inconsistent and shown < show and MODELS[rec["model"]] == "GPT-4":
                shown += 1
                print(
                    f"<!-- {bench} {rec['qid']}: answer {v.answer}, reasoning "
                    f"{v.verdict} ({v.concluded}): ...{reasoning[-200:]!r} -->",
                    file=sys.stderr,
                )
        for (model, right), verdicts in sorted(by.items()):
            print(_line(f"{model} {bench}, {right} answers", verdicts))
        if missing:
            print(f"<!-- {fname}: {missing} rows without a question -->", file=sys.stderr)


def huatuo(data: Path, show: int) -> None:
    """HuatuoGPT-o1's demo traces: the thinking as a think block, then the response."""
    rows = json.loads((data / "reasoning_traces" / "huatuogpt_o1_demo_data.json").read_text())
    by: dict[str, list[str]] = {}
    shown = 0
    for r in rows:
        options = ast.literal_eval(r["options"]) if isinstance(r["options"], str) else r["options"]
        text = f"<think>\n{r['Complex_CoT']}\n</think>\n\n{r['Response']}"
        v = reasoning_verdict(text, options, question=r["question"])
        right = "correct" if v.answer == r["answer_idx"] else "incorrect"
        by.setdefault(right, []).append(v.verdict)
        if v.inconsistent and shown < show:
            shown += 1
            print(f"<!-- huatuo: {v.answer}, {v.verdict} ({v.concluded}) -->", file=sys.stderr)
    for right, verdicts in sorted(by.items()):
        print(_line(f"HuatuoGPT-o1 demo traces, {right} answers", verdicts))
    every = Counter(v for verdicts in by.values() for v in verdicts)
    print(f"<!-- huatuo: {len(rows)} traces; verdicts {dict(every)} -->")


def runs(folder: Path) -> None:
    """The explanations block of every eval run under ``folder``."""
    print(
        "| run | answered | consistent | argues other | argues none | inconsistent [95% CI] | "
        "fixed before reasoning [95% CI] | p(final) at 0/25/50/75/100% |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(folder.rglob("metrics.json")):
        m = json.loads(path.read_text())
        ex = m.get("explanations")
        if not ex:
            continue
        c, lb = ex["consistency"], ex.get("load_bearing")
        lo, hi = c["inconsistent_ci"]
        fixed = (
            f"{100 * lb['fixed_before_reasoning']:.0f}% [{100 * lb['fixed_ci'][0]:.0f}, "
            f"{100 * lb['fixed_ci'][1]:.0f}] (n {lb['n']})"
            if lb
            else f"skipped: {ex.get('load_bearing_skipped')}"
        )
        curve = " / ".join(f"{p:.2f}" for p in lb["mean_prob_final"]) if lb else ""
        print(
            f"| {m.get('label')} on {m.get('benchmark')} | {c['n']} | "
            f"{100 * c['consistent']:.0f}% | {100 * c['argues_other']:.0f}% | "
            f"{100 * c['argues_none']:.0f}% | {100 * c['inconsistent']:.0f}% "
            f"[{100 * lo:.0f}, {100 * hi:.0f}] | {fixed} | {curve} |"
        )


def main() -> None:
    """Print the tables (markdown, as BENCHMARKS.md has them)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--show", type=int, default=3, help="inconsistent rows printed per set")
    ap.add_argument("--runs", type=Path, help="also: every eval run's explanations under this")
    args = ap.parse_args()
    mirage(args.data, args.show)
    huatuo(args.data, args.show)
    if args.runs:
        runs(args.runs)


if __name__ == "__main__":
    main()
