"""Clinical-safety checks for the GRPO rewards: the rule engine.

The rule engine reads a documented YAML pattern file (default: the packaged
``safety_rules.yaml``; its header explains every field; loaded and checked by
:mod:`medistill.train.safety_rules`) and reports which rules a completion fires: a
contraindicated action recommended for the condition in the prompt, urgent care discouraged
for a red-flag presentation, a dose outside a documented range, or absolute certainty without
any caveat. Mentions that are negated or warned against ("avoid warfarin", "warfarin is
contraindicated") do not fire. The rules are illustrative, not a clinical reference: they keep
RL from rewarding a few well-known errors.

The optional LLM rubric judge (HealthBench-style) lives in :mod:`medistill.train.judge`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medistill.train.safety_rules import Rule, RuleSet, load_rules

log = logging.getLogger(__name__)

_MG_PER = {"g": 1000.0, "mg": 1.0, "mcg": 0.001}
_UNIT_ALIASES = {
    "g": "g", "gram": "g", "grams": "g", "mg": "mg", "milligram": "mg", "milligrams": "mg",
    "mcg": "mcg", "µg": "mcg", "ug": "mcg", "microgram": "mcg", "micrograms": "mcg",
    "meq": "meq", "mmol": "mmol", "unit": "units", "units": "units", "iu": "units",
}  # fmt: skip
_BOUNDARY = re.compile(r"[;!?\n]|\.(?!\d)|\b(?:but|however|whereas|although|though)\b", re.I)
_SENTENCE = re.compile(r"[;!?\n]|\.(?!\d)")
_TAIL_END = re.compile(r"[,;\n]|\.(?!\d)|\b(?:and|then|plus|with)\b", re.I)


# ----------------------------------------------------------------------------- text helpers


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):  # content parts: [{"type": "text", "text": ...}]
        return "".join(p.get("text") or "" for p in value if isinstance(p, Mapping))
    return "" if value is None else str(value)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or chat messages (TRL's conversational form).

    Assistant messages are joined; a separate reasoning field becomes a ``<think>`` block,
    so every reward reads reasoning and answer the way the answer extractor expects.
    """
    if completion is None or isinstance(completion, str):
        return completion or ""
    parts = []
    for m in completion:
        if isinstance(m, str):
            parts.append(m)
        elif isinstance(m, Mapping) and m.get("role", "assistant") == "assistant":
            body = _content(m.get("content"))
            think = m.get("reasoning_content") or m.get("reasoning") or m.get("thinking")
            parts.append(f"<think>\n{think}\n</think>\n{body}" if think else body)
    return "\n".join(parts)


def prompt_text(prompt: Any) -> str:
    """The text of one prompt: a string, or the user messages of a chat prompt."""
    if prompt is None or isinstance(prompt, str):
        return prompt or ""
    msgs = [m for m in prompt if isinstance(m, Mapping)]
    users = [m for m in msgs if m.get("role") == "user"] or msgs
    return "\n".join(_content(m.get("content")) for m in users)


# ----------------------------------------------------------------------------- rule file


@dataclass(frozen=True)
class Fired:
    """A rule that fired on a completion, with the text that triggered it."""

    name: str
    kind: str
    penalty: float
    evidence: str


# ----------------------------------------------------------------------------- engine


def _negated(
    text: str,
    start: int,
    end: int,
    rs: RuleSet,
    unless: Sequence[re.Pattern[str]],
    discussion: bool = False,
) -> bool:
    """Is the mention at ``text[start:end]`` negated, warned against or excluded?

    With ``discussion`` (a contraindicated action in a completion) the mention also does not
    count when it is discussed rather than recommended: its sentence eliminates or contrasts
    options (``negation.sentence``), the words after it describe the drug
    (``negation.describes``: "X is an ACE inhibitor", "X is used for acne"), or the words
    before it tell the patient's history (``negation.narrative``: "she is on X"). Only the
    first two yield to a recommendation in the words before it (``negation.recommend``:
    "start X", "the answer is B (X)").
    """
    cs = 0
    for m in _BOUNDARY.finditer(text, 0, start):
        cs = m.end()
    nxt = _BOUNDARY.search(text, end)
    ce = nxt.start() if nxt else len(text)
    before = " ".join(text[cs:start].split()[-rs.window_words :])
    after = " ".join(text[end:ce].split()[: rs.window_words])
    if (
        any(p.search(before) for p in rs.before)
        or any(p.search(after) for p in rs.after)
        or any(p.search(text[cs:ce]) for p in unless)
    ):
        return True
    if not discussion:
        return False
    if any(p.search(before) for p in rs.narrative):
        return True
    if any(p.search(before) for p in rs.recommend):
        return False
    ss = 0
    for m in _SENTENCE.finditer(text, 0, start):
        ss = m.end()
    nxt = _SENTENCE.search(text, end)
    sentence = text[ss : nxt.start() if nxt else len(text)]
    tail = " ".join(text[end:ce].split()[: 2 * rs.window_words])
    return any(p.search(sentence) for p in rs.sentence) or any(p.search(tail) for p in rs.describes)


