"""Reading an answer a response states as text (no letter), for trace sets written that way.

Public trace sets such as HuatuoGPT-o1's answer in prose, often to an open-ended rewrite of
the question: "The most likely diagnosis is cavernous sinus thrombosis." No letter is named,
so no letter rule reads it. The extractor's ``stated_text`` step (the first lenient step of
:data:`medistill.answers.CASCADE`, never on a cut-off response) calls :func:`stated_option`
here on the prepared answer region, for curation, rewards and evaluation alike.

The rule is built to miss rather than to misread:

* an option text counts only as whole words, ``'s`` and punctuation
  ignored ("Hoigne's syndrome" names "Hoigne syndrome"); texts that are words of every
  sentence or codes ("All", "None", "ab", "2 & 3") never count;
* a sentence that names an option counts only when it is *affirmative*: no negation ("not",
  "rule out", "unlikely", "rather than" ...) and no hedge presenting alternatives ("while",
  "although", "such as", "other", "compared", "like", "least" ...) besides the option's own
  words, and not a numeric range ("20 to 40 minutes" names neither 20 nor 40 minutes);
* every affirmative sentence of the response must name the same single option: two options
  named affirmatively is ``ambiguous`` (never the first, never the gold);
* a question asking for the exception ("all of the following EXCEPT", "which is NOT",
  "least likely") is not read by text at all, since its answer sentence is a negation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from medistill.answers.patterns import NEGATED, normalise_text
from medistill.answers.result import Extraction

#: Rules :func:`stated_option` reports: the option's own text, or the set's reference text.
TEXT_RULES = ("option_text",)

_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b", re.I)
# Alternatives presented rather than chosen ("While X is common, ...", "such as X").
_HEDGE = re.compile(
    r"\b(?:while|whereas|although|though|unlike|such as|like|includ\w*|other|others|another|"
    r"alternative\w*|versus|vs|compared|comparison|differential|distinguish\w*|avoid\w*|"
    r"least|neither|nor|without|except|besides|apart from|also|additionally|however|if|"
    r"otherwise|unless|depend\w*|whether)\b"
)
# Option texts that are ordinary words or codes of combinations ("ab", "1, 2 & 3", "a and
# c"): never matched as text.
_GENERIC = frozenset(
    {"all", "none", "both", "neither", "either", "nil", "all of the above", "none of the above",
     "all of these", "none of these", "both of the above", "any of the above", "true", "false"}
)  # fmt: skip
_CODE = re.compile(r"(?:[a-f]{1,5}|\d+)(?: (?:and |or )?(?:[a-f]{1,5}|\d+))*(?: all)?")
# The ask of a question that wants the exception or the false statement.
_ASKS_EXCEPTION = re.compile(
    r"\b(?:not|except|exception|least|cannot|can't|false|incorrect|untrue|never|wrong)\b", re.I
)
_CONTRACTED_NOT = re.compile(r"\w+n t\b")  # "isn't", "doesn't" once normalised
_ALIAS = re.compile(r" (?:also (?:known|called|termed|referred to) as|aka|i e) ")
_OPTION_LIST = re.compile(r"\n[ \t]*[\(\[]?A[\)\].:][ \t]")
_RANGE_BEFORE = re.compile(r"\d\s*(?:to|or|and|-|–)\s*$")


def _norm(text: str) -> str:
    return normalise_text(_POSSESSIVE.sub("", text))


def matchable(text: str) -> bool:
    """True when an option's text can be recognised in prose (not "All", "ab", "1, 2 & 3")."""
    norm = _norm(text)
    return len(norm) >= 3 and norm not in _GENERIC and not _CODE.fullmatch(norm)


def asks_for_exception(question: str | None) -> bool:
    """True when the question's ask wants the exception or a falsehood.

    The ask is the question's last sentence; given a whole prompt (the question, its option
    list and an instruction, as a reward sees the user turn), the text before the option list
    is the question and its last sentence ending in "?" (if any) the ask."""
    if not question:
        return False
    question = _OPTION_LIST.split(question, maxsplit=1)[0]
    parts = [p for p in _SENTENCE.split(question.strip()) if p.strip()]
    asks = [p for p in parts if p.rstrip().endswith("?")]
    ask = asks[-1] if asks else (parts[-1] if parts else "")
    return _ASKS_EXCEPTION.search(ask) is not None


def _named(sentence: str, refs: list[tuple[str, str, str]]) -> list[tuple[str, str, str]] | None:
    """The references a sentence names as whole words (a text inside a longer named text is
    dropped: "aspirin" inside "aspirin and clopidogrel"); ``None`` for a numeric range."""
    padded = f" {_norm(sentence)} "
    hits = []
    for letter, norm, how in refs:
        at = padded.find(f" {norm} ")
        if at < 0:
            continue
        if norm[0].isdigit() and _RANGE_BEFORE.search(padded[: at + 1]):
            return None
        hits.append((letter, norm, how))
    return [h for h in hits if not any(h[1] != o[1] and h[1] in o[1] for o in hits)]


def _affirmative(sentence: str, hits: list[tuple[str, str, str]]) -> bool:
    rest = f" {_norm(sentence)} "
    for _, norm, _ in hits:
        rest = rest.replace(f" {norm} ", "  ")
    rest = _ALIAS.sub(" ", rest)  # "MYCL1, also known as L-myc": a name, not an alternative
    return not (NEGATED.search(rest) or _HEDGE.search(rest) or _CONTRACTED_NOT.search(rest))


def stated_option(
    region: str,
    options: Mapping[str, str],
    *,
    question: str | None = None,
) -> Extraction:
    """The one option a prepared answer region states as text (see the module's rule).

    Args:
        region: the answer region, already prepared (``</think>`` split off, markdown removed).
        options: letter -> option text.
        question: the question; one asking for the exception is not read by text.

    Returns:
        An :class:`Extraction` with rule ``option_text``; or no letter
        with ``ambiguous`` (two options stated) or ``none``.
    """
    if asks_for_exception(question):
        return Extraction(None, "none")
    refs = [(k, _norm(v), "option_text") for k, v in options.items() if matchable(v)]
    if not refs:
        return Extraction(None, "none")
    stated: dict[str, set[str]] = {}
    for sentence in _SENTENCE.split(region):
        hits = _named(sentence, refs) if sentence.strip() else []
        if hits is None:  # a numeric range: not a statement of one option
            continue
        if hits and _affirmative(sentence, hits):
            for letter, _, how in hits:
                stated.setdefault(letter, set()).add(how)
    if len(stated) > 1:
        return Extraction(None, "ambiguous")
    if not stated:
        return Extraction(None, "none")
    ((letter, _),) = stated.items()
    return Extraction(letter, "option_text")
