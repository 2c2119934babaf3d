"""Extraction families that held-out real outputs showed were missed: an answer followed by
degenerate junk of any length, an answer key that lost its opening quote and brace, a
denial of every option followed by a hedged "closest" pick, and a conclusion that names
the answer only as emphasised option text. Table cases live in extraction_cases.py; these
tests add the lengths and the real phrasings from ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medistill.answers import extract_answer

from extraction_cases import MED

JUNK = {
    "empty fences": "```\n```\n",
    "placeholder function": "```python\ndef answer():\n    pass\n```\n",
    "a later answer line, again and again": "The answer is A.\n",
    "letters in code": "```\nprint('C')\n# D\n```\n",
}


@pytest.mark.parametrize("junk", sorted(JUNK))
@pytest.mark.parametrize("repeats", [6, 200, 5000])
def test_a_stated_answer_survives_degenerate_junk_of_any_length(junk: str, repeats: int) -> None:
    text = (
        "Low ferritin and microcytosis: iron deficiency. The answer is B.\n" + JUNK[junk] * repeats
    )
    for mode in ("strict", "lenient"):
        assert extract_answer(text, MED, mode=mode).letter == "B"
        assert extract_answer(text, MED, mode=mode, truncated=True).letter == "B"


def test_prose_after_an_answer_is_not_junk() -> None:
    """A real explanation after the answer keeps its last commitment (a change of mind)."""
    text = (
        "The answer is A.\nWait: the MCV is low.\nFerritin is 5.\nTIBC is high.\n"
        "Smear shows pencil cells.\nThat is iron deficiency.\nSo the answer is B."
    )
    assert extract_answer(text, MED, mode="strict").letter == "B"


def _denials(shared_data: Path) -> list[str]:
    """GPT-3.5/GPT-4's own reasoning (MIRAGE, the prose of its JSON answers) where it says
    the answer is not among the options and then names the closest one."""
    from medistill.answers.hedges import denies_every_option

    out = []
    for name in ("mirage_medqa_cot_gpt35_gpt4.jsonl", "mirage_medmcqa_cot_gpt35_gpt4.jsonl"):
        for line in (shared_data / "llm_outputs" / name).read_text().splitlines():
            for raw in json.loads(line).get("raw_responses") or []:
                try:
                    prose = json.loads(raw).get("step_by_step_thinking")
                except (ValueError, AttributeError):
                    continue
                if isinstance(prose, str) and denies_every_option(prose, MED):
                    out.append(prose)
    return out


def test_real_denials_with_a_closest_pick_commit_to_nothing(shared_data: Path) -> None:
    prose = _denials(shared_data)
    assert len(prose) >= 8, len(prose)
    for text in prose:
        for mode in ("strict", "lenient"):
            got = extract_answer(text, MED, mode=mode)
            assert got.letter is None and got.rule == "no_option", (text[-200:], got)
    # The same answers with their JSON field kept are read from the field: there the
    # response formally commits, and parsed JSON answers are never second-guessed.
    wrapped = json.dumps({"step_by_step_thinking": prose[0], "answer_choice": "B"})
    assert extract_answer(wrapped, MED, mode="strict").letter == "B"
