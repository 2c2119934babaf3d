"""The ``curate:`` configuration: every knob of stage 2 with its default and its reason."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from medistill.data.mcq_options import check_options
from medistill.data.registry import MCQ_KEYS
from medistill.data.safety import SPLITS as SAFETY_SPLITS
from medistill.errors import MedistillError

DEFAULT_EVAL_BENCHMARKS = ["medqa", "medmcqa", "pubmedqa", "mmlu_medical"]
SELECTIONS = ("all", "k", "shortest", "majority")
#: Safety sets a mix can draw from (``safety_sample`` is an evaluation set: never trained on;
#: ``safety_train_sample`` is the embedded training set written for medistill, for the demo).
MIX_BENCHMARKS = ("medsafetybench", "safety_train_sample")


@dataclass
class DecontamConfig:
    """How curation finds copies and rewrites of evaluation questions (the ``decontam:``
    mapping of ``curate:``; ``curate/decontam.py`` explains each signal)."""

    method: Literal["retrieval", "legacy"] = field(
        default="retrieval",
        metadata={
            "help": "retrieval (n-grams + TF-IDF candidates + answer agreement) or legacy "
            "(n-grams + MinHash, the rule before 2026-12)"
        },
    )
    ngram: int = field(default=13, metadata={"help": "word n-gram overlap length"})
    max_df: int = field(
        default=3,
        metadata={"help": "ignore grams shared by more benchmark questions (boilerplate)"},
    )
    min_overlap: float = field(
        default=0.2,
        metadata={"help": "share of a benchmark question's n-grams a copy must contain"},
    )
    candidates: int = field(
        default=10, metadata={"help": "most similar benchmark stems examined per question"}
    )
    copy_cosine: float = field(
        default=0.7, metadata={"help": "TF-IDF cosine of a copy (whatever the answer)"}
    )
    answer_cosine: float = field(
        default=0.25,
        metadata={"help": "TF-IDF cosine of a paraphrase that keeps the benchmark's answer"},
    )
    options_cosine: float = field(
        default=0.08,
        metadata={
            "help": "TF-IDF cosine of a paraphrase that keeps the answer and a distinctive "
            "option list (shared_options of its options)"
        },
    )
    shared_options: int = field(
        default=3, metadata={"help": "option texts a rewrite shares with its original"}
    )
    length_ratio: float = field(
        default=2.5, metadata={"help": "largest stem length ratio of a paraphrase"}
    )
    jaccard: float = field(
        default=0.5,
        metadata={"help": "legacy method: near duplicate of a benchmark question at this Jaccard"},
    )


@dataclass
class CurateConfig:
    """Everything ``medistill curate`` needs (also the ``curate:`` section of a recipe)."""

    store: str = field(default="runs/traces.db", metadata={"help": "trace store to curate"})
    out: str = field(default="runs/dataset", metadata={"help": "output folder"})
    # --- verification ---------------------------------------------------------------------
    extract_mode: str = field(
        default="strict",
        metadata={
            "help": "strict: keep only traces with an explicit answer statement; lenient also "
            "accepts the extractor's fallbacks (option text, last mention)"
        },
    )
    text_answers: str = field(
        default="auto",
        metadata={
            "help": "deprecated, no effect: a response stating one option's text is read by "
            "the extractor itself (rule stated_text), as evaluation and the rewards read it; "
            "'off' is refused"
        },
    )
    # --- filters --------------------------------------------------------------------------
    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "student tokenizer (folder, hub id or 'smollm2') for length filters; "
            "default: an approximate word/punctuation count"
        },
    )
    min_tokens: int = field(default=32, metadata={"help": "drop shorter assistant turns"})
    max_tokens: int = field(default=8192, metadata={"help": "drop longer assistant turns"})
    repetition_ngram: int = field(default=10, metadata={"help": "n for the repetition ratio"})
    max_repetition: float = field(
        default=0.2,
        metadata={"help": "drop traces whose share of repeated word n-grams exceeds this"},
    )
    # --- selection ------------------------------------------------------------------------
    selection: str = field(
        default="all",
        metadata={"help": "per question: all | k (up to k) | shortest | majority"},
    )
    k: int = field(default=1, metadata={"help": "traces per question for selection=k"})
    difficulty_eval: str | None = field(
        default=None,
        metadata={
            "help": "predictions.jsonl of the base student (medistill eval): drop questions "
            "it already answers correctly"
        },
    )
    difficulty_max_accuracy: float = field(
        default=0.5,
        metadata={"help": "drop a question when the base student's accuracy on it is >= this"},
    )
    max_per_subject: int | None = field(
        default=None, metadata={"help": "balance: keep at most N questions per subject"}
    )
    # --- deduplication --------------------------------------------------------------------
    dedup: bool = field(default=True, metadata={"help": "exact and MinHash near-dup removal"})
    dedup_jaccard: float = field(
        default=0.8, metadata={"help": "near-duplicate questions at this Jaccard similarity"}
    )
    embedding_dedup: bool = field(
        default=False,
        metadata={"help": "also drop questions whose MiniLM cosine similarity >= threshold"},
    )
    embedding_threshold: float = field(default=0.95, metadata={"help": "cosine threshold"})
    # --- decontamination ------------------------------------------------------------------
    eval_benchmarks: list[str] = field(
        default_factory=lambda: list(DEFAULT_EVAL_BENCHMARKS),
        metadata={
            "help": "benchmarks to decontaminate against: name or name=path; on the command "
            "line also comma-separated, and 'none' for none"
        },
    )
    eval_mcq: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "the mcq entries of eval_benchmarks (your own file): its columns and "
            "holdout rule as a mapping, e.g. {holdout: 0.2, holdout_seed: 0}: decontaminate "
            "against the questions evaluation reads (a run sets it from run.eval_benchmarks)"
        },
    )
    decontam: DecontamConfig = field(
        default_factory=DecontamConfig,
        metadata={
            "help": "decontamination settings (the recipe's decontam: mapping: method, ngram, "
            "max_df, min_overlap, candidates, copy_cosine, answer_cosine, options_cosine, "
            "shared_options, length_ratio, jaccard); on the command line a JSON mapping, "
            'e.g. \'{"method": "legacy"}\''
        },
    )
    # --- safety mix -----------------------------------------------------------------------
    safety_mix: str | None = field(
        default=None,
        metadata={
            "help": "add harmful-request -> refusal demonstrations from this safety set "
            f"({', '.join(MIX_BENCHMARKS)}) to the dataset; none = no safety mix"
        },
    )
    safety_mix_file: str | None = field(
        default=None,
        metadata={
            "help": "or from this JSONL file: one {request, safe_response[, category, id]} per line"
        },
    )
    safety_mix_split: str = field(
        default="train", metadata={"help": "the safety set's split to draw from"}
    )
    safety_mix_path: str | None = field(
        default=None,
        metadata={
            "help": "MedSafetyBench folder (test/ and train/); default "
            "$MEDISTILL_DATA_DIR/medsafetybench. Its test split is what the mix is "
            "decontaminated against"
        },
    )
    safety_mix_share: float = field(
        default=0.05,
        metadata={
            "help": "safety rows / (kept traces + safety rows), drawn seeded (seed) and "
            "stratified over the categories"
        },
    )
    safety_mix_contrast_share: float = field(
        default=0.0,
        metadata={
            "help": "benign contrast rows / (kept traces + safety rows + contrast rows), in "
            "[0, 1): the teacher's helpful answers to sensitive but legitimate requests (the "
            "store's contrast calls, generate.contrast), refusals, cut-off and too-long ones "
            "removed, decontaminated against every safety evaluation set; drawn seeded and "
            "stratified over the categories; 0 = none"
        },
    )
    # --- output ---------------------------------------------------------------------------
    template: str = field(default="cot", metadata={"help": "prompt template of the user turn"})
    validation_fraction: float = field(default=0.05, metadata={"help": "held-out share"})
    position_balance: str = field(
        default="off",
        metadata={
            "help": "off | shuffle | balance: write each kept trace with its options in a new "
            "order and every letter it names rewritten to match (shuffle: a seeded random "
            "order; balance: the gold moved to the letter seen least so far, so the kept "
            "set's gold letters come out even); a trace whose letters cannot be rewritten "
            "unambiguously keeps its order and is counted. Counters a teacher set's letter "
            "prior (MedMCQA dev's gold is A on 32%)"
        },
    )
    seed: int = field(default=0, metadata={"help": "split / selection seed"})
    think_tags: bool = field(
        default=False,
        metadata={"help": "wrap a separate reasoning field in <think>...</think>"},
    )
    hf_dataset: bool = field(default=True, metadata={"help": "also save HF datasets"})
    batch_size: int = field(default=2000, metadata={"help": "traces processed per batch"})
    workers: int = field(
        default=0,
        metadata={
            "help": "processes verifying traces; 0 = one per core (up to 8) for stores over "
            "20,000 traces, else 1"
        },
    )
    sqlite_cache_mb: int = field(
        default=64, metadata={"help": "page cache of the scratch database (bounds memory)"}
    )

    #: The flat keys of the decontamination settings before they became ``decontam:``; still
    #: read (recipes and flags), with a deprecation warning naming the new key.
    MOVED_KEYS: ClassVar[dict[str, str]] = {
        f"decontam_{f.name}": f"decontam.{f.name}" for f in fields(DecontamConfig)
    }

    def __post_init__(self) -> None:
        if not isinstance(self.decontam, DecontamConfig):
            raise ValueError(
                f"decontam: expected a mapping of decontamination settings, got {self.decontam!r}"
            )
        # The safety mix's keys are checked when the config is built, so a recipe's mistake
        # is reported by the plan, before any stage runs.
        check_safety_mix(self)
        if self.eval_mcq:
            unknown = sorted(set(self.eval_mcq) - set(MCQ_KEYS))
            if unknown:
                valid = ", ".join(MCQ_KEYS)
                raise ValueError(f"eval_mcq.{unknown[0]}: unknown key; valid: {valid}")
            try:
                check_options(**self.eval_mcq, where="eval_mcq")
            except MedistillError as e:
                raise ValueError(str(e)) from None

    def record(self) -> dict[str, Any]:
        """The settings as stats.json records them: every field, the decontamination settings
        as their flat ``decontam_*`` keys (in place of ``decontam``)."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name == "decontam":
                out.update({f"decontam_{k}": v for k, v in vars(value).items()})
            else:
                out[name] = value
        return out

    def identity(self) -> dict[str, Any]:
        """What the pipeline hashes to tell whether curation must rerun: the flat record, so
        the hash of a run folder written before ``decontam:`` existed still matches."""
        ident = asdict(self)
        ident.update({f"decontam_{k}": v for k, v in ident.pop("decontam").items()})
        if not ident["safety_mix_contrast_share"]:  # added later: off hashes as before
            del ident["safety_mix_contrast_share"]
        if not ident["eval_mcq"]:  # added later: unset hashes as before
            del ident["eval_mcq"]
        return ident

    def identity_hash(self) -> str:
        """A hash of :meth:`identity`."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def check_safety_mix(cfg: CurateConfig) -> None:
    """The safety-mix keys, checked when the config is built (``ValueError``)."""
    if isinstance(cfg.safety_mix, str) and cfg.safety_mix.strip().lower() in ("", "none", "null"):
        cfg.safety_mix = None  # "--safety-mix none"
    if cfg.safety_mix and cfg.safety_mix_file:
        raise ValueError("set safety_mix (a safety set) or safety_mix_file (a JSONL), not both")
    if cfg.safety_mix is not None and cfg.safety_mix not in MIX_BENCHMARKS:
        raise ValueError(
            f"safety_mix {cfg.safety_mix!r}: unknown safety set; choose "
            f"{', '.join(MIX_BENCHMARKS)} (or safety_mix_file: your own JSONL)"
        )
    if cfg.safety_mix_split not in SAFETY_SPLITS:
        raise ValueError(f"safety_mix_split {cfg.safety_mix_split!r}: choose train")
    if cfg.safety_mix and cfg.safety_mix_split == "test":
        raise ValueError(
            "safety_mix_split 'test' is the split safety is evaluated on; train on 'train'"
        )
    share = cfg.safety_mix_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise ValueError(f"safety_mix_share must be in (0, 1), got {share!r}")
    share = cfg.safety_mix_contrast_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise ValueError(f"safety_mix_contrast_share must be in [0, 1), got {share!r}")
