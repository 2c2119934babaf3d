"""Benign contrast demonstrations: sensitive but legitimate requests answered helpfully.

Refusal demonstrations alone teach a student to refuse whatever *sounds* sensitive (the demo's
mixed student refused 71% of XSTest's safe prompts). Beside them, ``safety_mix_contrast_share``
adds the teacher's own helpful answers to benign requests phrased close to the harmful ones
(toxic doses asked for treatment, restraint, confidentiality limits...), so the student sees
both sides. ``generate.contrast: benign_clinical`` makes those calls: each train request of the
set as the only user turn, stored with ``source`` ``contrast:<set>`` (never seen by the MCQ
verification). Here, from the store's contrast calls:

* **removed**, every trace counted in exactly one bucket: ``empty`` (no answer text after a
  ``<think>`` block), ``truncated`` (cut off by its token budget or a repetition stop),
  ``refusal`` (the teacher refused: :func:`medistill.answers.refusal.is_refusal`), ``too_long``
  (over curate's ``max_tokens``), ``duplicate`` (another answer to the same request came first:
  one answer per request, the first usable one by sample index), then, per request,
  ``contaminated_safety_test`` / ``contaminated_eval``: a copy or near copy of a request of a
  safety evaluation set (XSTest's 450 prompts and MedSafetyBench test where found, the
  ``benign_clinical`` test split, ``safety_sample``) or of a question of the run's evaluation
  benchmarks (:func:`medistill.curate.safety_mix.decontaminate`);
* **how many**: ``share`` = contrast rows / (kept traces + safety rows + contrast rows), drawn
  by the safety mix's seeded, category-stratified draw;
* **written** like the safety rows: the request as the user turn, the teacher's answer as the
  assistant turn, no system prompt, ``kind: "contrast"``, empty ``options``, null ``gold``:
  SFT trains on them; GRPO and on-policy distillation, which need an answer to score, skip
  them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.answers.patterns import answer_region
from medistill.answers.refusal import is_refusal
from medistill.curate.config import CurateConfig
from medistill.curate.decontam import BenchmarkIndex
from medistill.curate.safety_mix import (
    SafetyTestIndex,
    category_label,
    drop_contaminated,
    open_row,
    stratified,
    target_rows,
)
from medistill.curate.text import words
from medistill.errors import MedistillError
from medistill.store import CONTRAST_PREFIX

log = logging.getLogger(__name__)

KIND = "contrast"
REMOVED = (
    "empty",
    "truncated",
    "refusal",
    "too_long",
    "duplicate",
    "contaminated_safety_test",
    "contaminated_eval",
)


@dataclass(frozen=True)
class ContrastDemo:
    """One benign request and the teacher's helpful answer to it."""

    id: str  # the request's id in its set
    category: str
    source: str  # contrast:<set>
    request: str
    response: str
    teacher: str
    sample_index: int


@dataclass
class ContrastMix:
    """The contrast demonstrations chosen for the dataset and the counts for the card."""

    demos: list[ContrastDemo]
    tokens: list[int]
    stats: dict[str, Any] = field(default_factory=dict)


def missing_error(cfg: CurateConfig) -> str:
    """Why a contrast share cannot be met: the store holds no contrast calls (the generate key
    that makes them)."""
    return (
        f"safety_mix_contrast_share {cfg.safety_mix_contrast_share} needs the teacher's "
        f"answers to benign requests, and the trace store {cfg.store} holds none (no "
        f"'{CONTRAST_PREFIX}*' traces): set generate.contrast: benign_clinical (medistill "
        "generate --contrast benign_clinical) and run generate again (only the new calls are "
        "made), or set safety_mix_contrast_share: 0"
    )


def answer_text(row: dict[str, Any]) -> str:
    """A stored answer's text without its ``<think>`` block (empty when it never closed)."""
    text, _ = answer_region(row.get("text") or "")
    return text.strip()


