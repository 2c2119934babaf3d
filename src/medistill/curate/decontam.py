"""Decontamination: find training questions that copy or lightly paraphrase an evaluation
benchmark question, and name the benchmark and the question they match.

Two independent tests, either one flags a question:

1. **n-gram overlap** (GPT-3, Llama): runs of ``ngram`` consecutive words (13 by default,
   numbers masked) shared with one benchmark question, covering at least ``min_overlap`` of
   that question's grams. A benchmark stem shorter than ``ngram`` words counts as one gram of
   its own length (texts under ``min_words`` are ignored). Grams found in more than ``max_df``
   distinct benchmark questions are boilerplate ("which of the following is the most likely
   cause of this patient's ...") and never count. The coverage floor is what separates a copy
   (100%) or a paraphrase (most grams) from two vignettes that share one vitals sentence
   ("oxygen saturation is 98% on room air. Physical exam is notable for a": 1-3 grams of ~150,
   which "any shared 13-gram" would flag) or a lab panel in the same order (~12%). A copy
   reworded beyond the floor is still caught by test 2.
2. **near duplicate**: MinHash-estimated Jaccard similarity of word shingles of the question
   plus its (sorted) options at or above ``jaccard``; candidates come from LSH banding, and
   every candidate is checked against its signature. Catches changed ages and units,
   reordered clauses and shuffled options that break every 13-gram.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medistill.curate.text import (
    MinHasher,
    band_keys,
    lsh_bands,
    ngram_hashes,
    question_text,
    whole_text_hash,
    word_hashes,
)
from medistill.data import Question, load_benchmark
from medistill.data.registry import BENCHMARKS
from medistill.errors import MedistillError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    """Why a training question was removed: the benchmark, its question id, the method
    (``ngram`` or ``near_duplicate``) and the evidence (grams shared, or the similarity)."""

    benchmark: str
    benchmark_id: str
    method: str
    score: float

    def to_dict(self) -> dict[str, object]:
        """The JSON form written to ``decontamination.jsonl``."""
        return {
            "benchmark": self.benchmark,
            "benchmark_id": self.benchmark_id,
            "method": self.method,
            "score": round(self.score, 4),
        }


def load_eval_questions(specs: Sequence[str]) -> list[Question]:
    """Questions of every benchmark named: ``name`` (registry: ``$MEDISTILL_DATA_DIR`` or the
    Hub) or ``name=path`` (a local file in that benchmark's format)."""
    out: list[Question] = []
    for spec in specs:
        name, _, path = spec.partition("=")
        name = name.strip()
        if name not in BENCHMARKS:
            raise MedistillError(
                f"unknown evaluation benchmark {name!r}; choose from: {', '.join(BENCHMARKS)}"
            )
        qs = load_benchmark(name, path.strip() or None, skip_invalid=True).questions
        for q in qs:
            q.source = name
        out.extend(qs)
        log.info("decontamination index: %d questions from %s", len(qs), name)
    return out


class BenchmarkIndex:
    """An in-memory index of evaluation questions (a few thousand to tens of thousands)."""

    def __init__(
        self,
        questions: Sequence[Question],
        *,
        ngram: int = 13,
        max_df: int = 3,
        min_overlap: float = 0.2,
        min_words: int = 8,
        jaccard: float = 0.5,
        num_perm: int = 128,
        shingle: int = 3,
    ) -> None:
        if ngram < 1:
            raise MedistillError("decontamination ngram must be at least 1")
        self.ngram, self.max_df, self.min_words, self.jaccard = ngram, max_df, min_words, jaccard
        self.min_overlap = min_overlap
        self.ids = [(q.source, q.id) for q in questions]
        self.hasher = MinHasher(num_perm=num_perm, shingle=shingle)
        self.bands = lsh_bands(num_perm, jaccard)
        # Grams are owned by distinct stems, not entries: a benchmark listed twice (medqa and
        # medqa5 share their stems) must not turn every one of its grams into boilerplate.
        owners: dict[int, set[int]] = defaultdict(set)
        stems: dict[bytes, int] = {}
        self.first: list[int] = []  # stem number -> index of the first question with it
        for i, q in enumerate(questions):
            wh = word_hashes(q.question)
            t = stems.setdefault(wh.tobytes(), len(stems))
            if t < len(self.first):
                continue
            self.first.append(i)
            for g in self._grams(wh):
                owners[int(g)].add(t)
        self.boilerplate = sum(1 for v in owners.values() if len(v) > max_df)
        self.gram_owner = {g: tuple(v) for g, v in owners.items() if len(v) <= max_df}
        self.gram_array = np.array(sorted(self.gram_owner), dtype=np.uint64)
        self.gram_total = np.zeros(len(self.first), dtype=np.int64)
        for v in self.gram_owner.values():
            for i in v:
                self.gram_total[i] += 1
        self.sigs = self.hasher.signatures(
            [word_hashes(question_text(q.question, q.options)) for q in questions]
        )
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, keys in enumerate(band_keys(self.sigs, self.bands)):
            for b, k in enumerate(keys):
                self.buckets[(b, int(k))].append(i)
        log.info(
            "decontamination index: %d questions, %d grams (%d boilerplate grams ignored)",
            len(questions),
            len(self.gram_owner),
            self.boilerplate,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def _grams(self, wh: np.ndarray) -> np.ndarray:
        if len(wh) >= self.ngram:
            return ngram_hashes(wh, self.ngram)
        if len(wh) >= self.min_words:
            return np.array([whole_text_hash(wh)], dtype=np.uint64)
        return np.empty(0, dtype=np.uint64)

    def check_many(
        self, questions: Sequence[tuple[str, dict[str, str] | list[str]]]
    ) -> list[Match | None]:
        """The first benchmark match of each ``(question, options)``, or ``None``."""
        stems = [word_hashes(q) for q, _ in questions]
        # question_text(q, o) is the stem followed by the sorted options: reuse the stem.
        full = [
            np.concatenate([s, word_hashes(question_text("", o))])
            for s, (_, o) in zip(stems, questions, strict=True)
        ]
        out: list[Match | None] = [None] * len(questions)
        # 1. n-grams: one vectorised membership test over the whole batch.
        grams = [self._grams(wh) for wh in stems]
        if grams and len(self.gram_array):
            flat = np.concatenate(grams)
            hit = np.isin(flat, self.gram_array)
            pos = 0
            for i, g in enumerate(grams):
                h = hit[pos : pos + len(g)]
                pos += len(g)
                if h.any():
                    counts: dict[int, int] = defaultdict(int)
                    for x in np.unique(g[h]):
                        for owner in self.gram_owner[int(x)]:
                            counts[owner] += 1
                    cover = {o: n / self.gram_total[o] for o, n in counts.items()}
                    owner = max(cover, key=lambda o: (cover[o], -o))
                    if cover[owner] >= self.min_overlap:
                        first = self.first[owner]
                        out[i] = Match(*self.ids[first], "ngram", float(cover[owner]))
        # 2. near duplicates among the rest.
        rest = [i for i, m in enumerate(out) if m is None]
        if rest:
            sigs = self.hasher.signatures([full[i] for i in rest])
            keys = band_keys(sigs, self.bands)
            for row, i in enumerate(rest):
                cands: set[int] = set()
                for b, k in enumerate(keys[row]):
                    cands.update(self.buckets.get((b, int(k)), ()))
                if not cands:
                    continue
                c = np.fromiter(cands, dtype=np.int64)
                sims = (self.sigs[c] == sigs[row]).mean(axis=1)
                best = int(np.argmax(sims))
                if sims[best] >= self.jaccard:
                    out[i] = Match(*self.ids[c[best]], "near_duplicate", float(sims[best]))
        return out

    def check(self, question: str, options: dict[str, str] | list[str]) -> Match | None:
        """The benchmark match of one question, or ``None``."""
        return self.check_many([(question, options)])[0]
