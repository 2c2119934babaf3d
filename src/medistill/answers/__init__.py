"""THE answer extractor: the only place in medistill that turns model text into a letter.

Curation's verification, the RL correctness reward and evaluation all call
:func:`extract_answer`, so a trace kept for training, a reward given and an accuracy reported
always agree on what a response answered.

Two modes:

* ``strict`` accepts only an explicit commitment: ``The answer is (B)``, ``Answer: B``,
  ``\\boxed{B}``, ``"answer_choice": "B"``, ``Option B is correct``, ``I would choose B``, a
  response that is nothing but ``B`` / ``B. <option B text>``, or ``the answer is <option
  text>``.
* ``lenient`` falls back, in order, to a leading letter (``B. 4000 mcg ...``), a last line
  holding only a letter, the one option text named in the final paragraph, and the one option
  letter mentioned in the final paragraph.

What real models write is handled before matching: ``<think>`` blocks (with or without the
opening tag; the answer is read after the last ``</think>``, and a block that never closes
has committed to nothing), markdown emphasis and LaTeX ``\\text{}``, JSON answer fields in
broken JSON, runaway generations that start a new question or chat turn after answering (the
continuation is ignored), several commitments (the last one wins), hedges between two letters
(``B or C``: not a commitment), refusals and empty or cut-off responses (``None``).

The function is pure: same text and options, same result; no I/O, no state.

Layout: :func:`_prepare` is the one preprocessing step (answer region, cleaning, runaway
cut) shared by :func:`extract_answer` and :func:`answer_statements`; the extractor itself is
:data:`~medistill.answers.cascade.CASCADE`, a declared, ordered tuple of named steps (as
lm-evaluation-harness declares its filters) in ``cascade.py``; the patterns and the statement
scan live in ``patterns.py``, the result type and rule names in ``result.py``.
:func:`stated_answer` reads a response that states its answer as option text and no letter
(public trace sets), through the same preparation; its rule is in ``textmatch.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from medistill.answers.cascade import CASCADE, Step, _Context, _no_answer
from medistill.answers.continuations import degenerate_start
from medistill.answers.patterns import (
    _answer_region,
    _clean,
    _cut_runaway,
    _first_commitment,
    _letters_for,
    _option_map,
    _patterns,
    _statement_hits,
    match_option_text,
    normalise_text,
)
from medistill.answers.result import (
    LENIENT_RULES,
    MODES,
    NONE_RULES,
    STRICT_RULES,
    Extraction,
    Mode,
)
from medistill.answers.textmatch import TEXT_RULES, asks_for_exception, stated_option

__all__ = [
    "CASCADE",
    "LENIENT_RULES",
    "MODES",
    "NONE_RULES",
    "STRICT_RULES",
    "TEXT_RULES",
    "Extraction",
    "Mode",
    "Step",
    "answer_statements",
    "asks_for_exception",
    "extract_answer",
    "extract_letter",
    "match_option_text",
    "normalise_text",
    "stated_answer",
]

# A response that opens on questions of its own ("Question 2:", "Here are some practice
# questions") before answering the one asked: what it "answers" are its inventions.
_INVENTED = re.compile(
    r"\A\s*(?:(?:#{1,4}\s*)?(?:Question|Q)\s*(?:[2-9]|\d{2,})\s*[:.)]"
    r"|(?:Here\s+are|Below\s+are|The\s+following\s+are)\s+(?:some\s+|a\s+few\s+|\w+\s+)?"
    r"(?:more\s+|similar\s+|practice\s+|additional\s+|sample\s+)*(?:questions|MCQs|cases))",
    re.I,
)


def _prepare(
    text: str, options: Mapping[str, str] | Sequence[str] | None, letters: str | None
) -> tuple[str, str, dict[str, str], dict[str, re.Pattern[str]]] | Extraction:
    """The one preprocessing step of :func:`extract_answer` and :func:`answer_statements`:
    the answer region (after ``</think>``), markdown and LaTeX stripped, and a runaway
    continuation cut after the first commitment. Returns ``(region, letters, options,
    patterns)``, or the no-answer :class:`Extraction` that already explains the text."""
    letters = _letters_for(options, letters)
    opts = _option_map(options)
    region, why = _answer_region(text)
    if why:
        return Extraction(None, why)
    region = _clean(region)
    if not region.strip():
        return Extraction(None, "empty")
    if _INVENTED.match(region):
        return Extraction(None, "none")
    pats = _patterns(letters)
    # A runaway continuation (a new question, chat turn or option list after the model has
    # committed) is not part of the answer: cut it after the first commitment of any kind.
    first = _first_commitment(region, pats, opts)
    region = _cut_runaway(region, first, pats)
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

    Returns:
        An :class:`Extraction` with the letter (or ``None``) and the rule that decided it.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if text is None or not str(text).strip():
        return Extraction(None, "empty")
    prepared = _prepare(str(text), options, letters)
    if isinstance(prepared, Extraction):
        return prepared
    region, letters, opts, pats = prepared
    ctx = _Context(region, letters, opts, pats, fallbacks=mode == "lenient" and not truncated)
    for step in CASCADE:
        if step.fallback and not ctx.fallbacks:
            break
        found = step.apply(ctx)
        if found is not None:
            return found
    return _no_answer(region)


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
    last one. The same preprocessing (:func:`_prepare`: a runaway continuation is cut) and
    the same patterns as the strict rules: one extractor, two views.
    """
    if text is None or not str(text).strip():
        return []
    prepared = _prepare(str(text), options, None)
    if isinstance(prepared, Extraction):
        return []
    region, _, opts, pats = prepared
    hits = _statement_hits(region, pats, opts)
    return [letter for _, _, letter, _ in sorted(hits)]


def stated_answer(
    text: str | None,
    options: Mapping[str, str] | Sequence[str] | None,
    *,
    references: Mapping[str, str] | None = None,
    question: str | None = None,
) -> Extraction:
    """The one option a response states as text, for responses that name no letter.

    The text is prepared as :func:`extract_answer` prepares it (:func:`_prepare`), then read
    by :func:`medistill.answers.textmatch.stated_option`: every affirmative sentence naming
    an option's text (or a ``references`` text: a set's ground-truth answer) must name the
    same one; negated or hedged mentions ("not X", "while X is common") do not count, two
    options stated is ``ambiguous``. Rules: ``option_text``, ``ground_truth``; or no letter
    with ``ambiguous``, ``none`` or the preparation's reason (``empty``, ``refusal``...).
    """
    if text is None or not str(text).strip():
        return Extraction(None, "empty")
    prepared = _prepare(str(text), options, None)
    if isinstance(prepared, Extraction):
        return prepared
    region, _, opts, _ = prepared
    return stated_option(region, opts, references=references, question=question)
