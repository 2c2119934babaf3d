"""Recipes: YAML files whose sections (``generate:``, later ``curate:``, ``sft:``...) fill the
typed config dataclasses. Unknown keys are errors that name the valid ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from medistill.errors import MedistillError


def load_section(path: str | Path, section: str) -> dict[str, Any]:
    """The mapping under ``section`` in a YAML recipe (empty if the section is absent)."""
    path = Path(path)
    if not path.exists():
        raise MedistillError(f"{path}: recipe not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise MedistillError(f"{path}: invalid YAML ({e})") from e
    if not isinstance(data, dict):
        raise MedistillError(f"{path}: a recipe is a mapping of sections")
    value = data.get(section) or {}
    if not isinstance(value, dict):
        raise MedistillError(f"{path}: section '{section}' must be a mapping")
    return value


def build(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, recursing into dataclass fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MedistillError(f"{where}: unknown key(s) {unknown}; valid: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        ftype = fields[name].type
        sub = _dataclass_type(ftype)
        if sub is not None and isinstance(value, dict):
            value = build(sub, value, where=f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise MedistillError(f"{where}: {e}") from e


def _dataclass_type(ftype: Any) -> type | None:
    from medistill.teacher import TeacherConfig

    known = {"TeacherConfig": TeacherConfig}
    if isinstance(ftype, str):
        return known.get(ftype)
    return ftype if dataclasses.is_dataclass(ftype) else None
