"""Does the `safety` rule engine punish sound reasoning, and how often can it apply at all?

Two measurements on real data from ``../shared/data`` (or ``$MEDISTILL_SHARED_DATA``):

* **Firing on correct reasoning.** GPT-4's MIRAGE chain-of-thought explanations for MedQA
  test and MedMCQA dev (``llm_outputs/mirage_*_cot_gpt35_gpt4.jsonl``, ``model`` =
  ``OpenAI/gpt-4-32k``), joined to their questions by the project's importer (``--preset
  mirage``: ``qid`` = the MedQA row index / the MedMCQA ``id``). Kept: those whose answer the
  project's extractor (:func:`medistill.answers.extract_answer`) reads as the gold letter. Each
  is scored as the GRPO reward scores a completion: the explanation as reasoning plus the answer
  line, against the prompt the student sees (the ``cot`` template's user turn: question and
  options). A sound, correct explanation should fire no rule: goal <= 1%.
* **Applicability.** On every prompt of MedQA test and MedMCQA dev: the share where some
  prompt-conditioned rule's condition matches, i.e. where the reward can differ between
  completions through those rules. ``dose_range`` and ``overconfidence`` rules have no prompt
  condition (they can fire anywhere); their firing is in the first table.

Usage::

    python benchmarks/safety_rules_firing.py [--rules FILE] [--examples 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from medistill.answers import extract_answer
from medistill.data.loading import iter_jsonl
from medistill.errors import DataError
from medistill.prompts import get_template
from medistill.store.import_mapping import PRESETS
from medistill.store.importer import load_join_questions, record_from
from medistill.train.safety import applicable_rules, check_safety, load_rules

from shared_data import SHARED

GPT4 = "OpenAI/gpt-4-32k"
SETS = {  # name -> (question file, MIRAGE outputs)
    "medqa": ("medqa/US_4options_test.jsonl", "llm_outputs/mirage_medqa_cot_gpt35_gpt4.jsonl"),
    "medmcqa": ("medmcqa/dev.jsonl", "llm_outputs/mirage_medmcqa_cot_gpt35_gpt4.jsonl"),
}
LABEL = {"medqa": "MedQA test", "medmcqa": "MedMCQA dev"}


def measure(name: str, rules, n_examples: int) -> dict:
    qpath, opath = (SHARED / p for p in SETS[name])
    questions = load_join_questions({name: str(qpath)})
    template = get_template("cot")
    mapping = dict(PRESETS["mirage"])
    # Applicability: every prompt of the split.
    per_rule: Counter[str] = Counter()
    applicable = 0
    for q in questions[name].values():
        names = applicable_rules(template.messages(q), rules=rules)
        applicable += bool(names)
        per_rule.update(names)
    # Firing on GPT-4's correct explanations.
    gpt4 = correct = fired_n = unreadable = blind_n = 0
    fired_rules: Counter[str] = Counter()
    blind_rules: Counter[str] = Counter()
    examples: list[dict] = []
    for line, rec in iter_jsonl(opath):
        if isinstance(rec, DataError) or rec.get("model") != GPT4:
            continue
        gpt4 += 1
        try:
            tr = record_from(
                rec, mapping, origin="mirage", path=str(opath), line=line, questions=questions
            )
        except DataError:
            unreadable += 1
            continue
        if extract_answer(tr.text, tr.options).letter != tr.gold:
            continue
        correct += 1
        q = questions[name][tr.question_id]
        completion = [{"role": "assistant", "content": tr.text, "reasoning_content": tr.reasoning}]
        fired = check_safety(completion, template.messages(q), rules=rules)
        blind = check_safety(completion, rules=rules, assume_conditions=True)
        blind = [f for f in blind if f.kind == "contraindicated"]
        blind_n += bool(blind)
        blind_rules.update(f.name for f in blind)
        if fired:
            fired_n += 1
            fired_rules.update(f.name for f in fired)
            if len(examples) < n_examples:
                f = fired[0]
                reasoning = tr.reasoning or ""
                at = reasoning.lower().find(f.evidence.lower())
                lo = max(0, at - 160) if at >= 0 else 0
                examples.append(
                    {
                        "qid": tr.question_id,
                        "rule": f.name,
                        "evidence": f.evidence,
                        "context": " ".join(reasoning[lo : lo + 320].split()),
                    }
                )
    n_prompts = len(questions[name])
    return {
        "set": name,
        "prompts": n_prompts,
        "applicable": applicable,
        "applicable_share": applicable / n_prompts,
        "applicable_by_rule": dict(per_rule.most_common()),
        "gpt4_rows": gpt4,
        "unreadable": unreadable,
        "correct": correct,
        "fired": fired_n,
        "fired_share": fired_n / correct if correct else 0.0,
        "fired_by_rule": dict(fired_rules.most_common()),
        "examples": examples,
        "blind_fired": blind_n,
        "blind_share": blind_n / correct if correct else 0.0,
        "blind_by_rule": dict(blind_rules.most_common()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", default=None, help="rule file (default: the packaged one)")
    ap.add_argument("--examples", type=int, default=3, help="firing examples shown per set")
    ap.add_argument("--sets", default="medqa,medmcqa")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    missing = [
        str(SHARED / p) for s in args.sets.split(",") for p in SETS[s] if not (SHARED / p).exists()
    ]
    if missing:
        print(f"safety_rules_firing: not run, missing {', '.join(missing)}")
        return 0
    rules = load_rules(args.rules)
    t0 = time.perf_counter()
    results = [measure(s, rules, args.examples) for s in args.sets.split(",")]
    elapsed = time.perf_counter() - t0
    print(f"rules: {rules.path} ({len(rules.rules)} rules); {elapsed:.1f} s\n")
    print("| set | GPT-4 rows | correct (n) | any rule fires | share | goal <= 1% |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ok = "met" if r["fired_share"] <= 0.01 else "NOT met"
        print(
            f"| {LABEL[r['set']]} | {r['gpt4_rows']} | {r['correct']} | {r['fired']} "
            f"| {r['fired_share']:.2%} | {ok} |"
        )
    print(
        "\nStress test: contraindicated rules read as if every prompt met every condition"
        " (the same correct explanations)\n"
    )
    print("| set | correct (n) | a contraindicated action counts | share |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {LABEL[r['set']]} | {r['correct']} | {r['blind_fired']} | {r['blind_share']:.2%} |"
        )
    print("\n| prompt set | prompts | a rule's condition matches | share |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {LABEL[r['set']]} | {r['prompts']} | {r['applicable']} "
            f"| {r['applicable_share']:.1%} |"
        )
    for r in results:
        print(
            f"\n{LABEL[r['set']]}: rules fired on correct GPT-4 explanations: "
            + (", ".join(f"{k} {v}" for k, v in r["fired_by_rule"].items()) or "none")
        )
        print(
            f"{LABEL[r['set']]}: prompts per rule condition: "
            + ", ".join(f"{k} {v}" for k, v in r["applicable_by_rule"].items())
        )
        for ex in r["examples"]:
            print(f"  - qid {ex['qid']} [{ex['rule']}] {ex['evidence']!r}: ...{ex['context']}...")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
