"""Does the reasoning support the answer line? One verdict per response, read by the one
extractor (no second set of answer patterns).

A response is split at its final answer statement (the commitment the strict extractor reads,
``The answer is B.``): what comes before it is the reasoning, a ``<think>`` block included.
The option the reasoning concludes is what the same extractor reads, in lenient mode, from
that reasoning alone; the answer is what it reads, in strict mode, from the whole response.
:func:`reasoning_verdict` compares the two:

* ``consistent``: the reasoning concludes the option the answer line states;
* ``argues_other``: it concludes another option ("... so C fits best. Answer: B");
* ``argues_none``: the extractor reads the reasoning as rejecting every option (rule
  ``no_option``: "none of the options is correct, the closest is C") or declining to choose
  (rule ``refusal``: "none of the options fits", "cannot determine"), and an answer line
  follows anyway;
* ``no_conclusion``: the reasoning concludes nothing the extractor can read (a list of
  findings, or no reasoning at all before the answer);
* ``no_answer``: no answer line (nothing to compare with).

:func:`split_reasoning` is the same split as positions in the raw text, for the early-answering
audit (:mod:`medistill.evaluate.early_answer`), which feeds the model its own reasoning cut short.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medistill.answers.extract import extract_answer, prepare
from medistill.answers.patterns import answer_region, clean_markup
from medistill.answers.result import Extraction
from medistill.answers.textmatch import asks_for_exception

VERDICTS = ("consistent", "argues_other", "argues_none", "no_conclusion", "no_answer")
#: Verdicts of a reasoning that does not support its answer line.
INCONSISTENT = ("argues_other", "argues_none")
#: Extractor rules that, read from the reasoning alone, mean it argues for no option.
_NONE_RULES = ("no_option", "refusal")
#: The extractor's rules that read a conclusion from reasoning: explicit statements ("the answer
#: is C", "option C is correct", "I would choose C", "the answer is <option C's text>"). A
#: reasoning that only names options in prose (one by one, as explanations do) concludes nothing
#: the audit can trust: on GPT-4's MedQA/MedMCQA explanations, 12 of 12 sampled "argues for
#: another option" read from option text alone were misreadings (BENCHMARKS.md, Explanations).
CONCLUSION_RULES = (
    "answer_is",
    "option_is_correct",
    "choose",
    "answer_text",
    "boxed",
    "json_field",
)
#: On a question asking for the exception ("all of the following EXCEPT"), "option C is correct"
#: judges a statement: only these rules read a conclusion there.
_EXCEPTION_RULES = ("answer_is", "choose", "boxed", "json_field")

# The think tags themselves (not answer patterns): removed so the extractor reads the reasoning
# inside a block as reasoning (a "## Final Response" heading closes a block too).
_TAGS = re.compile(
    r"</?think(?:ing)?>|^[ \t]*#{1,3}[ \t]*(?:Final[ \t]+Response|Thinking)[ \t]*:?[ \t]*$",
    re.I | re.M,
)
_SENTENCE_END = ".!?\n"


@dataclass(frozen=True)
class ReasoningVerdict:
    """What the reasoning argues against what the answer line states.

    Attributes:
        answer: the answer line's letter (strict extraction of the whole response), or None.
        concluded: the option the reasoning before the final statement concludes (lenient
            extraction of that reasoning), or None.
        verdict: one of :data:`VERDICTS`.
        rule: the extractor's rule for ``concluded`` (why it is None, when it is).
    """

    answer: str | None
    concluded: str | None
    verdict: str
    rule: str = ""

    @property
    def inconsistent(self) -> bool:
        """True when the reasoning argues for another option, or for none."""
        return self.verdict in INCONSISTENT


def _extract(text: str, options: Any, mode: str, question: str | None) -> Extraction:
    return extract_answer(text, options, mode=mode, question=question)  # type: ignore[arg-type]


def _final_statement_start(text: str, options: Any, question: str | None) -> int | None:
    """Where, in the raw ``text``, the sentence holding the final answer statement begins
    (``None`` when the strict extractor finds no statement with a position)."""
    found = _extract(text, options, "strict", question)
    if found.letter is None or found.span is None:
        return None
    prepared = prepare(text, options, None)
    if isinstance(prepared, Extraction):
        return None
    region = prepared[0]
    start, end = found.span
    sentence = max(region.rfind(c, 0, start) for c in _SENTENCE_END) + 1
    snippet = region[sentence:end].strip()
    raw_region, _ = answer_region(text)
    offset = len(text) - len(raw_region)
    at = raw_region.rfind(snippet) if snippet else -1
    if at >= 0:
        return offset + at
    # markup inside the statement ("**Answer: B**"): the raw line whose cleaned text holds it
    pos = len(raw_region)
    for line in reversed(raw_region.splitlines(keepends=True)):
        pos -= len(line)
        if snippet and snippet in clean_markup(line):
            return offset + pos
    return None


def split_reasoning(
    text: str | None,
    options: Mapping[str, str] | Sequence[str] | None,
    *,
    question: str | None = None,
) -> tuple[str, str | None]:
    """``(reasoning, answer)``: the raw response up to the sentence of its final answer
    statement, and that statement's letter (strict). Without a statement: the whole text
    and ``None``. The reasoning keeps its ``<think>`` tags (a model fed it back reads its own
    text)."""
    if text is None or not str(text).strip():
        return "", None
    text = str(text)
    answer = _extract(text, options, "strict", question).letter
    if answer is None:
        return text, None
    cut = _final_statement_start(text, options, question)
    return (text[:cut] if cut is not None else text), answer


def reasoning_text(reasoning: str) -> str:
    """The reasoning as plain text: think tags removed, so a block's content is read as the
    reasoning it is."""
    return re.sub(r"\n\s*\n\s*", "\n\n", _TAGS.sub("\n\n", reasoning)).strip()


def reasoning_verdict(
    text: str | None,
    options: Mapping[str, str] | Sequence[str] | None,
    *,
    question: str | None = None,
) -> ReasoningVerdict:
    """Whether the option the reasoning concludes is the one the answer line states (see the
    module docstring for the verdicts). Pure: same text, same verdict."""
    reasoning, answer = split_reasoning(text, options, question=question)
    plain = reasoning_text(reasoning) if answer is not None else ""
    if not plain:
        verdict = "no_answer" if answer is None else "no_conclusion"
        return ReasoningVerdict(answer, None, verdict, "empty")
    read = _extract(plain, options, "strict", question)
    trusted = _EXCEPTION_RULES if asks_for_exception(question) else CONCLUSION_RULES
    if read.letter is not None and read.rule not in trusted:
        return ReasoningVerdict(answer, None, "no_conclusion", read.rule)
    if read.letter is None:
        verdict = "argues_none" if read.rule in _NONE_RULES else "no_conclusion"
        return ReasoningVerdict(answer, None, verdict, read.rule)
    verdict = "consistent" if read.letter == answer else "argues_other"
    return ReasoningVerdict(answer, read.letter, verdict, read.rule)


__all__ = [
    "INCONSISTENT",
    "VERDICTS",
    "ReasoningVerdict",
    "reasoning_text",
    "reasoning_verdict",
    "split_reasoning",
]
