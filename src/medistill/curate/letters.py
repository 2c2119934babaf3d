"""Position-balanced traces: a kept trace's options shuffled and every letter it writes
rewritten to match, so a student learns the reasoning rather than a favourite letter.

MedMCQA's gold is A on 32% of its dev questions; a student trained on such traces (and
rewarded by GRPO whenever its guess is right) learns "A". Curation can therefore move each
trace's options to a new order and rewrite every reference the trace makes to an option
letter: ``option A``, ``(A)``, ``A.`` / ``A)`` / ``A:``, ``answer is A``, ``A or B``, ``A is
incorrect`` and the answer line. The option text is the anchor: a reference that names its
option's text ("A. Warfarin") must name the text of the option it points to, or the trace is
refused.

A letter that cannot be read unambiguously refuses the trace, which then keeps its order and
is counted: the article "A" is left alone when it opens a noun phrase ("A 45-year-old
man", "A patient"), and so are letters inside medical terms ("vitamin B12", "hepatitis B",
"B cells", "E. coli", "C-section", "type A", "D-dimer"); any other capital letter standing
alone that no reference form explains makes the rewrite ambiguous. Nothing is guessed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from medistill.data.options import permute_to, relabel

#: Words before a letter that make it part of a term, not an option reference.
_TERM_BEFORE = re.compile(
    r"(?:vitamin|hepatitis|hep|ha?emophilia|inhibin|type|group|class|grade|stage|factor|protein|"
    r"cell|cells|zone|"
    r"band|strain|serotype|subtype|lymphocyte|lymphocytes|immunoglobulin|ig|hb|hba|plan|"
    r"schedule|category|pattern|list|phase|wave|site|blood|influenza|botulinum|toxin|kinase|"
    r"receptor|fibers?|fibres?|pathway|segment|point|level|form|complex|ring|loop|chain|unit|"
    r"tier|arm|part|section|step|appendix|table|figure|fig|panel|exhibit)\s*$",
    re.I,
)
#: What follows a letter that makes it part of a term: "B12", "D-dimer", "E. coli", "B cells".
_TERM_AFTER = re.compile(
    r"^(?:\d|-|(?-i:\.\s?[a-z]{2,})|\s+(?:cells?|lymphocytes?|vitamins?|virus|viral|"
    r"antigen|antibod\w*|infection|hepatitis|strep\w*|personality|blood|type|waves?|fibers?|"
    r"fibres?|scale|grade|score|plan|protein|complex|level|-?section)\b)",
    re.I,
)


@dataclass(frozen=True)
class Rewritten:
    """A trace in its new option order (``text`` is ``None`` when it was refused)."""

    text: str | None
    options: dict[str, str]
    gold: str | None
    permutation: dict[str, str]  # old letter -> new letter
    reason: str | None = None  # why it was refused


def _reference(letters: str) -> re.Pattern[str]:
    """The forms in which a trace names an option letter (one named group ``L`` each)."""
    L = letters
    return re.compile(
        rf"(?P<p>\((?P<L1>[{L}])\))"  # (A)
        rf"|(?P<b>\[(?P<L2>[{L}])\])"  # [A]
        rf"|(?P<kw>\b(?i:options?|choices?|answers?|letter|answer\s+is|answer\s+would\s+be|"
        rf"correct\s+answer\s+is|answer\s*:)\s*\**\s*(?P<L3>[{L}])\b(?!-))"  # option A
        rf"|(?P<lead>(?:^|(?<=\n))[ \t>*-]*\**(?P<L4>[{L}])\**\s*[.):](?=\s|$))"  # A. at line start
        rf"|(?P<mark>(?<![A-Za-z0-9'’\-])(?P<L5>[{L}])(?:[.):](?=\s+[A-Z(\"'*])|\)))"  # A) / A. X
        rf"|(?P<pred>(?<![A-Za-z0-9'’\-])(?P<L6>[{L}])(?=\s+(?i:is|are|was|would|could|can|"
        rf"cannot|does|do|seems|remains|fits|explains|describes|refers|corresponds|and|or|nor)"
        rf"\b|\s*,\s*[{L}]\b|\s*/\s*[{L}]\b))"  # A is incorrect, A or B, A, C
        rf"|(?P<tail>(?<![A-Za-z0-9'’\-])(?P<L7>[{L}])(?=\s*(?:[.!?;]|$)))"  # ... is A
        rf"|(?P<bold>\*\*(?P<L8>[{L}])\*\*)",  # **A**
        re.M,
    )


_BARE = re.compile(r"(?<![A-Za-z0-9'’\-])([A-J])(?![A-Za-z0-9])")


def _is_term(text: str, start: int) -> bool:
    """Whether the capital at ``start`` belongs to a term ("hepatitis B", "B12", "E. coli")."""
    before, after = text[max(0, start - 30) : start], text[start + 1 : start + 40]
    return bool(_TERM_BEFORE.search(before) or _TERM_AFTER.match(after))


def _is_article(text: str, start: int) -> bool:
    """Whether an ``A`` at ``start`` is the article: it opens a sentence (a capital "A" in
    mid-sentence is a letter) and a word follows ("A 45-year-old", "A patient", "A CT scan")."""
    if text[start] != "A" or not re.match(r"\s+[A-Za-z0-9]", text[start + 1 : start + 3]):
        return False
    before = text[max(0, start - 4) : start]
    return not before.strip() or bool(re.search(r"(?:[.!?:]\s+|\n\s*|[(\"'“*>-]\s*)$", before))


#: Reference forms that may also be read as a term ("hepatitis B." at a sentence's end):
#: those are checked against the term lists; explicit forms ("(B)", "option B") never are.
_WEAK = ("L4", "L5", "L6", "L7")


def _references(text: str, letters: str) -> list[tuple[int, int, str]] | None:
    """``(start, end, letter)`` of every option-letter reference, or ``None`` when a capital
    letter stands alone where no reference form, term or article explains it."""
    spans: list[tuple[int, int, str]] = []
    for m in _reference(letters).finditer(text):
        group = next(g for g in ("L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8") if m.group(g))
        if group in _WEAK and _is_term(text, m.start(group)):
            continue
        spans.append((m.start(group), m.end(group), m.group(group)))
    covered = {s for s, _, _ in spans}
    listed = re.compile(
        rf"(?<![A-Za-z0-9])[{letters}]\)?\s*(?:,\s*(?:and\s+|or\s+)?|\s+(?:and|or|nor)\s+|/\s*)$"
    )
    for m in _BARE.finditer(text):
        at = m.start()
        if at in covered or m.group(1) not in letters or _is_term(text, at):
            continue
        if _is_article(text, at):
            continue
        if listed.search(text[max(0, at - 12) : at]):  # "A, C and D": the list goes on
            spans.append((at, at + 1, m.group(1)))
            continue
        return None  # a letter we cannot place: refuse rather than guess
    return spans


def _text_disagrees(
    text: str, spans: list[tuple[int, int, str]], options: Mapping[str, str]
) -> bool:
    """Whether a reference names another option's text ("A. Heparin" where A is warfarin)."""
    texts = {k: v.strip().lower() for k, v in options.items() if v and v.strip()}
    for _, end, letter in spans:
        named = re.match(r"[.):\]]?\s*\(?\s*([^()\n.;,]{3,60})", text[end : end + 64])
        if not named:
            continue
        said = named.group(1).strip().lower()
        hit = [
            k
            for k, v in texts.items()
            if said.startswith(v) or (len(said) >= 5 and v.startswith(said))
        ]
        if hit and letter not in hit:
            return True
    return False


