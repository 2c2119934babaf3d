"""Decontamination: find training questions that copy or paraphrase an evaluation benchmark
question, and name the benchmark and the question they match.

The default method (``retrieval``) combines three signals, each measured on a hand-written
calibration set (``tests/data/decontam_calibration``: 48 MedQA test questions, each with a light
paraphrase, a heavy rewrite and a same-topic hard negative; BENCHMARKS.md):

1. **n-gram overlap** (GPT-3, Llama): runs of ``ngram`` consecutive words (13, numbers masked)
   shared with one benchmark question, covering at least ``min_overlap`` of that question's
   grams; grams found in more than ``max_df`` benchmark questions are boilerplate and never
   count. Catches verbatim and lightly edited copies, with the shared grams as evidence.
2. **lexical retrieval**: TF-IDF cosine (scikit-learn's weighting: sublinear term frequency,
   smoothed idf, l2 norm) over hashed word unigrams and bigrams of the stems (numbers masked),
   one sparse matrix product per batch; the ``candidates`` most similar benchmark stems are
   examined. A person's or an LLM's rewrite keeps the rare words of a vignette (the findings,
   the drugs, the organ) while changing most word n-grams, so its original ranks first even
   at a cosine of 0.1-0.2; a copy scores >= ``copy_cosine``.
3. **answer agreement**: a rewrite of a test item keeps its correct answer; a question on the
   same topic, even with the very same option list, usually does not. A candidate is a match
   when the training question's answer (its gold, else the teacher's) names the same option
   text as the benchmark's gold and either the stems are similar (cosine >= ``answer_cosine``)
   or they share at least ``shared_options`` option texts from a distinctive option list
   (one used by at most ``max_df`` benchmark questions, so yes/no/maybe or "autosomal
   dominant / recessive..." never counts) at cosine >= ``options_cosine``. Both need stems of
   comparable length (within ``length_ratio``): a one-line fact question is not a rewrite of
   a vignette.

Without a known answer only (1) and the copy test of (2) apply, and rewrites are mostly missed:
the card says how many questions were checked that way. ``method="legacy"`` is the earlier rule
(1 plus MinHash near duplicates), kept for comparison.

The index and its three signals are one concept, so they stay in one module.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medistill.curate.config import DecontamConfig
from medistill.curate.text import (
    MinHasher,
    band_keys,
    batch_ngram_hashes,
    lsh_bands,
    ngram_hashes,
    question_text,
    whole_text_hash,
    word_hashes,
    words,
)
from medistill.data import Question, load_benchmark
from medistill.data.registry import BENCHMARKS
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

METHODS = ("retrieval", "legacy")
_DIM = 1 << 21  # hashed feature space of the TF-IDF vectors
_BIGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)
_COMMON_DF = 0.02  # share of the benchmark stems above which a feature is "common"
_APPROX_FLOOR = 0.5  # of the lowest rule cosine, for the candidates' approximate cosine
_SAME_ANSWER_OVERLAP = 0.75
_GENERIC_GOLD = 10  # an answer text that is the gold of more benchmark questions is generic
_VIGNETTE_WORDS = 30  # a stem at least this long identifies its item by itself

Options = Mapping[str, str] | Sequence[str]


@dataclass(frozen=True)
class Match:
    """Why a training question was removed: the benchmark, its question id, the method
    (``ngram``, ``copy``, ``paraphrase``; ``near_duplicate`` in the legacy rule), the score
    (share of grams, cosine or Jaccard) and the other evidence (cosine, shared options...)."""

    benchmark: str
    benchmark_id: str
    method: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The JSON form written to ``decontamination.jsonl``."""
        return {
            "benchmark": self.benchmark,
            "benchmark_id": self.benchmark_id,
            "method": self.method,
            "score": round(self.score, 4),
            **self.evidence,
        }


