"""The extractor as a declared, ordered cascade of named steps over one prepared answer
region (:func:`medistill.answers.extract.prepare`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

from medistill.answers.hedges import denies_every_option
from medistill.answers.patterns import (
    JSON_FIELD,
    JSON_KEYS,
    NEGATED,
    REFUSAL,
    last_paragraph,
    match_option_text,
    negated_besides,
    normalise_text,
    resolve_value,
    sentence_at,
    statement_hits,
    statement_hits_exist,
)
from medistill.answers.result import Extraction
from medistill.answers.textmatch import stated_option

#: Clause boundaries inside a sentence: punctuation and the words that introduce a contrast.
_CLAUSE = re.compile(
    r"[,;:()]|\.(?=\s)|\b(?:while|whereas|although|though|but|however|unlike|rather\s+than)\b",
    re.I,
)
#: A clause that concludes: "X is the most appropriate choice", "the best next step is X".
_CONCLUDES = re.compile(
    r"\b(?:(?:is|are|remains|would\s+be|seems|appears)\s+(?:to\s+be\s+)?(?:the\s+)?"
    r"(?:most\s+(?:appropriate|likely|suitable|accurate|probable|consistent)|best|correct|"
    r"right|optimal|preferred|ideal)\b|(?:most\s+(?:appropriate|likely|suitable|probable)|"
    r"best|correct|right|optimal|preferred)\s+(?:\w+\s+){0,3}(?:is|would\s+be)\b|"
    r"(?:I\s+would|we\s+should|should\s+be)\s+(?:choose|select|pick|go\s+with|given|used))",
    re.I,
)

#: An answer statement ("the answer is ...", "Answer: ..."), whatever follows it.
_UNREAD_STATEMENT = re.compile(
    r"\b(?:final\s+|correct\s+|best\s+|right\s+)?answer(?:\s+(?:to\s+this\s+question\s+)?"
    r"(?:is|would\s+be|must\s+be)\b|\s*:)",
    re.I,
)

# ----------------------------------------------------------------------------- the cascade


@dataclass(frozen=True)
class Context:
    """What every rule reads: the prepared answer region and the question's letters."""

    region: str
    letters: str
    opts: dict[str, str]
    pats: dict[str, re.Pattern[str]]
    fallbacks: bool  # lenient mode on a response that was not cut off
    question: str | None = None  # the question asked (an EXCEPT question is not read by text)

    @cached_property
    def last_paragraph(self) -> str:
        return last_paragraph(self.region)


@dataclass(frozen=True)
class Step:
    """One named step of :data:`CASCADE`: returns the final :class:`Extraction` (a letter, or
    a reasoned ``None`` such as ``ambiguous``) or ``None`` to pass to the next step."""

    name: str
    apply: Callable[[Context], Extraction | None]
    fallback: bool = False  # lenient only, and never on a cut-off response
    doc: str = ""

    @property
    def mode(self) -> str:
        """The class of the step, declared once: ``strict`` steps run in both modes,
        ``lenient`` ones (fallbacks) only in lenient mode."""
        return "lenient" if self.fallback else "strict"


def _step_no_option(ctx: Context) -> Extraction | None:
    # "... Therefore, the correct answer is not listed among the options." with no commitment
    # after it: the model itself answers none, whatever option texts its analysis named.
    # "None fits exactly; I will choose C" commits after the denial: the next steps read C.
    commits = [h[0] for h in statement_hits(ctx.region, ctx.pats, ctx.opts)]
    commits += [m.start() for m in JSON_FIELD.finditer(ctx.region)]
    if denies_every_option(ctx.region, ctx.opts, commits):
        return Extraction(None, "no_option")
    return None


def _step_json(ctx: Context) -> Extraction | None:
    found = _json_answer(ctx.region, ctx.letters, ctx.opts)
    if found is not None and found.rule == "first_of_several" and not ctx.fallbacks:
        return Extraction(None, "ambiguous", found.span)
    return found


def _step_statements(ctx: Context) -> Extraction | None:
    hits = statement_hits(ctx.region, ctx.pats, ctx.opts)
    if not hits:
        return None
    start, end, letter, rule = max(hits, key=lambda h: (h[0], h[1]))
    # "B or C" / "A, B and D" name several options: strict says ambiguous; lenient takes
    # the first letter named, as the answer-is regexes of lm-evaluation-harness and of
    # the papers whose outputs we test against do (their marks count it that way).
    if rule == "first_of_several" and not ctx.fallbacks:
        return Extraction(None, "ambiguous", (start, end))
    return Extraction(letter, rule, (start, end))


