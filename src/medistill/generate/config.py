"""What ``medistill generate`` reads: the teacher, the questions' sources, the sampling.

:class:`GenerateConfig` is also the ``generate:`` section of a recipe; recipe keys and
command-line options are derived from its fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medistill.backends.config import TeacherConfig
from medistill.data import get_spec
from medistill.data.mcq_options import (
    COLUMNS_HELP,
    HOLDOUT_HELP,
    HOLDOUT_SEED_HELP,
    check_options,
    mcq_kwargs,
)
from medistill.data.registry import needs_path_message
from medistill.data.safety import load_safety
from medistill.data.sampling import STRATA
from medistill.errors import MedistillError


@dataclass
class SampleConfig:
    """A seeded sample of a source's questions (``sample: {n: 10000, stratify: subject}``)."""

    n: int = field(metadata={"help": "questions to draw (exactly; more than read is an error)"})
    seed: int = field(default=0, metadata={"help": "sampling seed: same seed, same questions"})
    stratify: str | None = field(
        default=None,
        metadata={
            "help": "subject: allocate n across subjects in proportion (largest remainder, "
            "at least one each where n allows); none: a plain random sample"
        },
    )

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.stratify is not None and self.stratify not in STRATA:
            raise ValueError(
                f"stratify {self.stratify!r}: choose one of {', '.join(STRATA)} (or leave it out)"
            )


@dataclass
class SourceConfig:
    """One benchmark's questions for the teacher: which split, from where, how many."""

    benchmark: str = field(
        metadata={"help": "registered benchmark, e.g. medqa or medmcqa (mcq: your own file)"}
    )
    split: str | None = field(default=None, metadata={"help": "split, e.g. train"})
    path: str | None = field(default=None, metadata={"help": "that split's local file"})
    limit: int | None = field(default=None, metadata={"help": "first N questions read"})
    sample: SampleConfig | None = field(
        default=None, metadata={"help": "a seeded sample of the questions read (after limit)"}
    )
    columns: dict[str, Any] | None = field(default=None, metadata={"help": COLUMNS_HELP})
    holdout: float | None = field(default=None, metadata={"help": HOLDOUT_HELP})
    holdout_seed: int = field(default=0, metadata={"help": HOLDOUT_SEED_HELP})

    def __post_init__(self) -> None:
        try:
            spec = get_spec(self.benchmark)
        except MedistillError as e:
            raise ValueError(str(e)) from None
        if spec.needs_path and not self.path:
            raise ValueError(needs_path_message(self.benchmark, "path"))
        self.split = mcq_split(
            spec.needs_path, self.split, self.columns, self.holdout, self.holdout_seed
        )

    def loader_options(self) -> dict[str, Any]:
        """What the loader reads besides the path: the split, and your own file's
        ``columns`` and holdout rule where set."""
        out = mcq_kwargs(self.columns, self.holdout, self.holdout_seed)
        return {**out, "split": self.split} if self.split else out

    def label(self) -> str:
        """``medmcqa train`` (the benchmark's own split when none is named)."""
        return f"{self.benchmark} {self.split or get_spec(self.benchmark).split}"


def mcq_split(
    own_file: bool, split: str | None, columns: Any, holdout: float | None, seed: int
) -> str | None:
    """The split a source reads. Your own file (``own_file``) with a holdout rule reads its
    train part (the teacher never sees the held-out questions: split test is refused);
    ``columns`` or a holdout rule for another benchmark is refused."""
    given = mcq_kwargs(columns, holdout, seed)
    if given and not own_file:
        raise ValueError(f"{next(iter(given))} is for benchmark mcq (your own file); remove it")
    if not given:
        return split
    try:
        check_options(columns, holdout, seed, where="mcq")
    except MedistillError as e:
        raise ValueError(str(e).removeprefix("mcq: ")) from None
    if holdout is None:
        return split
    if split not in (None, "train"):
        raise ValueError(
            f"split {split!r} with holdout {holdout}: the teacher reads the train part of your "
            "file (the held-out questions are for evaluation); remove split"
        )
    return "train"


#: The single-source keys ``sources`` replaces (a recipe gives one or the other).
SINGLE_SOURCE_KEYS = ("benchmark", "split", "path", "limit", "columns", "holdout")
#: Open-request sets (:mod:`medistill.data.safety`) whose ``train`` split the teacher may answer
#: as contrast calls: benign requests a safe model must answer (their ``test`` split is an
#: evaluation set and is never generated from).
CONTRAST_SETS = ("benign_clinical",)
#: The split of a contrast set that is answered.
CONTRAST_SPLIT = "train"


