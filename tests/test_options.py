"""The options module: one normalisation (strict and lenient), one option block, and the
reorderings every stage uses, pinned to the orders the seeds gave before they were merged
here (generate's shuffled samples, GRPO's extra orders, eval's rotations, curation's position
balance), so a seed keeps giving the same data and the same demo figures."""

from __future__ import annotations

import doctest
import random

import pytest

import medistill.data.options as options_mod
from medistill.data.options import (
    Shown,
    format_options,
    normalise_options,
    options_or_none,
    permute,
    permute_to,
    relabel,
    rotate,
    unpermute,
)
from medistill.data.schema import Question
from medistill.errors import DataError, MedistillError

OPTS = {"A": "Warfarin", "B": "Heparin", "C": "Aspirin", "D": "Clopidogrel", "E": "Apixaban"}
LETTER_OF = {v: k for k, v in OPTS.items()}


def _order(options: dict[str, str]) -> str:
    """The original letters in shown order ("DABCE")."""
    return "".join(LETTER_OF[t] for t in options.values())


def test_module_doctests_hold() -> None:
    result = doctest.testmod(options_mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# ----------------------------------------------------------------------------- normalise


def test_strict_and_lenient_read_a_mapping_or_a_list_alike() -> None:
    for raw in ({"b": "Heparin", "a": "Warfarin"}, ["Warfarin", "Heparin"]):
        assert normalise_options(raw, path="f", line=1) == {"A": "Warfarin", "B": "Heparin"}
    assert options_or_none(["Warfarin", "Heparin"]) == {"A": "Warfarin", "B": "Heparin"}
    assert options_or_none({"a": "Warfarin", "b": "Heparin"}) == {"A": "Warfarin", "B": "Heparin"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({}, "expected a non-empty object"),
        ("A. x", "expected a non-empty object"),
        ({"A": "x", "C": "y"}, "without gaps"),
        ({"A": "x", "B": " "}, "option B is empty"),
        (["x", None], "option B is empty"),
        (["x"], "at least two options"),
    ],
)
def test_strict_refuses_with_file_line_and_field(raw, reason: str) -> None:
    with pytest.raises(DataError, match=reason) as e:
        normalise_options(raw, path="q.jsonl", line=7, field="opts")
    assert (e.value.path, e.value.line, e.value.field) == ("q.jsonl", 7, "opts")


def test_lenient_drops_absent_letters_and_names_the_row() -> None:
    assert options_or_none(None) is None
    assert options_or_none({"A": " x ", "B": None, "C": "z"}) == {"A": " x ", "C": "z"}
    assert options_or_none([None, "y"]) == {"B": "y"}
    for bad, said in (("{", "not valid JSON"), (3, "mapping or a list"), ({"A": None}, "empty")):
        with pytest.raises(MedistillError, match=f"row 4: options .*{said}"):
            options_or_none(bad, "row 4")


def test_option_block() -> None:
    assert format_options({"A": "x", "B": "y"}) == "A. x\nB. y"
    assert format_options({"A": "x", "B": "y"}, "({letter}) {text}") == "(A) x\n(B) y"


# ----------------------------------------------------------------------------- pinned orders

#: generate.shuffle_question before the merge: Random(f"{seed}:{q.id}:{sample}"), one shuffle.
#: Value: the original letters in shown order (= the permutation's values).
GENERATE = {
    "0:0": "EBCDA",
    "0:1": "BCEAD",
    "0:2": "DBECA",
    "1:0": "BADEC",
    "1:1": "EDABC",
    "1:2": "DEABC",
    "42:0": "DEABC",
    "42:1": "BCDAE",
    "42:2": "BCDAE",
}


@pytest.mark.parametrize(("key", "want"), sorted(GENERATE.items()))
def test_permute_gives_generates_orders(key: str, want: str) -> None:
    seed, sample = key.split(":")
    s = permute(OPTS, "B", random.Random(f"{seed}:q7:{sample}"))
    assert "".join(s.permutation.values()) == want == _order(s.options)
    assert list(s.permutation) == list("ABCDE") and s.options[s.gold] == "Heparin"
    assert unpermute(s.options, s.gold, s.permutation) == (OPTS, "B")


def test_permute_must_move_gives_grpos_orders() -> None:
    """train.data.permuted_prompts before the merge: Random(f"{seed}:{order}:{source}:{id}"),
    shuffled until the order moved (seed 3, orders 1-3)."""
    want = {1: ("DABCE", "C"), 2: ("EADBC", "D"), 3: ("CEBDA", "C")}
    for order, (letters, gold) in want.items():
        s = permute(OPTS, "B", random.Random(f"3:{order}:s:q7"), must_move=True)
        assert (_order(s.options), s.gold) == (letters, gold)
    two = {"A": "x", "B": "y"}
    for order in (1, 2, 3):
        s = permute(two, "A", random.Random(f"3:{order}:s:two"), must_move=True)
        assert (s.options, s.gold) == ({"A": "y", "B": "x"}, "B")