def rewrite_letters(
    text: str, permutation: Mapping[str, str], options: Mapping[str, str]
) -> str | None:
    """``text`` with every option-letter reference moved by ``permutation`` (old -> new), or
    ``None`` when some letter cannot be read unambiguously or a reference's option text
    disagrees with its letter. Pure: the same input, the same output.

    >>> opts = {"A": "Warfarin", "B": "Heparin"}
    >>> rewrite_letters("A 30-year-old woman. Option A (Warfarin) is teratogenic; B is safe."
    ...                 "\\nThe answer is B.", {"A": "B", "B": "A"}, opts)
    'A 30-year-old woman. Option B (Warfarin) is teratogenic; A is safe.\\nThe answer is A.'
    """
    spans = _references(text, "".join(options))
    if spans is None or _text_disagrees(text, spans, options):
        return None
    out, last = [], 0
    for start, end, letter in sorted(spans):
        out.append(text[last:start])
        out.append(permutation.get(letter, letter))
        last = end
    out.append(text[last:])
    return "".join(out)


def reorder(
    text: str, options: Mapping[str, str], gold: str | None, permutation: Mapping[str, str]
) -> Rewritten:
    """The trace, its options and gold in the new order; refused (``text=None``, original
    order kept by the caller) when :func:`rewrite_letters` cannot rewrite it."""
    new_text = rewrite_letters(text, permutation, options)
    if new_text is None:
        return Rewritten(None, dict(options), gold, dict(permutation), "ambiguous_letters")
    shown = relabel(options, gold, permutation)
    return Rewritten(new_text, shown.options, shown.gold, dict(permutation))