@dataclass
class GenerateConfig:
    """Everything ``medistill generate`` needs (also the ``generate:`` section of a recipe)."""

    teacher: TeacherConfig = field(
        metadata={"help": "who writes the traces", "from_string": TeacherConfig.spec_values}
    )
    benchmark: str | None = field(
        default=None,
        metadata={
            "help": "registered benchmark, one source (none: the embedded sample; several: a "
            "recipe's sources)"
        },
    )
    path: str | None = field(default=None, metadata={"help": "local questions file"})
    split: str | None = field(
        default=None,
        metadata={"help": "split to load/label, e.g. train; none: the benchmark's"},
    )
    limit: int | None = field(default=None, metadata={"help": "first N questions"})
    columns: dict[str, Any] | None = field(default=None, metadata={"help": COLUMNS_HELP})
    holdout: float | None = field(default=None, metadata={"help": HOLDOUT_HELP})
    holdout_seed: int = field(default=0, metadata={"help": HOLDOUT_SEED_HELP})
    sources: list[SourceConfig] | None = field(
        default=None,
        metadata={
            "help": "several benchmarks into one store (recipe only): a list of {benchmark, "
            "split, path, limit, sample: {n, seed, stratify}, columns, holdout, holdout_seed}; "
            "replaces benchmark/split/path/limit/columns/holdout"
        },
    )
    skip_invalid: bool = field(
        default=False, metadata={"help": "skip bad question rows (counted) instead of failing"}
    )
    samples: int = field(default=1, metadata={"help": "traces per question (k)"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling: top-p mass"})
    max_tokens: int = field(default=4096, metadata={"help": "completion token budget"})
    seed: int = field(default=0, metadata={"help": "base seed; sample i uses seed + i"})
    shuffle_options: bool = field(default=False, metadata={"help": "shuffle options per sample"})
    template: str = field(default="cot", metadata={"help": "prompt template name or YAML"})
    out: str = field(default="runs/traces.db", metadata={"help": "SQLite trace store"})
    max_requests: int | None = field(default=None, metadata={"help": "stop after N new calls"})
    max_cost: float | None = field(default=None, metadata={"help": "stop at this est. cost"})
    retry_truncated: bool = field(
        default=False, metadata={"help": "retry a cut-off call once with twice the budget"}
    )
    rationalize: bool = field(
        default=False,
        metadata={
            "help": "STaR rationalisation: show the teacher the correct answer (and the "
            "question's reference explanation) and ask for the reasoning that reaches it; the "
            "student's prompt never contains it, and curation's leaked_gold filter drops traces "
            "that cite the key"
        },
    )
    contrast: str | None = field(
        default=None,
        metadata={
            "help": "also ask the teacher to answer this open-request set's train split "
            f"({', '.join(CONTRAST_SETS)}): each request the only user turn, no system prompt, "
            "no exam template; stored with source contrast:<set> for curate's "
            "safety_mix_contrast_share (benign contrast demonstrations); none = off"
        },
    )
    contrast_samples: int = field(
        default=1, metadata={"help": "answers per contrast request (sample i uses seed + i)"}
    )

    def __post_init__(self) -> None:
        self._check_contrast()
        if self.sources is None:
            self.resolved_sources()  # the single source's checks (mcq's columns, holdout)
            return
        given = [k for k in SINGLE_SOURCE_KEYS if getattr(self, k) is not None]
        if given:
            raise ValueError(
                f"sources and {given[0]} are both set: with sources, give each source's "
                f"{'/'.join(SINGLE_SOURCE_KEYS)} inside its entry"
            )
        if not self.sources:
            raise ValueError("sources is empty: list at least one {benchmark: ...}")
        first: dict[str, int] = {}
        for i, src in enumerate(self.sources):
            if src.benchmark in first:
                raise ValueError(
                    f"sources[{first[src.benchmark]}] and sources[{i}] both read "
                    f"{src.benchmark}: one source per benchmark (a store tells questions apart "
                    "by benchmark and id)"
                )
            first[src.benchmark] = i

    def _check_contrast(self) -> None:
        if isinstance(self.contrast, str) and self.contrast.strip().lower() in ("", "none", "null"):
            self.contrast = None  # "--contrast none"
        if self.contrast is not None and self.contrast not in CONTRAST_SETS:
            raise ValueError(
                f"contrast {self.contrast!r}: unknown open-request set; choose "
                f"{', '.join(CONTRAST_SETS)} (or none)"
            )
        n = self.contrast_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"contrast_samples must be at least 1, got {n!r}")

    def contrast_calls(self) -> int:
        """Teacher calls the contrast set asks for: its train requests x ``contrast_samples``
        (0 when ``contrast`` is off). Reads the set (embedded: instant)."""
        if self.contrast is None:
            return 0
        return len(load_safety(self.contrast, split=CONTRAST_SPLIT)) * self.contrast_samples

    def resolved_sources(self) -> list[SourceConfig]:
        """The sources to read: ``sources``, or the single one ``benchmark``/``split``/``path``/
        ``limit`` name (the embedded sample when nothing is named)."""
        if self.sources is not None:
            return list(self.sources)
        return [
            SourceConfig(
                self.benchmark or "sample",
                self.split,
                self.path,
                self.limit,
                columns=self.columns,
                holdout=self.holdout,
                holdout_seed=self.holdout_seed,
            )
        ]


__all__ = [
    "CONTRAST_SETS",
    "CONTRAST_SPLIT",
    "SINGLE_SOURCE_KEYS",
    "GenerateConfig",
    "SampleConfig",
    "SourceConfig",
]
