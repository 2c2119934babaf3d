"""Named benchmarks: where each lives locally or on the Hub, and how to parse it.

``load_benchmark("medqa")`` looks for the file under ``$MEDISTILL_DATA_DIR`` (same layout as
the published releases), else downloads the Hub copy with ``datasets`` when online.
``load_benchmark("medqa", path=...)`` reads a file you have. ``sample`` is the small set of
original questions shipped inside the package for offline smoke tests.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.data import formats, mcq_file
from medistill.data.loading import LoadResult
from medistill.errors import DataError, MedistillError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkSpec:
    """How to find and parse one named benchmark."""

    name: str
    description: str
    loader: Callable[..., LoadResult]
    local_path: str | None = None  # relative to $MEDISTILL_DATA_DIR
    hub_id: str | None = None
    hub_configs: tuple[str | None, ...] = (None,)
    hub_split: str = "test"
    split: str = "test"
    chance: float = 0.25
    loader_kwargs: dict[str, Any] = field(default_factory=dict)
    rows: tuple[int, int] | None = None  # a fixed slice of the file (the sample's two halves)
    #: Other splits: split -> candidate files under $MEDISTILL_DATA_DIR, first found wins
    #: (the default split's file is ``local_path``). Only that split's own files are read.
    split_files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: split -> the Hub copy's split name (the default split maps to ``hub_split``).
    hub_splits: dict[str, str] = field(default_factory=dict)
    #: Read only from a file the user names (``path``): the ``mcq`` benchmark, your own questions.
    needs_path: bool = False

    def local_candidates(self, split: str) -> tuple[str, ...]:
        """The files (relative to ``$MEDISTILL_DATA_DIR``) that may hold ``split``."""
        own = (self.local_path,) if self.local_path and split == self.split else ()
        return own + tuple(self.split_files.get(split, ()))

    def hub_split_for(self, split: str) -> str | None:
        """The Hub split holding ``split``, or ``None`` when the Hub copy has none."""
        if split == self.split:
            return self.hub_split
        return self.hub_splits.get(split)


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "medqa",
            "MedQA (USMLE) US 4-option test, 1273 questions",
            formats.load_medqa,
            "medqa/US_4options_test.jsonl",
            hub_id="GBaker/MedQA-USMLE-4-options",
            split_files={
                "test": ("medqa/questions/US/4_options/phrases_no_exclude_test.jsonl",),
                "train": (
                    "medqa/US_4options_train.jsonl",
                    "medqa/questions/US/4_options/phrases_no_exclude_train.jsonl",
                ),
                "dev": (
                    "medqa/US_4options_dev.jsonl",
                    "medqa/questions/US/4_options/phrases_no_exclude_dev.jsonl",
                ),
            },
            hub_splits={"train": "train"},
        ),
        BenchmarkSpec(
            "medqa5",
            "MedQA (USMLE) US 5-option test, 1273 questions",
            formats.load_medqa,
            "medqa/US_5options_test.jsonl",
            chance=0.2,
            split_files={
                "test": ("medqa/questions/US/test.jsonl",),
                "train": ("medqa/US_5options_train.jsonl", "medqa/questions/US/train.jsonl"),
                "dev": ("medqa/US_5options_dev.jsonl", "medqa/questions/US/dev.jsonl"),
            },
        ),
        BenchmarkSpec(
            "medmcqa",
            "MedMCQA dev set (the split papers report), 4183 questions",
            formats.load_medmcqa,
            "medmcqa/dev.jsonl",
            hub_id="openlifescienceai/medmcqa",
            hub_split="validation",
            split="dev",
            # The official release names its JSON-lines files train.json / dev.json / test.json.
            split_files={
                "dev": ("medmcqa/dev.json",),
                "train": ("medmcqa/train.json", "medmcqa/train.jsonl"),
            },
            hub_splits={"train": "train"},
        ),
        BenchmarkSpec(
            "pubmedqa",
            "PubMedQA-L labelled test set (yes/no/maybe), 500 questions",
            formats.load_pubmedqa,
            "pubmedqa/pqal_test_set.json",
            hub_id="qiaojin/PubMedQA",
            hub_configs=("pqa_labeled",),
            hub_split="train",
            chance=1 / 3,
        ),
        BenchmarkSpec(
            "mmlu_medical",
            "MMLU medical subjects (6), test, 1089 questions",
            formats.load_mmlu,
            "mmlu_medical",
            hub_id="cais/mmlu",
            hub_configs=formats.MMLU_MEDICAL_SUBJECTS,
            # One folder of <subject>_<split>.csv files (the loader names a missing one).
            split_files={"dev": ("mmlu_medical",), "val": ("mmlu_medical",)},
            hub_splits={"dev": "dev", "val": "validation"},
        ),
        BenchmarkSpec(
            "mcq",
            "your own multiple-choice questions: --path FILE (.jsonl, .json or .csv; "
            "columns maps other field names)",
            mcq_file.load_mcq_file,
            needs_path=True,
        ),
        BenchmarkSpec(
            "sample",
            "embedded smoke-test sample: 60 original USMLE-style MCQs "
            "written for medistill (not a benchmark)",
            formats.load_mcq_jsonl,
            split="sample",
            loader_kwargs={"source": "sample"},
        ),
        # The sample's halves: a pipeline can train on one and evaluate on the other, and
        # decontaminate against the held-out half without losing its training questions.
        BenchmarkSpec(
            "sample_train",
            "the embedded sample's first 30 questions (for training runs)",
            formats.load_mcq_jsonl,
            split="train",
            loader_kwargs={"source": "sample"},
            rows=(0, 30),
        ),
        BenchmarkSpec(
            "sample_heldout",
            "the embedded sample's last 30 questions (held out from sample_train)",
            formats.load_mcq_jsonl,
            split="test",
            loader_kwargs={"source": "sample"},
            rows=(30, 60),
        ),
    )
}

FORMATS: dict[str, Callable[..., LoadResult]] = {
    "medqa": formats.load_medqa,
    "medmcqa": formats.load_medmcqa,
    "pubmedqa": formats.load_pubmedqa,
    "mmlu": formats.load_mmlu,
    "mcq": formats.load_mcq_jsonl,
}


def get_spec(name: str) -> BenchmarkSpec:
    """Look up a benchmark by name; a typo names the valid choices."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise MedistillError(
            f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}"
        ) from None


