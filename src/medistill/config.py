"""Recipes and the command line, both derived from the stages' config classes.

A recipe is a YAML file whose sections (``generate:``, ``curate:``, ``sft:``, ``grpo:``...) fill
the stage's config dataclass; every command takes ``--config recipe.yaml`` plus command-line
overrides. The dataclass is the one source of each option's name, type, default and help
(``metadata["help"]``, as in TRL and transformers), so a new field is a new recipe key and a new
flag at once. Unknown keys and flags are errors that name the closest valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medistill.errors import MedistillError


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


def _unknown_message(where: str, unknown: Sequence[str], valid: Sequence[str]) -> str:
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
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MedistillError(_unknown_message(where, unknown, list(fields)))
    hints = _type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        ftype = hints.get(name, fields[name].type)
        sub = _dataclass_type(ftype)
        if sub is not None and isinstance(value, dict):
            value = build(sub, value, where=f"{where}.{name}")
        else:
            value = _coerce(value, ftype, where=f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise MedistillError(f"{where}: {e}") from e


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a third-party class whose annotations do not resolve here
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _dataclass_type(ftype: Any) -> type | None:
    if isinstance(ftype, str):
        from medistill.teacher import TeacherConfig

        return {"TeacherConfig": TeacherConfig}.get(ftype)
    return ftype if isinstance(ftype, type) and dataclasses.is_dataclass(ftype) else None


def _strip_optional(ftype: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; a wider union stays as it is."""
    args = typing.get_args(ftype)
    if typing.get_origin(ftype) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return ftype, False


def _coerce(value: Any, ftype: Any, *, where: str) -> Any:
    """Check/convert a recipe or command-line value to a simple field type."""
    base, optional = _strip_optional(ftype)
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
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
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
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        if value not in choices:
            raise MedistillError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


_BOOLS = {
    "true": True,
    "yes": True,
    "1": True,
    "on": True,
    "false": False,
    "no": False,
    "0": False,
    "off": False,
}


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse with errors as :class:`MedistillError` (one line, exit status 2, no usage dump)."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = [a for a in message.split(":", 1)[1].split() if a.startswith("-")]
            valid = [a.option_strings[0] for a in self._actions if a.option_strings]
            hints = []
            for flag in flags or message.split(":", 1)[1].split():
                close = difflib.get_close_matches(flag, valid, n=3, cutoff=0.6)
                hints.append(flag + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise MedistillError(
                f"{self.prog}: unknown option(s) {'; '.join(hints)}; see {self.prog} --help"
            )
        raise MedistillError(f"{self.prog}: {message}")


def _scalar(ftype: Any) -> Any:
    """The argparse ``type=`` callable for a scalar field type."""
    if ftype in (int, float):
        return ftype
    if isinstance(ftype, type) and issubclass(ftype, enum.Enum):
        return str
    if ftype is str:
        return str
    return _json_or_str


def _json_or_str(text: str) -> Any:
    """A JSON value when ``text`` parses as one (``{"k": 1}``, ``[1, 2]``, ``3``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _help(f: dataclasses.Field) -> str:
    text = str(f.metadata.get("help", "")).replace("%", "%%")
    if f.default is not dataclasses.MISSING and not isinstance(f.default, enum.Enum):
        text += f" (default: {f.default!r})".replace("%", "%%")
    elif f.default is not dataclasses.MISSING:
        text += f" (default: {f.default.value!r})".replace("%", "%%")
    return text


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, ftype: Any) -> None:
    """Add ``--name-with-dashes`` / ``--name_with_underscores`` for one dataclass field."""
    names = [f"--{f.name.replace('_', '-')}"]
    if "_" in f.name:
        names.append(f"--{f.name}")
    names += list(f.metadata.get("aliases", ()))
    base, _ = _strip_optional(ftype)
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help(f)}
    origin = typing.get_origin(base)
    if base is bool:
        parser.add_argument(*names, nargs="?", const=True, metavar="BOOL", type=str, **kwargs)
        parser.add_argument(
            f"--no-{f.name.replace('_', '-')}",
            dest=f.name,
            action="store_false",
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        return
    if origin is typing.Literal:
        kwargs["choices"] = list(typing.get_args(base))
        kwargs["type"] = type(kwargs["choices"][0])
    elif isinstance(base, type) and issubclass(base, enum.Enum):
        kwargs["type"] = str
    elif origin in (list, tuple, Sequence) or base in (list, tuple):
        item = (typing.get_args(base) or (str,))[0]
        kwargs.update(nargs="+", action="extend", type=_scalar(item))
    elif origin in (typing.Union, types.UnionType):
        kwargs["type"] = _json_or_str
    else:
        kwargs["type"] = _scalar(base)
    if "choices" in f.metadata and "choices" not in kwargs:
        kwargs["choices"] = list(f.metadata["choices"])
    parser.add_argument(*names, **kwargs)


def stage_parser(
    cls: type, *, prog: str, positional: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of config dataclass ``cls``.

    ``positional`` names fields that may also be given as positional arguments, in order.
    """
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    usage = f"{prog} [--config RECIPE.yaml] " + "".join(f"[{p.upper()}] " for p in positional)
    parser = _Parser(
        prog=prog, usage=usage + "[--FIELD VALUE ...]", description=doc, allow_abbrev=False
    )
    parser.add_argument(
        "--config",
        dest="__config",
        metavar="RECIPE.yaml",
        default=None,
        help="YAML recipe; its section for this command fills the fields, flags override it",
    )
    hints = _type_hints(cls)
    for name in positional:
        parser.add_argument(f"__pos_{name}", nargs="?", default=None, metavar=name.upper())
    for f in dataclasses.fields(cls):
        if f.init and not f.name.startswith("_"):
            _add_field(parser, f, hints.get(f.name, f.type))
    return parser


def parse_stage(
    cls: type,
    argv: Sequence[str],
    *,
    section: str,
    prog: str,
    positional: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
) -> Any:
    """Build a stage config from ``--config recipe.yaml`` (its ``section``) and flags.

    Precedence: the class defaults, then ``defaults`` (a command's own), then the recipe, then
    the command line. ``--help`` prints every field with its help text and default.
    """
    parser = stage_parser(cls, prog=prog, positional=positional)
    ns = vars(parser.parse_args(list(argv)))
    recipe = ns.pop("__config")
    values: dict[str, Any] = dict(defaults or {})
    where = prog
    if recipe:
        values.update(load_section(recipe, section))
        where = f"{recipe}: {section}"
    for name in positional:
        value = ns.pop(f"__pos_{name}")
        if value is not None:
            ns[name] = value
    values.update(ns)
    return build(cls, values, where=where)