POSITION_MODES = ("off", "shuffle", "balance")


class PositionBalancer:
    """Reorders kept traces as curation writes them (``position_balance``) and counts.

    ``shuffle``: each trace gets a seeded random option order. ``balance``: each trace's gold
    moves to the letter its question set has seen least so far (ties by a seeded order), so
    the kept set's gold letters end up as even as the traces allow. A trace that
    :func:`reorder` refuses keeps its order and is counted (``refused``). The gold-letter
    distribution before and after goes into ``stats.json`` and the card.
    """

    def __init__(self, mode: str, seed: int) -> None:
        if mode not in POSITION_MODES:
            raise ValueError(
                f"position_balance {mode!r}: choose one of {', '.join(POSITION_MODES)}"
            )
        self.mode, self.seed = mode, seed
        self.before: dict[str, int] = {}
        self.after: dict[str, int] = {}
        self.rewritten = self.refused = 0

    def apply(
        self, key: str, text: str, options: dict[str, str], gold: str | None
    ) -> tuple[str, dict[str, str], str | None]:
        """The trace as it is written into the dataset: ``(text, options, gold)``."""
        if gold:
            self.before[gold] = self.before.get(gold, 0) + 1
        if self.mode == "off" or not gold or len(options) < 2:
            return self._kept(text, options, gold)
        rng = random.Random(f"{self.seed}:{key}")
        letters = list(options)
        if self.mode == "balance":
            order = letters[:]
            rng.shuffle(order)  # seeded tie-break
            target = min(order, key=lambda k: self.after.get(k, 0))
        else:
            target = rng.choice(letters)
        r = reorder(text, options, gold, permute_to(options, gold, target, rng).moves)
        if r.text is None:
            self.refused += 1
            return self._kept(text, options, gold)
        self.rewritten += 1
        return self._kept(r.text, r.options, r.gold)

    def _kept(self, text: str, options: dict[str, str], gold: str | None):
        if gold:
            self.after[gold] = self.after.get(gold, 0) + 1
        return text, options, gold

    def summary(self) -> dict[str, object]:
        """What was done, for ``stats.json`` and the card."""
        return {
            "mode": self.mode,
            "rewritten": self.rewritten,
            "refused": self.refused,
            "gold_before": dict(sorted(self.before.items())),
            "gold_after": dict(sorted(self.after.items())),
        }