#: The loader options of your own questions file (columns mapping and holdout rule).
MCQ_KEYS = ("columns", "holdout", "holdout_seed")


def needs_path_message(name: str, key: str = "--path") -> str:
    """The one line for a benchmark that reads only a file the user names, given none."""
    return (
        f"benchmark {name!r} is your own questions file: give it with {key} FILE (.jsonl, "
        ".json or .csv; question, options, answer)"
    )


def sample_path() -> Path:
    """Path of the embedded sample file inside the installed package."""
    return Path(str(importlib.resources.files("medistill.data") / "sample.jsonl"))


def data_dir() -> Path | None:
    """``$MEDISTILL_DATA_DIR`` if set: a folder laid out like the published releases."""
    value = os.environ.get("MEDISTILL_DATA_DIR")
    return Path(value) if value else None


def load_benchmark(
    name: str,
    path: str | Path | None = None,
    *,
    skip_invalid: bool = False,
    limit: int | None = None,
    **kwargs: Any,
) -> LoadResult:
    """Load a named benchmark from ``path``, ``$MEDISTILL_DATA_DIR`` or the Hub, in that order.

    Extra keyword arguments go to the format loader (e.g. ``cop_base=0`` for MedMCQA).
    """
    spec = get_spec(name)
    kw = {"source": name, "split": spec.split, **spec.loader_kwargs, **kwargs}
    split = kw["split"] = kw.get("split") or spec.split
    if spec.needs_path and path is None:
        raise MedistillError(needs_path_message(name))
    options = sorted(set(kwargs) & set(MCQ_KEYS))
    if options and not spec.needs_path:
        raise MedistillError(
            f"{options[0]} is for the mcq benchmark (your own file), not {name!r}; remove it"
        )
    if name.startswith("sample") and path is None:
        path = sample_path()
    looked: list[str] = []
    if path is None:
        root, candidates = data_dir(), spec.local_candidates(split)
        if root is None:
            looked.append("$MEDISTILL_DATA_DIR (not set)")
        elif not candidates:
            looked.append(f"{root} (no known file name for this split)")
        else:
            for rel in candidates:
                looked.append(str(root / rel))
                if (root / rel).exists():
                    path = root / rel
                    break
    if path is None:
        return _load_from_hub(spec, looked=looked, skip_invalid=skip_invalid, limit=limit, **kw)
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if spec.rows is not None:
        result = spec.loader(path, skip_invalid=skip_invalid, limit=spec.rows[1], **kw)
        result.questions = result.questions[spec.rows[0] : spec.rows[1]][:limit]
    else:
        result = spec.loader(path, skip_invalid=skip_invalid, limit=limit, **kw)
    result.report.split, result.report.source_file = split, str(path.resolve())
    log.info("%s", result.report.summary())
    return result


