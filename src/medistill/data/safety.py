"""Harmful medical requests: MedSafetyBench and the project's own small sample.

MedSafetyBench (Han et al., NeurIPS 2024 Datasets and Benchmarks; MIT, research use: it
holds harmful requests) has 900 test and 900 train requests (450 per source; 50 per category
for GPT-4, 24-64 for Llama-2), in nine categories that follow the nine principles of the AMA
Code of Medical Ethics; ``gpt4`` requests were written by prompting GPT-4, ``llama2`` ones
by jailbreaking Llama-2-7b-chat, and every ``safe_response`` (a refusal with its reason) was
written by GPT-4. Its release layout, read as it is::

    <root>/{test,train}/{gpt4,llama2}/med_safety_demonstrations_category_{1..9}.csv
    (CSV header: ``,harmful_medical_request,safe_response``)

``<root>`` is ``path``, else ``$MEDISTILL_DATA_DIR/medsafetybench``; there is no Hub copy.
``safety_sample`` is 18 requests (two per category) written for medistill, embedded so the
demo and the tests run anywhere; it is not MedSafetyBench and its figures are not
comparable with the paper's.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from medistill.errors import MedistillError

#: The nine AMA Code of Medical Ethics principles, as MedSafetyBench numbers its categories.
CATEGORIES = {
    1: "Competent care with compassion and respect for human dignity",
    2: "Professionalism and honesty",
    3: "Respect for the law",
    4: "Patients' rights, confidentiality and privacy",
    5: "Scientific integrity and sharing knowledge",
    6: "Freedom to choose whom to serve (except in emergencies)",
    7: "Community and public health",
    8: "Responsibility to the patient as paramount",
    9: "Access to medical care for all",
}
SOURCES = ("gpt4", "llama2")
SPLITS = ("test", "train")
#: What a safe model does with a request: refuse it (harmful) or answer it (benign).
EXPECT = ("refuse", "answer")
#: Open-request sets, harmful and benign: ``xstest`` (safe prompts expect an answer, its unsafe
#: contrast prompts a refusal) and ``benign_clinical`` (sensitive but legitimate clinical
#: requests written for medistill; expect an answer); ``safety_train_sample`` holds harmful
#: requests with refusals written for medistill, for the demo's safety mix (never evaluated on).
SAFETY_BENCHMARKS = ("medsafetybench", "safety_sample", "xstest", "benign_clinical")
_SAMPLE = Path(__file__).with_name("safety_sample.jsonl")


@dataclass(frozen=True)
class SafetyRequest:
    """One harmful request and the refusal that answers it safely."""

    id: str  # medsafetybench: "<split>-<source>-c<category>-<row>"; sample: its own id
    category: int | str  # 1-9 (see CATEGORIES), or a set's own type (XSTest: "homonyms", ...)
    source: str  # gpt4 | llama2 | sample | xstest | benign
    split: str  # test | train
    request: str
    safe_response: str | None
    #: What a safe model does: ``refuse`` a harmful request, ``answer`` a benign one (an
    #: over-refusal is a refusal of a request whose ``expect`` is ``answer``).
    expect: str = "refuse"

    @property
    def category_name(self) -> str:
        """The AMA principle the request touches, or the set's own category as given."""
        if isinstance(self.category, int) and self.category in CATEGORIES:
            return CATEGORIES[self.category]
        return str(self.category)


def medsafetybench_root(path: str | Path | None = None) -> Path:
    """The folder holding MedSafetyBench's ``test/`` and ``train/``; a one-line error naming
    every place looked when it is not there."""
    import os

    looked = []
    candidates = [Path(path)] if path else []
    if os.environ.get("MEDISTILL_DATA_DIR"):
        candidates.append(Path(os.environ["MEDISTILL_DATA_DIR"]) / "medsafetybench")
    for c in candidates:
        looked.append(str(c))
        if (c / "test").is_dir() or (c / "train").is_dir():
            return c
    raise MedistillError(
        "medsafetybench not found (looked in: "
        + (", ".join(looked) or "no --path and no $MEDISTILL_DATA_DIR")
        + "); get it from github.com/AI4LIFE-GROUP/med-safety-bench (datasets/) and pass "
        "--path or put it in $MEDISTILL_DATA_DIR/medsafetybench"
    )


def _read_csv(file: Path, split: str, source: str, category: int) -> list[SafetyRequest]:
    out = []
    with open(file, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"harmful_medical_request", "safe_response"} - set(reader.fieldnames or [])
        if missing:
            raise MedistillError(f"{file}: line 1: missing column(s) {sorted(missing)}")
        for n, row in enumerate(reader):
            request = (row.get("harmful_medical_request") or "").strip()
            if not request:
                raise MedistillError(
                    f"{file}: line {reader.line_num}: field 'harmful_medical_request' is empty"
                )
            out.append(
                SafetyRequest(
                    id=f"{split}-{source}-c{category}-{n:03d}",
                    category=category,
                    source=source,
                    split=split,
                    request=request,
                    safe_response=(row.get("safe_response") or "").strip() or None,
                )
            )
    return out


def _sample() -> list[SafetyRequest]:
    out = []
    for line in _SAMPLE.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        out.append(
            SafetyRequest(
                id=rec["id"],
                category=int(rec["category"]),
                source="sample",
                split="test",
                request=rec["request"],
                safe_response=rec.get("safe_response"),
            )
        )
    return out


def load_safety(
    benchmark: str = "medsafetybench",
    *,
    split: str = "test",
    path: str | Path | None = None,
    sources: tuple[str, ...] = SOURCES,
    per_category: int | None = None,
) -> list[SafetyRequest]:
    """Harmful requests, in category then source then row order.

    ``per_category`` keeps the first N of each category, split evenly over ``sources`` (5 per
    category with both sources: 3 GPT-4 and 2 Llama-2 requests), so a slice covers every
    category and both ways the requests were made.
    """
    if benchmark == "safety_sample":
        rows = _sample()
    elif benchmark == "medsafetybench":
        if split not in SPLITS:
            raise MedistillError(f"medsafetybench: split {split!r}: choose {' or '.join(SPLITS)}")
        bad = [s for s in sources if s not in SOURCES]
        if bad:
            raise MedistillError(f"medsafetybench: unknown source {bad[0]!r}; choose {SOURCES}")
        root = medsafetybench_root(path)
        rows = []
        for category in CATEGORIES:
            for source in sources:
                file = root / split / source / f"med_safety_demonstrations_category_{category}.csv"
                if not file.is_file():
                    raise MedistillError(f"medsafetybench: {file} not found")
                rows.extend(_read_csv(file, split, source, category))
    else:
        raise MedistillError(
            f"unknown safety benchmark {benchmark!r}; choose {', '.join(SAFETY_BENCHMARKS)}"
        )
    if per_category is None:
        return rows
    kept: list[SafetyRequest] = []
    for category in CATEGORIES:
        in_cat = [r for r in rows if r.category == category]
        present = list(dict.fromkeys(r.source for r in in_cat))
        for i, source in enumerate(present):
            share = per_category // len(present) + (i < per_category % len(present))
            kept.extend([r for r in in_cat if r.source == source][:share])
    return kept
