"""Text fingerprints shared by deduplication and decontamination.

Words are lower-cased alphanumeric runs (punctuation, markdown and spacing never make two
questions differ). Each word gets a stable 32-bit hash (CRC-32, identical on every machine and
run), and everything else is vectorised with numpy over whole batches of questions:

- word n-gram hashes (the 13-gram overlap test of GPT-3 / Llama decontamination),
- MinHash signatures over word shingles (Broder), banded for LSH candidate search.

Everything here is a pure function of the text: the same question gets the same fingerprint
in the benchmark index, in the training set and in a later run.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
_MASK32 = np.uint64(0xFFFFFFFF)
# Odd 64-bit multipliers for combining word hashes into n-gram hashes (wrapping arithmetic).
_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words: the unit of every fingerprint."""
    return _WORD.findall(text.lower())


def question_text(question: str, options: Mapping[str, str] | Sequence[str] | None) -> str:
    """A question with its options in a canonical (sorted) order, so that shuffling the
    options does not change its fingerprint."""
    opts = list(options.values()) if isinstance(options, Mapping) else list(options or [])
    return question + "\n" + "\n".join(sorted(" ".join(words(o)) for o in opts))


def exact_hash(question: str, options: Mapping[str, str] | Sequence[str] | None) -> str:
    """Hash of the normalised question and its (sorted) options: equal for exact copies
    that differ only in case, punctuation, spacing or option order."""
    blob = " ".join(words(question_text(question, options)))
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=12).hexdigest()


_NUMBER = zlib.crc32(b"0")
_RAW: dict[str, int] = {}
_MASKED: dict[str, int] = {}
_CACHE_MAX = 1 << 20  # words; ~100 MB at most, cleared when full


def word_hashes(text: str, *, mask_numbers: bool = True) -> np.ndarray:
    """Stable uint64 hashes (CRC-32 values) of the words of ``text``.

    With ``mask_numbers`` every all-digit word hashes alike: vitals and lab lines ("pulse is
    90/min, respirations are 17/min") become one template, which the boilerplate rule then
    ignores, and a copy with changed ages or values still matches its original.
    """
    cache = _MASKED if mask_numbers else _RAW
    ws = words(text)
    try:
        return np.array([cache[w] for w in ws], dtype=np.uint64)
    except KeyError:
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for w in ws:
            if w not in cache:
                cache[w] = _NUMBER if mask_numbers and w.isdigit() else zlib.crc32(w.encode())
        return np.array([cache[w] for w in ws], dtype=np.uint64)


def ngram_hashes(wh: np.ndarray, n: int) -> np.ndarray:
    """Hashes of every run of ``n`` consecutive words (empty if the text is shorter).

    A polynomial combination with wrapping uint64 arithmetic: order-sensitive, collisions
    between distinct n-grams are ~2^-64.
    """
    if len(wh) < n:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(len(wh) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _NGRAM_MULT + wh[j : len(wh) - n + 1 + j] + np.uint64(j + 1)
    return h


def batch_ngram_hashes(texts: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """:func:`ngram_hashes` of many texts at once: one rolling hash over their concatenation,
    then the windows that lie inside one text (the same values, without a loop per text)."""
    lens = np.array([len(w) for w in texts], dtype=np.int64)
    out = [np.empty(0, dtype=np.uint64)] * len(texts)
    total = int(lens.sum())
    if total < n:
        return out
    flat = np.concatenate(texts).astype(np.uint64)
    h = np.zeros(total - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _NGRAM_MULT + flat[j : total - n + 1 + j] + np.uint64(j + 1)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    for i in np.nonzero(lens >= n)[0]:
        out[i] = h[starts[i] : starts[i] + lens[i] - n + 1]
    return out


def whole_text_hash(wh: np.ndarray) -> np.uint64:
    """One hash for a text too short to have an n-gram: all its words as one gram."""
    return ngram_hashes(wh, len(wh))[0] if len(wh) else np.uint64(0)


class MinHasher:
    """MinHash signatures over word shingles, computed for many texts at once.

    ``num_perm`` multiply-shift hash functions ``((a*x + b) mod 2^64) >> 32`` (Dietzfelbinger;
    ``a`` odd) with a fixed seed: the same text has the same signature in every process.
    The fraction of equal signature entries estimates the Jaccard similarity of two shingle sets.
    """

    def __init__(self, num_perm: int = 128, shingle: int = 3, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.shingle = shingle
        # Wrapping uint64 arithmetic; the high 32 bits are the hash (no modulus: fast).
        self.a = rng.integers(0, 1 << 63, size=(num_perm, 1), dtype=np.uint64) * np.uint64(2)
        self.a += np.uint64(1)
        self.b = rng.integers(0, 1 << 63, size=(num_perm, 1), dtype=np.uint64)

    def shingles(self, wh: np.ndarray) -> np.ndarray:
        """32-bit hashes of the word shingles of one text (the text itself if shorter)."""
        k = min(self.shingle, len(wh)) or 1
        if len(wh) == 0:
            return np.zeros(1, dtype=np.uint64)
        return ngram_hashes(wh, k) & _MASK32  # repeats do not change a minimum

    def signatures(self, texts: Sequence[np.ndarray]) -> np.ndarray:
        """Signatures (``len(texts) x num_perm`` uint32) of word-hash arrays, one per text."""
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        if not texts:
            return out
        sh = [self.shingles(wh) for wh in texts]
        starts = np.cumsum([0] + [len(s) for s in sh[:-1]])
        flat = np.concatenate(sh)
        # Chunk so the (num_perm x shingles) matrices stay small (8 MB each).
        chunk = max(1, (1 << 20) // self.num_perm)
        i = 0
        while i < len(sh):
            j = i
            total = 0
            while j < len(sh) and (total == 0 or total + len(sh[j]) <= chunk):
                total += len(sh[j])
                j += 1
            lo, hi = starts[i], starts[i] + total
            with np.errstate(over="ignore"):
                vals = (self.a * flat[lo:hi] + self.b) >> np.uint64(32)
            out[i:j] = np.minimum.reduceat(vals, starts[i:j] - lo, axis=1).T.astype(np.uint32)
            i = j
        return out


def band_keys(sig: np.ndarray, bands: int) -> np.ndarray:
    """LSH band keys (``rows x bands`` int64): two texts are candidates when any band's
    key is equal. ``num_perm`` must be a multiple of ``bands``."""
    n, p = sig.shape
    r = p // bands
    if r * bands != p:
        raise ValueError(f"num_perm {p} is not a multiple of bands {bands}")
    view = np.ascontiguousarray(sig[:, : r * bands]).reshape(n, bands, r).astype(np.uint64)
    h = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(r):
            h = h * _NGRAM_MULT + view[:, :, j] + np.uint64(j + 1)
    return (h >> np.uint64(1)).astype(np.int64)  # SQLite integers are signed 64-bit


def lsh_bands(num_perm: int, threshold: float) -> int:
    """The number of bands whose S-curve ``1-(1-t^r)^b`` passes 0.5 near ``threshold``:
    chosen among the divisors of ``num_perm``, erring towards recall."""
    best, best_err = 1, 9.0
    for b in range(1, num_perm + 1):
        if num_perm % b:
            continue
        r = num_perm // b
        mid = (1 - 0.5 ** (1 / b)) ** (1 / r)  # similarity at which P(candidate) = 0.5
        err = abs(mid - threshold * 0.85)  # centre below the threshold: favour recall
        if err < best_err:
            best, best_err = b, err
    return best


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity from two MinHash signatures."""
    return float(np.mean(a == b))
