"""Patterns and text helpers of the extractor: the regular expressions (compiled once per
letter set), option-text matching, and the scan for explicit answer statements."""

from __future__ import annotations

import re
import string
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from medistill.data.options import lettered

# ----------------------------------------------------------------------------- patterns

_THINK_CLOSE = re.compile(
    r"</think(?:ing)?>|^[ \t]*#{1,3}[ \t]*Final[ \t]+Response[ \t]*:?[ \t]*$", re.I | re.M
)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.I)

# A runaway generation: after answering, the model starts a new question or chat turn.
_RUNAWAY = re.compile(
    r"(?:<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|<\|user\|>|<\|assistant\|>"
    r"|</s>|<end_of_turn>|<start_of_turn>"
    r"|\[INST\]|\n[ \t]*(?:#{1,4}[ \t]*)?\[?(?:(?:Next|Follow[- ]?up|Related|Another|Practice|"
    r"Bonus|Additional|Similar)\s+(?:question|case)|Question|Q|Problem|Exercise"
    r"|Instruction|Input|Human|User|USER|Patient|Case|Vignette|Context)\]?[ \t]*\d*[ \t]*"
    r"(?:[:.)#]|(?<=\d)[ \t]*\n)"
    r"|\n[ \t]*An?[ \t]+\d+[- ](?:year|month|week|day)[- ]old"
    r"|\n[ \t]*(?:\d+[.)]|Q\d+[.:])[ \t]*An?[ \t]+\d+[- ](?:year|month|week|day)[- ]old)",
)

REFUSAL = re.compile(
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
def letter_patterns(letters: str) -> dict[str, re.Pattern[str]]:
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
        r"right\s+(?:option|choice)|(?:closest|nearest)(?:\s+(?:match|answer|option|choice|fit|"
        r"one))?|best\s+(?:guess|match|fit)|answer|ans\b\.?)"
    )
    connector = (
        r"(?:\s+(?:to\s+(?:this|the|your)\s+question|here|for\s+this\s+question))?"
        r"(?:\s*,?\s*(?:is|was|would\s+be|will\s+be|should\s+be|must\s+be|has\s+to\s+be|"
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
            rf"(?:is|would\s+be|seems)\s+(?:the\s+)?(?:most\s+)?(?:correct|right|best|answer|"
            rf"what\s+is\s+expected|expected\s+answer)\b"
            rf"(?!\s+(?:treatment|management|describ|explan|diagnos))",
            re.I,
        ),
        "choose": re.compile(
            rf"\b(?:I(?:\s+(?:would|will)\s+|'d\s+|'ll\s+|\s+)(?:choose|select|pick|go\s+with|recommend|lean\s+(?:towards?|to))|I\s+think\s+it(?:'s|\s+is)|"
            rf"I'd\s+(?:choose|select|pick|go\s+with)|if\s+(?:I|we)\s+(?:must|have\s+to|had\s+to)\s+"
            rf"(?:pick|choose|select|answer)\s*,?\s*(?:I(?:'d|\s+would)\s+(?:pick|choose|say|go\s+with)"
            rf"\s+|it(?:'s|\s+is|\s+would\s+be)\s+)?|my\s+(?:final\s+)?(?:answer|choice|"
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


JSON_KEYS = (
    "answer_choice",
    "answer",
    "final_answer",
    "correct_answer",
    "answer_letter",
    "choice",
)
JSON_FIELD = re.compile(
    # the opening quote; or lost: after an escaped newline, a space, a brace or a comma
    r"(?:[\"']|(?<=\\n)|(?<=\\n\s)|(?<=[\s{,])|^)"
    r"(?P<key>answer_choice|answer|final_answer|choice|correct_answer|answer_letter)[\"']"
    r"\s*:\s*(?:\"(?P<dq>(?:[^\"\\]|\\.)*)\"|'(?P<sq>[^']*)'|(?P<bare>[A-Za-z]))",
    re.I,
)
_ANSWER_TEXT = re.compile(
    r"\b(?:(?:correct\s+|best\s+|final\s+)?answer|(?:closest|nearest)(?:\s+(?:match|one|option|"
    r"choice|fit|answer))?)(?:\s+(?:is|would\s+be)|\s*[=:])\s*:?\s*(?P<t>[^\n]+)",
    re.I,
)
NEGATED = re.compile(
    r"\b(?:not|no|isn't|incorrect|wrong|unlikely|contradict\w*|rule[sd]?\s+out|ruled\s+out|"
    r"exclude[sd]?|eliminat\w*|false|rather\s+than|instead\s+of|less\s+likely|unlikely)\b",
    re.I,
)
_CONJUNCTIONS = frozenset({"and", "or", "through", "to", "is", "as", "because", "since", "with"})
_MD = re.compile(r"\*\*|__|(?<!`)`{1,2}(?!`)|\\\(|\\\)|\$")  # code fences (```) are kept
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "’‘“”–—"})


