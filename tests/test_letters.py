"""Position balancing: a trace's options reordered and every letter it writes moved with
them, on a table of phrasings (ones that must be rewritten, ones that must be refused) and
on the real traces in ../shared (GPT-4's MIRAGE explanations, HuatuoGPT-o1's demo traces)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from medistill.answers import extract_answer
from medistill.curate.letters import reorder, rewrite_letters
from medistill.data.options import permute_to

OPTS = {"A": "Warfarin", "B": "Heparin", "C": "Aspirin", "D": "Clopidogrel"}
SWAP = {"A": "C", "B": "D", "C": "A", "D": "B"}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The answer is B.", "The answer is D."),
        ("Option A (Warfarin) is teratogenic.", "Option C (Warfarin) is teratogenic."),
        (
            "(A) is wrong and (C) is wrong.\nThe answer is B.",
            "(C) is wrong and (A) is wrong.\nThe answer is D.",
        ),
        ("A. Warfarin: no.\nB. Heparin: yes.", "C. Warfarin: no.\nD. Heparin: yes."),
        ("A is incorrect, so is C.", "C is incorrect, so is A."),
        ("It is not A or C; it is B.", "It is not C or A; it is D."),
        ("Answer: **B**", "Answer: **D**"),
        (
            "Options A, C and D all raise bleeding risk.",
            "Options C, A and B all raise bleeding risk.",
        ),
        ("A 30-year-old woman at 8 weeks. Choice B.", "A 30-year-old woman at 8 weeks. Choice D."),
        (
            "A patient with hepatitis B and vitamin B12 deficiency: answer (B).",
            "A patient with hepatitis B and vitamin B12 deficiency: answer (D).",
        ),
        (
            "E. coli and C. difficile are not relevant; the answer is C.",
            "E. coli and C. difficile are not relevant; the answer is A.",
        ),
        (
            "Group B strep, type A personality, B cells, D-dimer. So the answer is A.",
            "Group B strep, type A personality, B cells, D-dimer. So the answer is C.",
        ),
        # must be refused: a letter no form explains, or a reference naming another option
        ("Choosing A, as the guidelines say, is safest.", None),
        ("A's mechanism is vitamin K antagonism.", None),
        ("A. Heparin is the choice.", None),
        ("I'd go with A here.", None),
    ],
)
def test_letter_references_are_moved_or_the_trace_is_refused(text: str, want: str | None) -> None:
    assert rewrite_letters(text, SWAP, OPTS) == want


def test_permute_to_moves_gold_where_asked() -> None:
    rng = random.Random(0)
    for target in "ABCD":
        perm = permute_to(OPTS, "B", target, rng).moves
        assert perm["B"] == target and sorted(perm.values()) == list("ABCD")


def _real_traces(shared: Path) -> list[tuple[str, dict[str, str]]]:
    from medistill.data import load_benchmark

    out = []
    qs = {
        q.id: q
        for q in load_benchmark("medqa", shared / "medqa" / "US_4options_test.jsonl").questions
    }
    for line in (
        (shared / "llm_outputs" / "mirage_medqa_cot_gpt35_gpt4.jsonl").read_text().splitlines()
    ):
        rec = json.loads(line)
        if "gpt-4" not in rec["model"].lower() or rec["qid"] not in qs:
            continue
        try:
            prose = json.loads(rec["raw_responses"][0])["step_by_step_thinking"]
        except (ValueError, KeyError, TypeError, IndexError):
            continue
        out.append((prose + "\nThe answer is " + qs[rec["qid"]].gold + ".", qs[rec["qid"]].options))
        if len(out) >= 300:
            break
    demo = json.loads((shared / "reasoning_traces" / "huatuogpt_o1_demo_data.json").read_text())
    for d in demo:
        if isinstance(d.get("options"), dict):
            out.append((d["Complex_CoT"] + "\n\n" + d["Response"], dict(d["options"])))
    return out


def test_real_traces_round_trip_and_keep_their_answer(shared_data: Path) -> None:
    """On real traces: a rewrite moves the extracted answer with the permutation, and the
    inverse permutation gives the original text back; refusals are counted, not guessed."""
    rng = random.Random(1)
    done = refused = 0
    for text, options in _real_traces(shared_data):
        letters = list(options)
        new = letters[:]
        rng.shuffle(new)
        perm = dict(zip(letters, new, strict=True))
        r = reorder(text, options, None, perm)
        if r.text is None:
            refused += 1
            continue
        done += 1
        before = extract_answer(text, options, mode="strict").letter
        after = extract_answer(r.text, r.options, mode="strict").letter
        assert after == (perm[before] if before else None), text[-300:]
        inverse = {v: k for k, v in perm.items()}
        assert rewrite_letters(r.text, inverse, r.options) == text
    assert done >= 300 and refused >= 1, (done, refused)


def _curate(tmp: Path, mode: str) -> tuple[list[dict], dict]:
    from conftest import synthetic_traces
    from medistill.curate import CurateConfig, run_curate
    from medistill.store import TraceStore

    tmp.mkdir(parents=True, exist_ok=True)
    with TraceStore(tmp / "traces.db") as store:
        store.put_many(synthetic_traces(40))
    cfg = CurateConfig(
        store=str(tmp / "traces.db"),
        out=str(tmp / "dataset"),
        eval_benchmarks=[],
        hf_dataset=False,
        min_tokens=4,
        max_tokens=100_000,
        validation_fraction=0.0,
        position_balance=mode,
    )
    stats = run_curate(cfg, show_progress=False)
    rows = [json.loads(x) for x in (tmp / "dataset/messages/train.jsonl").open()]
    return rows, stats


def test_curation_balances_gold_letters_and_keeps_each_trace_consistent(tmp_path: Path) -> None:
    off_rows, off = _curate(tmp_path / "off", "off")
    rows, stats = _curate(tmp_path / "balance", "balance")
    pb = stats["position_balance"]
    assert off["position_balance"]["gold_before"] == off["position_balance"]["gold_after"]
    assert pb["gold_before"] == off["position_balance"]["gold_after"]
    assert pb["rewritten"] + pb["refused"] == len(rows) == len(off_rows)
    after = pb["gold_after"]
    assert max(after.values()) - min(after.values()) <= 1 + pb["refused"], after
    for row in rows:  # the answer line names the gold as the row now shows it
        answer = row["messages"][-1]["content"]
        assert extract_answer(answer, row["options"], mode="strict").letter == row["gold"]
        user = row["messages"][1]["content"]
        assert f"{row['gold']}. {row['options'][row['gold']]}" in user  # prompt shows the order
    card = (tmp_path / "balance/dataset/README.md").read_text()
    assert "## Gold letters" in card and "position_balance: balance" in card


def test_grpo_prompts_in_several_option_orders(curated_dataset: Path) -> None:
    """option_orders: each GRPO prompt again in new orders, the gold moved with its option,
    the user turn showing the order the reward scores against."""
    from medistill.train.data import permuted_prompts, prompt_rows, resolve_dataset
    from medistill.train.rewards import correctness

    rows = prompt_rows(resolve_dataset(str(curated_dataset)))
    out, unchanged = permuted_prompts(rows, 3, seed=0)
    assert unchanged == 0 and len(out) == 3 * len(rows)
    assert out[: len(rows)] == rows  # the curated order first
    again, _ = permuted_prompts(rows, 3, seed=0)
    assert again == out  # seeded: a resumed run trains on the same prompts
    moved = 0
    for i, row in enumerate(out[len(rows) :]):
        base = rows[i % len(rows)]
        assert row["options"][row["gold"]] == base["options"][base["gold"]]
        assert sorted(row["options"].values()) == sorted(base["options"].values())
        moved += row["options"] != base["options"]
        user = row["prompt"][-1]["content"]
        assert f"{row['gold']}. {row['options'][row['gold']]}" in user
        got = correctness(
            [f"The answer is {row['gold']}."], gold=[row["gold"]], options=[row["options"]]
        )
        assert got == [1.0]
    assert moved == 2 * len(rows)
