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
    normalise_text,
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
    r"|(?:Here(?:\s+is|\s+are|['’]s)|Below\s+(?:is|are)|The\s+following\s+(?:is|are)|"
    r"Let(?:'s|\s+us)\s+(?:practice|try|consider|look\s+at|do|move\s+on\s+to))\s+"
    rf"(?:with\s+)?(?:an?\s+|some\s+|a\s+few\s+|one\s+|\w+\s+)?(?:{_NEW}\s+)*{_KINDS})",
    re.I,
)


# One option of a list the response writes: "A. text", "(B) text", "- C) text".
_OPTION_LINE = re.compile(r"^[ \t]*(?:[-*•][ \t]*)?[\(\[]?([A-J])[\)\].][ \t]+(\S.*)$")
# Options written on one line: "Options: A) Vitamin A B) Vitamin C C) Vitamin D".
_INLINE_OPTION = re.compile(r"(?:^|\s)\(?([A-J])\)\s*(.+?)(?=\s+\(?[A-J]\)\s|$)")
# A line that asks a question: ends with "?", is a "Question:" / "Quiz:" header, or announces
# a new one ("a related question", "another case").
_ASKS = re.compile(
    r"\?\s*$|^\s*(?:question|quiz|q|problem|case)\s*\d*\s*[:.]|\b(?:question|quiz)\s*\d*\s*:\s*$|"
    r"\b(?:similar|related|follow[- ]?up|practice|another|new|next|bonus|additional)\s+"
    r"(?:question|case|quiz|problem|scenario)",
    re.I,
)


_INLINE_START = re.compile(r"^\s*(?:(?:Options?|Choices?)\s*:\s*)?\(?A\)\s*\S", re.I)


def _listed(line: str) -> list[tuple[str, str]]:
    """The options a line lists inline ("Options: A) x B) y C) z", three or more, starting
    with A), else none: letters cited in prose ("(choice D) may be considered") are not."""
    if not _INLINE_START.match(line):
        return []
    found = _INLINE_OPTION.findall(line)
    return found if len({k for k, _ in found}) >= 3 else []


def _names(option: str | None, listed: str) -> bool:
    """Whether a listed option's text names the question's option of that letter."""
    norm, text = normalise_text(option or ""), normalise_text(listed)
    return bool(norm) and (norm in text or text in norm)


def _paragraph_start(lines: list[str], k: int) -> int:
    """The index of the first line of the paragraph holding line ``k``."""
    while k > 0 and lines[k - 1].strip():
        k -= 1
    return k


def _invented_block(region: str, opts: dict[str, str]) -> int | None:
    """Where a question the response invented starts: a list of options that are not the
    question's (fewer than half of the listed texts name the option of their letter) right
    after a line that asks ("...?", "Quiz:", "Follow-up question") — the start of that
    paragraph. What follows answers the invention, not the question asked."""
    if not opts:
        return None
    lines = region.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    i = 0
    while i < len(lines):
        group = _listed(lines[i])
        end = i + 1
        if not group:
            end = i
            while end < len(lines) and (m := _OPTION_LINE.match(lines[end])):
                group.append((m.group(1), m.group(2)))
                end += 1
            end = max(end, i + 1)
        letters = "".join(k for k, _ in group)
        if len(group) >= 2 and "ABCDEFGHIJ".startswith(letters):  # A, B, C... in order
            matched = sum(_names(opts.get(k), text) for k, text in group)
            before = [ln for ln in lines[:i] if ln.strip()][-2:]
            if matched * 2 < len(group) and any(_ASKS.search(b) for b in before):
                k = _paragraph_start(lines, i)
                if k == i and k > 0:  # the options open a paragraph: the asking one before
                    k -= 1
                    while k > 0 and not lines[k].strip():
                        k -= 1
                    k = _paragraph_start(lines, k)
                return starts[k]
        i = end
    return None


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
    invented = _invented_block(region, opts)
    if invented is not None:
        region = region[:invented]
        if not region.strip():
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
        question=question,
    )
    for step in CASCADE:
        if step.fallback and not ctx.fallbacks:
            break
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
