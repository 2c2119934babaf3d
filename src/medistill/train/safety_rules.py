"""The safety rule file: a documented YAML pattern file (default: the packaged
``safety_rules.yaml``; its header explains every field) read and checked into a
:class:`RuleSet` for the rule engine in :mod:`medistill.train.safety`. Every field is checked
when the file is loaded, with an error naming the file, the rule and the field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from medistill.errors import MedistillError

DEFAULT_RULES_PATH = Path(__file__).with_name("safety_rules.yaml")
KINDS = ("contraindicated", "discourages_emergency_care", "dose_range", "overconfidence")
_COMMON = {"name", "kind", "penalty", "description"}
_FIELDS: dict[str, tuple[set[str], set[str]]] = {  # kind -> (required, optional)
    "contraindicated": ({"condition", "action"}, {"unless"}),
    "discourages_emergency_care": ({"condition", "action"}, {"unless"}),
    "dose_range": ({"drug", "unit"}, {"min", "max", "context", "window", "unless"}),
    "overconfidence": ({"patterns"}, {"hedges"}),
}
_RULE_UNITS = ("mg", "g", "mcg", "meq", "mmol", "units")
_NUM = r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+"
_UNIT_RE = r"micrograms?|mcg|µg|ug|milligrams?|mg|grams?|g|meq|mmol|units?|iu"
_DISCUSSION_FIELDS = ("sentence", "describes", "narrative", "recommend")
_NEGATION_FIELDS = ("before", "after", "window_words", *_DISCUSSION_FIELDS)


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
