"""Test-time methods against greedy decoding, on the same MedQA questions.

    python benchmarks/test_time.py [--model smollm2] [--n 100] [--max-new-tokens 256]
        [--work runs/bench-test-time]

One ``medistill eval`` per method on the first ``--n`` MedQA (USMLE) test questions from
``../shared`` (the same questions, prompt and token budget every time):

* greedy decoding (the baseline);
* ``--permute-options 3``: each question under three option orders (the original and two
  seeded cyclic shifts), greedy;
* ``--samples 5 --vote majority``: self-consistency, five answers sampled at temperature 0.7
  (seeds 0-4), the majority option text decides;
* ``--thinking-budget B``: the answer cue appended once the reasoning reaches B tokens (m1);
* ``--min-thinking-tokens M``: an answer that stops before M tokens gets "Wait," and keeps
  thinking (s1), at most twice, within the same budget.

Each run folder is kept and skipped when complete, so a killed run resumes. Prints a Markdown
table for BENCHMARKS.md: strict and lenient accuracy with 95% CIs, the no-answer share, tokens
per question (summed over every order and sample the method generates) and the method's own
figures (accuracy per order and the share correct under every order; the vote's agreement).
Not part of ``make bench``: it is minutes per method on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shared_data import medqa_eval

ROOT = Path(__file__).resolve().parents[1]


def methods(budget: int, min_tokens: int) -> dict[str, tuple[str, list[str]]]:
    """Each method's run folder name -> its table label and extra ``medistill eval`` flags."""
    return {
        "greedy": ("greedy", []),
        "permute": ("permute-options 3", ["--permute-options", "3"]),
        "vote": ("self-consistency 5 (T=0.7)",
                 ["--samples", "5", "--vote", "majority", "--temperature", "0.7"]),
        "budget": (f"thinking budget {budget}", ["--thinking-budget", str(budget)]),
        "wait": (f"min thinking {min_tokens} (Wait)", ["--min-thinking-tokens", str(min_tokens)]),
    }  # fmt: skip


def row(name: str, run: Path, n: int) -> str:
    """One table line from a run folder's metrics.json."""
    m = json.loads((run / "metrics.json").read_text())
    s, le = m["accuracy"]["strict"], m["accuracy"]["lenient"]
    tokens = m["output_tokens"]["total"] / n
    extra = []
    variants = m.get("variants") or {}
    if "permutation" in variants:
        p = variants["permutation"]
        by = ", ".join(f"{100 * v:.0f}%" for v in p["accuracy_by_order"].values())
        extra.append(
            f"per order {by}; correct under every order {100 * p['correct_under_every_order']:.0f}%"
            f"; chosen text changes {100 * p['chosen_text_changes']:.0f}%"
        )
    if "vote" in variants:
        v = variants["vote"]
        extra.append(
            f"mean single-sample accuracy {100 * v['mean_sample_accuracy']:.1f}%; "
            f"agreement {100 * v['mean_agreement']:.0f}%"
        )
    if "budget" in m:
        b = m["budget"]
        extra.append(
            f"answer forced on {100 * b['forced_answer_share']:.0f}%; 'Wait' added on "
            f"{100 * b['waited_share']:.0f}% ({b['waits']} times)"
        )

    def ci(a: dict) -> str:
        return f"{100 * a['value']:.1f}% [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]"

    return (
        f"| {name} | {s['n']} | {ci(s)} | {ci(le)} | {100 * m['no_answer_rate']['strict']:.0f}% "
        f"| {100 * m['truncation_rate']:.0f}% | {tokens:.0f} | {'; '.join(extra)} |"
    )


def main() -> None:
    """Run every method not yet complete and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--thinking-budget", type=int, default=128)
    p.add_argument("--min-thinking-tokens", type=int, default=128)
    p.add_argument(
        "--only",
        default="",
        help="run only these, comma-separated: greedy,permute,vote,budget,wait",
    )
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-test-time")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    lines = [
        "| method | n | strict accuracy [95% CI] | lenient accuracy [95% CI] | no answer "
        "(strict) | cut off | tokens per question | method's own figures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, (name, flags) in methods(a.thinking_budget, a.min_thinking_tokens).items():
        out = a.work / key
        if a.only and key not in a.only.split(","):
            if (out / "metrics.json").is_file():
                lines.append(row(name, out, a.n))
            continue
        if not (out / "metrics.json").is_file():
            medqa_eval(a.model, out, n=a.n, max_new_tokens=a.max_new_tokens, label=name,
                       flags=flags)  # fmt: skip
        lines.append(row(name, out, a.n))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
