"""THE answer extractor: the only place in medistill that turns model text into a letter.

Curation's verification, the RL correctness reward and evaluation all call
:func:`extract_answer`, so a trace kept for training, a reward given and an accuracy reported
always agree on what a response answered.

Two modes:

* ``strict`` accepts only an explicit commitment: ``The answer is (B)``, ``Answer: B``,
  ``\\boxed{B}``, ``"answer_choice": "B"``, ``Option B is correct``, ``I would choose B``,
  ``the closest match is B``, a response that is nothing but ``B`` / ``B. <option B text>``,
  or ``the answer is <option text>``.
* ``lenient`` falls back, in order, to a prose answer whose every affirmative sentence states
  the same one option's text (``stated_text``; not for a question asking for the exception,
  when the caller passes ``question``), a leading letter (``B. 4000 mcg ...``), a last line
  holding only a letter, the one option text named in the final paragraph, and the one option
  letter mentioned in the final paragraph.

What real models write is handled before matching: ``<think>`` blocks (with or without the
opening tag; the answer is read after the last ``</think>``, and a block that never closes
has committed to nothing), markdown emphasis and LaTeX ``\\text{}``, JSON answer fields in
broken JSON, runaway generations that start a new question or chat turn after answering (the
continuation is ignored), several commitments (the last one wins), hedges between two letters
(``B or C``: not a commitment), refusals and empty or cut-off responses (``None``), a response
that rejects every option and commits to none afterwards (``no_option``, both modes), and
one that answers questions it invented instead of the one asked (``None``).

Curation's verification, the correctness reward and evaluation (``eval``, ``rescore``) call
:func:`extract_answer` with the same mode and the question, so they read the same letter and
rule (``tests/test_extraction_agreement.py`` runs one table through all three). Each step's
class (strict or lenient) is declared once, in :data:`CASCADE`.

The function is pure: same text and options, same result; no I/O, no state.

Layout: :func:`~medistill.answers.extract.prepare` is the one preprocessing step (answer
region, cleaning, runaway cut) shared by :func:`extract_answer` and :func:`answer_statements`
(both in ``extract.py``); the extractor itself is
:data:`~medistill.answers.cascade.CASCADE`, a declared, ordered tuple of named steps (as
lm-evaluation-harness declares its filters) in ``cascade.py``; the patterns and the statement
scan live in ``patterns.py``, the result type and rule names in ``result.py``.
The prose-answer rule (``stated_text``: a response that states its answer as option text and
no letter, as public trace sets do) is one step of the cascade; its rule is in
``textmatch.py``.
"""

from medistill.answers.cascade import CASCADE, Step
from medistill.answers.extract import (
    answer_statements,
    extract_answer,
    extract_letter,
)
from medistill.answers.patterns import match_option_text, normalise_text
from medistill.answers.result import (
    LENIENT_RULES,
    MODES,
    NONE_RULES,
    STRICT_RULES,
    Extraction,
    Mode,
)
from medistill.answers.textmatch import TEXT_RULES, asks_for_exception

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
]
