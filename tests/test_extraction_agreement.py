"""One reading: curation's verification, the correctness reward and evaluation's rescore read
the same letter from the same text, in the same mode. Every row of the extraction tables
(hand-labelled cases included) goes through all three: ``curate.filters.verify``,
``train.rewards.correctness`` and ``medistill rescore`` (a real JSONL file, one run per mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extraction_cases_blind import FAMILIES_BLIND
from medistill.answers import answer_statements, extract_answer
from medistill.curate.filters import verify
from medistill.data.options import lettered
from medistill.evaluate.rescore import RescoreConfig, rescore
from medistill.train.rewards import correctness
from test_answers import CASES, OPTS

from extraction_cases import CASES as LABELLED

QUESTION = "A patient presents with the findings described. Which option is the answer?"
BLIND = [case for cases in FAMILIES_BLIND.values() for case in cases]
ROWS = [(text, OPTS) for text, _, _ in CASES] + [
    (text, dict(lettered(opts))) for text, opts, _ in LABELLED + BLIND if text
]
MODES = ("strict", "lenient")


@pytest.fixture(scope="module")
def rescored(tmp_path_factory) -> dict[str, list[str | None]]:
    """The letter ``medistill rescore`` reads for every row, per mode (one file, one run)."""
    folder = tmp_path_factory.mktemp("rescore")
    src = folder / "rows.jsonl"
    with open(src, "w", encoding="utf-8") as fh:
        for text, options in ROWS:
            row = {"response": text, "gold": "A", "options": options, "question": QUESTION}
            fh.write(json.dumps(row) + "\n")
    out: dict[str, list[str | None]] = {}
    for mode in MODES:
        dest = folder / f"{mode}.jsonl"
        rescore(RescoreConfig(input=str(src), out=str(dest), options_field="options", mode=mode))
        out[mode] = [json.loads(line)["extracted"] for line in dest.read_text().splitlines()]
    return out


def _reward_letter(text: str, options: dict[str, str]) -> str | None:
    """The letter the correctness reward credits (it reads strictly, as GRPO trains)."""
    prompt = [{"role": "user", "content": QUESTION}]
    credited = [
        letter
        for letter in options
        if correctness([text], gold=[letter], options=[options], prompts=[prompt]) == [1.0]
    ]
    assert len(credited) <= 1, credited
    return credited[0] if credited else None


@pytest.mark.parametrize("i", range(len(ROWS)))
def test_curation_reward_and_rescore_read_one_letter(i: int, rescored) -> None:
    text, options = ROWS[i]
    gold = next(iter(options))
    row = {"question": QUESTION, "options": options, "gold": gold, "text": text}
    imported = {**row, "endpoint": "import:set.json"}  # an imported trace reads the same
    for mode in MODES:
        read = extract_answer(text, options, mode=mode, question=QUESTION)
        for verdict in (verify(row, mode=mode), verify(imported, mode=mode)):
            assert verdict.letter == read.letter == rescored[mode][i], (mode, verdict, read)
            if read.rule == "no_option":  # a response rejecting every option is never kept
                assert verdict.reason == "no_answer"
    assert (
        _reward_letter(text, options)
        == extract_answer(text, options, mode="strict", question=QUESTION).letter
    )
    # Curation calls a trace conflicting only when it really states two answers after the
    # same preprocessing (a runaway continuation's "answer" is not one of them).
    verdict = verify(row, mode="strict")
    read = extract_answer(text, options, mode="strict", question=QUESTION)
    if verdict.reason == "conflicting_answers" and read.rule not in ("ambiguous",):
        assert len(set(answer_statements(text, options))) > 1
        assert read.letter in answer_statements(text, options)


def test_the_table_covers_rejections_and_prose_answers() -> None:
    """The table holds what made the readings part: responses rejecting every option and
    responses stating an option's text (the extractor's stated_text rule)."""
    rules = {
        extract_answer(t, o, mode=mode, question=QUESTION).rule for t, o in ROWS for mode in MODES
    }
    assert {"no_option", "stated_text", "answer_is", "none"} <= rules


def test_rescore_reads_the_question_field(tmp_path: Path) -> None:
    """An EXCEPT question is not read by stated option text, in rescore as in curation."""
    src = tmp_path / "x.jsonl"
    opts = {"A": "Fever", "B": "Rash", "C": "Arthritis"}
    prose = "Arthritis is typical here.\n\nThe other findings are seen in it too."
    rows = [
        {"response": prose, "gold": "C", "options": opts, "question": q}
        for q in ("Which is typical?", "All of the following are typical EXCEPT:")
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RescoreConfig(
        input=str(src), out=str(tmp_path / "o.jsonl"), options_field="options", mode="lenient"
    )
    rescore(cfg)
    got = [json.loads(x)["extracted"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert got == ["C", None]
    for r, letter in zip(rows, got, strict=True):
        row = {"question": r["question"], "options": opts, "gold": "C", "text": r["response"]}
        assert verify(row, mode="lenient").letter == letter
