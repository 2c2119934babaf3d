"""The extractor on the blind labelled set (``extraction_cases_blind.py``: written by someone who
had not seen the rules). First measured before any rule was changed for it (lenient 83.5%
agreement, 12.1% false answers); the floors below hold the figures after the general rules it
showed missing (BENCHMARKS.md, "Answer extraction")."""

from __future__ import annotations

import pytest

from extraction_cases_blind import FAMILIES_BLIND
from medistill.answers import extract_answer

CASES = [case for cases in FAMILIES_BLIND.values() for case in cases]


def _rates(mode: str) -> tuple[float, float]:
    read = [extract_answer(t, o, mode=mode).letter for t, o, _ in CASES]
    agree = sum(r == e for r, (_, _, e) in zip(read, CASES, strict=True)) / len(CASES)
    false = sum(r is not None and r != e for r, (_, _, e) in zip(read, CASES, strict=True))
    return agree, false / len(CASES)


@pytest.mark.parametrize(
    ("mode", "agree", "false"), [("lenient", 0.93, 0.03), ("strict", 0.8, 0.02)]
)
def test_blind_set_agreement(mode: str, agree: float, false: float) -> None:
    got_agree, got_false = _rates(mode)
    assert len(CASES) >= 90
    assert got_agree >= agree and got_false <= false, (got_agree, got_false)


def test_every_family_is_covered() -> None:
    assert {"degenerate_tail", "hedge_then_commit", "none_then_commit", "invented_question"} <= set(
        FAMILIES_BLIND
    )
    assert all(len(v) >= 15 for k, v in FAMILIES_BLIND.items() if k != "general")
