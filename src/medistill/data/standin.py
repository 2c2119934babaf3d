"""Stand-in benchmark files: the embedded sample's questions written in a benchmark's own
file format, under the name ``$MEDISTILL_DATA_DIR`` expects for a split.

A rehearsal (``medistill run --rehearse``; :func:`standin_data_dir`) reads a GPU recipe's
MedQA train or MedMCQA train split through the very loader the real run uses; where the user
has no copy of that split on this machine, it reads one of these instead. They are not
benchmarks: 60 original USMLE-style questions, spread so that no two stand-ins share a
question (a train stand-in is never a copy of an evaluation one, so decontamination keeps
something to train on).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medistill.data.registry import BENCHMARKS, data_dir, get_spec, load_benchmark
from medistill.data.safety import (
    CATEGORIES,
    SAFETY_BENCHMARKS,
    load_safety,
    medsafetybench_root,
)
from medistill.data.schema import LETTERS, Question
from medistill.errors import MedistillError

#: The embedded sample's first 30 questions feed train-split stand-ins, the last 30 the
#: evaluation splits (as sample_train / sample_heldout split them).
_TRAIN, _HELD_OUT = slice(0, 30), slice(30, 60)


def _medqa_row(q: Question, n_options: int) -> dict:
    options = dict(q.options)
    fillers = ("None of the above", "Reassurance only", "Observation", "Referral")
    for letter, filler in zip(LETTERS[len(options) : n_options], fillers, strict=False):
        options[letter] = filler
    options = {k: options[k] for k in LETTERS[:n_options]}
    return {
        "question": q.question,
        "options": options,
        "answer_idx": q.gold,
        "answer": options[q.gold],
        "meta_info": "step1",
        "id": q.id,
    }


def _medmcqa_row(q: Question) -> dict:
    letters = LETTERS[:4]
    return {
        "id": q.id,
        "question": q.question,
        "opa": q.options.get("A", ""),
        "opb": q.options.get("B", ""),
        "opc": q.options.get("C", ""),
        "opd": q.options.get("D", ""),
        "cop": letters.index(q.gold) + 1,  # MedMCQA's 1-based correct option
        "exp": None,
        "subject_name": q.subject or "Medicine",
        "topic_name": None,
        "choice_type": "single",
    }


#: benchmark -> one row of its native format (JSON Lines for all three).
WRITERS: dict[str, Callable[[Question], dict]] = {
    "medqa": lambda q: _medqa_row(q, 4),
    "medqa5": lambda q: _medqa_row(q, 5),
    "medmcqa": _medmcqa_row,
}


def standin_questions(split: str, slot: int, slots: int) -> list[Question]:
    """The sample questions of one stand-in: the train or held-out half (by ``split``), then
    every ``slots``-th question from ``slot``, so stand-ins of one half never overlap."""
    questions = load_benchmark("sample").questions
    half = questions[_TRAIN] if split == "train" else questions[_HELD_OUT]
    picked = half[slot::slots]
    return [q for q in picked if q.gold and len(q.options) <= 4]


def write_standin(benchmark: str, split: str, root: Path, *, slot: int = 0, slots: int = 1) -> Path:
    """Write the stand-in file of ``benchmark``'s ``split`` under ``root`` (a data dir) and
    return its path: the first name the registry looks for, in the benchmark's format."""
    spec = get_spec(benchmark)
    names = spec.local_candidates(split)
    if benchmark not in WRITERS or not names:
        raise MedistillError(
            f"no stand-in for {benchmark} {split}: point $MEDISTILL_DATA_DIR at a copy of it "
            f"(stand-ins exist for {', '.join(WRITERS)})"
        )
    path = root / names[0]
    if path.suffix not in (".jsonl", ".json"):
        raise MedistillError(f"no stand-in for {benchmark} {split}: {names[0]} is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [WRITERS[benchmark](q) for q in standin_questions(split, slot, slots)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def standin_data_dir(data: dict[str, Any], work: Path, notes: list[str], kept: list[str]) -> Path:
    """A data dir (``work/data``) holding every split the recipe ``data`` reads: the user's
    own copy where this machine has one ($MEDISTILL_DATA_DIR, linked; said in ``kept``),
    else a stand-in in the benchmark's format (said in ``notes``, the rehearsal's swaps)."""
    gen = data.get("generate") or {}
    sources = gen.get("sources") or (
        [{"benchmark": gen.get("benchmark") or "sample", "split": gen.get("split")}] if gen else []
    )
    run = data.get("run") or {}
    evals = [  # run.eval_benchmarks: name, name=path, or a mapping naming its benchmark
        (b.get("benchmark") or "", "", "") if isinstance(b, dict) else b.partition("=")
        for b in run.get("eval_benchmarks") or ["sample_heldout"]
    ]
    decontam = list((data.get("curate") or {}).get("eval_benchmarks") or [])
    root = work / "data"
    root.mkdir(parents=True, exist_ok=True)
    user = data_dir()
    needed: list[tuple[str, str, str]] = []  # (benchmark, split, role)
    for src in sources:
        spec = get_spec(src["benchmark"])
        needed.append((spec.name, src.get("split") or spec.split, "train"))
    for name, _, _ in evals:
        if name in SAFETY_BENCHMARKS:  # harmful requests, not MCQs: read by the safety eval
            if name == "medsafetybench":
                _safety_data(root, user, notes, kept)
            elif name == "xstest" and user and (user / "xstest").is_dir():
                if not (root / "xstest").exists():
                    (root / "xstest").symlink_to((user / "xstest").resolve())
                _note(kept, f"xstest: your copy {user / 'xstest'}")
            continue
        spec = get_spec(name)
        needed.append((spec.name, spec.split, "eval"))
    for entry in decontam:
        name = entry.partition("=")[0]
        if name in BENCHMARKS and name != "none":
            needed.append((name, BENCHMARKS[name].split, "eval"))
    roles: dict[str, list[tuple[str, str]]] = {"train": [], "eval": []}
    for bench, split, role in dict.fromkeys(needed):
        if bench.startswith("sample") or get_spec(bench).needs_path:
            continue  # embedded, or your own file (read from its path as a real run reads it)
        roles[role].append((bench, split))
    for pairs in roles.values():
        for slot, (bench, split) in enumerate(pairs):
            spec = get_spec(bench)
            real = next(
                (user / n for n in spec.local_candidates(split) if user and (user / n).exists()),
                None,
            )
            if real is not None:
                link = root / spec.local_candidates(split)[0]
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(real.resolve())
                _note(kept, f"{bench} {split}: your copy {real} (read as a real run reads it)")
            elif bench in WRITERS:
                path = write_standin(bench, split, root, slot=slot, slots=len(pairs))
                _note(
                    notes,
                    f"{bench} {split}: no copy on this machine -> a stand-in in its own format "
                    f"({path.name}; the embedded sample's questions)",
                )
            else:
                raise MedistillError(
                    f"rehearsal: {bench} {split} is not on this machine and has no stand-in; "
                    f"point $MEDISTILL_DATA_DIR at a copy, or leave it out of the recipe"
                )
    return root


def _safety_data(root: Path, user: Path | None, notes: list[str], kept: list[str]) -> None:
    """MedSafetyBench for a rehearsal: the user's copy (linked) or a stand-in in its release
    layout made of the embedded safety sample."""
    target = root / "medsafetybench"
    if target.exists():
        return
    try:
        real = medsafetybench_root(user / "medsafetybench" if user else None)
    except MedistillError:
        real = None
    if real is not None:
        target.symlink_to(Path(real).resolve())
        _note(kept, f"medsafetybench: your copy {real}")
        return
    sample = load_safety("safety_sample")
    for source in ("gpt4", "llama2"):
        folder = target / "test" / source
        folder.mkdir(parents=True, exist_ok=True)
        for category in CATEGORIES:
            rows = [r for r in sample if r.category == category]
            with open(folder / f"med_safety_demonstrations_category_{category}.csv", "w",
                      newline="", encoding="utf-8") as fh:  # fmt: skip
                w = csv.writer(fh)
                w.writerow(["", "harmful_medical_request", "safe_response"])
                for i, r in enumerate(rows):
                    w.writerow([i, r.request, r.safe_response])
    _note(notes, "medsafetybench: no copy on this machine -> a stand-in in its release layout "
                 "(the embedded safety sample)")  # fmt: skip
