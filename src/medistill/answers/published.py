"""The scoring rule of published medical-reasoning tables, for a column beside ours.

HuatuoGPT-o1's and MedReason's released scorers read a response's letter twice, once by the
first option letter it writes and once by the last, count the question correct when either
reading is the gold letter, and never abstain: a response with no letter is given the option
whose text is most similar to it. Implemented here from that description (not from their
code), so a medistill run can be set beside a published table.

It is an upper bound, not an accuracy: two readings per response and a forced guess for every
response that commits to nothing can only raise the score above what the response stated.
It never feeds curation, rewards or medistill's own accuracy, which use the one extractor
(:func:`medistill.answers.extract_answer`); it is reported as its own labelled column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

_THINK_CLOSE = re.compile(r"</think>", re.I)


@dataclass(frozen=True)
class PublishedReading:
    """How the published rule reads one response."""

    first: str | None  # the first option letter written
    last: str | None  # the last option letter written
    fallback: str | None  # the most similar option's letter, when no letter is written
    correct: bool  # gold is the first, the last, or (no letter) the fallback


def _letter_pattern(letters: str) -> re.Pattern[str]:
    # An option letter as an answer is written: "(B)", "[B]", "B." / "B)" / "B:", "option B",
    # "answer is B", "**B**", the whole response, or one of a list ("A or B", "A, C");
    # not the article in "A 45-year-old".
    L = letters
    return re.compile(
        rf"\((?P<a>[{L}])\)|\[(?P<b>[{L}])\]|(?<![A-Za-z0-9])(?P<c>[{L}])[.):](?=\s|$)"
        rf"|\b(?:option|choice|answer(?:\s+is)?)\s*:?\s*\**(?P<d>[{L}])\b"
        rf"|^\s*\**(?P<e>[{L}])\**\s*$"
        rf"|(?<![A-Za-z0-9])(?P<f>[{L}])(?=\s+(?:or|and)\s+[{L}]\b|\s*,\s*[{L}]\b)",
        re.I | re.M,
    )


def published_reading(
    text: str | None, options: Mapping[str, str], gold: str | None
) -> PublishedReading:
    """Read ``text`` by the published rule (see the module docstring).

    >>> opts = {"A": "Warfarin", "B": "Heparin", "C": "Aspirin", "D": "Clopidogrel"}
    >>> published_reading("A is tempting, but the answer is B.", opts, "B").correct
    True
    >>> published_reading("Heparin, as it does not cross the placenta.", opts, "B").fallback
    'B'
    """
    answer = _THINK_CLOSE.split(text or "")[-1]
    letters = "".join(options)
    found = (
        [
            next(g for g in m.groups() if g).upper()
            for m in _letter_pattern(letters).finditer(answer)
        ]
        if letters
        else []
    )
    first, last = (found[0], found[-1]) if found else (None, None)
    fallback = None
    if not found and options:
        low = answer.lower().strip()
        fallback = max(
            options,
            key=lambda k: difflib.SequenceMatcher(None, low, str(options[k]).lower()).ratio(),
        )
    correct = gold is not None and gold in {first, last, fallback}
    return PublishedReading(first, last, fallback, correct)