def load_eval_questions(specs: Sequence[str], mcq: dict[str, Any] | None = None) -> list[Question]:
    """Questions of every benchmark named: ``name`` (registry: ``$MEDISTILL_DATA_DIR`` or the
    Hub) or ``name=path`` (a local file in that benchmark's format). ``mcq`` (columns, holdout,
    holdout_seed) is how your own file (``mcq=path``) is read: with a holdout rule only its
    held-out questions, the ones evaluation reads."""
    out: list[Question] = []
    for spec in specs:
        name, _, path = spec.partition("=")
        name = name.strip()
        if name not in BENCHMARKS:
            raise MedistillError(
                f"unknown evaluation benchmark {name!r}; choose from: {', '.join(BENCHMARKS)}"
            )
        kwargs = dict(mcq or {}) if BENCHMARKS[name].needs_path else {}
        qs = load_benchmark(name, path.strip() or None, skip_invalid=True, **kwargs).questions
        for q in qs:
            q.source = name
        out.extend(qs)
        log.info("decontamination index: %d questions from %s", len(qs), name)
    return out


def _norm(text: str) -> str:
    return " ".join(words(text))


def _option_texts(options: Options | None) -> list[str]:
    values = options.values() if isinstance(options, Mapping) else (options or [])
    return [t for t in (_norm(str(v)) for v in values) if t]


def same_answer(a: str, b: str) -> bool:
    """Whether two option texts name the same answer: equal once normalised, or (two words or
    more each) sharing at least 3/4 of their words ("Reassurance and monitoring" vs
    "Reassurance and continuous monitoring").

    >>> same_answer("Autosomal dominant.", "autosomal dominant"), same_answer("Iron", "Zinc")
    (True, False)
    """
    a, b = _norm(a), _norm(b)
    return _same_normalised(a, frozenset(a.split()), b, frozenset(b.split()))


def _same_normalised(a: str, a_words: frozenset[str], b: str, b_words: frozenset[str]) -> bool:
    """:func:`same_answer` on texts already normalised and split (the index keeps both)."""
    if not a or not b:
        return False
    return a == b or _overlap(a_words, b_words) >= _SAME_ANSWER_OVERLAP


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """Word Jaccard of two answers of two words or more (0 otherwise: "Iron" vs "Iron
    deficiency" are different answers)."""
    if len(a) < 2 or len(b) < 2:
        return 0.0
    return len(a & b) / len(a | b)


_GENERIC_WORDS = frozenset(
    {"all", "none", "of", "the", "above", "both", "neither", "and", "or", "true", "false"}
    | {"a", "b", "c", "d", "e", "yes", "no", "maybe"}
)


def informative_answer(text: str) -> bool:
    """Whether an answer text can identify a question: not "All of the above", "Both A and
    B", "yes" or a bare number, which many unrelated questions share.

    >>> informative_answer("All of the above"), informative_answer("3"), informative_answer("Iron")
    (False, False, True)
    """
    return any(not w.isdigit() and w not in _GENERIC_WORDS for w in words(text))


def _features(wh: np.ndarray) -> np.ndarray:
    """Hashed word unigrams and bigrams of one text, in ``[0, _DIM)``."""
    bigrams = wh[:-1] * _BIGRAM_MULT + wh[1:] if len(wh) > 1 else wh[:0]
    return (np.concatenate([wh, bigrams]) % np.uint64(_DIM)).astype(np.int64)


def _counts(stems: Sequence[np.ndarray]) -> Any:
    """A sparse (texts x features) count matrix."""
    from scipy import sparse

    feats = [_features(wh) for wh in stems]
    rows = np.repeat(np.arange(len(feats)), [len(f) for f in feats])
    cols = np.concatenate(feats) if feats else np.zeros(0, np.int64)
    data = np.ones(len(cols), dtype=np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(feats), _DIM), dtype=np.float32)


