"""What to tell the user when a curation keeps almost nothing: the reason that dropped most
traces and the setting that would change it (``stats.json``, the card, the log)."""

from __future__ import annotations

import logging
from typing import Any

from medistill.curate.config import CurateConfig
from medistill.store import TraceStore

log = logging.getLogger(__name__)

#: A curation keeping under this share of its input traces gets a low-yield warning.
LOW_YIELD = 0.10


def _setting(reason: str, cfg: CurateConfig, imported: bool) -> str:
    """The setting (``--flag value`` / ``curate.key: value``) that would keep more of the
    traces ``reason`` dropped, or what to do where no curation setting can."""
    if reason == "no_answer":
        if cfg.extract_mode == "strict":
            hint = (
                "--extract-mode lenient (curate.extract_mode: lenient) also reads an answer "
                "from the option text or letter named in the conclusion"
            )
        else:
            hint = "the responses name no option the extractor can read"
        if imported:
            hint += (
                "; a response stating an answer that is no option's text (or two options) "
                "is not read: check the import mapping's options"
            )
        return hint
    if reason == "conflicting_answers" and cfg.extract_mode == "strict":
        return (
            "--extract-mode lenient (curate.extract_mode: lenient) takes the first of "
            "'B or C'; a response stating two option texts stays ambiguous"
        )
    hints = {
        "malformed": "fix the import mapping (--preset / --map): question, options and gold",
        "truncated": "raise the teacher's max_tokens when generating (generate.max_tokens)",
        "refusal": "no curation setting: the teacher declined; try another teacher or prompt",
        "conflicting_answers": "no curation setting: the responses commit to two answers",
        "incorrect": (
            "no curation setting: the answers differ from gold; check the gold field and "
            "option lettering of the import (--map gold=FIELD)"
        ),
        "leaked_gold": "no curation setting: the reasoning cites an answer key",
        "repetition": f"--max-repetition above {cfg.max_repetition} (curate.max_repetition)",
        "too_short": f"--min-tokens below {cfg.min_tokens} (curate.min_tokens)",
        "too_long": f"--max-tokens above {cfg.max_tokens} (curate.max_tokens)",
        "contaminated": (
            "none to loosen safely: these questions overlap an evaluation benchmark "
            "(curate.eval_benchmarks, the curate.decontam thresholds)"
        ),
        "duplicate_exact": "--dedup false (curate.dedup: false) keeps repeated questions",
        "duplicate_near": f"--dedup-jaccard above {cfg.dedup_jaccard} (curate.dedup_jaccard)",
        "duplicate_embedding": (
            f"--embedding-threshold above {cfg.embedding_threshold} or --embedding-dedup false"
        ),
        "too_easy": (
            f"--difficulty-max-accuracy above {cfg.difficulty_max_accuracy} "
            "(curate.difficulty_max_accuracy), or no --difficulty-eval"
        ),
        "no_majority": "--selection all (curate.selection: all)",
        "subject_cap": "a larger --max-per-subject, or none (curate.max_per_subject)",
        "not_selected": "--selection all (curate.selection: all) keeps every verified trace",
    }
    return hints.get(reason, "no curation setting")


def low_yield(
    n_in: int, kept: int, dropped: dict[str, int], cfg: CurateConfig, *, imported: bool
) -> dict[str, Any] | None:
    """The low-yield warning for a curation keeping under :data:`LOW_YIELD` of its input
    (``None`` otherwise, or for an empty store): kept share, the top drop reason with its
    count, the setting that would change it, and one sentence saying all that."""
    if not n_in or kept >= LOW_YIELD * n_in or not any(dropped.values()):
        return None
    reason, count = max(dropped.items(), key=lambda kv: kv[1])
    setting = _setting(reason, cfg, imported)
    message = (
        f"curation kept {kept} of {n_in} traces ({100 * kept / n_in:.1f}%, under "
        f"{100 * LOW_YIELD:.0f}%); most were dropped as {reason} ({count}, "
        f"{100 * count / n_in:.1f}%): {setting}"
    )
    return {
        "kept_share": round(kept / n_in, 4),
        "threshold": LOW_YIELD,
        "top_reason": reason,
        "top_reason_traces": count,
        "setting": setting,
        "message": message,
    }


def imported_traces(store: TraceStore) -> int:
    """How many traces of an open store came from ``medistill import-traces``."""
    query = "SELECT COUNT(*) FROM traces WHERE endpoint LIKE 'import:%'"
    return int(store.db.execute(query).fetchone()[0])


def log_outcome(stats: dict[str, Any]) -> None:
    """Log how the kept traces were verified, and the low-yield warning if there is one (the
    CLI prints both on stderr)."""
    if stats.get("kept_by_verification"):
        by = ", ".join(f"{k} {v}" for k, v in stats["kept_by_verification"].items())
        log.info("kept traces verified by %s", by)
    if stats.get("low_yield"):
        log.warning("%s", stats["low_yield"]["message"])