def test_must_move_cannot_loop_on_equal_texts() -> None:
    s = permute({"A": "x", "B": "x"}, "A", random.Random(0), must_move=True)
    assert s.options == {"A": "x", "B": "x"}


def test_rotate_gives_evals_shifts() -> None:
    """evaluate.variants.shifted before the merge: option i shown at i - shift."""
    want = {0: ("ABCDE", "B"), 1: ("BCDEA", "A"), 2: ("CDEAB", "E"), 3: ("DEABC", "D")}
    want[4] = ("EABCD", "C")
    for shift, (letters, gold) in want.items():
        s = rotate(OPTS, "B", shift)
        assert (_order(s.options), s.gold) == (letters, gold)
        assert unpermute(s.options, s.gold, s.permutation) == (OPTS, "B")


def test_permute_to_gives_curations_balanced_permutations() -> None:
    """curate.letters.balanced_permutation before the merge (old -> new letters, one rng
    drawn from for each target in turn)."""
    want = {
        0: ["DABCE", "ABCED", "ACDBE", "BDAEC", "CEADB"],
        5: ["BACED", "DBECA", "BCDEA", "EDABC", "BEACD"],
    }
    for seed, moves in want.items():
        rng = random.Random(seed)
        for target, new in zip("ABCDE", moves, strict=True):
            s = permute_to(OPTS, "B", target, rng)
            assert "".join(s.moves[k] for k in OPTS) == new
            assert s.gold == target and s.options[target] == "Heparin"


def test_relabel_and_unpermute_round_trip() -> None:
    s = relabel(OPTS, "B", {"A": "C", "B": "D", "C": "A", "D": "B", "E": "E"})
    assert s == Shown(
        {"A": "Aspirin", "B": "Clopidogrel", "C": "Warfarin", "D": "Heparin", "E": "Apixaban"},
        "D",
        {"A": "C", "B": "D", "C": "A", "D": "B", "E": "E"},
    )
    assert unpermute(s.options, s.gold, s.permutation) == (OPTS, "B")


def test_unpermute_is_tolerant() -> None:
    assert unpermute({"B": "y", "A": "x"}, "A", None) == ({"A": "x", "B": "y"}, "A")
    assert unpermute({"A": "y", "B": "x"}, "B", {"A": "C"}) == ({"B": "x", "C": "y"}, "B")
    assert unpermute({"A": "y", "B": "x"}, None, {"A": "B", "B": "A"})[1] is None
    assert unpermute(None, None, None) == ({}, None)


def test_shown_question_keeps_everything_else() -> None:
    q = Question("q7", "s", "test", "Which?", dict(OPTS), "B", "step1", {"k": 1})
    s = rotate(q.options, q.gold, 1)
    shown = s.question(q)
    assert (shown.options, shown.gold) == (s.options, "A")
    assert (shown.id, shown.question, shown.subject, shown.meta) == (
        "q7",
        "Which?",
        "step1",
        q.meta,
    )
    assert q.options == OPTS and q.gold == "B"


# ----------------------------------------------------------------------------- the callers


def _row(qid: str, options: dict[str, str], gold: str) -> dict:
    user = "Which drug?\n\n" + format_options(options) + "\n\nThink step by step."
    prompt = [{"role": "user", "content": user}]
    return {"options": options, "gold": gold, "source": "s", "question_id": qid, "prompt": prompt}


def test_grpo_option_orders_are_todays() -> None:
    """train.data.permuted_prompts gives the orders it gave before the merge (seed 3)."""
    from medistill.train.data import permuted_prompts

    rows = [_row("q7", OPTS, "B"), _row("two", {"A": "x", "B": "y"}, "A")]
    out, unchanged = permuted_prompts(rows, 4, seed=3)
    swap = {"x": "x", "y": "y", **LETTER_OF}
    got = [("".join(swap[t] for t in r["options"].values()), r["gold"]) for r in out]
    assert unchanged == 0 and got == [
        ("ABCDE", "B"),
        ("xy", "A"),
        ("DABCE", "C"),
        ("yx", "B"),
        ("EADBC", "D"),
        ("yx", "B"),
        ("CEBDA", "C"),
        ("yx", "B"),
    ]
    for r in out:
        assert format_options(r["options"]) in r["prompt"][-1]["content"]


def test_position_balance_orders_are_todays() -> None:
    """curate.letters.PositionBalancer gives the orders it gave before the merge."""
    from medistill.curate.letters import PositionBalancer

    want = {
        ("balance", 11): ["EDBCA", "DEACB", "BECAD", "ABDCE", "CAEBD", "DCBAE"],
        ("shuffle", 2): ["DEBAC", "DBECA", "BCDEA", "EBADC"],
    }
    for (mode, seed), orders in want.items():
        pb = PositionBalancer(mode, seed)
        for i, order in enumerate(orders):
            text, options, gold = pb.apply(f"k{i}", "The answer is B.", dict(OPTS), "B")
            assert _order(options) == order
            assert options[gold] == "Heparin" and text == f"The answer is {gold}."