def load_questions(path: str | Path, fmt: str = "mcq", **kwargs: Any) -> LoadResult:
    """Load a local file in one of the known formats (``medqa``, ``medmcqa``, ``pubmedqa``,
    ``mmlu``, ``mcq``)."""
    if fmt not in FORMATS:
        raise MedistillError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    return FORMATS[fmt](path, **kwargs)


def _not_found(spec: BenchmarkSpec, split: str, looked: list[str], hub: str) -> MedistillError:
    """One line: which benchmark and split, every place looked, and what to do."""
    places = "; ".join([*looked, hub])
    return MedistillError(
        f"benchmark {spec.name!r} split {split!r} not found: looked in {places}; pass --path "
        f"to that split's file (another split is never read in its place)"
    )


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off (``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE`` set to 1/true/yes/on): no split is fetched from it."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _load_from_hub(
    spec: BenchmarkSpec,
    *,
    looked: list[str],
    skip_invalid: bool,
    limit: int | None,
    **kw: Any,
) -> LoadResult:
    """Download ``spec.hub_id`` with ``datasets`` and parse it with the same loader.

    Only the Hub split that holds ``kw["split"]`` is read; a split the Hub copy lacks, or no Hub
    access (offline, no ``datasets``), is an error naming every place looked. The rows are
    written to a temporary JSON-lines file in the local format first, so validation, error
    messages and skipping behave exactly as for local files.
    """
    split = kw["split"]
    hub_split = spec.hub_split_for(split)
    if not spec.hub_id:
        raise _not_found(spec, split, looked, "the Hub (no known copy)")
    if hub_split is None:
        raise _not_found(spec, split, looked, f"the Hub ({spec.hub_id} has no {split} split)")
    if hub_offline():
        raise _not_found(spec, split, looked, f"the Hub ({spec.hub_id}: offline, HF_HUB_OFFLINE)")
    try:
        import datasets
    except ImportError:
        raise _not_found(
            spec, split, looked, f"the Hub ({spec.hub_id}: needs `pip install datasets`)"
        ) from None
    import json

    tmp = Path(tempfile.mkdtemp(prefix=f"medistill-{spec.name}-"))
    try:
        if spec.name == "mmlu_medical":
            for config in spec.hub_configs:
                ds = datasets.load_dataset(spec.hub_id, config, split=hub_split)
                with open(tmp / f"{config}_test.csv", "w", encoding="utf-8", newline="") as fh:
                    import csv

                    writer = csv.writer(fh)
                    for r in ds:
                        writer.writerow([r["question"], *r["choices"], "ABCD"[r["answer"]]])
            target = tmp
        else:
            ds = datasets.load_dataset(spec.hub_id, spec.hub_configs[0], split=hub_split)
            target = tmp / f"{spec.name}.jsonl"
            with open(target, "w", encoding="utf-8") as fh:
                for r in ds:
                    fh.write(json.dumps(dict(r), default=str) + "\n")
    except MedistillError:
        raise
    except Exception as e:  # network, auth, missing dataset: one clear line for the user
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        raise _not_found(
            spec, split, looked, f"the Hub ({spec.hub_id} split {hub_split}: {reason})"
        ) from e
    log.info("downloaded %s split %s from the Hub (%s)", spec.name, hub_split, spec.hub_id)
    result = spec.loader(target, skip_invalid=skip_invalid, limit=limit, **kw)
    result.report.split = split
    result.report.source_file = f"{_hub_name(spec)} (Hugging Face Hub, split {hub_split})"
    return result


def _hub_name(spec: BenchmarkSpec) -> str:
    """``owner/name`` plus its one config where it has one (``qiaojin/PubMedQA/pqa_labeled``);
    MMLU's several subject configs are not listed."""
    configs = [c for c in spec.hub_configs if c]
    return f"{spec.hub_id}/{configs[0]}" if len(configs) == 1 else str(spec.hub_id)
