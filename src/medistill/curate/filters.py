"""Per-trace verification and quality filters.

Each trace gets at most one drop reason, the first that applies in :data:`REASONS` order, so
the data card's counts add up: kept + every reason = traces in. Verification reads the answer
with the one shared extractor (:mod:`medistill.answers`), after mapping the shown letters back
through the option shuffle the teacher saw, in the mode the recipe names, with the question
(as the rewards and evaluation call it: one reading). A response that names no letter but
states one option's text (the extractor's ``stated_text`` rule) is verified by that text; each
verdict records how: :data:`VERIFIED_BY`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medistill.answers import answer_statements, extract_answer
from medistill.backends.base import CUT_OFF
from medistill.curate.text import ngram_hashes, word_hashes
from medistill.data.options import unpermute
from medistill.models import resolve_model
from medistill.prompts import answer_line

# Trace-level reasons, in precedence order.
TRACE_REASONS = (
    "malformed",
    "truncated",
    "refusal",
    "no_answer",
    "conflicting_answers",
    "incorrect",
    "leaked_gold",
    "repetition",
    "too_short",
    "too_long",
)
# Question-level reasons: applied to the surviving traces of a whole question.
QUESTION_REASONS = (
    "contaminated",
    "duplicate_exact",
    "duplicate_near",
    "duplicate_embedding",
    "too_easy",
    "no_majority",
    "subject_cap",
    "not_selected",
)
REASONS = TRACE_REASONS + QUESTION_REASONS
#: How a kept trace's answer was read: an option letter or an option's text (the extractor's
#: text rules). ``ground_truth`` (a set's own answer text) is no longer read: evaluation has
#: no such text, and curation reads what evaluation reads; older stats may still name it.
VERIFIED_BY = ("letter", "option_text", "ground_truth")
#: Accepted for old recipes only (a deprecation line): the text rule is the extractor's now.
TEXT_ANSWERS = ("auto", "on", "off")
_TEXT_RULES = ("option_text", "answer_text", "stated_text")

# The reasoning cites an answer key instead of reasoning towards an answer.
_LEAK = re.compile(
    r"\b(?:answer\s+key|ground[\s-]*tru(?:th|e)\s+answer|ground[\s-]*truth|"
    r"(?:given|provided|stated|marked|expected|reference|labell?ed)\s+(?:correct\s+)?answer"
    r"\s*(?:is|was|of|:)|(?:we(?:'re|\s+are|\s+were)|I(?:'m|\s+am|\s+was))\s+told\s+(?:that\s+)?"
    r"the\s+(?:correct\s+)?answer|the\s+(?:question|prompt)\s+(?:says|states|tells\s+us)\s+"
    r"(?:that\s+)?the\s+(?:correct\s+)?answer|for\s+the\s+teacher\s+only)",
    re.I,
)
_APPROX_TOKEN = re.compile(r"\w+|[^\w\s]")


def leaked_gold(text: str) -> bool:
    """True when the text quotes an answer key ("the provided answer is C")."""
    return _LEAK.search(text) is not None


def repetition_ratio(text: str, n: int = 10) -> float:
    """Share of word ``n``-grams that repeat an earlier one: ~0 for prose, near 1 for a
    generation stuck in a loop (the degenerate-repetition filter of Gopher / FineWeb)."""
    grams = ngram_hashes(word_hashes(text), n)
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(np.unique(grams)) / len(grams)


def approx_token_count(texts: Sequence[str]) -> list[int]:
    """Words plus punctuation marks: a tokenizer-free length estimate."""
    return [len(_APPROX_TOKEN.findall(t)) for t in texts]


def token_counter(spec: str | None) -> tuple[Callable[[Sequence[str]], list[int]], str]:
    """A batch token counter for the student's tokenizer and a name for the card.

    Without a tokenizer the approximate count is used (and the card says so).
    """
    if not spec:
        return approx_token_count, "approximate (words + punctuation)"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(spec), trust_remote_code=False)

    def count(texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]

    return count, f"{spec} tokenizer"


# A last line that only states the answer in another form ("**Final answer: (B)**", "Answer: B.",
# "The correct answer is option B"): replaced by the contract's line rather than repeated.
_ANSWER_ONLY_LINE = re.compile(
    r"^\W*(?:so,?\s+|thus,?\s+|therefore,?\s+|hence,?\s+)?(?:the\s+)?(?:final\s+|correct\s+|"
    r"best\s+)?answer(?:\s+choice)?\s*(?:is\s*:?|:)\s*(?:option\s+)?\(?([A-Z])\)?[\s.:*_)]*$",
    re.I,
)


@dataclass
class Verdict:
    """The outcome for one trace: a drop reason (``None`` = passes), its detail, the letter
    the teacher chose (original lettering), whether it is correct, and the assistant turn."""

    reason: str | None
    detail: str = ""
    letter: str | None = None  # in the original (unshuffled) lettering
    correct: bool = False
    assistant: str = ""
    shown_letter: str | None = None
    verified_by: str | None = None  # one of VERIFIED_BY once an answer was read


def _malformed(row: dict[str, Any]) -> str | None:
    opts = row.get("options")
    if not row.get("question") or not str(row["question"]).strip():
        return "question: empty"
    if not isinstance(opts, dict) or len(opts) < 2:
        return "options: fewer than two"
    if row.get("gold") not in opts:
        return f"gold: {row.get('gold')!r} is not one of {''.join(opts)}"
    perm = row.get("permutation")
    if perm is not None and (
        not isinstance(perm, dict) or set(perm) != set(opts) or set(perm.values()) != set(opts)
    ):
        return "permutation: not a permutation of the option letters"
    if not (row.get("text") or "").strip() and not (row.get("reasoning") or "").strip():
        return "text: empty"
    return None


def assistant_turn(row: dict[str, Any], letter: str, *, think_tags: bool = False) -> str:
    """The training target: the reasoning, then the response, ending with exactly one line of
    the answer contract (:func:`medistill.prompts.answer_line`) and nothing after it.

    A response whose last line already is the contract's line is kept as it is; a last line
    that only states ``letter`` in another form ("Answer: (B)") is replaced by it; otherwise the
    line is appended, so every target teaches the one form the rewards and evaluation read.
    """
    text = (row.get("text") or "").strip()
    reasoning = (row.get("reasoning") or "").strip()
    if reasoning:
        body = (
            f"<think>\n{reasoning}\n</think>\n\n{text}" if think_tags else f"{reasoning}\n\n{text}"
        )
    else:
        body = text
    final = answer_line(letter)
    head, _, last = body.rstrip().rpartition("\n")
    if last.strip() == final:
        return body.rstrip()
    m = _ANSWER_ONLY_LINE.match(last.strip())
    if m and m.group(1).upper() == letter:
        return f"{head.rstrip()}\n\n{final}" if head.strip() else final
    return f"{body.rstrip()}\n\n{final}"


def verify(
    row: dict[str, Any],
    *,
    mode: str = "strict",
    think_tags: bool = False,
) -> Verdict:
    """Verify one stored trace: structure, truncation, the extracted answer against gold.

    The answer is read by :func:`medistill.answers.extract_answer` alone, with ``mode`` and
    the question, exactly as the correctness reward and evaluation read it: a response
    stating one option's text is read by the extractor's ``stated_text`` rule; one that
    rejects every option and never commits afterwards is no answer.
    """
    why = _malformed(row)
    if why:
        return Verdict("malformed", why)
    opts: dict[str, str] = row["options"]
    perm = row.get("permutation")  # shown letter -> original (checked by _malformed)
    _, gold = unpermute(None, row["gold"], perm)
    text = row.get("text") or ""
    truncated = bool(row.get("truncated")) or row.get("finish_reason") in CUT_OFF
    e = extract_answer(
        text,
        opts,
        mode=mode,  # type: ignore[arg-type]
        truncated=truncated,
        question=str(row["question"]),
    )
    by = "option_text" if e.rule in _TEXT_RULES else "letter"
    letter = unpermute(None, e.letter, perm)[1] if e.letter in opts else None
    correct = letter is not None and letter == gold
    if truncated:
        return Verdict("truncated", f"finish_reason={row.get('finish_reason')}", letter, correct)
    if e.rule == "refusal":
        return Verdict("refusal", "", None, False)
    if e.rule in ("ambiguous", "first_of_several"):
        return Verdict("conflicting_answers", f"rule={e.rule}", letter, False)
    if e.letter is None:
        return Verdict("no_answer", f"rule={e.rule}")
    named = dict.fromkeys(answer_statements(text, opts))
    if len(named) > 1:
        return Verdict("conflicting_answers", "statements " + ",".join(named), letter, correct)
    if not correct:
        detail = f"answered {letter}, gold {gold}" + (f" (by {by})" if by != "letter" else "")
        return Verdict("incorrect", detail, letter, False, verified_by=by)
    if leaked_gold((row.get("reasoning") or "") + "\n" + text):
        return Verdict("leaked_gold", "", letter, correct, verified_by=by)
    return Verdict(
        None,
        "",
        letter,
        True,
        assistant_turn(row, e.letter, think_tags=think_tags),
        e.letter,
        by,
    )


def quality(
    verdicts: list[Verdict],
    count_tokens: Callable[[Sequence[str]], list[int]],
    *,
    min_tokens: int,
    max_tokens: int,
    repetition_ngram: int,
    max_repetition: float,
) -> list[int]:
    """Apply the text-quality filters to the verified traces of a batch (in place); returns
    the token count of each assistant turn (0 for traces already dropped)."""
    live = [i for i, v in enumerate(verdicts) if v.reason is None]
    counts = count_tokens([verdicts[i].assistant for i in live]) if live else []
    tokens = [0] * len(verdicts)
    for i, n in zip(live, counts, strict=True):
        v = verdicts[i]
        tokens[i] = n
        ratio = repetition_ratio(v.assistant, repetition_ngram)
        if ratio > max_repetition:
            v.reason, v.detail = "repetition", f"ratio={ratio:.2f}"
        elif n < min_tokens:
            v.reason, v.detail = "too_short", f"{n} tokens"
        elif n > max_tokens:
            v.reason, v.detail = "too_long", f"{n} tokens"
    return tokens