# ----------------------------------------------------------------------------- helpers


def normalise_text(s: str) -> str:
    """Lowercase, drop punctuation and collapse spaces (for matching option texts)."""
    return " ".join(s.lower().translate(_PUNCT).split())


def letters_for(options: Mapping[str, str] | Sequence[str] | None, letters: str | None) -> str:
    if letters:
        return letters.upper()
    if options is None:
        return "ABCDE"
    if isinstance(options, Mapping):
        return "".join(str(k).upper() for k in options)
    return string.ascii_uppercase[: len(options)]


def option_map(options: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """Options as letter -> text, read the way :mod:`medistill.data.options` reads them."""
    return {letter: str(text) for letter, text in lettered(options) or []}


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


def resolve_value(value: str, letters: str, options: Mapping[str, str]) -> tuple[str | None, str]:
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
        m = letter_patterns(letters)["answer_is"].search(v)
        letter = m.group("L").upper() if m else None
    return letter, "json_field"


def answer_region(text: str) -> tuple[str, str | None]:
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


def clean_markup(text: str) -> str:
    """Strip markdown emphasis, inline math and LaTeX text wrappers that hide letters."""
    text = _LATEX_TEXT.sub(r"\1", text)
    text = _LATEX_TEXT.sub(r"\1", text)
    return _MD.sub("", text)


def cut_runaway(text: str, first_commit: int | None, pats: dict[str, re.Pattern[str]]) -> str:
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


def first_commitment(
    text: str, pats: dict[str, re.Pattern[str]], opts: Mapping[str, str]
) -> int | None:
    """Where the response first commits to an answer (statement, JSON field, or a leading
    letter line that is not the start of a restated option list); ``None`` if nowhere."""
    starts = [h[0] for h in statement_hits(text, pats, opts)]
    starts += [m.start() for m in JSON_FIELD.finditer(text)]
    m = pats["leading"].match(text)
    if m:
        rest = text[m.end() :].lstrip("\n").lstrip()
        nxt = re.sub(r"^[^\n]*\n\s*", "", text.strip(), count=1)  # the line after the first
        if not pats["list_item"].match(nxt) or not rest:
            starts.append(m.start("L"))
    return min(starts) if starts else None


def sentence_at(text: str, pos: int) -> str:
    """The sentence of ``text`` containing position ``pos``."""
    start = max(text.rfind(c, 0, pos) for c in ".!?\n") + 1
    ends = [i for i in (text.find(c, pos) for c in ".!?\n") if i != -1]
    return text[start : min(ends) if ends else len(text)]


def last_paragraph(text: str) -> str:
    parts = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return parts[-1] if parts else ""


def statement_hits_exist(region: str, letters: str) -> bool:
    pats = letter_patterns(letters)
    return any(pats[k].search(region) for k in ("answer_is", "boxed", "option_is_correct"))


_HITS_CACHE: OrderedDict[tuple[Any, ...], tuple[tuple[int, int, str, str], ...]] = OrderedDict()


def statement_hits(
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
                and not negated_besides(tail, opts[letter])
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


def negated_besides(chunk: str, option_text: str) -> bool:
    """A negation in ``chunk`` other than the option's own words (PubMedQA "no")."""
    rest = re.sub(r"\b" + re.escape(option_text) + r"\b", " ", chunk, flags=re.I)
    return bool(NEGATED.search(rest))
