"""Recipes: YAML files whose sections fill the stages' config dataclasses.

A recipe's sections (``generate:``, ``curate:``, ``eval:``, ``sft:``, ``grpo:``, ``distill:``)
fill the config class of the stage of the same name. :func:`build` checks keys (an unknown one is
named with the closest valid ones) and values against the field types. The command line is
derived from the same classes in :mod:`medistill.flags`.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medistill.backends.config import TeacherConfig
from medistill.errors import MedistillError

log = logging.getLogger(__name__)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The whole YAML recipe as a mapping (errors name the file)."""
    path = Path(path)
    if not path.exists():
        raise MedistillError(f"{path}: recipe not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise MedistillError(f"{path}: invalid YAML ({e})") from e
    if not isinstance(data, dict):
        raise MedistillError(f"{path}: a recipe is a mapping of sections")
    return data


def load_section(path: str | Path, section: str) -> dict[str, Any]:
    """The mapping under ``section`` in a YAML recipe (empty if the section is absent)."""
    value = load_recipe(path).get(section) or {}
    if not isinstance(value, dict):
        raise MedistillError(f"{path}: section '{section}' must be a mapping")
    return dict(value)


def unknown_message(where: str, unknown: Sequence[str], valid: Sequence[str]) -> str:
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        hints.append(
            f"{key!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
        )
    listing = sorted(valid)
    shown = ", ".join(listing) if len(listing) <= 40 else ", ".join(listing[:40]) + ", ..."
    return f"{where}: unknown key(s) {', '.join(hints)}; valid: {shown}"


def build(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, recursing into dataclass fields.

    Values are checked against the field types (a YAML ``1e-5`` string becomes a float, a
    ``"yes"`` for a number is an error naming the key), and errors raised by the class's own
    validation are reported with ``where`` (the recipe file and section).
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    renamed = getattr(cls, "RENAMED_KEYS", {})  # old key -> what to write instead
    for key in sorted(set(values) & set(renamed) - set(fields)):
        raise MedistillError(f"{where}: {key!r} is now {renamed[key]}")
    moved = getattr(cls, "MOVED_KEYS", {})  # old flat key -> "mapping.key", still read
    if set(values) & set(moved) - set(fields):
        values = _move_keys(cls, values, moved, where=where)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MedistillError(unknown_message(where, unknown, list(fields)))
    hints = type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        ftype = hints.get(name, fields[name].type)
        base = strip_optional(ftype)[0]
        sub, items = dataclass_type(base), list_of_dataclass(base)
        if sub is not None and isinstance(value, dict):
            value = build(sub, value, where=f"{where}.{name}")
        elif items is not None and value is not None:
            value = _build_list(items, value, where=f"{where}.{name}")
        else:
            value = _coerce(value, ftype, where=f"{where}.{name}")
        kwargs[name] = value
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        # A list item (generate.sources[1]) is a recipe key only: no flag to suggest.
        hint = "" if "[" in where else f" (on the command line: {flags})"
        raise MedistillError(f"{where}: missing required {', '.join(map(repr, missing))}{hint}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise MedistillError(f"{where}: {e}") from e


def _move_keys(
    cls: type, values: dict[str, Any], moved: dict[str, str], *, where: str
) -> dict[str, Any]:
    """``values`` with each old flat key (``decontam_method``) put into the nested mapping it
    moved to (``decontam: {method: ...}``), checked under the name it was written as, with one
    deprecation warning naming the new keys. Setting both forms of one key is an error."""
    out = {k: v for k, v in values.items() if k not in moved}
    hints = type_hints(cls)
    old_keys = [k for k in values if k in moved]
    for old in old_keys:
        section, _, key = moved[old].partition(".")
        sub = dataclass_type(strip_optional(hints[section])[0])
        nested = out.get(section)
        written = isinstance(nested, dict)  # a built config (passed back in) may be overridden
        if nested is None or (sub is not None and isinstance(nested, sub)):
            nested = dataclasses.asdict(nested) if nested is not None else {}
        elif not written:
            raise MedistillError(f"{where}.{section}: expected a mapping, got {nested!r}")
        if written and key in nested:
            raise MedistillError(f"{where}: {old!r} and {moved[old]} both set; keep {moved[old]}")
        ftype = type_hints(sub).get(key, typing.Any) if sub is not None else typing.Any
        out[section] = {**nested, key: _coerce(values[old], ftype, where=f"{where}.{old}")}
    log.warning(
        "%s: %s deprecated; write %s",
        where,
        ", ".join(old_keys) + (" is" if len(old_keys) == 1 else " are"),
        ", ".join(moved[k] for k in old_keys),
    )
    return out


def list_of_dataclass(ftype: Any) -> type | None:
    """``X`` for a ``list[X]`` field whose ``X`` is a dataclass (``generate.sources``), else
    ``None``."""
    if typing.get_origin(ftype) is not list:
        return None
    args = typing.get_args(ftype)
    return dataclass_type(args[0]) if len(args) == 1 else None


def _build_list(cls: type, value: Any, *, where: str) -> list[Any]:
    """Each mapping of a recipe list built as ``cls``; errors name the item (``[1]``)."""
    if not isinstance(value, (list, tuple)):
        raise MedistillError(f"{where}: expected a list of mappings, got {value!r}")
    out = []
    for i, item in enumerate(value):
        if dataclasses.is_dataclass(item) and isinstance(item, cls):
            out.append(item)  # already built (a config passed back in)
        elif isinstance(item, dict):
            out.append(build(cls, item, where=f"{where}[{i}]"))
        else:
            raise MedistillError(f"{where}[{i}]: expected a mapping, got {item!r}")
    return out


def type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a third-party class whose annotations do not resolve here
        return {f.name: f.type for f in dataclasses.fields(cls)}


def dataclass_type(ftype: Any) -> type | None:
    if isinstance(ftype, str):
        return {"TeacherConfig": TeacherConfig}.get(ftype)
    return ftype if isinstance(ftype, type) and dataclasses.is_dataclass(ftype) else None


def strip_optional(ftype: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; a wider union stays as it is."""
    args = typing.get_args(ftype)
    if typing.get_origin(ftype) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return ftype, False


def _coerce(value: Any, ftype: Any, *, where: str) -> Any:
    """Check/convert a recipe or command-line value to a simple field type."""
    base, optional = strip_optional(ftype)
    if value is None:
        return value
    if (
        isinstance(value, str)
        and optional
        and base in (int, float, bool)
        and value.strip().lower() in ("none", "null")
    ):
        return None  # "--max-steps none"; a string field keeps the text ("report_to: none")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in BOOLS:
            return BOOLS[value.strip().lower()]
        raise MedistillError(f"{where}: expected true or false, got {value!r}")
    if base in (int, float) and not isinstance(value, bool):
        if isinstance(value, base) or (base is float and isinstance(value, int)):
            return base(value)
        if isinstance(value, str):
            try:
                number = float(value) if base is float else int(value)
            except ValueError:
                pass
            else:
                return number
        raise MedistillError(
            f"{where}: expected {'an integer' if base is int else 'a number'}, got {value!r}"
        )
    if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if (base is dict or typing.get_origin(base) is dict) and not isinstance(value, dict):
        raise MedistillError(f"{where}: expected a mapping, got {value!r}")
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        if value not in choices:
            raise MedistillError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


BOOLS = {
    "true": True,
    "yes": True,
    "1": True,
    "on": True,
    "false": False,
    "no": False,
    "0": False,
    "off": False,
}