class BenchmarkIndex:
    """An in-memory index of evaluation questions (a few thousand to tens of thousands)."""

    def __init__(
        self,
        questions: Sequence[Question],
        settings: DecontamConfig | None = None,
        *,
        min_words: int = 8,
        num_perm: int = 128,
        shingle: int = 3,
        **changes: Any,
    ) -> None:
        """``settings`` (``curate.decontam``; its defaults when ``None``), with ``changes``
        to single settings by name (``method="legacy"``)."""
        cfg = dataclasses.replace(settings or DecontamConfig(), **changes)
        method, ngram = cfg.method, cfg.ngram
        if ngram < 1:
            raise MedistillError("decontamination ngram must be at least 1")
        if method not in METHODS:
            raise MedistillError(
                f"unknown decontamination method {method!r}; choose from: {', '.join(METHODS)}"
            )
        self.method, self.ngram, self.max_df, self.min_words = method, ngram, cfg.max_df, min_words
        self.min_overlap, self.jaccard = cfg.min_overlap, cfg.jaccard
        self.candidates, self.copy_cosine = cfg.candidates, cfg.copy_cosine
        self.answer_cosine, self.options_cosine = cfg.answer_cosine, cfg.options_cosine
        self.shared_options, self.length_ratio = cfg.shared_options, cfg.length_ratio
        self.ids = [(q.source, q.id) for q in questions]
        stems_wh = [word_hashes(q.question) for q in questions]
        self._build_grams(stems_wh)
        if method == "legacy":
            self._build_minhash(questions, num_perm, shingle)
        else:
            self._build_retrieval(questions, stems_wh)
        log.info(
            "decontamination index (%s): %d questions, %d grams (%d boilerplate grams ignored)",
            method,
            len(questions),
            len(self.gram_owner),
            self.boilerplate,
        )

    def __len__(self) -> int:
        return len(self.ids)

    # -- 1. n-grams ------------------------------------------------------------------------
    def _build_grams(self, stems_wh: Sequence[np.ndarray]) -> None:
        # Grams are owned by distinct stems, not entries: a benchmark listed twice (medqa and
        # medqa5 share their stems) must not turn every one of its grams into boilerplate.
        owners: dict[int, set[int]] = defaultdict(set)
        stems: dict[bytes, int] = {}
        self.first: list[int] = []  # stem number -> index of the first question with it
        for i, wh in enumerate(stems_wh):
            t = stems.setdefault(wh.tobytes(), len(stems))
            if t < len(self.first):
                continue
            self.first.append(i)
            for g in self._grams(wh):
                owners[int(g)].add(t)
        self.boilerplate = sum(1 for v in owners.values() if len(v) > self.max_df)
        self.gram_owner = {g: tuple(v) for g, v in owners.items() if len(v) <= self.max_df}
        self.gram_array = np.array(sorted(self.gram_owner), dtype=np.uint64)
        self.gram_total = np.zeros(len(self.first), dtype=np.int64)
        for v in self.gram_owner.values():
            for i in v:
                self.gram_total[i] += 1

    def _grams(self, wh: np.ndarray) -> np.ndarray:
        if len(wh) >= self.ngram:
            return ngram_hashes(wh, self.ngram)
        if len(wh) >= self.min_words:
            return np.array([whole_text_hash(wh)], dtype=np.uint64)
        return np.empty(0, dtype=np.uint64)

    def _ngram_matches(self, stems: Sequence[np.ndarray], out: list[Match | None]) -> None:
        long = batch_ngram_hashes(stems, self.ngram)
        grams = [
            g if len(wh) >= self.ngram else self._grams(wh)
            for g, wh in zip(long, stems, strict=True)
        ]
        if not grams or not len(self.gram_array):
            return
        flat = np.concatenate(grams)  # one sorted lookup for the whole batch
        at = np.searchsorted(self.gram_array, flat)
        at[at == len(self.gram_array)] = 0
        hit = self.gram_array[at] == flat
        pos = 0
        for i, g in enumerate(grams):
            h = hit[pos : pos + len(g)]
            pos += len(g)
            if not h.any():
                continue
            counts: dict[int, int] = defaultdict(int)
            for x in np.unique(g[h]):
                for owner in self.gram_owner[int(x)]:
                    counts[owner] += 1
            cover = {o: n / self.gram_total[o] for o, n in counts.items()}
            owner = max(cover, key=lambda o: (cover[o], -o))
            if cover[owner] >= self.min_overlap:
                out[i] = Match(*self.ids[self.first[owner]], "ngram", float(cover[owner]))

    # -- 2 and 3. retrieval with answer agreement --------------------------------------------
    def _build_retrieval(self, questions: Sequence[Question], stems_wh: list[np.ndarray]) -> None:
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfTransformer

        counts = _counts(stems_wh)
        self.tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
        self.bench_rows = self.tfidf.transform(counts).astype(np.float32).tocsr()
        # Candidates come from a product without the words and bigrams found in more than
        # _COMMON_DF of the stems ("patient", "of the"): they weigh little but link every
        # question to every other, which makes the product dense and slow. The candidates'
        # cosines are then computed exactly, on every feature.
        df = np.diff(self.bench_rows.tocsc().indptr)
        keep = (df <= max(self.max_df, _COMMON_DF * len(questions))).astype(np.float32)
        pruned = (self.bench_rows @ sparse.diags(keep)).tocsr()
        pruned.eliminate_zeros()
        self.bench_t = pruned.T.tocsr()
        self.stem_len = np.array([max(len(wh), 1) for wh in stems_wh])
        answers = [
            _norm(q.options.get(q.gold, "")) if q.gold and isinstance(q.options, dict) else ""
            for q in questions
        ]
        # An answer that is the gold of many benchmark questions does not single one out.
        golds = Counter(answers)
        self.answers = [
            a if informative_answer(a) and golds[a] <= _GENERIC_GOLD else "" for a in answers
        ]
        self.answer_words = [frozenset(a.split()) for a in self.answers]
        self.option_sets = [frozenset(_option_texts(q.options)) for q in questions]
        uses = Counter(self.option_sets)
        self.distinctive = [len(o) > 0 and uses[o] <= self.max_df for o in self.option_sets]

    def _retrieval_matches(
        self,
        stems: Sequence[np.ndarray],
        questions: Sequence[tuple[str, Options, str | None]],
        out: list[Match | None],
    ) -> None:
        rest = [i for i, m in enumerate(out) if m is None]
        k = min(self.candidates, len(self.ids))
        if not rest or not k:
            return
        vecs = self.tfidf.transform(_counts([stems[i] for i in rest])).astype(np.float32).tocsr()
        approx = (vecs @ self.bench_t).tocsr()
        # Candidates: per row, the k highest approximate cosines above _APPROX_FLOOR (a
        # fraction of the rules' lowest cosine: the common words left out can only add).
        row_of = np.repeat(np.arange(len(rest)), np.diff(approx.indptr))
        keep = approx.data >= _APPROX_FLOOR * min(self.options_cosine, self.answer_cosine)
        r, c, v = row_of[keep], approx.indices[keep], approx.data[keep]
        sort = np.lexsort((-v, r))
        r, c = r[sort], c[sort]
        first = np.searchsorted(r, np.arange(len(rest)))
        rank = np.arange(len(r)) - first[r]
        r, c = r[rank < k], c[rank < k]
        # exact cosines of the candidates, in one sparse product
        exact = np.asarray(vecs[r].multiply(self.bench_rows[c]).sum(axis=1)).ravel()
        sort = np.lexsort((-exact, r))
        r, c, exact = r[sort], c[sort], exact[sort]
        bounds = np.searchsorted(r, np.arange(len(rest) + 1))
        for row, i in enumerate(rest):
            lo, hi = bounds[row], bounds[row + 1]
            if lo < hi:
                out[i] = self._judge(stems[i], questions[i], c[lo:hi], exact[lo:hi])

    def _judge(
        self,
        stem: np.ndarray,
        question: tuple[str, Options, str | None],
        cands: np.ndarray,
        cosines: np.ndarray,
    ) -> Match | None:
        """The first candidate (most similar first) that a rule accepts."""
        _, options, letter = question
        floor = min(self.options_cosine, self.answer_cosine)
        if not len(cosines) or cosines[0] < floor:
            return None
        answer = ""
        if letter and isinstance(options, Mapping):
            answer = _norm(str(options.get(letter, "")))
        answer_words = frozenset(answer.split())
        opts: list[str] | None = None
        n = max(len(stem), 1)
        for j, cos in zip(cands.tolist(), cosines.tolist(), strict=True):
            if cos < floor:
                return None  # every later candidate is less similar
            theirs = self.answers[j]
            agrees = _same_normalised(answer, answer_words, theirs, self.answer_words[j])
            if not agrees and cos < self.copy_cosine:
                continue
            if opts is None:
                opts = _option_texts(options)
            shared = len(self.option_sets[j].intersection(opts))
            evidence = {"cosine": round(cos, 4), "same_answer": agrees, "shared_options": shared}
            if cos >= self.copy_cosine and (
                # a vignette is the item; a short stem ("Which of the following is true?") is
                # the same item only with the same options or answer
                min(n, self.stem_len[j]) >= _VIGNETTE_WORDS
                or agrees
                or not opts
                or not self.option_sets[j]
                or 2 * shared >= min(len(opts), len(self.option_sets[j]))
            ):
                return Match(*self.ids[j], "copy", cos, evidence)
            if not agrees:
                continue
            if max(n, self.stem_len[j]) / min(n, self.stem_len[j]) > self.length_ratio:
                continue
            by_options = (
                self.distinctive[j] and shared >= self.shared_options and cos >= self.options_cosine
            )
            if cos >= self.answer_cosine or by_options:
                return Match(*self.ids[j], "paraphrase", cos, evidence)
        return None

    # -- legacy near duplicates ----------------------------------------------------------------
    def _build_minhash(self, questions: Sequence[Question], num_perm: int, shingle: int) -> None:
        self.hasher = MinHasher(num_perm=num_perm, shingle=shingle)
        self.bands = lsh_bands(num_perm, self.jaccard)
        self.sigs = self.hasher.signatures(
            [word_hashes(question_text(q.question, q.options)) for q in questions]
        )
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, keys in enumerate(band_keys(self.sigs, self.bands)):
            for b, k in enumerate(keys):
                self.buckets[(b, int(k))].append(i)

    def _minhash_matches(
        self,
        stems: Sequence[np.ndarray],
        questions: Sequence[tuple[str, Options, str | None]],
        out: list[Match | None],
    ) -> None:
        rest = [i for i, m in enumerate(out) if m is None]
        if not rest:
            return
        # question_text(q, o) is the stem followed by the sorted options: reuse the stem.
        full = [
            np.concatenate([stems[i], word_hashes(question_text("", questions[i][1]))])
            for i in rest
        ]
        sigs = self.hasher.signatures(full)
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

    # -- public --------------------------------------------------------------------------------
    def check_many(self, questions: Sequence[tuple]) -> list[Match | None]:
        """The benchmark match of each ``(question, options[, answer letter])``, or ``None``.

        The answer (the training question's gold, else its teacher's letter) enables the
        paraphrase rule; without it a question is checked for copies only.
        """
        qs = [(q[0], q[1], q[2] if len(q) > 2 else None) for q in questions]
        stems = [word_hashes(q) for q, _, _ in qs]
        out: list[Match | None] = [None] * len(qs)
        self._ngram_matches(stems, out)
        if self.method == "legacy":
            self._minhash_matches(stems, qs, out)
        else:
            self._retrieval_matches(stems, qs, out)
        return out

    def check(self, question: str, options: Options, answer: str | None = None) -> Match | None:
        """The benchmark match of one question, or ``None``."""
        return self.check_many([(question, options, answer)])[0]