def _step_bare(ctx: Context) -> Extraction | None:
    return _bare_letter(ctx.region, ctx.letters, ctx.opts)


def _step_declined(ctx: Context) -> Extraction | None:
    # "... so I cannot determine a single best answer": a conclusion that declines to choose
    # is not searched for an option by the fallbacks.
    return Extraction(None, "refusal") if REFUSAL.search(ctx.last_paragraph) else None


def _step_stated_text(ctx: Context) -> Extraction | None:
    # "The most likely diagnosis is caustic ingestion.": no letter, but every affirmative
    # sentence states the same one option (textmatch.py's conservative rule).
    # A response that made an answer statement the statements step could not read ("the
    # answer is none of the above", "the answer is E", "the answer is not A") said what it
    # answers in its own words: its prose is not second-guessed for an option.
    if not ctx.opts or _UNREAD_STATEMENT.search(ctx.region):
        return None
    found = stated_option(ctx.region, ctx.opts, question=ctx.question)
    if found.letter:
        return Extraction(found.letter, "stated_text")
    # Two options stated affirmatively: strict says ambiguous; lenient tries its fallbacks.
    return (
        Extraction(None, "ambiguous") if found.rule == "ambiguous" and not ctx.fallbacks else None
    )


def _step_leading_letter(ctx: Context) -> Extraction | None:
    # A response that restates the option list ("A. x\nB. y\n...") commits to nothing.
    listed = {m.group("L") for m in ctx.pats["list_item"].finditer(ctx.region)}
    m = ctx.pats["leading"].match(ctx.region)
    if m and len(listed) < 2 and not NEGATED.search(sentence_at(ctx.region, m.end() + 2)):
        return Extraction(m.group("L"), "leading_letter", m.span("L"))
    return None


def _step_leading_option_text(ctx: Context) -> Extraction | None:
    lead = _leading_option_text(ctx.region, ctx.opts)
    return Extraction(lead, "option_text") if lead else None


def _step_last_line(ctx: Context) -> Extraction | None:
    lines = [ln for ln in ctx.region.strip().splitlines() if ln.strip()]
    if lines:
        last = lines[-1]
        m = ctx.pats["line_letter"].match(last.strip()) or ctx.pats["conclusion"].search(last)
        if m:
            return Extraction(m.group("L").upper(), "last_line")
    return None


def _step_walkthrough(ctx: Context) -> Extraction | None:
    if len({m.group("L") for m in ctx.pats["list_item"].finditer(ctx.last_paragraph)}) >= 2:
        return no_answer(ctx.region)
    return None


def _step_concluding_text(ctx: Context) -> Extraction | None:
    # "While cladribine treats hairy cell leukaemia, **Fludarabine** is the most appropriate
    # choice": the clause that concludes names one option; the others only mention theirs.
    if not ctx.opts:
        return None
    for clause in reversed(_CLAUSE.split(ctx.last_paragraph)):
        if not clause or not _CONCLUDES.search(clause) or NEGATED.search(clause):
            continue
        letter = match_option_text(clause, ctx.opts)
        if letter:
            return Extraction(letter, "option_text")
    return None


def _step_option_text(ctx: Context) -> Extraction | None:
    if not ctx.opts:
        return None
    last = ctx.last_paragraph
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", last) if s.strip()]
    for chunk in (sentences[-1] if sentences else "", last):
        letter = match_option_text(chunk, ctx.opts)
        if letter and not negated_besides(chunk, ctx.opts[letter]):
            return Extraction(letter, "option_text")
    return None


def _step_last_mention(ctx: Context) -> Extraction | None:
    last = ctx.last_paragraph
    mentioned = {
        (m.group("a") or m.group("b") or m.group("c")).upper()
        for m in ctx.pats["mention"].finditer(last)
        if not NEGATED.search(sentence_at(last, m.start()))
    }
    return Extraction(mentioned.pop(), "last_mention") if len(mentioned) == 1 else None


