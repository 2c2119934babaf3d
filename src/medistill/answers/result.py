"""The extractor's result type and rule names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["strict", "lenient"]
MODES: tuple[str, ...] = ("strict", "lenient")

#: Rules that count as an explicit commitment (reported separately from the fallbacks).
STRICT_RULES = (
    "json_field",
    "boxed",
    "answer_is",
    "option_is_correct",
    "choose",
    "bare_letter",
    "answer_text",
)
LENIENT_RULES = (
    "first_of_several",
    "stated_text",
    "leading_letter",
    "last_line",
    "option_text",
    "last_mention",
)
#: Rules that explain a ``None``.
NONE_RULES = ("empty", "unfinished_think", "refusal", "ambiguous", "no_option", "none")


@dataclass(frozen=True)
class Extraction:
    """The result of :func:`extract_answer`.

    Attributes:
        letter: the option letter the response committed to, or ``None``.
        rule: the name of the rule that matched (see ``STRICT_RULES``, ``LENIENT_RULES``) or,
            for ``None``, why nothing was extracted (``NONE_RULES``).
        span: ``(start, end)`` of the matched text in the analysed answer region, if any.
    """

    letter: str | None
    rule: str
    span: tuple[int, int] | None = None

    @property
    def strict(self) -> bool:
        """True when the letter came from an explicit answer statement."""
        return self.rule in STRICT_RULES
