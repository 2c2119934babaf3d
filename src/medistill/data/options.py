"""Multiple-choice options, written once: normalise them, format the block a prompt shows,
show them in another order and undo that order.

Every stage meets options as an ordered mapping letter -> text (``{"A": "Warfarin", ...}``).

- **Normalise**: :func:`normalise_options` is the loaders' strict rule (letters run A, B, C...
  without gaps, texts non-empty, at least two; a :class:`DataError` names file, line and field);
  :func:`options_or_none` is the lenient reading of a training row (Arrow fills absent letters
  with ``None``, a JSON string is accepted). Both read a mapping or a list the same way.
- **Format**: :func:`format_options` renders the block a prompt shows, one option per line.
- **Reorder**: :func:`permute` (a seeded shuffle: the teacher's shuffled samples, GRPO's extra
  option orders), :func:`rotate` (evaluation's cyclic shifts), :func:`permute_to` (curation's
  position balance: the gold moved to a chosen letter) and :func:`relabel` (any old -> new
  mapping) each return a :class:`Shown`: the options as shown, the gold's shown letter and
  ``permutation`` (shown letter -> original letter), the mapping stored with a trace.
- **Undo**: :func:`unpermute` gives a stored row's options and gold back in their original
  lettering.

The shuffles draw from the caller's ``random.Random`` in a fixed order (callers seed it with
their own strings), so a seed gives the same orders in every release.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medistill.data.schema import LETTERS, Question
from medistill.errors import DataError, MedistillError

# ----------------------------------------------------------------------------- normalise


def lettered(raw: Any) -> list[tuple[str, Any]] | None:
    """``(letter, value)`` pairs of a mapping (keys stripped, upper-cased) or of a list
    (``A``, ``B``, ... by position); ``None`` for anything else."""
    if isinstance(raw, Mapping):
        return [(str(k).strip().upper(), v) for k, v in raw.items()]
    if isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)):
        return [(LETTERS[i], v) for i, v in enumerate(raw)]
    return None


def normalise_options(raw: Any, *, path: str, line: int, field: str = "options") -> dict[str, str]:
    """Turn ``{"A": ..}`` or ``["..", ".."]`` into an ordered letter -> text dict (strict).

    Letters must be contiguous from A (in any order and case in the input); texts are
    stripped and must be non-empty; a question needs two options. Anything else raises a
    :class:`DataError` naming ``path``, ``line`` and ``field``.

    >>> normalise_options({"b": " heparin ", "a": "warfarin"}, path="f.jsonl", line=1)
    {'A': 'warfarin', 'B': 'heparin'}
    >>> normalise_options({"A": "x", "C": "y"}, path="f.jsonl", line=3)
    Traceback (most recent call last):
    ...
    medistill.errors.DataError: f.jsonl:3: field 'options': option letters must run A, B, C... without gaps; got ['A', 'C']
    """  # noqa: E501
    pairs = lettered(raw)
    if not pairs:
        raise DataError(
            "expected a non-empty object letter -> text or a list",
            path=path,
            line=line,
            field=field,
        )
    opts: dict[str, str] = {}
    for i, (letter, text) in enumerate(sorted(pairs, key=lambda p: p[0])):
        if letter != LETTERS[i]:
            raise DataError(
                f"option letters must run A, B, C... without gaps; got {list(raw)}",
                path=path,
                line=line,
                field=field,
            )
        if text is None or not str(text).strip():
            raise DataError(f"option {letter} is empty", path=path, line=line, field=field)
        opts[letter] = str(text).strip()
    if len(opts) < 2:
        raise DataError("a question needs at least two options", path=path, line=line, field=field)
    return opts


def options_or_none(value: Any, where: str = "row") -> dict[str, str] | None:
    """A training row's options as letter -> text, or ``None`` when the row has none (lenient).

    Arrow stores options as a struct with every letter any row uses, so absent letters
    arrive as ``None`` and are dropped; a list of texts or a JSON string is accepted too.
    Texts are kept as they are. A malformed value raises :class:`MedistillError` naming
    ``where``.

    >>> options_or_none({"A": "warfarin", "B": "heparin", "C": None})
    {'A': 'warfarin', 'B': 'heparin'}
    >>> options_or_none('["warfarin", "heparin"]')
    {'A': 'warfarin', 'B': 'heparin'}
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise MedistillError(f"{where}: options {value[:80]!r} is not valid JSON") from None
    pairs = lettered(value)
    if pairs is None:
        raise MedistillError(f"{where}: options must be a mapping or a list, got {value!r}")
    opts = {letter: str(text) for letter, text in pairs if text is not None}
    if not opts:
        raise MedistillError(f"{where}: options are empty")
    return opts


# ----------------------------------------------------------------------------- format


def format_options(options: Mapping[str, str], template: str = "{letter}. {text}") -> str:
    """The option block a prompt shows: one ``template`` line per option, in order.

    >>> print(format_options({"A": "Warfarin", "B": "Heparin"}))
    A. Warfarin
    B. Heparin
    """
    return "\n".join(template.format(letter=k, text=v) for k, v in options.items())


