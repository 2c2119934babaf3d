"""``run.eval_benchmarks`` entries: what every model of a run is evaluated on.

An entry is a string (``name`` or ``name=path``) or a mapping giving that benchmark its own
slice::

    eval_benchmarks:
      - sample_heldout
      - {benchmark: benign_clinical, per_category: 2, max_new_tokens: 64}
      - {benchmark: xstest, per_category: 1, optional: true}

Your own questions are ``{benchmark: mcq, path: FILE}``, with ``columns`` where the file
names its fields otherwise, and ``holdout``/``holdout_seed`` where the run also trains on the
file (``generate`` reads the same file with the same rule: the plan refuses one without it).
A mapping's ``per_category``, ``limit`` and ``max_new_tokens`` replace the ``eval:``
section's for that benchmark alone; ``label`` is the XSTest prompt label (``safe`` or
``unsafe``) the loader keeps; ``optional: true`` lets a run go on without a benchmark whose
data is not on this machine (the plan skips it with a warning and says where to put it)
rather than stop at the preflight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medistill.config import build
from medistill.data.mcq_options import check_options, mcq_kwargs
from medistill.data.registry import data_dir, get_spec, hub_offline, needs_path_message
from medistill.data.safety import SAFETY_BENCHMARKS, load_safety
from medistill.errors import MedistillError

KEY = "run.eval_benchmarks"


@dataclass
class EvalEntry:
    """One ``run.eval_benchmarks`` entry: a benchmark and the slice every model answers."""

    benchmark: str
    path: str | None = None
    per_category: int | None = None
    limit: int | None = None
    label: str | None = None
    max_new_tokens: int | None = None
    optional: bool = False
    columns: dict[str, Any] | None = None
    holdout: float | None = None
    holdout_seed: int = 0

    def mcq_options(self) -> dict[str, Any]:
        """Your own file's loader options (columns, holdout rule) where set."""
        return mcq_kwargs(self.columns, self.holdout, self.holdout_seed)

    def text(self) -> str:
        """``name`` or ``name=path``: the form curation's decontamination list reads."""
        return f"{self.benchmark}={self.path}" if self.path else self.benchmark

    def eval_values(self, section: dict[str, Any]) -> dict[str, Any]:
        """The ``eval:`` section's values with this entry's benchmark and slice set."""
        values = {**section, "benchmark": self.benchmark, "path": self.path}
        for key in ("per_category", "limit", "max_new_tokens"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        for key in ("columns", "holdout"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        if self.holdout is not None:
            values["holdout_seed"] = self.holdout_seed
        if self.label is not None:
            values["loader_kwargs"] = {**(section.get("loader_kwargs") or {}), "label": self.label}
        return values


ENTRY_KEYS = tuple(f.name for f in dataclasses.fields(EvalEntry))


def parse_entries(raw: list[Any] | None, where: str) -> list[EvalEntry]:
    """Every entry of ``run.eval_benchmarks`` (``where``: the recipe file), checked: a
    mapping's unknown key or a benchmark listed twice is an error naming the entry."""
    entries: list[EvalEntry] = []
    for i, item in enumerate(raw or []):
        at = f"{where}: {KEY}[{i}]"
        if isinstance(item, str):
            name, _, path = item.partition("=")
            entry = EvalEntry(benchmark=name.strip(), path=path.strip() or None)
        elif isinstance(item, dict):
            unknown = sorted(set(item) - set(ENTRY_KEYS))
            if unknown:
                raise MedistillError(
                    f"{at}.{unknown[0]}: unknown key; valid: {', '.join(ENTRY_KEYS)}"
                )
            if not item.get("benchmark"):
                raise MedistillError(f"{at}: a mapping entry needs 'benchmark'")
            entry = build(EvalEntry, item, where=at)
        else:
            raise MedistillError(f"{at}: expected a name, name=path or a mapping, got {item!r}")
        if not entry.benchmark:
            raise MedistillError(f"{at}: empty benchmark name")
        if entry.label is not None and entry.benchmark != "xstest":
            raise MedistillError(f"{at}.label: only xstest takes a label (safe or unsafe)")
        if entry.mcq_options() and entry.benchmark != "mcq":
            key = next(iter(entry.mcq_options()))
            raise MedistillError(f"{at}.{key}: only mcq (your own file) takes {key}")
        if entry.benchmark == "mcq":
            if not entry.path:
                raise MedistillError(f"{at}: {needs_path_message('mcq', 'path:')}")
            check_options(entry.columns, entry.holdout, entry.holdout_seed, where=at)
        twice = [j for j, e in enumerate(entries) if e.benchmark == entry.benchmark]
        if twice:
            raise MedistillError(
                f"{at}: {entry.benchmark} is already {KEY}[{twice[0]}]; each benchmark's "
                f"evaluation has one folder (<model>-{entry.benchmark}): list it once"
            )
        entries.append(entry)
    return entries


def absent(entry: EvalEntry) -> str | None:
    """Why the entry's data is not on this machine, or ``None`` when it is (or when a
    registered benchmark can be read from the Hub: the preflight probes that). Reads nothing
    but the safety sets' own small files."""
    name = entry.benchmark
    if name in SAFETY_BENCHMARKS:
        try:
            load_safety(name, path=entry.path, per_category=1)
        except MedistillError as e:
            return str(e)
        return None
    if entry.path:
        found = Path(entry.path).exists()
        return None if found else f"{name}={entry.path}: not found; fix its path"
    try:
        spec = get_spec(name)
    except MedistillError as e:
        return str(e)
    if spec.loader_kwargs.get("source") == "sample":
        return None
    root, candidates = data_dir(), spec.local_candidates(spec.split)
    if root is not None and any((root / rel).exists() for rel in candidates):
        return None
    if spec.hub_id and spec.hub_split_for(spec.split) is not None and not hub_offline():
        return None
    where = f"$MEDISTILL_DATA_DIR/{candidates[0]}" if candidates else "a file given as path"
    return f"{name}: not on this machine; put it at {where}"


def skip_note(i: int, entry: EvalEntry, why: str) -> str:
    """The line a run's log, plan and report carry for an optional entry it skipped (``why``
    names the places looked and where to put the data)."""
    return (
        f"{KEY}[{i}]: {entry.benchmark} not evaluated (optional, and its data is not on this "
        f"machine): {why}; a rerun with it in place adds it"
    )


def own_file_rule(path: Path, generate: Any, entries: list[EvalEntry]) -> dict[str, Any] | None:
    """Check that a run never trains and tests on the same questions of your own file, and
    return the ``curate.eval_mcq`` options of the run's mcq entry (``None``: none).

    A ``generate`` source and a ``run.eval_benchmarks`` entry reading the same mcq file must
    both give the same holdout rule (``holdout``, ``holdout_seed``, ``columns``): generate
    then reads its train part, evaluation its held-out part. Without one the plan is refused,
    naming the recipe keys (``path``: the recipe file)."""
    mcq = [(i, e) for i, e in enumerate(entries) if e.benchmark == "mcq" and e.path]
    if generate is not None:
        several = generate.sources is not None
        for s, src in enumerate(generate.resolved_sources()):
            if src.benchmark != "mcq" or not src.path:
                continue
            key = f"generate.sources[{s}]" if several else "generate"
            for i, entry in mcq:
                if Path(src.path).resolve() != Path(entry.path).resolve():
                    continue
                at = f"{KEY}[{i}]"
                theirs = mcq_kwargs(src.columns, src.holdout, src.holdout_seed)
                if entry.holdout is None or src.holdout is None:
                    raise MedistillError(
                        f"{path}: {key}.path and {at}.path are the same file ({entry.path}): "
                        f"a run never trains and tests on the same questions; give both the "
                        f"same holdout rule, e.g. holdout: 0.2, holdout_seed: 0 in {key} "
                        f"and in {at} (the held-out share is evaluated, the rest generated from)"
                    )
                if theirs != entry.mcq_options():
                    raise MedistillError(
                        f"{path}: {key} and {at} read {entry.path} with different rules "
                        f"({theirs} vs {entry.mcq_options()}): give both the same holdout, "
                        "holdout_seed and columns"
                    )
    return (mcq[0][1].mcq_options() or None) if mcq else None
