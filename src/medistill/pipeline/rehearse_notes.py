"""What a rehearsal says it changed: every value of the recipe it rewrote, as it wrote it.

The list is computed from the recipe as written and its rehearsal copy, key by key, so it
cannot drift from what ran (a constant in a sentence can: "8 questions, 2 samples each"
where a recipe asked for 1 sample and got 1).
"""

from __future__ import annotations

import json
from typing import Any

_UNSET = object()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping (lists of mappings included) as dotted keys -> leaf values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def changes(written: dict[str, Any], rehearsed: dict[str, Any], *, skip: set[str]) -> list[str]:
    """One line per recipe section: each key whose value the rehearsal changed, ``key old ->
    new`` (``(unset)`` for a key one side lacks). Keys whose new value is in ``skip`` (the
    tiny models, said on their own lines) are left out."""
    lines = []
    for section in dict.fromkeys([*written, *rehearsed]):
        before = _flat(written.get(section) or {})
        after = _flat(rehearsed.get(section) or {})
        diffs = []
        for key in dict.fromkeys([*before, *after]):
            old, new = before.get(key, _UNSET), after.get(key, _UNSET)
            if old == new or (isinstance(new, str) and new in skip):
                continue
            diffs.append(f"{key} {_show(old)} -> {_show(new)}")
        if diffs:
            lines.append(f"{section} values: " + "; ".join(diffs))
    return lines