def _candidates(
    rows: Iterable[dict[str, Any]],
    count_tokens: Callable[[Sequence[str]], list[int]],
    max_tokens: int,
    removed: Counter[str],
    seen_in: dict[str, set[str]],
) -> tuple[list[tuple[ContrastDemo, int]], int]:
    """The usable answers, one per request (the first by sample index, then store order),
    with their token counts, and the traces read; the sources and teachers read are added to
    ``seen_in``."""
    ordered = sorted(enumerate(rows), key=lambda t: (t[1]["sample_index"], t[0]))
    usable: list[tuple[ContrastDemo, str]] = []
    for _, row in ordered:
        seen_in["sources"].add(str(row["source"]))
        seen_in["teachers"].add(str(row["teacher"]))
        text = answer_text(row)
        if not text:
            removed["empty"] += 1
        elif row["truncated"]:
            removed["truncated"] += 1
        elif is_refusal(text):
            removed["refusal"] += 1
        else:
            demo = ContrastDemo(
                id=str(row["question_id"]),
                category=str(row.get("subject") or "(none)"),
                source=str(row["source"]),
                request=(row.get("question") or "").strip(),
                response=text,
                teacher=str(row["teacher"]),
                sample_index=int(row["sample_index"]),
            )
            usable.append((demo, text))
    tokens = count_tokens([text for _, text in usable])
    out: list[tuple[ContrastDemo, int]] = []
    seen: set[str] = set()
    for (demo, _), n in zip(usable, tokens, strict=True):
        if n > max_tokens:
            removed["too_long"] += 1
            continue
        norm = " ".join(words(demo.request))
        if norm in seen:
            removed["duplicate"] += 1
            continue
        seen.add(norm)
        out.append((demo, n))
    return out, len(ordered)


def build_contrast(
    cfg: CurateConfig,
    rows: Iterable[dict[str, Any]],
    *,
    base_rows: int,
    tests: SafetyTestIndex,
    eval_index: BenchmarkIndex | None,
    count_tokens: Callable[[Sequence[str]], list[int]],
    decon_log: Path,
) -> ContrastMix:
    """Filter and decontaminate the store's contrast ``rows`` and draw the share of all rows
    the config asks for (``base_rows``: kept traces + safety rows); each request removed by
    decontamination is written to ``decon_log`` with what it matched."""
    removed: Counter[str] = Counter()
    seen_in: dict[str, set[str]] = {"sources": set(), "teachers": set()}
    pool, n_read = _candidates(rows, count_tokens, cfg.max_tokens, removed, seen_in)
    tokens = {d.id: n for d, n in pool}
    clean, by_benchmark = drop_contaminated(
        [d for d, _ in pool], tests, eval_index, decon_log, removed
    )
    against = tests.against + (list(cfg.eval_benchmarks) if eval_index is not None else [])
    if n_read != len(clean) + sum(removed.values()):
        raise MedistillError(f"internal: contrast counts do not add up ({n_read}, {removed})")
    share = cfg.safety_mix_contrast_share
    target = target_rows(base_rows, share)
    chosen = stratified(clean, target, cfg.seed)
    if len(chosen) < target:
        log.warning(
            "contrast: %d demonstrations wanted (share %.3f beside %d rows), only %d available",
            target, share, base_rows, len(chosen),
        )  # fmt: skip
    n = len(chosen)
    stats = {
        "sources": sorted(seen_in["sources"]),
        "teachers": sorted(seen_in["teachers"]),
        "read": n_read,
        "removed": {r: removed.get(r, 0) for r in REMOVED},
        "removed_by_benchmark": dict(by_benchmark.most_common()),
        "decontaminated_against": against,
        "not_found": tests.not_found,
        "available": len(clean),
        "share_asked": share,
        "target_rows": target,
        "rows": n,
        "share": round(n / (base_rows + n), 4) if base_rows + n else None,
        "by_category": dict(sorted(Counter(category_label(d.category) for d in chosen).items())),
        "seed": cfg.seed,
        "system_prompt": "none",
        "tokens": sum(tokens[d.id] for d in chosen),
    }
    log.info(
        "contrast: %d benign demonstrations (share %s) from %d answers read; removed %s",
        n, stats["share"], n_read,
        ", ".join(f"{k} {v}" for k, v in removed.items() if v) or "none",
    )  # fmt: skip
    return ContrastMix(chosen, [tokens[d.id] for d in chosen], stats)


def records(mix: ContrastMix, cfg: CurateConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(split, row)`` of each contrast demonstration (:func:`~medistill.curate.safety_mix.
    open_row`, as the refusal rows); splits seeded by request id."""
    for d, ntok in zip(mix.demos, mix.tokens, strict=True):
        yield open_row(
            cfg, kind=KIND, id=d.id, user=d.request, assistant=d.response,
            source=d.source, teacher=d.teacher, category=d.category, tokens=ntok,
        )  # fmt: skip
