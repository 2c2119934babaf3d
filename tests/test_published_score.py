"""The published-table scoring rule (HuatuoGPT-o1 / MedReason style): the better of a
first-match and a last-match reading, option-text fallback, no abstention. An upper bound
beside medistill's strict and lenient accuracy, on a table where the readings differ."""

from __future__ import annotations

import pytest

from medistill.answers import extract_answer
from medistill.answers.published import published_reading

OPTS = {"A": "Warfarin", "B": "Heparin", "C": "Aspirin", "D": "Clopidogrel"}


@pytest.mark.parametrize(
    ("text", "gold", "first", "last", "fallback", "correct", "ours"),
    [
        # first and last differ: either one being gold counts for the published rule
        ("Option A looks right at first, but the answer is B.", "B", "A", "B", None, True, "B"),
        ("Option A looks right at first, but the answer is B.", "A", "A", "B", None, True, "B"),
        ("The answer is (C). Not (D).", "D", "C", "D", None, True, "C"),
        # a hedge between two letters: no answer for us, correct twice over for them
        ("It is either A or B.", "A", "A", "B", None, True, None),
        ("(A) or (B): hard to say.", "B", "A", "B", None, True, None),
        # no letter at all: the most similar option's text, never an abstention
        ("Heparin, since it does not cross the placenta.", "B", None, None, "B", True, "B"),
        ("I cannot decide.", "C", None, None, None, False, None),
        # the article "A" in a vignette is not an option letter
        ("A 30-year-old woman... The answer is D.", "D", "D", "D", None, True, "D"),
        ("<think>A? maybe (C)</think>\nFinal: (B)", "C", "B", "B", None, False, "B"),
    ],
)
def test_published_rule_reads_first_and_last_and_never_abstains(
    text, gold, first, last, fallback, correct, ours
) -> None:
    r = published_reading(text, OPTS, gold)
    assert (r.first, r.last) == (first, last)
    if fallback is not None:
        assert r.fallback == fallback
    assert r.correct is correct
    assert extract_answer(text, OPTS, mode="lenient").letter == ours


def test_it_is_an_upper_bound_of_lenient_accuracy() -> None:
    """On every row, correct by medistill's lenient reading implies correct by the rule."""
    rows = [
        ("The answer is B.", "B"),
        ("A or B", "B"),
        ("Heparin.", "B"),
        ("Clearly (C), though (D) is close.", "D"),
        ("**B**", "B"),
    ]
    for text, gold in rows:
        ours = extract_answer(text, OPTS, mode="lenient").letter == gold
        assert not ours or published_reading(text, OPTS, gold).correct
