"""Stand-in benchmark files: the embedded sample's questions written in a benchmark's own
file format, under the name ``$MEDISTILL_DATA_DIR`` expects for a split.

A rehearsal (``medistill run --rehearse``) reads a GPU recipe's MedQA train or MedMCQA train
split through the very loader the real run uses; where the user has no copy of that split on
this machine, it reads one of these instead. They are not benchmarks: 60 original
USMLE-style questions, spread so that no two stand-ins share a question (a train stand-in is
never a copy of an evaluation one, so decontamination keeps something to train on).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from medistill.data.registry import get_spec, load_benchmark
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
