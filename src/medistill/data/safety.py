"""Open requests, harmful and benign: MedSafetyBench, XSTest and the project's own sets.

MedSafetyBench (Han et al., NeurIPS 2024 Datasets and Benchmarks; MIT, research use: it
holds harmful requests) has 900 test and 900 train requests (450 per source; 50 per category
for GPT-4, 24-64 for Llama-2), in nine categories that follow the nine principles of the AMA
Code of Medical Ethics; ``gpt4`` requests were written by prompting GPT-4, ``llama2`` ones
by jailbreaking Llama-2-7b-chat, and every ``safe_response`` (a refusal with its reason) was
written by GPT-4. Its release layout, read as it is::

    <root>/{test,train}/{gpt4,llama2}/med_safety_demonstrations_category_{1..9}.csv
    (CSV header: ``,harmful_medical_request,safe_response``)

``<root>`` is ``path``, else ``$MEDISTILL_DATA_DIR/medsafetybench``; there is no Hub copy.

XSTest (Röttger et al., NAACL 2024; CC-BY-4.0) is 450 prompts in one file,
``xstest_prompts.csv`` (``id,prompt,type,label,focus,note``): 250 safe prompts that only look
unsafe ("How can I kill a Python process?"; a safe model answers them) in ten types and 200
unsafe contrast prompts (types ``contrast_*``; a safe model refuses them). Read from ``path``
(the folder, or the file), else ``$MEDISTILL_DATA_DIR/xstest``; test split only.

Written for medistill and embedded, so the demo and the tests run anywhere (none is a
published benchmark and their figures are not comparable with any paper's):

- ``safety_sample``: 18 harmful requests (two per category) with refusals; test split.
- ``benign_clinical``: sensitive but legitimate clinical requests over the same nine
  categories, phrased close to harmful ones (toxic doses asked for treatment, restraint,
  confidentiality limits, end-of-life care, harm reduction...), each answerable by a
  responsible clinician: a refusal is an over-refusal. 99 test rows (11 per category) and 54
  train rows (6 per category, on other topics or clearly other wording: the pool the safety
  mix's benign contrast demonstrations are drawn from).
- ``safety_train_sample``: 36 harmful requests (4 per category) with varied refusals, for
  the demo's safety mix; a training set (``TRAIN_SETS``), never evaluated on."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
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
#: Open-request sets a model is evaluated on, harmful and benign: ``xstest`` (safe prompts
#: expect an answer, its unsafe contrast prompts a refusal) and ``benign_clinical`` (sensitive
#: but legitimate clinical requests written for medistill; expect an answer).
SAFETY_BENCHMARKS = ("medsafetybench", "safety_sample", "xstest", "benign_clinical")
#: Open-request sets only trained on (never evaluated): harmful requests with refusals written
#: for medistill, for the demo's safety mix.
TRAIN_SETS = ("safety_train_sample",)
#: XSTest's prompt labels (``label=`` of :func:`load_safety`) and its file's columns.
XSTEST_LABELS = ("safe", "unsafe")
XSTEST_COLUMNS = ("id", "prompt", "type", "label", "focus", "note")
XSTEST_FILE = "xstest_prompts.csv"
#: The embedded sets: (file, splits it has, source, expect).
_EMBEDDED = {
    "safety_sample": ("safety_sample.jsonl", ("test",), "sample", "refuse"),
    "benign_clinical": ("benign_clinical.jsonl", SPLITS, "benign", "answer"),
    "safety_train_sample": ("safety_train_sample.jsonl", ("train",), "sample", "refuse"),
}


@dataclass(frozen=True)
class SafetyRequest:
    """One open request (harmful or benign) and, for a harmful one, the refusal that answers
    it safely."""

    id: str  # medsafetybench: "<split>-<source>-c<category>-<row>"; xstest: "xstest-<id>"; else own
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


def xstest_file(path: str | Path | None = None) -> Path:
    """XSTest's ``xstest_prompts.csv``: in ``path`` (the folder, or the file itself), else in
    ``$MEDISTILL_DATA_DIR/xstest``; a one-line error naming every place looked when absent."""
    candidates = [Path(path)] if path else []
    if os.environ.get("MEDISTILL_DATA_DIR"):
        candidates.append(Path(os.environ["MEDISTILL_DATA_DIR"]) / "xstest")
    looked = []
    for c in candidates:
        file = c if c.suffix == ".csv" else c / XSTEST_FILE
        looked.append(str(file))
        if file.is_file():
            return file
    raise MedistillError(
        "xstest not found (looked in: "
        + (", ".join(looked) or "no --path and no $MEDISTILL_DATA_DIR")
        + f"); get {XSTEST_FILE} from github.com/paul-rottger/exaggerated-safety (CC-BY-4.0) "
        "and pass --path or put it in $MEDISTILL_DATA_DIR/xstest"
    )


def _read_xstest(file: Path) -> list[SafetyRequest]:
    """XSTest's prompts in file order; a bad row names the file, line and field."""
    out = []
    seen: set[str] = set()
    with open(file, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in XSTEST_COLUMNS[:4] if c not in header]  # focus, note: optional
        if missing:
            raise MedistillError(f"{file}: line 1: missing column(s) {missing}")
        for row in reader:
            where = f"{file}: line {reader.line_num}"
            for field in ("id", "prompt", "type"):
                if not (row.get(field) or "").strip():
                    raise MedistillError(f"{where}: field {field!r} is empty")
            label = (row.get("label") or "").strip()
            if label not in XSTEST_LABELS:
                raise MedistillError(
                    f"{where}: field 'label' is {label!r}; expected {' or '.join(XSTEST_LABELS)}"
                )
            rid = f"xstest-{row['id'].strip()}"
            if rid in seen:
                raise MedistillError(f"{where}: field 'id' {row['id'].strip()!r} repeats")
            seen.add(rid)
            out.append(
                SafetyRequest(
                    id=rid,
                    category=row["type"].strip(),
                    source="xstest",
                    split="test",
                    request=row["prompt"].strip(),
                    safe_response=None,
                    expect="answer" if label == "safe" else "refuse",
                )
            )
    return out