#: The extractor, declared: tried in order after :func:`~medistill.answers.extract.prepare`;
#: the first step that returns an :class:`Extraction` decides. Steps marked ``fallback`` run
#: only in lenient mode on a response that was not cut off; when no step decides, the result
#: is a reasoned None (``refusal`` or ``none``). The rule names recorded in predictions are
#: the Extraction's. A step's class (strict or lenient: :attr:`Step.mode`) is declared here
#: once; curation, the rewards and evaluation all read through this one cascade.
CASCADE: tuple[Step, ...] = (
    # A JSON answer field is the response's formal commitment, even beside a denial.
    Step("json_field", _step_json, doc="an answer_choice-style JSON field, parsed or broken"),
    Step("no_option", _step_no_option, doc="no option is correct, the closest named: none"),
    Step("statements", _step_statements, doc="explicit statements, the last one wins"),
    Step("bare_letter", _step_bare, doc="a response that is only a letter (and its text)"),
    # A prose answer is read in lenient mode only: on GPT-3.5/GPT-4's option-by-option
    # explanations (no answer line) it fired on 26% and disagreed with the model's own answer
    # on 8% of those: too many wrong letters for strict's explicit commitments.
    Step("declined", _step_declined, True, "a conclusion that declines to choose: none"),
    Step(
        "stated_text",
        _step_stated_text,
        True,
        "every affirmative sentence states one option's text (a prose answer)",
    ),
    Step("leading_letter", _step_leading_letter, True, "a response opening with a letter"),
    Step("leading_option_text", _step_leading_option_text, True, "opening with option text"),
    Step("last_line", _step_last_line, True, "a last line holding only a letter"),
    Step("walkthrough", _step_walkthrough, True, "a final paragraph listing options: none"),
    Step("concluding_text", _step_concluding_text, True, "option text in the concluding clause"),
    Step("option_text", _step_option_text, True, "the one option text in the conclusion"),
    Step("last_mention", _step_last_mention, True, "the one letter in the conclusion"),
)


def _json_answer(region: str, letters: str, opts: Mapping[str, str]) -> Extraction | None:
    """Read ``answer_choice``-style fields from JSON, parsed or (when broken) by pattern.

    Returns ``None`` when there is no such field, so the text statements decide.
    """
    stripped = region.strip()
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", stripped, re.S)
    candidates = [fenced.group(1)] if fenced else []
    if stripped.startswith("{"):
        candidates.append(stripped)
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        for key in JSON_KEYS:
            if isinstance(obj.get(key), (str, int)) and not isinstance(obj[key], bool):
                letter, rule = resolve_value(str(obj[key]), letters, opts)
                if letter is None:
                    return no_answer(str(obj[key]))
                return Extraction(letter, rule)
    matches = list(JSON_FIELD.finditer(region))
    if not matches:
        return None
    m = matches[-1]
    value = next(v for v in (m.group("dq"), m.group("sq"), m.group("bare")) if v is not None)
    letter, rule = resolve_value(value, letters, opts)
    if letter is None:
        # The field names no option ("None of the above", a refusal): a no-answer, unless
        # the text around the broken JSON commits explicitly.
        return None if statement_hits_exist(region, letters) else no_answer(value)
    return Extraction(letter, rule, m.span())


def _bare_letter(region: str, letters: str, opts: Mapping[str, str]) -> Extraction | None:
    """A response that is only a letter, or a letter followed by that option's text."""
    s = region.strip()
    m = re.fullmatch(
        rf"(?:(?:option|choice|answer)\s*:?\s*)?[\(\[]?([{letters}])[\)\]\.:]?(?:\s+(?P<rest>.+?))?\s*\.?",
        s,
        re.S | re.I,
    )
    if not m:
        return None
    rest = m.group("rest")
    if rest is None:
        return Extraction(m.group(1).upper(), "bare_letter", m.span(1))
    if opts and normalise_text(rest) == normalise_text(opts[m.group(1).upper()]):
        return Extraction(m.group(1).upper(), "bare_letter", m.span(1))
    return None


def _leading_option_text(region: str, opts: Mapping[str, str]) -> str | None:
    """A response opening with a short option's text: ``No, there was no difference...``
    (PubMedQA yes/no/maybe) or ``**Hypothyroidism**`` — unless that clause negates it."""
    clause = re.split(r"[,.;:!?\n]", region.strip(), maxsplit=1)[0]
    norm = normalise_text(clause)
    hits = []
    for letter, text in opts.items():
        t = normalise_text(text)
        # The clause is the option text itself: "Rituximab and chlorambucil are less
        # suitable" opens with an option's name only to reject it.
        if t and len(t.split()) <= 3 and norm == t:
            hits.append(letter)
    if len(hits) != 1 or negated_besides(clause, opts[hits[0]]):
        return None
    return hits[0]


def no_answer(region: str, default: str = "none") -> Extraction:
    return Extraction(None, "refusal" if REFUSAL.search(region) else default)
