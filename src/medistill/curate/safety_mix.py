"""The safety mix: harmful-request -> refusal demonstrations added to the SFT data.

Fine-tuning on task data erodes a model's refusals of harmful requests; MedSafetyBench's
authors (Han et al., NeurIPS 2024) found that fine-tuning on its train demonstrations restores
them without costing medical accuracy. With ``safety_mix: medsafetybench`` (or
``safety_mix_file: my.jsonl``) curation adds such demonstrations to the dataset:

* **how many**: ``share`` = safety rows / (kept traces + safety rows), so ``round(share * kept
  / (1 - share))`` rows; drawn by a seeded rank (curate's ``seed``) and stratified over the
  categories (round robin over the categories in a seeded order, so their counts differ by at
  most one until a category runs out);
* **decontaminated** first: a request is removed when it copies or nearly copies a request of
  a safety evaluation set (:func:`safety_test_index`: XSTest's 450 prompts and MedSafetyBench
  test, both where found, the embedded ``benign_clinical`` test split and ``safety_sample``)
  or a question of the run's evaluation benchmarks, by the machinery of
  :mod:`medistill.curate.decontam` (word 13-grams with numbers masked, or the whole text when
  shorter; a TF-IDF cosine >= ``decontam.copy_cosine``). Requests have no options and no
  answer, so only the copy rules apply. Exact duplicates within the set, rows without a safe
  response and responses over ``max_tokens`` are removed too; every removal is counted;
* **written** as rows of the same files, in the same message format: the user turn is the
  request as it is and the assistant turn the safe response, with **no system prompt** (the
  student's exam system prompt asks for a lettered answer, which a refusal does not give; a
  safety evaluation sends the request alone). ``kind: "safety"`` marks them (trace rows are
  ``kind: "trace"``); ``options`` is empty and ``gold`` null. SFT trains on them; GRPO and
  on-policy distillation, which need an answer to score, skip them.

Benign contrast demonstrations (the teacher's helpful answers to sensitive but legitimate
requests, ``safety_mix_contrast_share``) are drawn beside them by :mod:`medistill.curate.contrast`
with the same decontamination and the same stratified draw (:func:`stratified`).

A user's file is JSONL, one ``{"request": ..., "safe_response": ...}`` per line, with an
optional ``category`` (stratified over like MedSafetyBench's) and ``id``; a bad line is an
error naming the file, the line and the field.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from medistill.curate.config import CurateConfig
from medistill.curate.decontam import BenchmarkIndex
from medistill.curate.seeded import seeded_rank, split_of
from medistill.curate.text import words
from medistill.data.loading import iter_jsonl
from medistill.data.safety import CATEGORIES, load_safety
from medistill.data.schema import Question
from medistill.errors import DataError, MedistillError

log = logging.getLogger(__name__)

KIND = "safety"
REMOVED = (
    "no_safe_response",
    "duplicate",
    "contaminated_safety_test",
    "contaminated_eval",
    "too_long",
)


@dataclass(frozen=True)
class Demo:
    """One demonstration: a harmful request and the refusal the student should learn."""

    id: str
    category: str
    source: str  # medsafetybench/gpt4, medsafetybench/llama2, or the file's name
    request: str
    safe_response: str | None


class _Drawable(Protocol):
    id: str
    category: str


D = TypeVar("D", bound=_Drawable)


@dataclass
class SafetyTestIndex:
    """The safety evaluation requests a training request must not copy: the index, what it
    holds (for the card) and the sets that could not be read (a warning in the card)."""

    index: BenchmarkIndex
    against: list[str]
    not_found: list[str]


@dataclass
class SafetyMix:
    """The demonstrations chosen for the dataset and the counts for the card."""

    demos: list[Demo]
    tokens: list[int]
    stats: dict[str, Any] = field(default_factory=dict)


def enabled(cfg: CurateConfig) -> bool:
    """Whether ``cfg`` asks for a safety mix."""
    return bool(cfg.safety_mix or cfg.safety_mix_file)


def target_rows(kept: int, share: float) -> int:
    """Safety rows for ``kept`` traces at ``share`` = rows / (kept + rows), rounded half up.

    >>> target_rows(28, 0.2), target_rows(95, 0.05), target_rows(0, 0.5)
    (7, 5, 0)
    """
    return int(share * kept / (1 - share) + 0.5)


def read_file(path: str | Path) -> list[Demo]:
    """A user's demonstrations: JSONL with ``request`` and ``safe_response`` (non-empty
    strings), optional ``category`` and ``id``; errors name the file, line and field."""
    p = Path(path)
    if not p.is_file():
        raise MedistillError(f"safety_mix_file {p}: not found")
    out = []
    for line, rec in iter_jsonl(p):
        if isinstance(rec, DataError):
            raise rec
        if not isinstance(rec, dict):
            raise DataError(f"expected an object, got {type(rec).__name__}", path=str(p), line=line)
        for name in ("request", "safe_response"):
            value = rec.get(name)
            if not isinstance(value, str) or not value.strip():
                what = "missing" if value is None else "expected a non-empty string"
                raise DataError(what, path=str(p), line=line, field=name)
        category = rec.get("category")
        if category is not None and not isinstance(category, (str, int)):
            raise DataError(
                "expected a string or a number", path=str(p), line=line, field="category"
            )
        out.append(
            Demo(
                id=str(rec.get("id") or f"{p.stem}:{line}"),
                category=str(category) if category is not None else "(none)",
                source=p.name,
                request=rec["request"].strip(),
                safe_response=rec["safe_response"].strip(),
            )
        )
    if not out:
        raise MedistillError(f"safety_mix_file {p}: no demonstrations")
    return out


def load_demos(cfg: CurateConfig) -> list[Demo]:
    """The demonstrations the config names (read before curation starts, so a bad file
    fails at once)."""
    if cfg.safety_mix_file:
        return read_file(cfg.safety_mix_file)
    rows = load_safety(cfg.safety_mix, split=cfg.safety_mix_split, path=cfg.safety_mix_path)
    return [
        Demo(r.id, str(r.category), f"{cfg.safety_mix}/{r.source}", r.request, r.safe_response)
        for r in rows
    ]


def category_label(category: str) -> str:
    """``"3"`` -> ``"3. Respect for the law"`` (MedSafetyBench's numbering); else as given."""
    if category.isdigit() and int(category) in CATEGORIES:
        return f"{category}. {CATEGORIES[int(category)]}"
    return category


def _test_sets(cfg: CurateConfig) -> tuple[list[tuple[str, list[Any]]], list[str]]:
    """Every safety evaluation set that can be read, and a note for each that cannot."""
    sets: list[tuple[str, list[Any]]] = []
    missing = []
    optional = (  # read from the user's copy: a warning, recorded in the card, when absent
        ("medsafetybench", "medsafetybench test", {"split": "test", "path": cfg.safety_mix_path}),
        ("xstest", "xstest", {}),
    )
    for name, label, kwargs in optional:
        try:
            sets.append((name, load_safety(name, **kwargs)))
        except MedistillError as e:
            missing.append(f"{label}: {e}")
            log.warning("safety mix NOT decontaminated against %s: %s", label, e)
    sets.append(("benign_clinical", load_safety("benign_clinical", split="test")))
    sets.append(("safety_sample", load_safety("safety_sample")))
    return sets, missing


def safety_test_index(cfg: CurateConfig) -> SafetyTestIndex:
    """The requests of every safety evaluation set, indexed for the copy rules (built once per
    curation, shared by the refusal and the contrast demonstrations)."""
    sets, missing = _test_sets(cfg)
    questions, against = [], []
    for name, rows in sets:
        for r in rows:
            questions.append(Question(id=r.id, source=name, split="test", question=r.request,
                                      options={}))  # fmt: skip
        srcs = "+".join(sorted({r.source for r in rows}))
        against.append(f"{name} test ({len(rows)} requests{', ' + srcs if srcs else ''})")
    index = BenchmarkIndex(
        questions,
        method="retrieval",
        ngram=cfg.decontam.ngram,
        max_df=cfg.decontam.max_df,
        min_overlap=cfg.decontam.min_overlap,
        candidates=cfg.decontam.candidates,
        copy_cosine=cfg.decontam.copy_cosine,
    )
    return SafetyTestIndex(index, against, missing)


def decontaminate(
    requests: Sequence[str],
    tests: SafetyTestIndex,
    eval_index: BenchmarkIndex | None,
) -> tuple[list[Any], list[str | None]]:
    """Each request's match (or ``None``) and why it is removed: ``contaminated_safety_test``
    (a safety evaluation set) before ``contaminated_eval`` (the run's evaluation benchmarks)."""
    batch = [(r, {}, None) for r in requests]
    matches = tests.index.check_many(batch)
    why = ["contaminated_safety_test" if m is not None else None for m in matches]
    if eval_index is not None:
        for i, m in enumerate(eval_index.check_many(batch)):
            if why[i] is None and m is not None:
                matches[i], why[i] = m, "contaminated_eval"
    return matches, why


def drop_contaminated(
    pool: Sequence[D],
    tests: SafetyTestIndex,
    eval_index: BenchmarkIndex | None,
    decon_log: Path,
    removed: Counter[str],
) -> tuple[list[D], Counter[str]]:
    """The demonstrations of ``pool`` whose request copies no evaluation request, and the
    removals by matched benchmark; each removal is counted in ``removed`` (by reason) and
    written to ``decon_log`` with what it matched. Refusal and contrast demonstrations go
    through this one step."""
    matches, why = decontaminate([d.request for d in pool], tests, eval_index)
    by_benchmark: Counter[str] = Counter()
    clean: list[D] = []
    with open(decon_log, "w", encoding="utf-8") as fh:
        for d, m, w in zip(pool, matches, why, strict=True):
            if w is None:
                clean.append(d)
                continue
            removed[w] += 1
            by_benchmark[f"{m.benchmark} ({m.method})"] += 1
            fh.write(json.dumps({"id": d.id, "request": d.request, **m.to_dict()}) + "\n")
    return clean, by_benchmark


def open_row(
    cfg: CurateConfig,
    *,
    kind: str,
    id: str,
    user: str,
    assistant: str,
    source: str,
    teacher: str,
    category: str,
    tokens: int,
) -> tuple[str, dict[str, Any]]:
    """``(split, row)`` of one open-request demonstration (a refusal or a contrast answer) in
    the dataset's columns (``messages`` form; the caller writes ``prompt_completion`` from it):
    no options, no gold, split seeded by ``kind`` and id like questions."""
    split = split_of(seeded_rank(cfg.seed, f"{kind}:{id}"), cfg.validation_fraction)
    return (
        split,
        {
            "id": f"{kind}-{id}"[:64],
            "user": user,
            "assistant": assistant,
            "meta": {
                "question_id": id,
                "source": source,
                "teacher": teacher,
                "subject": category_label(category),
                "options": {},
                "gold": None,
                "teacher_pass_rate": None,
                "tokens": tokens,
                "verified_by": None,
                "kind": kind,
            },
        },
    )


def stratified(pool: Sequence[D], n: int, seed: int) -> list[D]:
    """``n`` demonstrations, round robin over the categories (in a seeded order), each
    category's in seeded rank order."""
    by_cat: dict[str, list[D]] = defaultdict(list)
    for d in sorted(pool, key=lambda d: seeded_rank(seed, d.id)):
        by_cat[d.category].append(d)
    order = sorted(by_cat, key=lambda c: seeded_rank(seed, f"category:{c}"))
    chosen: list[D] = []
    depth = 0
    while len(chosen) < n and any(depth < len(by_cat[c]) for c in order):
        for c in order:
            if len(chosen) < n and depth < len(by_cat[c]):
                chosen.append(by_cat[c][depth])
        depth += 1
    return chosen


def build_mix(
    cfg: CurateConfig,
    demos: list[Demo],
    *,
    kept: int,
    tests: SafetyTestIndex,
    eval_index: BenchmarkIndex | None,
    count_tokens: Callable[[Sequence[str]], list[int]],
    decon_log: Path,
) -> SafetyMix:
    """Decontaminate ``demos`` (against ``tests`` and ``eval_index``) and draw the share of
    ``kept`` traces the config asks for; each removed request is written to ``decon_log`` with
    what it matched."""
    removed: Counter[str] = Counter()
    pool: list[Demo] = []
    seen: set[str] = set()
    for d in demos:
        if not d.safe_response:
            removed["no_safe_response"] += 1
            continue
        norm = " ".join(words(d.request))
        if norm in seen:
            removed["duplicate"] += 1
            continue
        seen.add(norm)
        pool.append(d)
    clean, by_benchmark = drop_contaminated(pool, tests, eval_index, decon_log, removed)
    against = tests.against + (list(cfg.eval_benchmarks) if eval_index is not None else [])
    tokens = dict(zip((d.id for d in clean), count_tokens([d.safe_response for d in clean]),
                      strict=True))  # fmt: skip
    fits = [d for d in clean if tokens[d.id] <= cfg.max_tokens]
    removed["too_long"] = len(clean) - len(fits)
    target = target_rows(kept, cfg.safety_mix_share)
    chosen = stratified(fits, target, cfg.seed)
    if len(chosen) < target:
        log.warning(
            "safety mix: %d demonstrations wanted (share %.3f of %d traces), only %d available",
            target, cfg.safety_mix_share, kept, len(chosen),
        )  # fmt: skip
    n = len(chosen)
    stats = {
        "source": cfg.safety_mix or "file",
        "file": str(cfg.safety_mix_file) if cfg.safety_mix_file else None,
        "split": None if cfg.safety_mix_file else cfg.safety_mix_split,
        "path": None if cfg.safety_mix_file else cfg.safety_mix_path,
        "read": len(demos),
        "removed": {r: removed.get(r, 0) for r in REMOVED},
        "removed_by_benchmark": dict(by_benchmark.most_common()),
        "decontaminated_against": against,
        "not_found": tests.not_found,
        "available": len(fits),
        "share_asked": cfg.safety_mix_share,
        "target_rows": target,
        "rows": n,
        "share": round(n / (kept + n), 4) if kept + n else None,
        "by_category": dict(sorted(Counter(category_label(d.category) for d in chosen).items())),
        "by_source": dict(sorted(Counter(d.source for d in chosen).items())),
        "seed": cfg.seed,
        "system_prompt": "none",
        "tokens": sum(tokens[d.id] for d in chosen),
    }
    log.info(
        "safety mix: %d demonstrations (share %s) from %d read; removed %s",
        n, stats["share"], len(demos),
        ", ".join(f"{k} {v}" for k, v in removed.items() if v) or "none",
    )  # fmt: skip
    return SafetyMix(chosen, [tokens[d.id] for d in chosen], stats)


def records(mix: SafetyMix, cfg: CurateConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(split, row)`` of each demonstration (:func:`open_row`); splits seeded by id, like
    questions."""
    for d, ntok in zip(mix.demos, mix.tokens, strict=True):
        yield open_row(
            cfg, kind=KIND, id=d.id, user=d.request, assistant=d.safe_response or "",
            source=d.source, teacher=d.source.split("/")[0], category=d.category, tokens=ntok,
        )  # fmt: skip
