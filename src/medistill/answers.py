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
"""

from __future__ import annotations

import json
import re
import string
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

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
LENIENT_RULES = ("first_of_several", "leading_letter", "last_line", "option_text", "last_mention")
#: Rules that explain a ``None``.
NONE_RULES = ("empty", "unfinished_think", "refusal", "ambiguous", "none")


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


# ----------------------------------------------------------------------------- patterns

_THINK_CLOSE = re.compile(
    r"</think(?:ing)?>|^[ \t]*#{1,3}[ \t]*Final[ \t]+Response[ \t]*:?[ \t]*$", re.I | re.M
)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.I)

# A runaway generation: after answering, the model starts a new question or chat turn.
_RUNAWAY = re.compile(
    r"(?:<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|<\|user\|>|<\|assistant\|>"
    r"|</s>|<end_of_turn>|<start_of_turn>"
    r"|\[INST\]|\n[ \t]*(?:#{1,4}[ \t]*)?\[?(?:Next\s+question|Question|Q|Problem|Exercise"
    r"|Instruction|Input|Human|User|USER|Patient|Case|Vignette|Context)\]?[ \t]*\d*[ \t]*"
    r"(?:[:.)#]|(?<=\d)[ \t]*\n)"
    r"|\n[ \t]*An?[ \t]+\d+[- ](?:year|month|week|day)[- ]old"
    r"|\n[ \t]*(?:\d+[.)]|Q\d+[.:])[ \t]*An?[ \t]+\d+[- ](?:year|month|week|day)[- ]old)",
)

_REFUSAL = re.compile(
    r"\b(?:I(?:'m| am) (?:sorry|unable|not able)|I (?:can(?:no|')t|cannot|won't) "
    r"(?:answer|provide|help|assist|determine|choose|select)|as an AI|"
    r"(?:not|cannot be) (?:possible|able) to (?:determine|answer)|"
    r"(?:response|prompt) was filtered|content management policy|"
    r"(?:do(?:es)? not|don't) (?:provide|contain|have) (?:enough|sufficient)|"
    r"insufficient information|not enough information|none of the (?:above|options))",
    re.I,
)

_ADVERBS = (
    r"(?:(?:therefore|thus|hence|so|then|clearly|definitely|likely|probably|most\s+likely|"
    r"most\s+probably|indeed|actually|still|certainly|obviously|simply|either|both)[\s,]*)*"
)
# After a committed letter: more letters joined by and/or ("B or C", "A, B and D"), unless
# the next letter is being rejected ("C, and D is wrong because...").
_HEDGE_AFTER = (
    r"(?:\s*(?:,\s*)?(?P<conj>or|and|/|&|,)\s*(?:either\s+|maybe\s+|possibly\s+)?"
    r"(?:option\s+|choice\s+)?\(?[{L}]\)?(?![A-Za-z]))+"
    r"(?!\s*(?:is|are|was)\s+(?:not|wrong|incorrect|false|less|unlikely|ruled)|\s+because)"
)


@lru_cache(maxsize=64)
def _patterns(letters: str) -> dict[str, re.Pattern[str]]:
    """Compile the letter-dependent patterns once per letter set (e.g. ``ABCD``)."""
    L = re.escape(letters)
    # A letter as a whole token: (B), [B], B), B., B:, B — never the start of a word.
    # "C. difficile" / "E. coli" (a lowercase word after "X.") are abbreviations, not answers.
    mark = (
        rf"[\(\[\{{\"'*]?[ \t]*(?P<L>[{L}])[ \t]*[\)\]\}}\"'*]?(?![A-Za-z0-9\-'’])"
        rf"(?!(?-i:\.[ \t]*[a-z]{{3,}}))"
    )
    keyword = (
        r"(?:final\s+answer|correct\s+answer|best\s+answer|right\s+answer|true\s+answer|"
        r"most\s+(?:likely|appropriate|accurate)\s+answer|answer\s+choice|answer\s+option|"
        r"correct\s+(?:option|choice|response)|best\s+(?:option|choice|response)|"
        r"right\s+(?:option|choice)|answer|ans\b\.?)"
    )
    connector = (
        r"(?:\s+(?:to\s+(?:this|the)\s+question|here|for\s+this\s+question))?"
        r"(?:\s*(?:is|was|would\s+be|will\s+be|should\s+be|must\s+be|has\s+to\s+be|"
        r"might\s+be|could\s+be|may\s+be|seems\s+to\s+be|appears\s+to\s+be|remains)\b"
        r"|\s*[:=]|\s+[-–—]|\s*\bis\s*:|(?<=[Aa]ns\.))"
    )
    return {
        "answer_is": re.compile(
            rf"\b{keyword}{connector}\s*:?\s*{_ADVERBS}(?:(?:the\s+)?(?:option|choice|letter)"
            rf"\s*:?\s*)?{mark}",
            re.I,
        ),
        "boxed": re.compile(rf"\\boxed\s*\{{\s*(?:\\?\(?\s*)?(?P<L>[{L}])(?![A-Za-z0-9])", re.I),
        "option_is_correct": re.compile(
            rf"(?<![A-Za-z])(?:(?:option|choice|answer)\s+)?{mark}\s*(?:\([^)]*\)\s*)?"
            rf"(?:is|would\s+be|seems)\s+(?:the\s+)?(?:most\s+)?(?:correct|right|best|answer)\b"
            rf"(?!\s+(?:treatment|management|describ|explan|diagnos))",
            re.I,
        ),
        "choose": re.compile(
            rf"\b(?:I(?:\s+(?:would|will)\s+|'d\s+|'ll\s+|\s+)(?:choose|select|pick|go\s+with|recommend|lean\s+(?:towards?|to))|I\s+think\s+it(?:'s|\s+is)|"
            rf"I'd\s+(?:choose|select|pick|go\s+with)|my\s+(?:final\s+)?(?:answer|choice|"
            rf"pick)\s+(?:is|would\s+be)\s*:?)\s*(?:the\s+)?(?:option|choice|answer)?\s*{mark}",
            re.I,
        ),
        "hedge_after": re.compile(_HEDGE_AFTER.format(L=L), re.I),
        "leading": re.compile(
            rf"^\s*(?:\*\*)?\s*[\(\[]?(?P<L>[{L}])(?:[\)\]\.:](?![ \t]*[a-z])|[ \t]*(?:\n|$))"
        ),
        "conclusion": re.compile(
            rf"\b(?:therefore|thus|hence|so)\s*,?\s*(?:option\s+|choice\s+)?[\(\[]?(?P<L>[{L}])"
            rf"[\)\]]?\s*[.!]?\s*$",
            re.I,
        ),
        "option_block": re.compile(
            rf"\n[ \t]*[\(\[]?[{L}][\)\]\.:][ \t]+[^\n]*\n[ \t]*[\(\[]?[{L}][\)\]\.:][ \t]+\S"
        ),
        "answer_header": re.compile(
            rf"^[ \t]*(?:#{{1,4}}[ \t]*)?(?:final[ \t]+|correct[ \t]+)?answer[ \t]*:?[ \t]*\n"
            rf"\s*{mark}",
            re.I | re.M,
        ),
        "list_item": re.compile(rf"^[ \t]*[\(\[]?(?P<L>[{L}])[\)\]\.:][ \t]+\S", re.M),
        "line_letter": re.compile(
            rf"^\W*?(?:(?:therefore|thus|hence|so)\W+)?(?:(?:answer|option|choice)\s*:?\s*)?"
            rf"[\(\[]?(?P<L>[{L}])[\)\]\.:]?\W*$",
            re.I,
        ),
        "mention": re.compile(
            rf"(?:\((?P<a>[{L}])\)|(?<![A-Za-z0-9])(?P<b>[{L}])\)|\b(?:option|choice)\s+"
            rf"(?P<c>[{L}])\b)",
            re.I,
        ),
    }


_JSON_KEYS = (
    "answer_choice",
    "answer",
    "final_answer",
    "correct_answer",
    "answer_letter",
    "choice",
)
_JSON_FIELD = re.compile(
    r"(?:[\"']|(?<=\\n)|(?<=\\n\s))"  # the opening quote, or lost after an escaped newline
    r"(?P<key>answer_choice|answer|final_answer|choice|correct_answer|answer_letter)[\"']"
    r"\s*:\s*(?:\"(?P<dq>(?:[^\"\\]|\\.)*)\"|'(?P<sq>[^']*)'|(?P<bare>[A-Za-z]))",
    re.I,
)
_ANSWER_TEXT = re.compile(
    r"\b(?:correct\s+|best\s+|final\s+)?answer(?:\s+(?:is|would\s+be)|\s*[=:])\s*:?\s*(?P<t>[^\n]+)",
    re.I,
)
_NEGATED = re.compile(
    r"\b(?:not|no|isn't|incorrect|wrong|unlikely|contradict\w*|rule[sd]?\s+out|ruled\s+out|"
    r"exclude[sd]?|eliminat\w*|false|rather\s+than|instead\s+of|less\s+likely|unlikely)\b",
    re.I,
)
_CONJUNCTIONS = frozenset({"and", "or", "through", "to", "is", "as", "because", "since", "with"})
_MD = re.compile(r"\*\*|__|`|\\\(|\\\)|\$")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "’‘“”–—"})


# ----------------------------------------------------------------------------- helpers


def normalise_text(s: str) -> str:
    """Lowercase, drop punctuation and collapse spaces (for matching option texts)."""
    return " ".join(s.lower().translate(_PUNCT).split())


def _letters_for(options: Mapping[str, str] | Sequence[str] | None, letters: str | None) -> str:
    if letters:
        return letters.upper()
    if options is None:
        return "ABCDE"
    if isinstance(options, Mapping):
        return "".join(str(k).upper() for k in options)
    return string.ascii_uppercase[: len(options)]


def _option_map(options: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return {str(k).upper(): str(v) for k, v in options.items()}
    return {string.ascii_uppercase[i]: str(v) for i, v in enumerate(options)}


def match_option_text(candidate: str, options: Mapping[str, str]) -> str | None:
    """The one option whose text ``candidate`` names, or ``None`` if none or several do.

    Exact (normalised) equality wins; otherwise an option text contained as whole words in
    the candidate counts, the longest one winning when one option's text contains another's.
    """
    cand = normalise_text(candidate)
    if not cand or not options:
        return None
    normed = {k: normalise_text(v) for k, v in options.items()}
    exact = [k for k, v in normed.items() if v and v == cand]
    if len(exact) == 1:
        return exact[0]
    padded = f" {cand} "
    hits = [k for k, v in normed.items() if len(v) >= 3 and f" {v} " in padded]
    # Drop options whose text is contained in another hit's text (e.g. "aspirin" vs
    # "aspirin and clopidogrel").
    hits = [k for k in hits if not any(k != o and normed[k] in normed[o] for o in hits)]
    return hits[0] if len(hits) == 1 else None


def _resolve_value(value: str, letters: str, options: Mapping[str, str]) -> tuple[str | None, str]:
    """The letter a structured answer value designates, and the rule: ``"B"``, ``"(B)"`` and
    ``"B. HBsAg"`` or the option text itself give ``json_field``; a value naming several
    options (``"B. X or C. Y"``) gives its first letter under ``first_of_several``."""
    v = _MD.sub("", value).strip()
    m = re.fullmatch(rf"[\(\[]?([{letters}])[\)\]]?\.?", v, re.I)
    if m:
        return m.group(1).upper(), "json_field"
    m = re.match(rf"^[\(\[]?([{letters}])(?:[\)\]\.:]|\s*[-–])\s*(?P<rest>.*)$", v, re.S)
    if m:
        several = re.search(rf"(?:^|[,;\n]\s*|\s)(?:and\s+|or\s+)?[{letters}][\)\.:]\s", m["rest"])
        return m.group(1), "first_of_several" if several else "json_field"
    letter = match_option_text(v, options)
    if letter is None:  # "The correct answer is B" written inside the field
        m = _patterns(letters)["answer_is"].search(v)
        letter = m.group("L").upper() if m else None
    return letter, "json_field"


def _answer_region(text: str) -> tuple[str, str | None]:
    """Split off reasoning: return the text to read the answer from, or a None-rule.

    With ``</think>`` the answer is what follows the last one (the opening tag may be
    missing: chat templates often put it in the prompt). An opened block never closed
    means the generation stopped while still thinking.
    """
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end() :], None
    if _THINK_OPEN.search(text):
        return "", "unfinished_think"
    return text, None


def _clean(text: str) -> str:
    """Strip markdown emphasis, inline math and LaTeX text wrappers that hide letters."""
    text = _LATEX_TEXT.sub(r"\1", text)
    text = _LATEX_TEXT.sub(r"\1", text)
    return _MD.sub("", text)


def _cut_runaway(text: str, first_commit: int | None, pats: dict[str, re.Pattern[str]]) -> str:
    """Drop a runaway continuation after the first commitment: a new question or chat turn,
    or a fresh list of options (a base model writing the next exam item)."""
    if first_commit is None:
        return text
    ends = [
        m.start()
        for m in (
            _RUNAWAY.search(text, first_commit),
            pats["option_block"].search(text, first_commit),
        )
        if m
    ]
    return text[: min(ends)] if ends else text


def _first_commitment(
    text: str, pats: dict[str, re.Pattern[str]], opts: Mapping[str, str]
) -> int | None:
    """Where the response first commits to an answer (statement, JSON field, or a leading
    letter line that is not the start of a restated option list); ``None`` if nowhere."""
    starts = [h[0] for h in _statement_hits(text, pats, opts)]
    starts += [m.start() for m in _JSON_FIELD.finditer(text)]
    m = pats["leading"].match(text)
    if m:
        rest = text[m.end() :].lstrip("\n").lstrip()
        nxt = re.sub(r"^[^\n]*\n\s*", "", text.strip(), count=1)  # the line after the first
        if not pats["list_item"].match(nxt) or not rest:
            starts.append(m.start("L"))
    return min(starts) if starts else None


def _sentence_at(text: str, pos: int) -> str:
    """The sentence of ``text`` containing position ``pos``."""
    start = max(text.rfind(c, 0, pos) for c in ".!?\n") + 1
    ends = [i for i in (text.find(c, pos) for c in ".!?\n") if i != -1]
    return text[start : min(ends) if ends else len(text)]


def _last_paragraph(text: str) -> str:
    parts = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return parts[-1] if parts else ""


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
    region = _cut_runaway(region, _first_commitment(region, pats, opts), pats)
    return region, letters, opts, pats


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

    # 1. A structured JSON answer field is the model's declared answer: it wins.
    found = _json_answer(region, letters, opts)
    if found is not None:
        if found.rule == "first_of_several" and (mode == "strict" or truncated):
            return Extraction(None, "ambiguous", found.span)
        return found

    # 2. Explicit statements: the last commitment wins.
    hits = _statement_hits(region, pats, opts)
    if hits:
        start, end, letter, rule = max(hits, key=lambda h: (h[0], h[1]))
        # "B or C" / "A, B and D" name several options: strict says ambiguous; lenient takes
        # the first letter named, as the answer-is regexes of lm-evaluation-harness and of
        # the papers whose outputs we test against do (their marks count it that way).
        if rule == "first_of_several" and (mode == "strict" or truncated):
            return Extraction(None, "ambiguous", (start, end))
        return Extraction(letter, rule, (start, end))

    bare = _bare_letter(region, letters, opts)
    if bare is not None:
        return bare
    if mode == "strict" or truncated:
        return _no_answer(region)

    # 3. Lenient fallbacks, most to least specific.
    # A response that restates the option list ("A. x\nB. y\n...") commits to nothing.
    listed = {m.group("L") for m in pats["list_item"].finditer(region)}
    m = pats["leading"].match(region)
    if m and len(listed) < 2 and not _NEGATED.search(_sentence_at(region, m.end() + 2)):
        return Extraction(m.group("L"), "leading_letter", m.span("L"))
    lead = _leading_option_text(region, opts)
    if lead:
        return Extraction(lead, "option_text")
    lines = [ln for ln in region.strip().splitlines() if ln.strip()]
    if lines:
        m = pats["line_letter"].match(lines[-1].strip()) or pats["conclusion"].search(lines[-1])
        if m:
            return Extraction(m.group("L").upper(), "last_line")
    last = _last_paragraph(region)
    if len({m.group("L") for m in pats["list_item"].finditer(last)}) >= 2:
        return _no_answer(region)  # the final paragraph walks through options: no choice
    if opts:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", last) if s.strip()]
        for chunk in (sentences[-1] if sentences else "", last):
            letter = match_option_text(chunk, opts)
            if letter and _negated_besides(chunk, opts[letter]):
                letter = None
            if letter:
                return Extraction(letter, "option_text")
    mentioned = {
        (m.group("a") or m.group("b") or m.group("c")).upper()
        for m in pats["mention"].finditer(last)
        if not _NEGATED.search(_sentence_at(last, m.start()))
    }
    if len(mentioned) == 1:
        return Extraction(mentioned.pop(), "last_mention")
    return _no_answer(region)


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
        for key in _JSON_KEYS:
            if isinstance(obj.get(key), (str, int)) and not isinstance(obj[key], bool):
                letter, rule = _resolve_value(str(obj[key]), letters, opts)
                if letter is None:
                    return _no_answer(str(obj[key]))
                return Extraction(letter, rule)
    matches = list(_JSON_FIELD.finditer(region))
    if not matches:
        return None
    m = matches[-1]
    value = next(v for v in (m.group("dq"), m.group("sq"), m.group("bare")) if v is not None)
    letter, rule = _resolve_value(value, letters, opts)
    if letter is None:
        # The field names no option ("None of the above", a refusal): a no-answer, unless
        # the text around the broken JSON commits explicitly.
        return None if _statement_hits_exist(region, letters) else _no_answer(value)
    return Extraction(letter, rule, m.span())


def _statement_hits_exist(region: str, letters: str) -> bool:
    pats = _patterns(letters)
    return any(pats[k].search(region) for k in ("answer_is", "boxed", "option_is_correct"))


_HITS_CACHE: OrderedDict[tuple[Any, ...], tuple[tuple[int, int, str, str], ...]] = OrderedDict()


def _statement_hits(
    region: str, pats: dict[str, re.Pattern[str]], opts: Mapping[str, str]
) -> list[tuple[int, int, str, str]]:
    """All explicit commitments as ``(start, end, letter, rule)``; a statement listing
    several letters has the rule ``first_of_several`` and its first letter.

    The scan is the extractor's costliest step and one text is often scanned twice in a row
    (before and after cutting a runaway, then by :func:`answer_statements`), so the last few
    results are memoised.
    """
    key = (region, pats["list_item"].pattern, tuple(opts.items()) if opts else ())
    cached = _HITS_CACHE.get(key)
    if cached is not None:
        return list(cached)
    hits = _scan_statements(region, pats, opts)
    _HITS_CACHE[key] = tuple(hits)
    while len(_HITS_CACHE) > 8:
        try:
            _HITS_CACHE.popitem(last=False)
        except KeyError:  # another thread emptied it first
            break
    return hits


def _scan_statements(
    region: str, pats: dict[str, re.Pattern[str]], opts: Mapping[str, str]
) -> list[tuple[int, int, str, str]]:
    hits: list[tuple[int, int, str, str]] = []
    for name in ("answer_is", "answer_header", "boxed", "option_is_correct", "choose"):
        rule = "answer_is" if name == "answer_header" else name
        for m in pats[name].finditer(region):
            letter = m.group("L").upper()
            if rule != "boxed" and _is_article(region, m, letter, opts):
                continue
            hedged = pats["hedge_after"].match(region, m.end()) is not None
            if rule == "option_is_correct" and re.search(
                r"\bnot\s*$", region[max(0, m.start() - 6) : m.start()], re.I
            ):
                continue
            hits.append((m.start(), m.end(), letter, "first_of_several" if hedged else rule))
    if opts:
        for m in _ANSWER_TEXT.finditer(region):
            tail = re.split(r"(?<=[.!?;])\s", m.group("t"), maxsplit=1)[0]
            # "the answer is chloroform (C)": the letter the model wrote is its answer.
            marks = set(re.findall(rf"\(([{''.join(opts)}])\)", tail))
            letter = marks.pop() if len(marks) == 1 else match_option_text(tail, opts)
            if (
                letter
                and not _negated_besides(tail, opts[letter])
                and not any(abs(h[0] - m.start()) < 40 for h in hits)
            ):
                hits.append((m.start(), m.end(), letter, "answer_text"))
    return hits


def _is_article(region: str, m: re.Match[str], letter: str, opts: Mapping[str, str]) -> bool:
    """``the answer is A patient...``: an ``A``/``I`` used as a word, not an option."""
    if letter not in ("A", "I"):
        return False
    before = region[m.start("L") - 1 : m.start("L")]
    after = region[m.end("L") : m.end("L") + 40]
    if (before and before in "([{") or after[:1] in ")].:":
        return False
    if re.match(r"\s+\d+[- ]?(?:year|month|week|day|cm|mm|kg)", after):
        return True
    nxt = re.match(r"\s+([a-z][a-z\-]*)", after)
    if not nxt:
        return False
    word = nxt.group(1)
    if word in _CONJUNCTIONS:
        return False
    option_text = normalise_text(opts.get(letter, ""))
    return not (option_text and option_text.split()[0] == word)


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
        if t and len(t.split()) <= 3 and (norm == t or norm.startswith(t + " ")):
            hits.append(letter)
    if len(hits) != 1 or _negated_besides(clause, opts[hits[0]]):
        return None
    return hits[0]


def _negated_besides(chunk: str, option_text: str) -> bool:
    """A negation in ``chunk`` other than the option's own words (PubMedQA "no")."""
    rest = re.sub(r"\b" + re.escape(option_text) + r"\b", " ", chunk, flags=re.I)
    return bool(_NEGATED.search(rest))


def _no_answer(region: str, default: str = "none") -> Extraction:
    return Extraction(None, "refusal" if _REFUSAL.search(region) else default)


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
