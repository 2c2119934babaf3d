"""Responses that reject every option: no answer, unless they commit afterwards.

"Therefore, the correct answer is not listed among the options provided." is not an answer to
grade, whatever option texts the analysis before it mentioned: the model says so itself. A
response that rejects every option and *then* commits ("none fits exactly ... I will choose
C", "the closest match is B", "Answer: D") has answered, as a careful labeller reads it: the
commitment after the denial is the answer, and the ordinary rules read it. So the extractor's
``no_option`` rule fires only when a denial of every option is the response's last word on the
answer (:func:`denies_every_option`). A question whose options include "None of the above" is
left to the usual rules: there the denial is an answer.

A denial counts only when it is about the answer ("the correct answer is not listed", "none of
the options is correct", "the most likely diagnosis is not among the choices"), not about a
detail ("this finding is not listed among the answer choices").
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_OPTIONS = (
    r"(?:the\s+)?(?:given\s+|listed\s+|provided\s+|available\s+|answer\s+)?"
    r"(?:options|choices|answers|alternatives)"
)
_DENIAL = re.compile(
    rf"\b(?:none\s+of\s+{_OPTIONS}(?:\s+(?:given|listed|provided|above))?"
    r"(?:\s+(?:is|are|seems?|appears?|looks?)(?:\s+to\s+be)?)?\s+(?:entirely\s+|completely\s+|"
    r"fully\s+|truly\s+|exactly\s+|strictly\s+|perfectly\s+)?(?:correct|right|accurate|"
    r"appropriate|valid|applicable|the\s+(?:correct|right)\s+answer)"
    r"|no(?:ne)?\s+(?:single\s+)?(?:option|choice|answer)s?\s+(?:here\s+)?(?:is|are)\s+"
    r"(?:entirely\s+|completely\s+|fully\s+)?(?:correct|right|accurate)"
    r"|(?:correct|right|true|actual)\s+(?:answer|diagnosis|option|choice)\s+(?:is\s+)?"
    r"(?:not|isn't)\s+(?:listed|given|provided|included|present|available|among|one\s+of|in)"
    rf"|(?:is|are)\s+not\s+(?:listed|included|present|provided|given)\s+(?:among|in)\s+{_OPTIONS}"
    r"|(?:all|each)\s+of\s+the\s+(?:options|choices)\s+(?:is|are)\s+(?:incorrect|wrong)"
    r"|\bnot\s+(?:listed|included|present|given|provided|offered|available)\s+(?:as\s+an?\s+|"
    r"among\s+(?:the\s+)?|in\s+the\s+|here\s+as\s+an?\s+)(?:\w+\s+)?(?:options?|choices?|answers?)"
    r"|\b(?:is|are)\s+not\s+(?:one\s+of|among)\s+the\s+(?:\w+\s+)?(?:options|choices|answers)"
    rf"|none\s+of\s+{_OPTIONS}\s+(?:directly\s+|exactly\s+|fully\s+|perfectly\s+)?(?:match(?:es)?|"
    r"fits?|corresponds?|describes?)\b"
    r"|no\s+(?:option|choice)\s+(?:fits|matches|is\s+a\s+(?:perfect|good|exact)\s+(?:fit|match))"
    rf"|answer\s+(?:is|would\s+be)\s+none\s+of\s+(?:the\s+above|these|them|{_OPTIONS}))",
    re.I,
)
#: What makes a denial about the answer rather than about a detail.
_ABOUT_ANSWER = re.compile(
    r"\b(?:answer|correct|right|true|actual|none|all\s+of|each\s+of|no\s+(?:option|choice)|"
    r"most\s+(?:likely|appropriate|probable|accurate)|best|diagnosis|cause|organism|treatment|"
    r"management|drug|step)\b",
    re.I,
)
_OPTION_WORDS = re.compile(_OPTIONS, re.I)
_NONE_OPTION = re.compile(
    r"^\s*(?:none|none of the (?:above|options|choices)|no answer|neither)\b", re.I
)
_SENTENCE_START = re.compile(r"[.!?\n]\s*")


def denials(region: str, options: Mapping[str, str]) -> list[tuple[int, int]]:
    """Spans of the sentences of ``region`` that say no option is the answer (empty when an
    option itself is "None of the above": there a denial is an answer)."""
    if any(_NONE_OPTION.match(text or "") for text in options.values()):
        return []
    out = []
    for m in _DENIAL.finditer(region):
        start = max((s.end() for s in _SENTENCE_START.finditer(region, 0, m.start())), default=0)
        subject = _OPTION_WORDS.sub(" ", region[start : m.end()])
        if _ABOUT_ANSWER.search(subject):
            out.append((start, m.end()))
    return out


def denies_every_option(
    region: str, options: Mapping[str, str], commitments: list[int] | None = None
) -> bool:
    """Whether ``region`` says no option is the answer and commits to none afterwards.

    ``commitments`` are the offsets where the response commits (explicit statements, JSON
    fields); a commitment after the last denial makes it an answer, read by the usual rules.
    """
    found = denials(region, options)
    if not found:
        return False
    last = found[-1][1]
    return not any(c >= last for c in commitments or [])
