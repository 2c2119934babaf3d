"""Command-line flags derived from config classes: the one idiom of every command line, the
``medistill`` commands (:mod:`medistill.cli`) and ``python -m medistill.deploy.gguf`` alike.

The dataclass is the one source of each option's name, type, default and help
(``metadata["help"]``, as in TRL and transformers), so a new field is a new recipe key and a new
flag at once. Every command takes ``--config recipe.yaml`` plus flags, which win; unknown flags
are errors that name the closest valid ones. A nested config (``generate``'s ``teacher:``) can be
flattened into the same options (``--rpm``); a list of mappings (``generate``'s ``sources:``)
is a recipe key only. A list field named as a positional takes every positional argument
(``medistill report RUN ...``).
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
from typing import Any

from medistill.config import (
    BOOLS,
    build,
    dataclass_type,
    list_of_dataclass,
    load_section,
    strip_optional,
    type_hints,
)
from medistill.errors import MedistillError

# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """argparse with errors as :class:`MedistillError` (one line, exit status 2, no usage dump).

    It also remembers which field owns each option string (to name both sides of a clash) and
    which options are booleans taking an optional value.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owners: dict[str, str] = {}
        self.bool_options: set[str] = set()

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = [a for a in message.split(":", 1)[1].split() if a.startswith("-")]
            valid = [  # each option's main name and its aliases (--rpm), not --snake_case twins
                name
                for a in self._actions
                for name in a.option_strings
                if name == a.option_strings[0] or "_" not in name
            ]
            hints = []
            for flag in flags or message.split(":", 1)[1].split():
                close = difflib.get_close_matches(flag, valid, n=3, cutoff=0.6)
                hints.append(flag + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise MedistillError(
                f"{self.prog}: unknown option(s) {'; '.join(hints)}; see {self.prog} --help"
            )
        raise MedistillError(f"{self.prog}: {message}")

    def claim(self, names: Sequence[str], owner: str) -> None:
        """Register option strings for ``owner``; a name already taken is a ``ValueError``."""
        for name in names:
            if name in self.owners:
                raise ValueError(
                    f"{self.prog}: option {name} of {owner} clashes with {self.owners[name]}"
                )
        self.owners.update(dict.fromkeys(names, owner))


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


def _default(f: dataclasses.Field) -> Any:
    """The field's default (a factory's value too), or ``dataclasses.MISSING``."""
    if f.default is not dataclasses.MISSING:
        return f.default.value if isinstance(f.default, enum.Enum) else f.default
    if f.default_factory is not dataclasses.MISSING:
        try:
            return f.default_factory()
        except Exception:  # a factory that needs more than a call: show no default
            return dataclasses.MISSING
    return dataclasses.MISSING


def _help(f: dataclasses.Field) -> str:
    text = str(f.metadata.get("help", ""))
    default = _default(f)
    if default is not dataclasses.MISSING:
        text += f" (default: {default!r})"
    return text.replace("%", "%%")


def _option_names(name: str) -> list[str]:
    """``--name-with-dashes`` and, when it differs, ``--name_with_underscores``."""
    names = [f"--{name.replace('_', '-')}"]
    if "_" in name:
        names.append(f"--{name}")
    return names


def _add_field(
    parser: _Parser,
    f: dataclasses.Field,
    ftype: Any,
    *,
    owner: str,
    dest: str | None = None,
    group: argparse._ArgumentGroup | None = None,
    one_per_flag: bool = False,
) -> None:
    """Add the options of one dataclass field: its names, ``metadata["aliases"]``, help.

    Booleans take an optional value (``--flag``, ``--flag false``) and get ``--no-flag``; lists
    take several values and repeat (``--flag a b --flag c``), or one value per flag with
    ``one_per_flag``. ``dest`` defaults to the field name.
    """
    container = group or parser
    dest = dest or f.name
    names = _option_names(f.name) + list(f.metadata.get("aliases", ()))
    base, _ = strip_optional(ftype)
    kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": _help(f)}
    origin = typing.get_origin(base)
    if base is bool:
        negative = f"--no-{f.name.replace('_', '-')}"
        parser.claim([*names, negative], owner)
        parser.bool_options.update(names)
        container.add_argument(*names, nargs="?", const=True, metavar="BOOL", type=str, **kwargs)
        container.add_argument(
            negative,
            dest=dest,
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
        if one_per_flag:
            kwargs.update(action="append", type=_scalar(item))
        else:
            kwargs.update(nargs="+", action="extend", type=_scalar(item))
    elif origin in (typing.Union, types.UnionType):
        kwargs["type"] = _json_or_str
    else:
        kwargs["type"] = _scalar(base)
    if "choices" in f.metadata and "choices" not in kwargs:
        kwargs["choices"] = list(f.metadata["choices"])
    if "choices" not in kwargs:
        kwargs["metavar"] = f.name.upper()
    parser.claim(names, owner)
    container.add_argument(*names, **kwargs)


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def stage_parser(
    cls: type,
    *,
    prog: str,
    positional: Sequence[str] = (),
    flatten: Sequence[str] = (),
    extra: type | None = None,
    recipe: bool = True,
) -> _Parser:
    """An argparse parser with one option per field of config dataclass ``cls``.

    ``positional`` names fields that may also be given as positional arguments, in order; list
    fields then take one value per flag (repeat the flag), so they cannot swallow a positional.
    ``flatten`` names dataclass-typed fields whose own fields become options of this parser, in
    a group of their own (``--rpm`` for ``teacher.requests_per_minute``); the field itself gets
    an option only when its metadata has ``from_string``, a function from the option's text to
    a mapping of the nested fields (``--teacher openai:gpt-4o``). ``extra`` is a dataclass of
    the command's own options that are not config fields (``--overwrite``). Option names are
    unique across all of these: a clash is a ``ValueError`` naming both fields. ``recipe=False``
    leaves out ``--config`` (a command whose positional argument is the recipe itself).
    """
    hints = type_hints(cls)
    many = {p for p in positional if _is_list(hints.get(p))}
    usage = f"{prog} [--config RECIPE.yaml] " if recipe else f"{prog} "
    usage += "".join(f"[{p.upper()} ...] " if p in many else f"[{p.upper()}] " for p in positional)
    parser = _Parser(
        prog=prog,
        usage=usage + "[--FIELD VALUE ...]",
        description=_first_paragraph(cls.__doc__),
        allow_abbrev=False,
    )
    parser.claim(["-h", "--help"], "--help")
    if recipe:
        parser.claim(["--config"], "--config")
        parser.add_argument(
            "--config",
            dest="__config",
            metavar="RECIPE.yaml",
            default=None,
            help="YAML recipe; its section for this command fills the fields, flags override it",
        )
    for name in positional:
        parser.add_argument(
            f"__pos_{name}",
            nargs="*" if name in many else "?",
            default=None,
            metavar=name.upper(),
            help=f"the same as --{name.replace('_', '-')}",
        )
    fields = _init_fields(cls)
    missing = sorted(set(flatten) - {f.name for f in fields})
    if missing:
        raise ValueError(f"{prog}: cannot flatten {missing}: not fields of {cls.__name__}")
    one = bool(positional)
    for f in fields:
        ftype = hints.get(f.name, f.type)
        owner = f"{cls.__name__}.{f.name}"
        if list_of_dataclass(strip_optional(ftype)[0]) is not None:
            continue  # a list of mappings (generate.sources) is a recipe key only
        if f.name not in flatten:
            _add_field(parser, f, ftype, owner=owner, one_per_flag=one)
            continue
        sub = dataclass_type(ftype)
        if sub is None:
            raise ValueError(f"{prog}: cannot flatten {owner}: not a dataclass field")
        group = parser.add_argument_group(
            f"{f.name} ({sub.__name__}; the recipe's {f.name}: mapping)",
            f.metadata.get("help") or _first_paragraph(sub.__doc__),
        )
        from_string = f.metadata.get("from_string")
        if from_string is not None:
            names = _option_names(f.name)
            parser.claim(names, owner)
            group.add_argument(
                *names,
                dest=f"__from_string.{f.name}",
                default=argparse.SUPPRESS,
                metavar="SPEC",
                help=(_first_paragraph(from_string.__doc__) or f"{f.name} as text").replace(
                    "%", "%%"
                ),
            )
        sub_hints = type_hints(sub)
        for sf in _init_fields(sub):
            _add_field(
                parser,
                sf,
                sub_hints.get(sf.name, sf.type),
                owner=f"{owner}.{sf.name}",
                dest=f"{f.name}.{sf.name}",
                group=group,
                one_per_flag=one,
            )
    for old, new in getattr(cls, "MOVED_KEYS", {}).items():  # still read: build() warns
        names = _option_names(old)
        parser.claim(names, f"{cls.__name__}.{old} (now {new})")
        parser.add_argument(
            *names, dest=old, default=argparse.SUPPRESS, help=argparse.SUPPRESS, type=_json_or_str
        )
    if extra is not None:
        group = parser.add_argument_group(
            "command options (not recipe keys)", _first_paragraph(extra.__doc__)
        )
        extra_hints = type_hints(extra)
        for ef in _init_fields(extra):
            _add_field(
                parser,
                ef,
                extra_hints.get(ef.name, ef.type),
                owner=f"{extra.__name__}.{ef.name}",
                dest=f"__extra.{ef.name}",
                group=group,
                one_per_flag=one,
            )
    return parser


def _is_list(ftype: Any) -> bool:
    base = strip_optional(ftype)[0] if ftype is not None else None
    return typing.get_origin(base) in (list, tuple, Sequence) or base in (list, tuple)


def _bare_bools(parser: _Parser, argv: Sequence[str]) -> list[str]:
    """``--flag`` not followed by a boolean word becomes ``--flag=true``.

    A bare boolean flag then never takes the next argument (a positional, say) as its value.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        following = out[i + 1].strip().lower() if i + 1 < len(out) else None
        if arg in parser.bool_options and following not in (*BOOLS, "none", "null"):
            out[i] = f"{arg}=true"
    return out


@dataclasses.dataclass
class StageArgs:
    """A command line read against a stage's config class, before the config is built."""

    values: dict[str, Any]
    """The config's keys: the command's defaults, then the recipe section, then the flags."""
    flags: dict[str, Any]
    """Only what the command line set (a flattened field's as a mapping of its fields)."""
    options: Any
    """The ``extra`` dataclass built from its flags, or ``None`` without one."""
    where: str
    """Where the values came from, for messages: ``recipe.yaml: section`` or the program."""


def parse_stage_args(
    cls: type,
    argv: Sequence[str],
    *,
    section: str,
    prog: str,
    positional: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
    flatten: Sequence[str] = (),
    extra: type | None = None,
    recipe: bool = True,
) -> StageArgs:
    """Read ``--config recipe.yaml`` (its ``section``) and the flags, without building ``cls``.

    For commands that adjust the values before :func:`build` (see :func:`parse_stage` for the
    precedence and :func:`stage_parser` for ``positional``, ``flatten`` and ``extra``). A
    flattened field's recipe mapping is updated by its flags, not replaced: first by the
    field's own option (``from_string``), then by its fields' options.
    """
    parser = stage_parser(
        cls, prog=prog, positional=positional, flatten=flatten, extra=extra, recipe=recipe
    )
    ns = vars(parser.parse_args(_bare_bools(parser, argv)))
    recipe_file = ns.pop("__config", None)
    values: dict[str, Any] = dict(defaults or {})
    where = prog
    if recipe_file:
        values.update(load_section(recipe_file, section))
        where = f"{recipe_file}: {section}"
    for name in positional:
        value = ns.pop(f"__pos_{name}")
        if value not in (None, []):
            ns[name] = value
    given = {k[len("__extra.") :]: ns.pop(k) for k in list(ns) if k.startswith("__extra.")}
    options = build(extra, given, where=prog) if extra is not None else None
    flags = {k: v for k, v in ns.items() if "." not in k}
    values.update(flags)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in flatten:
        from_string = fields[name].metadata.get("from_string")
        nested_flags: dict[str, Any] = {}
        if f"__from_string.{name}" in ns:
            nested_flags.update(from_string(ns[f"__from_string.{name}"]))
        prefix = f"{name}."
        nested_flags.update({k[len(prefix) :]: v for k, v in ns.items() if k.startswith(prefix)})
        nested = values.get(name)
        if isinstance(nested, str) and from_string is not None:
            nested = values[name] = dict(from_string(nested))
        if nested_flags:
            if nested is not None and not isinstance(nested, dict):
                raise MedistillError(f"{where}.{name}: expected a mapping, got {nested!r}")
            flags[name] = nested_flags
            values[name] = {**(nested or {}), **nested_flags}
    return StageArgs(values=values, flags=flags, options=options, where=where)


def parse_stage(
    cls: type,
    argv: Sequence[str],
    *,
    section: str,
    prog: str,
    positional: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
    flatten: Sequence[str] = (),
    recipe: bool = True,
) -> Any:
    """Build a stage config from ``--config recipe.yaml`` (its ``section``) and flags.

    Precedence: the class defaults, then ``defaults`` (a command's own), then the recipe, then
    the command line. ``--help`` prints every field with its help text and default.
    """
    args = parse_stage_args(
        cls,
        argv,
        section=section,
        prog=prog,
        positional=positional,
        defaults=defaults,
        flatten=flatten,
        recipe=recipe,
    )
    return build(cls, args.values, where=args.where)
