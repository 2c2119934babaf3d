"""The one question schema every stage reads and writes."""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass, field
from typing import Any

LETTERS = string.ascii_uppercase

#: The curated dataset's format, the contract between curation (which writes it) and training
#: (which reads it): rows carry the question's options and gold, so a reward scores a completion
#: as evaluation does; version 3 rows may carry a ``rubric``.
DATASET_FORMAT_VERSION = 3
#: The curated dataset's splits.
DATASET_SPLITS = ("train", "validation")


@dataclass
class Question:
    """One multiple-choice question.

    Attributes:
        id: unique within its benchmark/file (used to resume runs and to join saved outputs).
        source: benchmark or dataset name, e.g. ``medqa`` or ``sample``.
        split: ``test``, ``dev``, ``train``...
        question: the stem (for PubMedQA, the context followed by the question).
        options: ordered mapping letter -> option text (``A``, ``B``, ... contiguous).
        gold: the correct letter, or ``None`` when the source has no answer key.
        subject: subject or exam step, used for breakdowns (``step1``, ``Anatomy``...).
        meta: anything else the source carries (explanation, topic, original index...).
    """

    id: str
    source: str
    split: str
    question: str
    options: dict[str, str]
    gold: str | None = None
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def letters(self) -> list[str]:
        """The option letters in order (``['A', 'B', 'C', 'D']``)."""
        return list(self.options)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the on-disk form used by every stage)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Question:
        """Inverse of :meth:`to_dict` (no validation: use the loaders for untrusted input)."""
        return cls(
            id=str(d["id"]),
            source=d.get("source", ""),
            split=d.get("split", ""),
            question=d["question"],
            options=dict(d["options"]),
            gold=d.get("gold"),
            subject=d.get("subject"),
            meta=dict(d.get("meta") or {}),
        )
