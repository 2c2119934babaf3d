"""Clinical-safety checks for the GRPO rewards: the rule engine.

The rule engine reads a documented YAML pattern file (default: the packaged
``safety_rules.yaml``; its header explains every field) and reports which rules a completion
fires: a contraindicated action recommended for the condition in the prompt, urgent care
discouraged for a red-flag presentation, a dose outside a documented range, or absolute
certainty without any caveat. Mentions that are negated or warned against ("avoid warfarin",
"warfarin is contraindicated") do not fire. The rules are illustrative, not a clinical
reference: they keep RL from rewarding a few well-known errors.

The optional LLM rubric judge (HealthBench-style) lives in :mod:`medistill.train.judge`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from medistill.errors import MedistillError

log = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(__file__).with_name("safety_rules.yaml")
KINDS = ("contraindicated", "discourages_emergency_care", "dose_range", "overconfidence")
_COMMON = {"name", "kind", "penalty", "description"}
_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # kind -> (required, optional)
    "contraindicated": ({"condition", "action"}, {"unless"}),
    "discourages_emergency_care": ({"condition", "action"}, {"unless"}),
    "dose_range": ({"drug", "unit"}, {"min", "max", "context", "window", "unless"}),
    "overconfidence": ({"patterns"}, {"hedges"}),
}
_MG_PER = {"g": 1000.0, "mg": 1.0, "mcg": 0.001}
_UNIT_ALIASES = {
    "g": "g", "gram": "g", "grams": "g", "mg": "mg", "milligram": "mg", "milligrams": "mg",
    "mcg": "mcg", "µg": "mcg", "ug": "mcg", "microgram": "mcg", "micrograms": "mcg",
    "meq": "meq", "mmol": "mmol", "unit": "units", "units": "units", "iu": "units",
}  # fmt: skip
_RULE_UNITS = ("mg", "g", "mcg", "meq", "mmol", "units")
_NUM = r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+"
_UNIT_RE = r"micrograms?|mcg|µg|ug|milligrams?|mg|grams?|g|meq|mmol|units?|iu"
_BOUNDARY = re.compile(r"[;!?\n]|\.(?!\d)|\b(?:but|however|whereas|although|though)\b", re.I)
_SENTENCE = re.compile(r"[;!?\n]|\.(?!\d)")
_DISCUSSION_FIELDS = ("sentence", "describes", "narrative", "recommend")
_NEGATION_FIELDS = ("before", "after", "window_words", *_DISCUSSION_FIELDS)
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
class Rule:
    """One validated rule of a safety file (fields as documented in ``safety_rules.yaml``)."""

    name: str
    kind: str
    penalty: float
    description: str = ""
    condition: tuple[tuple[re.Pattern[str], ...], ...] = ()
    action: tuple[re.Pattern[str], ...] = ()
    unless: tuple[re.Pattern[str], ...] = ()
    hedges: tuple[re.Pattern[str], ...] = ()
    dose: re.Pattern[str] | None = None
    unit: str = ""
    min: float | None = None
    max: float | None = None
    context: re.Pattern[str] | None = None


@dataclass(frozen=True)
class RuleSet:
    """A loaded safety file: its rules and the negation cues they share."""

    path: str
    rules: tuple[Rule, ...]
    before: tuple[re.Pattern[str], ...]
    after: tuple[re.Pattern[str], ...]
    window_words: int
    sentence: tuple[re.Pattern[str], ...] = ()
    describes: tuple[re.Pattern[str], ...] = ()
    recommend: tuple[re.Pattern[str], ...] = ()
    narrative: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True)
class Fired:
    """A rule that fired on a completion, with the text that triggered it."""

    name: str
    kind: str
    penalty: float
    evidence: str


class Where:
    """Builds error messages naming the file, the rule and the field."""

    def __init__(self, path: str, index: int | None = None, name: str | None = None) -> None:
        self.path, self.index, self.name = path, index, name

    def error(self, message: str, field: str | None = None) -> MedistillError:
        where = self.path
        if self.index is not None:
            where += f": rules[{self.index}]" + (f" ({self.name!r})" if self.name else "")
        if field:
            where += f": field {field!r}"
        return MedistillError(f"{where}: {message}")

    def regex(self, value: Any, field: str) -> re.Pattern[str]:
        if not isinstance(value, str) or not value:
            raise self.error(f"expected a regex string, got {value!r}", field)
        try:
            return re.compile(value, re.I)
        except re.error as e:
            raise self.error(f"invalid regex {value!r} ({e})", field) from None

    def regexes(self, value: Any, field: str) -> tuple[re.Pattern[str], ...]:
        if isinstance(value, str):
            return (self.regex(value, field),)
        if not isinstance(value, list) or not value:
            raise self.error(f"expected a non-empty list of regexes, got {value!r}", field)
        return tuple(self.regex(v, f"{field}[{i}]") for i, v in enumerate(value))

    def number(self, value: Any, field: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self.error(f"expected a number in [{lo}, {hi}], got {value!r}", field)
        return float(value)


def _parse_rule(raw: Any, w: Where) -> Rule:
    if not isinstance(raw, Mapping):
        raise w.error(f"expected a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise w.error(f"expected a non-empty string, got {name!r}", "name")
    w.name = name
    kind = raw.get("kind")
    if kind not in KINDS:
        raise w.error(f"{kind!r} is not one of {', '.join(KINDS)}", "kind")
    required, optional = _FIELDS[kind]
    for key in raw:
        if key not in _COMMON | required | optional:
            valid = ", ".join(sorted(_COMMON | required | optional))
            raise w.error(f"unknown field for kind {kind!r}; valid fields: {valid}", str(key))
    for key in sorted(required | {"penalty"}):
        if key not in raw:
            raise w.error(f"missing (required for kind {kind!r})", key)
    penalty = w.number(raw["penalty"], "penalty", 0.0, 1.0)
    if penalty == 0:
        raise w.error("must be greater than 0", "penalty")
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        raise w.error(f"expected a string, got {desc!r}", "description")
    fields: dict[str, Any] = (
        {"unless": w.regexes(raw["unless"], "unless")} if "unless" in raw else {}
    )
    if kind in ("contraindicated", "discourages_emergency_care"):
        cond = raw["condition"]
        if not isinstance(cond, list) or not cond:
            raise w.error(f"expected a non-empty list, got {cond!r}", "condition")
        # Each entry: one regex, or a list of regexes that must all match.
        fields["condition"] = tuple(w.regexes(c, f"condition[{i}]") for i, c in enumerate(cond))
        fields["action"] = w.regexes(raw["action"], "action")
    elif kind == "overconfidence":
        fields["patterns"] = w.regexes(raw["patterns"], "patterns")
        fields["hedges"] = w.regexes(raw["hedges"], "hedges") if "hedges" in raw else ()
        fields["action"] = fields.pop("patterns")
    else:
        drugs = w.regexes(raw["drug"], "drug")
        unit = str(raw["unit"]).lower()
        if unit not in _RULE_UNITS:
            raise w.error(f"{raw['unit']!r} is not one of {', '.join(_RULE_UNITS)}", "unit")
        bounds = {k: w.number(raw[k], k, 0.0, 1e9) for k in ("min", "max") if k in raw}
        if not bounds:
            raise w.error("a dose_range rule needs 'min' or 'max' (or both)", "max")
        if bounds.get("min", 0.0) > bounds.get("max", float("inf")):
            raise w.error(f"min {bounds['min']} is above max {bounds['max']}", "min")
        window = int(w.number(raw.get("window", 30), "window", 0, 200))
        names = "|".join(f"(?:{d.pattern})" for d in drugs)
        fields["dose"] = re.compile(
            rf"(?:{names})(?:(?!\.\s)[^\n;]){{0,{window}}}?(?<![\d.,])(?P<num>{_NUM})"
            rf"(?:\s*(?:-|–|to)\s*(?P<num2>{_NUM}))?\s*(?P<unit>{_UNIT_RE})(?![A-Za-zµ])",
            re.I,
        )
        fields.update(unit=unit, **bounds)
        if "context" in raw:
            fields["context"] = w.regex(raw["context"], "context")
    return Rule(name=name, kind=kind, penalty=penalty, description=desc, **fields)


def _parse_rules(data: Any, path: str) -> RuleSet:
    w = Where(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise w.error("expected a mapping with a 'rules' list at the top level")
    unknown = set(data) - {"version", "negation", "rules"}
    if unknown:
        raise w.error(
            f"unknown top-level field(s) {sorted(unknown)}; valid: negation, rules, version"
        )
    if data.get("version", 1) != 1:
        raise w.error(f"unsupported version {data['version']!r} (expected 1)", "version")
    rules, names = [], set()
    for i, raw in enumerate(data["rules"]):
        rule = _parse_rule(raw, Where(path, i))
        if rule.name in names:
            raise Where(path, i, rule.name).error("duplicate rule name", "name")
        names.add(rule.name)
        rules.append(rule)
    neg = data.get("negation")
    if neg is None:
        if Path(path) == DEFAULT_RULES_PATH.resolve():
            raise w.error("missing", "negation")
        base = load_rules()
        return dataclasses.replace(base, path=path, rules=tuple(rules))
    if not isinstance(neg, Mapping) or set(neg) - set(_NEGATION_FIELDS):
        raise w.error(f"expected a mapping with {', '.join(_NEGATION_FIELDS)}", "negation")
    optional = {}
    for key in _DISCUSSION_FIELDS:
        if key in neg:  # optional: inherited from the packaged file when absent
            optional[key] = w.regexes(neg[key], f"negation.{key}")
        elif Path(path) == DEFAULT_RULES_PATH.resolve():
            raise w.error("missing", f"negation.{key}")
        else:
            optional[key] = getattr(load_rules(), key)
    return RuleSet(
        path,
        tuple(rules),
        w.regexes(neg.get("before"), "negation.before"),
        w.regexes(neg.get("after"), "negation.after"),
        int(w.number(neg.get("window_words", 6), "negation.window_words", 1, 50)),
        **optional,
    )


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load and validate a safety rule file (default: the packaged ``safety_rules.yaml``).

    Every field is checked up front, so a bad file fails when the run starts, with a
    :class:`MedistillError` naming the file, the rule (index and name) and the field.
    Results are cached per file and modification time.
    """
    p = Path(path) if path else DEFAULT_RULES_PATH
    if not p.is_file():
        raise MedistillError(f"safety rules file not found: {p}")
    return _load_cached(str(p.resolve()), p.stat().st_mtime_ns)


@lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int) -> RuleSet:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise MedistillError(f"{path}: invalid YAML ({e})") from None
    return _parse_rules(data, path)


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