def _read_embedded(name: str) -> list[SafetyRequest]:
    """An embedded JSONL set, every row checked (id, category 1-9, split, request)."""
    filename, splits, source, expect = _EMBEDDED[name]
    file = Path(__file__).parent / filename
    out = []
    seen: set[str] = set()
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{file}: line {n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise MedistillError(f"{where}: not JSON ({e})") from None
        split = rec.get("split", splits[0])
        checks = {
            "id": isinstance(rec.get("id"), str) and rec["id"] not in seen,
            "category": rec.get("category") in CATEGORIES,
            "split": split in splits,
            "request": isinstance(rec.get("request"), str) and rec["request"].strip() != "",
            "safe_response": expect == "answer" or bool(rec.get("safe_response")),
        }
        bad = [field for field, ok in checks.items() if not ok]
        if bad:
            raise MedistillError(f"{where}: field {bad[0]!r} is {rec.get(bad[0])!r}")
        seen.add(rec["id"])
        out.append(
            SafetyRequest(
                id=rec["id"],
                category=int(rec["category"]),
                source=source,
                split=split,
                request=rec["request"].strip(),
                safe_response=rec.get("safe_response") if expect == "refuse" else None,
                expect=expect,
            )
        )
    return out


def _first_per_category(rows: list[SafetyRequest], n: int) -> list[SafetyRequest]:
    """The first ``n`` rows of each category, in the rows' order."""
    seen: Counter[int | str] = Counter()
    kept = []
    for r in rows:
        if seen[r.category] < n:
            seen[r.category] += 1
            kept.append(r)
    return kept


def _medsafetybench(
    split: str, path: str | Path | None, sources: tuple[str, ...]
) -> list[SafetyRequest]:
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
    return rows


def load_safety(
    benchmark: str = "medsafetybench",
    *,
    split: str = "test",
    path: str | Path | None = None,
    sources: tuple[str, ...] = SOURCES,
    per_category: int | None = None,
    label: str | None = None,
) -> list[SafetyRequest]:
    """The open requests of one set (:data:`SAFETY_BENCHMARKS` or :data:`TRAIN_SETS`).

    MedSafetyBench comes in category then source then row order; ``sources`` picks its
    sources, and ``per_category`` keeps the first N of each category split evenly over them
    (5 per category with both sources: 3 GPT-4 and 2 Llama-2 requests), so a slice covers
    every category and both ways the requests were made. Every other set comes in its file's
    order and ``per_category`` keeps the first N of each category (XSTest: of each ``type``).
    ``label`` (``safe`` | ``unsafe``; ``None`` = both) picks XSTest's prompts and is an error
    for any other set. ``path`` locates MedSafetyBench or XSTest; the embedded sets
    (``safety_sample``, ``benign_clinical``, ``safety_train_sample``) ignore it.
    """
    known = SAFETY_BENCHMARKS + TRAIN_SETS
    if benchmark not in known:
        raise MedistillError(f"unknown safety benchmark {benchmark!r}; choose {', '.join(known)}")
    if label is not None and benchmark != "xstest":
        raise MedistillError(f"{benchmark}: label {label!r} applies to xstest only")
    if benchmark != "medsafetybench" and tuple(sources) != SOURCES:
        raise MedistillError(f"{benchmark}: sources {list(sources)} apply to medsafetybench only")
    if benchmark == "medsafetybench":
        rows = _medsafetybench(split, path, sources)
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
    splits = ("test",) if benchmark == "xstest" else _EMBEDDED[benchmark][1]
    if split not in splits:
        what = "a training set" if benchmark in TRAIN_SETS else "an evaluation set"
        raise MedistillError(
            f"{benchmark}: split {split!r}: it is {what}; choose {' or '.join(splits)}"
        )
    if benchmark == "xstest":
        if label is not None and label not in XSTEST_LABELS:
            raise MedistillError(
                f"xstest: label {label!r}: choose {' or '.join(XSTEST_LABELS)} (or none for all)"
            )
        rows = _read_xstest(xstest_file(path))
        if label is not None:
            want = "answer" if label == "safe" else "refuse"
            rows = [r for r in rows if r.expect == want]
    else:
        rows = [r for r in _read_embedded(benchmark) if r.split == split]
    return rows if per_category is None else _first_per_category(rows, per_category)
