"""Responses that deny every option, then name the "closest" one: no commitment.

"None of the options is correct; the closest would be C" is not an answer to grade as C: the
model says so itself. Read as C it turns a model's honest doubt into a scored guess (a
published scorer does exactly that). :func:`denies_every_option` recognises the pair, a
denial and a hedged pick, so the extractor answers ``None`` (rule ``no_option``) in both
modes. A question whose options include "None of the above" is left to the usual rules: there
the denial is an answer.
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
    r"fully\s+|truly\s+|exactly\s+|strictly\s+)?(?:correct|right|accurate|appropriate|valid|"
    r"applicable|the\s+(?:correct|right)\s+answer)"
    r"|no(?:ne)?\s+(?:single\s+)?(?:option|choice|answer)s?\s+(?:here\s+)?(?:is|are)\s+"
    r"(?:entirely\s+|completely\s+|fully\s+)?(?:correct|right|accurate)"
    r"|(?:correct|right|true|actual)\s+(?:answer|diagnosis|option|choice)\s+(?:is\s+)?"
    r"(?:not|isn't)\s+(?:listed|given|provided|included|present|available|among|one\s+of|in)"
    rf"|(?:is|are)\s+not\s+(?:listed|included|present)\s+(?:among|in)\s+{_OPTIONS}"
    r"|(?:all|each)\s+of\s+the\s+(?:options|choices)\s+(?:is|are)\s+(?:incorrect|wrong)"
    r"|\bnot\s+(?:listed|included|present|given|provided|offered|available)\s+(?:as\s+an?\s+|"
    r"among\s+(?:the\s+)?|in\s+the\s+|here\s+as\s+an?\s+)(?:\w+\s+)?(?:options?|choices?|answers?)"
    r"|\b(?:is|are)\s+not\s+(?:one\s+of|among)\s+the\s+(?:\w+\s+)?(?:options|choices|answers)"
    rf"|none\s+of\s+{_OPTIONS}\s+(?:directly\s+|exactly\s+|fully\s+)?(?:match(?:es)?|fits?|"
    r"corresponds?|describes?)\b)",
    re.I,
)
_HEDGED_PICK = re.compile(
    r"\b(?:closest|nearest|best\s+available|least\s+(?:wrong|incorrect|bad)|"
    r"most\s+(?:closely|nearly)|if\s+(?:I|we|one)\s+(?:had|have|must|were|was)\s+(?:forced\s+)?"
    r"(?:to\s+)?(?:choose|pick|select|answer)|if\s+forced|forced\s+to\s+(?:choose|pick|select)|"
    r"(?:would|could)\s+(?:reluctantly\s+)?(?:lean|default)|as\s+a\s+best\s+guess|best\s+guess)\b",
    re.I,
)
_NONE_OPTION = re.compile(
    r"^\s*(?:none|none of the (?:above|options|choices)|no answer|neither)\b", re.I
)


def denies_every_option(region: str, options: Mapping[str, str]) -> bool:
    """Whether ``region`` says no option is correct (or the answer is not listed) and names
    an option only as the closest, a forced or a best-guess pick."""
    if any(_NONE_OPTION.match(text or "") for text in options.values()):
        return False
    denial = _DENIAL.search(region)
    return bool(denial and _HEDGED_PICK.search(region))
