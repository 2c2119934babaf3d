"""Curation and evaluation read the same letter from the same text: every row of the
extraction tables goes through curation's ``verify`` and evaluation's ``extract_answer``."""

from __future__ import annotations

import pytest

from medistill.answers import answer_statements, extract_answer
from medistill.curate.filters import verify
from test_answers import CASES, OPTS

from extraction_cases import CASES as LABELLED

ROWS = [(text, OPTS) for text, _, _ in CASES] + [(text, opts) for text, opts, _ in LABELLED]


@pytest.mark.parametrize(("text", "options"), ROWS)
def test_curation_reads_what_evaluation_reads(text, options):
    gold = next(iter(options))
    row = {"question": "q?", "options": options, "gold": gold, "text": text}
    verdict = verify(row, mode="strict")
    read = extract_answer(text, options, mode="strict")
    assert verdict.letter == read.letter, (verdict, read)
    # Curation calls a trace conflicting only when it really states two answers after the
    # same preprocessing (a runaway continuation's "answer" is not one of them).
    if verdict.reason == "conflicting_answers" and read.rule not in (
        "ambiguous",
        "first_of_several",
    ):
        assert len(set(answer_statements(text, options))) > 1
        assert read.letter in answer_statements(text, options)