# ----------------------------------------------------------------------------- reorder


@dataclass(frozen=True)
class Shown:
    """Options as shown in a new order.

    Attributes:
        options: shown letter -> text, in letter order.
        gold: the gold's shown letter (``None`` when there is no gold).
        permutation: shown letter -> original letter (what a trace stores; see
            :func:`unpermute`).
    """

    options: dict[str, str]
    gold: str | None
    permutation: dict[str, str]

    @property
    def moves(self) -> dict[str, str]:
        """Original letter -> shown letter (the inverse of ``permutation``)."""
        return {orig: shown for shown, orig in self.permutation.items()}

    def question(self, q: Question) -> Question:
        """A copy of ``q`` showing these options and this gold (everything else shared)."""
        return dataclasses.replace(q, options=dict(self.options), gold=self.gold)


def _shown(options: Mapping[str, str], gold: str | None, order: Sequence[str]) -> Shown:
    """``options`` shown in ``order`` (original letters) under their own letters."""
    perm = dict(zip(options, order, strict=True))
    shown = {s: options[o] for s, o in perm.items()}
    g = next((s for s, o in perm.items() if o == gold), None) if gold else None
    return Shown(shown, g, perm)


def permute(
    options: Mapping[str, str], gold: str | None, rng: random.Random, *, must_move: bool = False
) -> Shown:
    """``options`` in the order of one ``rng.shuffle`` of their letters.

    ``must_move``: shuffle again until the texts shown differ from the original order
    (possible only when two texts differ). The rng is drawn from exactly so: one shuffle,
    then one more per retry, so a seed gives the same order in every release.

    >>> s = permute({"A": "x", "B": "y", "C": "z"}, "A", random.Random("0:q1:2"))
    >>> s.options, s.gold, s.permutation
    ({'A': 'z', 'B': 'x', 'C': 'y'}, 'B', {'A': 'C', 'B': 'A', 'C': 'B'})
    """
    order = list(options)
    texts = [options[k] for k in order]
    rng.shuffle(order)
    if must_move and len(set(texts)) > 1:
        while [options[k] for k in order] == texts:
            rng.shuffle(order)
    return _shown(options, gold, order)


def rotate(options: Mapping[str, str], gold: str | None, shift: int) -> Shown:
    """``options`` rotated by ``shift``: the option at position ``i`` is shown at ``i - shift``.

    >>> rotate({"A": "x", "B": "y", "C": "z"}, "A", 1).options
    {'A': 'y', 'B': 'z', 'C': 'x'}
    """
    letters = list(options)
    n = len(letters)
    return _shown(options, gold, [letters[(i + shift) % n] for i in range(n)])


def relabel(options: Mapping[str, str], gold: str | None, moves: Mapping[str, str]) -> Shown:
    """``options`` moved by ``moves`` (original letter -> new letter), in letter order.

    >>> relabel({"A": "x", "B": "y"}, "B", {"A": "B", "B": "A"})
    Shown(options={'A': 'y', 'B': 'x'}, gold='A', permutation={'A': 'B', 'B': 'A'})
    """
    perm = dict(sorted((moves[k], k) for k in options))
    shown = {s: options[o] for s, o in perm.items()}
    return Shown(shown, moves.get(gold) if gold else None, perm)


def permute_to(options: Mapping[str, str], gold: str, target: str, rng: random.Random) -> Shown:
    """``options`` with ``gold`` moved to the letter ``target`` and the other options shuffled
    (one ``rng.shuffle``) among the remaining letters.

    >>> permute_to({"A": "x", "B": "y", "C": "z"}, "A", "C", random.Random(0)).options
    {'A': 'y', 'B': 'z', 'C': 'x'}
    """
    letters = list(options)
    rest_old = [k for k in letters if k != gold]
    rest_new = [k for k in letters if k != target]
    rng.shuffle(rest_new)
    return relabel(options, gold, {gold: target, **dict(zip(rest_old, rest_new, strict=True))})


# ----------------------------------------------------------------------------- undo


def unpermute(
    options: Mapping[str, str] | None, gold: str | None, permutation: Mapping[str, str] | None
) -> tuple[dict[str, str], str | None]:
    """Options and gold back in their original lettering, options in letter order.

    ``permutation`` is shown letter -> original letter (:attr:`Shown.permutation`); ``None``
    means the options were shown as they are. Tolerant: a letter the permutation does not
    name keeps its letter.

    >>> unpermute({"A": "y", "B": "x"}, "A", {"A": "B", "B": "A"})
    ({'A': 'x', 'B': 'y'}, 'B')
    """
    perm = permutation or {}
    opts = {perm.get(s, s): t for s, t in (options or {}).items()}
    return dict(sorted(opts.items())), (perm.get(gold, gold) if gold else None)


__all__ = [
    "Shown",
    "format_options",
    "normalise_options",
    "options_or_none",
    "permute",
    "permute_to",
    "relabel",
    "rotate",
    "unpermute",
]
