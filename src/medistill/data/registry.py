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

from medistill.data import formats
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


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "medqa",
            "MedQA (USMLE) US 4-option test, 1273 questions",
            formats.load_medqa,
            "medqa/US_4options_test.jsonl",
            hub_id="GBaker/MedQA-USMLE-4-options",
        ),
        BenchmarkSpec(
            "medqa5",
            "MedQA (USMLE) US 5-option test, 1273 questions",
            formats.load_medqa,
            "medqa/US_5options_test.jsonl",
            chance=0.2,
        ),
        BenchmarkSpec(
            "medmcqa",
            "MedMCQA dev set (the split papers report), 4183 questions",
            formats.load_medmcqa,
            "medmcqa/dev.jsonl",
            hub_id="openlifescienceai/medmcqa",
            hub_split="validation",
            split="dev",
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
    if name.startswith("sample") and path is None:
        path = sample_path()
    if path is None and spec.local_path and data_dir() is not None:
        candidate = data_dir() / spec.local_path
        if candidate.exists():
            path = candidate
    if path is None:
        return _load_from_hub(spec, skip_invalid=skip_invalid, limit=limit, **kw)
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if spec.rows is not None:
        result = spec.loader(path, skip_invalid=skip_invalid, limit=spec.rows[1], **kw)
        result.questions = result.questions[spec.rows[0] : spec.rows[1]][:limit]
    else:
        result = spec.loader(path, skip_invalid=skip_invalid, limit=limit, **kw)
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


def _load_from_hub(
    spec: BenchmarkSpec, *, skip_invalid: bool, limit: int | None, **kw: Any
) -> LoadResult:
    """Download ``spec.hub_id`` with ``datasets`` and parse it with the same loader.

    The rows are written to a temporary JSON-lines file in the local format first, so
    validation, error messages and skipping behave exactly as for local files.
    """
    if not spec.hub_id:
        raise MedistillError(
            f"benchmark {spec.name!r} has no known Hub copy: pass --path to "
            f"a local file (or set MEDISTILL_DATA_DIR)"
        )
    try:
        import datasets
    except ImportError:
        raise MedistillError(
            f"loading {spec.name!r} from the Hub needs `pip install datasets`;"
            f" or pass --path to a local copy"
        ) from None
    import json

    # An explicit split (e.g. "train" for teacher traces) picks the Hub split too.
    hub_split = kw.get("split") if kw.get("split") not in (None, spec.split) else spec.hub_split
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
        raise MedistillError(
            f"could not download {spec.hub_id!r} from the Hugging Face Hub "
            f"({type(e).__name__}: {e}); pass --path to a local copy"
        ) from e
    log.info("downloaded %s from the Hub (%s)", spec.name, spec.hub_id)
    return spec.loader(target, skip_invalid=skip_invalid, limit=limit, **kw)
