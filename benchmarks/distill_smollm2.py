"""SmolLM2-135M-Instruct trained on real frontier-teacher chain-of-thought, before and after.

    python benchmarks/distill_smollm2.py [--work runs/bench-distill] [--sft-steps 100]
        [--grpo-steps 80] [--n-eval 100] [--stages import,curate,eval-base,sft,...]
        [--tag lora --sft-args "--use-peft true --learning-rate 2e-4"]

GPT-4's step-by-step answers on MedMCQA dev (MIRAGE's released outputs, ../shared) are imported
with the ``mirage`` preset, curated with decontamination against MedQA test, used to fine-tune
SmolLM2 (SFT), then GRPO from the SFT student; the base, SFT and GRPO models are evaluated on
held-out MedQA test questions (greedy, 512-token budget, the same prompt every time). Every
stage is a ``medistill`` command (printed as it runs) and is skipped when its output is
complete, so a killed run resumes. Prints a Markdown table for BENCHMARKS.md: share of answers
ending with the contract's final line, share stating an answer anywhere, share cut off, mean
output tokens, strict accuracy with its 95% CI, and the extracted-letter distribution beside
the gold one. Settings live in ``benchmarks/smollm2-mirage.yaml``.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections import Counter
from pathlib import Path

from medistill.answers import extract_answer
from medistill.backends.base import CUT_OFF
from medistill.prompts import answer_line_regex

from shared_data import MEDQA_TEST, SHARED, medqa_eval, run_medistill

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "benchmarks" / "smollm2-mirage.yaml"
EVAL_TOKENS = 512  # every model is evaluated with this budget
STAGES = ("import", "curate", "eval-base", "sft", "eval-sft", "grpo", "eval-grpo")


def summarise(run: Path) -> dict:
    """The figures of one eval run folder (see the module docstring)."""
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((run / "metrics.json").read_text())
    well = stated = cut = 0
    tokens = []
    extracted: Counter[str] = Counter()
    gold: Counter[str] = Counter()
    for r in rows:
        text = r["response"] or ""
        letters = "ABCD"
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        well += bool(answer_line_regex(letters).fullmatch(last))
        truncated = r.get("finish_reason") in CUT_OFF  # run to the budget or stopped looping
        cut += truncated
        e = extract_answer(text, dict.fromkeys(letters, ""), mode="strict", truncated=truncated)
        stated += e.letter is not None
        extracted[r.get("extracted_strict") or "none"] += 1
        gold[r["gold"]] += 1
        tokens.append(r.get("output_tokens") or 0)
    n = len(rows)
    acc = metrics["accuracy"]["strict"]
    return {
        "n": n,
        "well_formed": well / n,
        "states_answer": stated / n,
        "cut_off": cut / n,
        "mean_tokens": sum(tokens) / n,
        "accuracy": acc,
        "extracted": dict(sorted(extracted.items())),
        "gold": dict(sorted(gold.items())),
    }


def table(results: dict[str, dict]) -> str:
    """Markdown for BENCHMARKS.md."""
    lines = [
        "| model | n | final line in contract form | states an answer | cut off | mean output "
        "tokens | strict accuracy [95% CI] | extracted letters (gold) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results.items():
        a = s["accuracy"]
        keys = sorted(set(s["extracted"]) | set(s["gold"]), key=lambda k: (k == "none", k))
        letters = ", ".join(
            f"{k} {s['extracted'].get(k, 0)}" + (f" ({s['gold'].get(k, 0)})" if k != "none" else "")
            for k in keys
        )
        lines.append(
            f"| {name} | {s['n']} | {100 * s['well_formed']:.0f}% "
            f"| {100 * s['states_answer']:.0f}% "
            f"| {100 * s['cut_off']:.0f}% | {s['mean_tokens']:.0f} | {100 * a['value']:.1f}% "
            f"[{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}] | {letters} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the stages asked for and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-distill")
    p.add_argument("--sft-steps", type=int, default=100)
    p.add_argument("--grpo-steps", type=int, default=80)
    p.add_argument("--n-eval", type=int, default=100)
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--tag", default="", help="suffix of a variant's sft/grpo/eval folders")
    p.add_argument("--sft-args", default="", help="extra medistill sft flags")
    p.add_argument("--grpo-args", default="", help="extra medistill grpo flags")
    p.add_argument(
        "--curate-args",
        default="",
        help="extra medistill curate flags: the variant gets its own dataset{tag} folder "
        "(e.g. --tag balanced --curate-args '--position-balance balance')",
    )
    a = p.parse_args()
    t = f"-{a.tag}" if a.tag else ""
    w, shared = a.work, SHARED
    w.mkdir(parents=True, exist_ok=True)
    stages = a.stages.split(",")
    dataset = w / (f"dataset{t}" if a.curate_args else "dataset")
    if "import" in stages:
        run_medistill(
            [
                "import-traces",
                str(shared / "llm_outputs" / "mirage_medmcqa_cot_gpt35_gpt4.jsonl"),
                "--store",
                str(w / "traces.db"),
                "--origin",
                "mirage",
                "--preset",
                "mirage",
                "--questions",
                f"medmcqa={shared / 'medmcqa' / 'dev.jsonl'}",
                "--where",
                "model=OpenAI/gpt-4-32k",
            ]
        )
    if "curate" in stages:
        run_medistill(
            [
                "curate",
                str(w / "traces.db"),
                "--config",
                str(RECIPE),
                "--out",
                str(dataset),
                "--eval-benchmarks",
                f"medqa={MEDQA_TEST}",
                *shlex.split(a.curate_args),
            ]
        )
    if "eval-base" in stages:
        medqa_eval(
            "smollm2",
            w / "eval-base",
            n=a.n_eval,
            max_new_tokens=EVAL_TOKENS,
            label="SmolLM2-135M-Instruct",
        )
    sft, grpo = w / f"sft{t}", w / f"grpo{t}"
    data = ["--dataset", str(dataset)]
    if "sft" in stages:
        steps = ["--max-steps", str(a.sft_steps)]
        run_medistill(
            [
                "sft",
                "--config",
                str(RECIPE),
                *data,
                "--output-dir",
                str(sft),
                *steps,
                *shlex.split(a.sft_args),
            ]
        )
    if "eval-sft" in stages:
        medqa_eval(
            str(sft),
            w / f"eval-sft{t}",
            n=a.n_eval,
            max_new_tokens=EVAL_TOKENS,
            label=f"SmolLM2 + SFT{t}",
        )
    if "grpo" in stages:
        steps = ["--max-steps", str(a.grpo_steps)]
        run_medistill(
            [
                "grpo",
                "--config",
                str(RECIPE),
                "--model",
                str(sft),
                *data,
                "--output-dir",
                str(grpo),
                *steps,
                *shlex.split(a.grpo_args),
            ]
        )
    if "eval-grpo" in stages:
        medqa_eval(
            str(grpo),
            w / f"eval-grpo{t}",
            n=a.n_eval,
            max_new_tokens=EVAL_TOKENS,
            label=f"SmolLM2 + SFT{t} + GRPO",
        )
    runs = [("base", "eval-base")]
    tags = sorted(
        {
            p.name.split("-", 2)[2] if p.name.count("-") > 1 else ""
            for p in [*w.glob("eval-sft*"), *w.glob("eval-grpo*")]
        }
    )
    tags = [f"-{t}" if t else "" for t in tags]
    for tag in tags:  # "" (the recipe as it is) first, then the variants
        label = f" ({tag.lstrip('-')})" if tag else ""
        runs += [(f"SFT{label}", f"eval-sft{tag}"), (f"SFT + GRPO{label}", f"eval-grpo{tag}")]
    results = {n: summarise(w / r) for n, r in runs if (w / r / "metrics.json").exists()}
    (w / "summary.json").write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
