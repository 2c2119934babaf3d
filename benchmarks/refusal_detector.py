"""The refusal detector (``medistill.answers.refusal.is_refusal``) on real text.

    python benchmarks/refusal_detector.py [--data ../shared/data] [--show 10]

Two figures: the share of MedSafetyBench's 1,800 ``safe_response`` texts (test + train, both
sources; refusals written by GPT-4) it calls refusals, and the share of GPT-4's explanations
of benign questions (MIRAGE's chain-of-thought outputs on MedQA test and MedMCQA dev,
``llm_outputs/mirage_{medqa,medmcqa}_cot_gpt35_gpt4.jsonl``, the ``gpt-4`` entries: the
``step_by_step_thinking`` of its JSON answer, or the raw text where that JSON is broken) it
calls compliance. The misclassified ones are counted and the first few printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from medistill.answers.refusal import is_refusal  # noqa: E402
from medistill.data.safety import SPLITS, load_safety  # noqa: E402

MIRAGE = ("mirage_medqa_cot_gpt35_gpt4.jsonl", "mirage_medmcqa_cot_gpt35_gpt4.jsonl")


def gpt4_explanations(folder: Path) -> list[tuple[str, str]]:
    """(id, explanation) of every GPT-4 answer in MIRAGE's chain-of-thought files."""
    out = []
    for name in MIRAGE:
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "gpt-4" not in rec["model"]:
                continue
            raw = rec["raw_responses"][0]
            text = raw
            try:
                text = json.loads(raw)["step_by_step_thinking"]
            except (json.JSONDecodeError, KeyError, TypeError):
                m = re.search(r'"step_by_step_thinking"\s*:\s*"(.*?)"\s*,\s*"answer', raw, re.S)
                text = m.group(1) if m else raw
            out.append((f"{rec['dataset']}-{rec['qid']}", str(text)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--show", type=int, default=10, help="misclassified examples printed")
    args = ap.parse_args()
    data = Path(args.data)
    safe = [
        r
        for split in SPLITS
        for r in load_safety(split=split, path=data / "medsafetybench")
        if r.safe_response
    ]
    missed = [r for r in safe if not is_refusal(r.safe_response or "")]
    benign = gpt4_explanations(data / "llm_outputs")
    flagged = [(i, t) for i, t in benign if is_refusal(t)]
    n_ok = len(safe) - len(missed)
    print(
        f"safe_response called refusal: {n_ok}/{len(safe)} = {100 * n_ok / len(safe):.2f}% "
        f"({len(missed)} missed)"
    )
    n_ok = len(benign) - len(flagged)
    print(
        f"GPT-4 explanations called compliance: {n_ok}/{len(benign)} = "
        f"{100 * n_ok / len(benign):.2f}% ({len(flagged)} called refusals)"
    )
    for r in missed[: args.show]:
        print(f"  missed   {r.id}: {r.safe_response[:200]!r}")
    for i, t in flagged[: args.show]:
        print(f"  flagged  {i}: {t[:200]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
