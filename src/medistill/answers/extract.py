"""The extractor's entry points (:func:`extract_answer`, :func:`answer_statements`)
over one preparation step (:func:`prepare`); see the package docstring."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from medistill.answers.cascade import CASCADE, Context, no_answer
from medistill.answers.continuations import degenerate_start
from medistill.answers.patterns import (
    answer_region,
    clean_markup,
    cut_runaway,
    first_commitment,
    letter_patterns,
    letters_for,
    option_map,
    statement_hits,
)
from medistill.answers.result import MODES, Extraction, Mode

# A response that opens on questions of its own ("Question 2:", "Here are some practice
# questions", "Follow-up question:", "Let's practice with another case", "Q: ...? A: ...")
# before answering the one asked: what it "answers" are its inventions.
_KINDS = r"(?:questions?|MCQs?|cases?|scenarios?|problems?|vignettes?|examples?)"
_NEW = (
    r"(?:more|similar|practice|additional|sample|related|another|follow[- ]?up|new|next|"
    r"bonus|further|extra|different)"
)
_INVENTED = re.compile(
    r"\A\s*(?:(?:Sure|Okay|OK|Great|Certainly|Of\s+course|Absolutely)\b[!.,]?\s*)?"
    r"(?:(?:#{1,4}\s*)?(?:Question|Q)\s*(?:[2-9]|\d{2,})\s*[:.)]"
    r"|(?:#{1,4}\s*)?Q\s*[:.]\s+\S[^\n]*\?\s*\n\s*A\s*[:.]"
    rf"|(?:#{{1,4}}\s*)?{_NEW}\s+{_KINDS}\s*(?:\d+\s*)?[:.)\n]"
    r"|(?:Here\s+(?:is|are|'s)|Below\s+(?:is|are)|The\s+following\s+(?:is|are)|"
    r"Let(?:'s|\s+us)\s+(?:practice|try|consider|look\s+at|do|move\s+on\s+to))\s+"
    rf"(?:with\s+)?(?:an?\s+|some\s+|a\s+few\s+|one\s+|\w+\s+)?(?:{_NEW}\s+)*{_KINDS})",
    re.I,
)


def prepare(
    text: str, options: Mapping[str, str] | Sequence[str] | None, letters: str | None
) -> tuple[str, str, dict[str, str], dict[str, re.Pattern[str]]] | Extraction:
    """The one preprocessing step of :func:`extract_answer` and :func:`answer_statements`:
    the answer region (after ``</think>``), markdown and LaTeX stripped, and a runaway
    continuation cut after the first commitment. Returns ``(region, letters, options,
    patterns)``, or the no-answer :class:`Extraction` that already explains the text."""
    letters = letters_for(options, letters)
    opts = option_map(options)
    region, why = answer_region(text)
    if why:
        return Extraction(None, why)
    region = clean_markup(region)
    if not region.strip():
        return Extraction(None, "empty")
    if _INVENTED.match(region):
        return Extraction(None, "none")
    pats = letter_patterns(letters)
    # A runaway continuation (a new question, chat turn or option list after the model has
    # committed) is not part of the answer: cut it after the first commitment of any kind.
    first = first_commitment(region, pats, opts)
    region = cut_runaway(region, first, pats)
    # A degenerate tail after the answer (empty code fences, placeholder functions, one line
    # again and again, of any length) is junk, not a later answer: cut it too.
    junk = degenerate_start(region, first) if first is not None else None
    return (region[:junk] if junk is not None else region), letters, opts, pats


# ----------------------------------------------------------------------------- main API


def extract_answer(
    text: str | None,
    options: Mapping[str, str] | Sequence[str] | None = None,
    *,
    mode: Mode = "lenient",
    letters: str | None = None,
    truncated: bool = False,
    question: str | None = None,
) -> Extraction:
    """Extract the option letter a model response commits to.

    Args:
        text: the raw response (reasoning included; ``<think>`` handled here).
        options: the question's options (letter -> text, or an ordered list). Needed to
            resolve answers given as option text and to know the valid letters.
        mode: ``strict`` (explicit answer statements only) or ``lenient`` (with fallbacks).
        letters: the valid letters, when ``options`` is not given (default ``ABCDE``).
        truncated: the generation hit its token limit; only an explicit statement counts,
            because a fallback on a cut-off text would read a letter the model never chose.
        question: the question asked, when the caller has it: a response stating its answer
            as option text is not read by text when the question asks for the exception
            ("all of the following EXCEPT"). Curation, rewards and evaluation pass it alike.

    Returns:
        An :class:`Extraction` with the letter (or ``None``) and the rule that decided it.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if text is None or not str(text).strip():
        return Extraction(None, "empty")
    prepared = prepare(str(text), options, letters)
    if isinstance(prepared, Extraction):
        return prepared
    region, letters, opts, pats = prepared
    ctx = Context(
        region,
        letters,
        opts,
        pats,
        fallbacks=mode == "lenient" and not truncated,
        complete=not truncated,
        question=question,
    )
    for step in CASCADE:
        if step.fallback and not ctx.fallbacks:
            break
        if step.complete_only and not ctx.complete:
            continue
        found = step.apply(ctx)
        if found is not None:
            return found
    return no_answer(region)


def extract_letter(
    text: str | None, options: Mapping[str, str] | Sequence[str] | None = None, **kw
) -> str | None:
    """Shorthand for ``extract_answer(...).letter``."""
    return extract_answer(text, options, **kw).letter


def answer_statements(
    text: str | None, options: Mapping[str, str] | Sequence[str] | None = None
) -> list[str]:
    """Letters of every explicit answer statement in the answer region, in order.

    Curation uses it to reject a response that commits to two different final answers
    ("The answer is B. ... Final answer: D"), which :func:`extract_answer` resolves to the
    last one. The same preprocessing (:func:`prepare`: a runaway continuation is cut) and
    the same patterns as the strict rules: one extractor, two views.
    """
    if text is None or not str(text).strip():
        return []
    prepared = prepare(str(text), options, None)
    if isinstance(prepared, Extraction):
        return []
    region, _, opts, pats = prepared
    hits = statement_hits(region, pats, opts)
    return [letter for _, _, letter, _ in sorted(hits)]