def _mention(
    patterns: Sequence[re.Pattern[str]],
    text: str,
    rs: RuleSet,
    unless: Sequence[re.Pattern[str]] = (),
    discussion: bool = False,
) -> str | None:
    for pat in patterns:
        for m in pat.finditer(text):
            if not _negated(text, m.start(), m.end(), rs, unless, discussion):
                return m.group(0)
    return None


def _dose_fires(rule: Rule, text: str, rs: RuleSet) -> str | None:
    assert rule.dose is not None
    for m in rule.dose.finditer(text):
        value = max(float(n.replace(",", "")) for n in (m["num"], m["num2"]) if n)
        unit = _UNIT_ALIASES[m["unit"].lower()]
        if unit in _MG_PER and rule.unit in _MG_PER:
            value = value * _MG_PER[unit] / _MG_PER[rule.unit]
        elif unit != rule.unit:
            continue
        low = rule.min is not None and value < rule.min
        if not (low or (rule.max is not None and value > rule.max)):
            continue
        if rule.context is not None:
            stop = _TAIL_END.search(text, m.end(), m.end() + 40)
            if not rule.context.search(text[m.end() : stop.start() if stop else m.end() + 40]):
                continue
        if not _negated(text, m.start(), m.end(), rs, rule.unless):
            return m.group(0)
    return None


def _applies(rule: Rule, prompt: str, rs: RuleSet) -> bool:
    """Does a prompt-conditioned rule's condition match the prompt (not negated)?"""
    return any(all(_mention((p,), prompt, rs) for p in conj) for conj in rule.condition)


def _fires(rule: Rule, text: str, prompt: str, rs: RuleSet, assume: bool = False) -> str | None:
    if rule.kind == "dose_range":
        return _dose_fires(rule, text, rs)
    if rule.kind == "overconfidence":
        if any(h.search(text) for h in rule.hedges):
            return None
        return next((m.group(0) for p in rule.action if (m := p.search(text))), None)
    if not assume and not _applies(rule, prompt, rs):
        return None
    return _mention(rule.action, text, rs, rule.unless, discussion=rule.kind == "contraindicated")


def applicable_rules(prompt: Any, *, rules: RuleSet | str | Path | None = None) -> list[str]:
    """The prompt-conditioned rules (``contraindicated``, ``discourages_emergency_care``) whose
    condition matches ``prompt``: on a prompt where none does, only the unconditioned
    ``dose_range`` and ``overconfidence`` rules can make the reward differ between completions.

    >>> applicable_rules("She is 10 weeks pregnant and has a DVT.")
    ['teratogen_in_pregnancy']
    >>> applicable_rules("A 60-year-old man has a DVT.")
    []
    """
    rs = rules if isinstance(rules, RuleSet) else load_rules(rules)
    ptext = prompt_text(prompt)
    return [r.name for r in rs.rules if r.condition and _applies(r, ptext, rs)]


def check_safety(
    completion: Any,
    prompt: Any = "",
    *,
    rules: RuleSet | str | Path | None = None,
    assume_conditions: bool = False,
) -> list[Fired]:
    """The safety rules a completion fires, with their names and the triggering text.

    ``completion`` and ``prompt`` may be strings or chat messages. Used by the ``safety``
    reward and for logs and tests. ``assume_conditions`` reads the completion as if the
    prompt met every rule's condition: a stress test of the negation handling on text whose
    prompts rarely do (``benchmarks/safety_rules_firing.py``), never a reward.

    >>> [f.name for f in check_safety("Start warfarin now.", "She is 10 weeks pregnant.")]
    ['teratogen_in_pregnancy']
    >>> check_safety("Avoid warfarin: it is teratogenic.", "She is 10 weeks pregnant.")
    []
    """
    rs = rules if isinstance(rules, RuleSet) else load_rules(rules)
    text, ptext = completion_text(completion), prompt_text(prompt)
    fired = []
    for rule in rs.rules:
        evidence = _fires(rule, text, ptext, rs, assume_conditions)
        if evidence is not None:
            fired.append(Fired(rule.name, rule.kind, rule.penalty, evidence))
    return fired


def safety_score(fired: Sequence[Fired]) -> float:
    """1.0 minus the penalties of the fired rules, clamped to [0, 1].

    >>> safety_score([Fired("a", "dose_range", 0.5, "x"), Fired("b", "overconfidence", 0.25, "y")])
    0.25
    """
    return min(1.0, max(0.0, 1.0 - sum(f.penalty for f in fired)))
