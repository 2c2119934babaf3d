"""Stage 2: the trace store -> a verified, deduplicated, decontaminated dataset with a card.

The passes, in order, each streaming and bounded in memory (state lives in a scratch SQLite
file, ``workdb.py``), all reading one open trace store:

1. **verify** every stored trace (``verify_pass.py``): structure, truncation, the extracted
   answer (shared extractor, shuffle undone) against gold, leaked answer keys, repetition,
   length.
2. **questions** with a surviving trace, in store order (``question_pass.py``):
   decontamination against every evaluation benchmark named, exact and near-duplicate
   removal, the difficulty filter.
3. **balance** subjects, then **select** traces per question (``selection.py``: all, k,
   shortest, majority).
4. **write** the dataset (``output.py``: JSONL + HF, messages and prompt/completion), the drop
   log, the decontamination log and the data card; with a safety mix, its decontaminated,
   seeded share of harmful-request -> refusal demonstrations too (``safety_mix.py``), and with
   ``safety_mix_contrast_share`` the teacher's answers to benign requests (``contrast.py``). Every
   trace lands in exactly one bucket: kept + each drop reason = traces in, checked before
   anything is written. The store's contrast calls (``source`` ``contrast:<set>``) are not
   traces: passes 1-3 never see them; they are counted (``contrast_traces``) and only the
   contrast mix reads them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from medistill.curate.advice import imported_traces, log_outcome
from medistill.curate.config import SELECTIONS, CurateConfig
from medistill.curate.contrast import build_contrast, missing_error
from medistill.curate.decontam import BenchmarkIndex, load_eval_questions
from medistill.curate.filters import REASONS, TEXT_ANSWERS, token_counter
from medistill.curate.output import write_outputs
from medistill.curate.question_pass import apply_question_reasons, question_pass
from medistill.curate.safety_mix import build_mix, enabled, load_demos, safety_test_index
from medistill.curate.selection import balance_subjects, select_traces
from medistill.curate.verify_pass import progress_bar, verify_pass
from medistill.curate.workdb import open_workdb, remove_workdb
from medistill.errors import MedistillError
from medistill.store import TraceStore

log = logging.getLogger(__name__)


def _check(cfg: CurateConfig) -> None:
    if cfg.selection not in SELECTIONS:
        raise MedistillError(f"selection {cfg.selection!r}; choose one of: {', '.join(SELECTIONS)}")
    if cfg.extract_mode not in ("strict", "lenient"):
        raise MedistillError(f"extract_mode {cfg.extract_mode!r}; choose strict or lenient")
    if cfg.text_answers not in TEXT_ANSWERS:
        raise MedistillError(f"text_answers {cfg.text_answers!r}; remove the key (deprecated)")
    if cfg.text_answers == "off":
        raise MedistillError(
            "curate.text_answers: off is no longer possible: curation reads each answer exactly "
            "as evaluation and the correctness reward do (one extractor, rule stated_text for "
            "a response stating one option's text); remove the key"
        )
    if cfg.text_answers == "on":
        log.warning(
            "curate.text_answers is deprecated and has no effect: the extractor reads a "
            "response stating one option's text for every trace; remove the key"
        )
    if not 0 <= cfg.validation_fraction < 1:
        raise MedistillError("validation_fraction must be in [0, 1)")
    if cfg.selection == "k" and cfg.k < 1:
        raise MedistillError("k must be at least 1")
    if not Path(cfg.store).exists():
        raise MedistillError(f"{cfg.store}: trace store not found")


def _eval_index(cfg: CurateConfig) -> BenchmarkIndex | None:
    """The index of the evaluation benchmarks to decontaminate against (``None``: none named)."""
    if not cfg.eval_benchmarks:
        log.warning("no evaluation benchmarks named: the dataset is NOT decontaminated")
        return None
    return BenchmarkIndex(load_eval_questions(cfg.eval_benchmarks, cfg.eval_mcq), cfg.decontam)


def run_curate(cfg: CurateConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Curate ``cfg.store`` into ``cfg.out``; returns the statistics written to the card."""
    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".curate-work.sqlite"
    db = open_workdb(work, cfg.sqlite_cache_mb)
    try:
        with TraceStore(cfg.store) as store:
            total = store.count(contrast=False)
            n_contrast = store.count(contrast=True)
            if cfg.safety_mix_contrast_share > 0 and not n_contrast:
                raise MedistillError(missing_error(cfg))
            imported = imported_traces(store)
            demos = load_demos(cfg) if enabled(cfg) else None  # a bad file fails before verifying
            count_tokens, tokenizer_name = token_counter(cfg.tokenizer)
            workers = cfg.workers or (min(os.cpu_count() or 1, 8) if total > 20_000 else 1)
            with progress_bar(show_progress, total) as advance:
                n_in = verify_pass(db, store, cfg, count_tokens, advance, workers)
            index = _eval_index(cfg)
            decon = question_pass(db, cfg, index, out / "decontamination.jsonl")
            decon["benchmark_questions"] = len(index) if index is not None else 0
            apply_question_reasons(db)
            balance_subjects(db, cfg.max_per_subject)
            apply_question_reasons(db)
            select_traces(db, cfg)
            counts = dict(
                db.execute("SELECT COALESCE(reason, 'kept'), COUNT(*) FROM traces GROUP BY 1")
            )
            kept = counts.pop("kept", 0)
            dropped = {r: counts.pop(r, 0) for r in REASONS}
            if counts or kept + sum(dropped.values()) != n_in:
                raise MedistillError(f"internal: curation counts do not add up ({counts}, {n_in})")
            safety = contrast = None
            want_contrast = cfg.safety_mix_contrast_share > 0
            tests = safety_test_index(cfg) if demos is not None or want_contrast else None
            if demos is None:
                (out / "safety_decontamination.jsonl").unlink(missing_ok=True)  # an earlier run's
            else:
                safety = build_mix(
                    cfg,
                    demos,
                    kept=kept,
                    tests=tests,
                    eval_index=index,
                    count_tokens=count_tokens,
                    decon_log=out / "safety_decontamination.jsonl",
                )
            if not want_contrast:
                (out / "contrast_decontamination.jsonl").unlink(missing_ok=True)
                if n_contrast:
                    log.info("%d contrast calls in the store not used (share 0)", n_contrast)
            else:
                contrast = build_contrast(
                    cfg,
                    store.iter_rows(contrast=True),
                    base_rows=kept + (len(safety.demos) if safety is not None else 0),
                    tests=tests,
                    eval_index=index,
                    count_tokens=count_tokens,
                    decon_log=out / "contrast_decontamination.jsonl",
                )
            stats = write_outputs(
                db,
                store,
                cfg,
                out,
                n_in=n_in,
                kept=kept,
                dropped=dropped,
                tokenizer_name=tokenizer_name,
                decontam=decon,
                imported=imported,
                safety=safety,
                contrast=contrast,
                contrast_traces=n_contrast,
            )
    finally:
        db.close()
        remove_workdb(work)
    log.info(
        "curated %d traces: kept %d, dropped %s",
        n_in,
        kept,
        ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none",
    )
    log_outcome(stats)
    return stats
