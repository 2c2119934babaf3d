"""The data card: a ``README.md`` (Hugging Face dataset-card front matter) and a token-length
histogram, written from the curation statistics so a reviewer sees what was kept and why."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medistill.backends.config import served_label
from medistill.curate.filters import QUESTION_REASONS, TRACE_REASONS
from medistill.prompts import answer_line

log = logging.getLogger(__name__)

VERIFIED_HELP = {
    "letter": "the option letter the response commits to (the shared extractor)",
    "option_text": "the one option whose text the response states, no other option affirmed",
    "ground_truth": "the set's own answer text (curations before one reading only)",
}

REASON_HELP = {
    "malformed": "missing question/options/gold, gold not an option, or no text",
    "truncated": "the teacher hit its token limit",
    "refusal": "the teacher declined to answer",
    "no_answer": "no final answer the shared extractor can read (nor an option text stated)",
    "conflicting_answers": "more than one different final answer",
    "incorrect": "final answer differs from gold (after undoing the option shuffle)",
    "leaked_gold": "the reasoning cites an answer key",
    "repetition": "degenerate repetition (share of repeated word n-grams)",
    "too_short": "assistant turn under min_tokens",
    "too_long": "assistant turn over max_tokens",
    "contaminated": "question overlaps an evaluation benchmark (see decontamination.jsonl)",
    "duplicate_exact": "same normalised question and options as an earlier question",
    "duplicate_near": "MinHash near-duplicate of an earlier question",
    "duplicate_embedding": "MiniLM embedding near-duplicate of an earlier question",
    "too_easy": "the base student already answers it (difficulty filter)",
    "no_majority": "the teacher's majority answer is not gold (selection=majority)",
    "subject_cap": "over the per-subject cap (balancing)",
    "not_selected": "another trace of the question was selected",
}


def _plot(tokens: np.ndarray, path: Path, counter: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if len(tokens):
        ax.hist(tokens, bins=min(50, max(5, len(tokens) // 5)), color="#4C72B0")
    ax.set_xlabel(f"assistant-turn length ({counter})")
    ax.set_ylabel("traces")
    ax.set_title(f"Kept traces: {len(tokens)}")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def write_card(out: Path, stats: dict[str, Any], tokens: np.ndarray) -> None:
    """Write ``README.md`` and ``token_lengths.png`` into ``out``."""
    has_plot = _plot(tokens, out / "token_lengths.png", stats["tokens"]["counter"])
    n_in = stats["input_traces"]
    dropped = stats["dropped"]
    reason_rows = [
        ("**kept**", f"**{stats['kept_traces']}**", _pct(stats["kept_traces"], n_in), "")
    ]
    for r in TRACE_REASONS + QUESTION_REASONS:
        reason_rows.append((r, dropped.get(r, 0), _pct(dropped.get(r, 0), n_in), REASON_HELP[r]))
    reason_rows.append(("**total in**", f"**{n_in}**", "100%", "kept + every reason"))
    configs = []
    for fmt in ("messages", "prompt_completion"):
        files = [
            f"    - split: {s}\n      path: {fmt}/{s}.jsonl"
            for s in ("train", "validation")
            if stats["splits"][s]["traces"]
        ]
        if files:
            configs.append(f"- config_name: {fmt}\n  data_files:\n" + "\n".join(files))
    front = "---\nconfigs:\n" + "\n".join(configs) + "\n---\n\n" if configs else ""
    teachers = [
        (served_label(t), v["traces"], v["verified_correct"] or 0,
         _pct(v["verified_correct"] or 0, v["traces"]), stats["kept_by_teacher"].get(t, 0))
        for t, v in stats["teachers"].items()
    ]  # fmt: skip
    acc = stats["teacher_accuracy"]
    overall = f"{100 * acc:.1f}%" if acc is not None else "-"
    decon = stats["decontamination"]
    tok = stats["tokens"]
    subjects = list(stats["kept_by_subject"].items())
    warning = stats.get("low_yield")
    parts = [
        front + "# Curated medical reasoning traces (medistill)",
        *([f"> **Warning: low yield.** {warning['message']}"] if warning else []),
        f"Curated from `{stats['store']}` by `medistill curate`. "
        f"**{stats['kept_traces']}** of {n_in} traces kept "
        f"({stats['kept_questions']} of {stats['input_questions']} questions); "
        f"train {stats['splits']['train']['traces']} / validation "
        f"{stats['splits']['validation']['traces']} traces (split by question).",
        "## Kept and dropped, by reason\n\nEach trace is counted once, under the first reason "
        "that applies (in this order).\n\n"
        + _table(("reason", "traces", "share", "meaning"), reason_rows),
        "## Teacher accuracy\n\nVerified with the shared answer extractor "
        f"(`{stats['config']['extract_mode']}` mode). Overall {overall}"
        " of traces reach the gold answer.\n\n"
        + _table(("origin / teacher", "traces", "correct", "accuracy", "kept"), teachers)
        + "\n\nPer-question pass rate (share of a question's traces that are correct; a "
        "difficulty signal):\n\n"
        + _table(("pass rate", "questions"), list(stats["pass_rate_histogram"].items())),
        _verification_section(stats),
        *([_rubrics_section(stats["rubrics"])] if stats.get("rubrics") else []),
        _positions_section(stats.get("position_balance") or {}),
        "## Decontamination\n\n"
        f"Against {', '.join(decon['benchmarks']) or 'nothing'} "
        f"({decon['benchmark_questions']} questions): {_decon_rule(decon)} "
        f"**{decon.get('distinct_benchmark_items', 0)} distinct benchmark items** were found in "
        "the training data; every removed question is listed with the benchmark, the matched "
        "id, the method and its evidence in `decontamination.jsonl`.\n\n"
        + (
            _table(
                ("benchmark (method)", "questions removed"),
                list(decon["removed_questions"].items()),
            )
            if decon["removed_questions"]
            else "No training question matched."
        ),
        *([_safety_section(stats["safety_mix"])] if stats.get("safety_mix") else []),
        *([_contrast_section(stats)] if stats.get("contrast_mix") else []),
        _sources_section(stats)
        + "\n\n"
        + _table(("subject", "kept traces"), subjects[:30])
        + (f"\n\n... and {len(subjects) - 30} more subjects." if len(subjects) > 30 else ""),
        f"## Lengths\n\nAssistant turn in {tok['counter']}: mean {tok['mean']}, median "
        f"{tok['median']}, p95 {tok['p95']}, max {tok['max']}, total {tok['total']}."
        + ("\n\n![token lengths](token_lengths.png)" if has_plot else ""),
        "## Formats\n\n- `messages/`: chat `messages` (system, user, assistant); the assistant "
        f"turn is the reasoning followed by the final line `{answer_line('X')}`\n"
        "- `prompt_completion/`: the same rows as conversational `prompt` / `completion` "
        "(TRL trains on the completion only).\n"
        "- `hf/`: both as Hugging Face `DatasetDict`s (`datasets.load_from_disk`).\n"
        "- `dropped.jsonl`: every dropped trace with its reason; `stats.json`: these figures.",
    ]
    tmp = out / "README.md.tmp"
    tmp.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    os.replace(tmp, out / "README.md")


def _safety_section(mix: dict[str, Any]) -> str:
    """The safety mix: where the demonstrations came from, how many, per category, and what
    decontamination removed."""
    origin = (
        f"`{mix['file']}`"
        if mix.get("file")
        else f"{mix['source']} {mix.get('split')} split"
        + (f" (`{mix['path']}`)" if mix.get("path") else "")
    )
    splits = mix.get("splits") or {}
    removed = mix.get("removed") or {}
    text = (
        f"## Safety mix\n\n**{mix['rows']}** harmful-request -> refusal demonstrations from "
        f"{origin} were added (share {mix['share']} of all rows, asked "
        f"{mix['share_asked']}: {mix['target_rows']} wanted, {mix['available']} available of "
        f"{mix['read']} read); train {splits.get('train', 0)} / validation "
        f"{splits.get('validation', 0)}. Drawn by seed {mix['seed']}, stratified over the "
        "categories. Each row is the request as the user turn and its safe response as the "
        "assistant turn, with no system prompt, `kind: safety`, no options and no gold: SFT "
        "trains on them, GRPO skips them.\n\n"
        f"Decontaminated against {', '.join(mix['decontaminated_against']) or 'nothing'} "
        "(copies and near copies: word n-grams, TF-IDF cosine); each removed request is in "
        "`safety_decontamination.jsonl`."
    )
    for note in mix.get("not_found") or []:
        text += f"\n\n> **Warning:** not decontaminated against {note}"
    text += "\n\n" + _table(("removed", "requests"), [(k, v) for k, v in removed.items()])
    if mix.get("removed_by_benchmark"):
        text += "\n\n" + _table(
            ("matched (method)", "requests removed"), list(mix["removed_by_benchmark"].items())
        )
    text += "\n\n" + _table(("category", "rows"), list(mix["by_category"].items()))
    if mix.get("by_source"):
        text += "\n\n" + _table(("source", "rows"), list(mix["by_source"].items()))
    return text


def _sources_section(stats: dict[str, Any]) -> str:
    """Per source: the split and file read, traces in, teacher accuracy, traces kept."""
    rows = []
    for src in stats.get("sources") or []:
        reads = src["read"] or [{"split": None, "file": None}]
        split = ", ".join(sorted({r["split"] or "?" for r in reads}))
        files = "; ".join(f"`{r['file']}`" if r["file"] else "(not recorded)" for r in reads)
        acc = src["teacher_accuracy"]
        rows.append(
            (src["source"] or "(none)", split, files, src["input_questions"], src["input_traces"],
             f"{100 * acc:.1f}%" if acc is not None else "-", src["kept_traces"],
             src["kept_questions"])
        )  # fmt: skip
    header = ("source", "split", "file read", "questions in", "traces in", "teacher accuracy",
              "kept traces", "kept questions")  # fmt: skip
    return (
        "## Sources and subjects\n\nEach source's questions are told apart by (source, id). "
        "Split and file are what generation read (recorded with every trace).\n\n"
        + _table(header, rows)
    )


def _positions_section(p: dict[str, Any]) -> str:
    """The kept set's gold letters before and after ``position_balance``."""
    before, after = p.get("gold_before") or {}, p.get("gold_after") or {}
    letters = sorted(set(before) | set(after))
    n_b, n_a = sum(before.values()) or 1, sum(after.values()) or 1
    rows = "\n".join(
        f"| {k} | {before.get(k, 0)} ({100 * before.get(k, 0) / n_b:.0f}%) | "
        f"{after.get(k, 0)} ({100 * after.get(k, 0) / n_a:.0f}%) |"
        for k in letters
    )
    mode = p.get("mode", "off")
    done = (
        f"`position_balance: {mode}`: {p.get('rewritten', 0)} traces written with their options "
        f"reordered and every letter rewritten; {p.get('refused', 0)} kept their order (a letter "
        "could not be rewritten unambiguously)."
        if mode != "off"
        else "`position_balance: off`: traces keep the order the teacher saw (set `shuffle` or "
        "`balance` to counter a letter prior)."
    )
    return "## Gold letters\n\n" + done + "\n\n| letter | before | after |\n|:--|--:|--:|\n" + rows


def _rubrics_section(r: dict[str, Any]) -> str:
    """How many rows carry their question's own grading rubric (``medistill rubrics``)."""
    head = "## Per-question rubrics\n\n"
    if not r["in_store"]:
        return head + (
            "No row has a rubric of its own: the store has none (`medistill rubrics` writes "
            "them). A GRPO `rubric` reward grades every row with the recipe's criteria."
        )
    rows = [
        ("rows (traces) with a rubric", r["rows_with_rubric"],
         _pct(r["rows_with_rubric"], r["rows"])),
        ("questions with a rubric", r["questions_with_rubric"],
         _pct(r["questions_with_rubric"], r["questions"])),
        ("questions whose rubric reply was refused", r["questions_refused"],
         _pct(r["questions_refused"], r["questions"])),
        ("questions never asked (no gold, or not yet)", r["questions_not_asked"],
         _pct(r["questions_not_asked"], r["questions"])),
    ]  # fmt: skip
    return head + (
        "Each row's `rubric` column is its question's own rubric, written by the teacher from the "
        "question and its correct answer (Rubrics as Rewards): self-contained criteria weighted "
        "essential (5 points), important (3), optional (1) or pitfall (-5). The GRPO `rubric` "
        "reward grades a row with it, and rows without one with the recipe's criteria.\n\n"
        + _table(("", "count", "share"), rows)
    )


def _verification_section(stats: dict[str, Any]) -> str:
    """How each kept trace's answer was verified, counted per rule (each dataset row names
    its own in ``verified_by``)."""
    counts = stats.get("kept_by_verification") or {}
    rows = [(k, counts.get(k, 0), VERIFIED_HELP[k]) for k in VERIFIED_HELP if counts.get(k)]
    return (
        "## How kept answers were verified\n\nEvery answer is read by the one extractor, in "
        f"`{stats['config'].get('extract_mode', 'strict')}` mode, as evaluation and the "
        "correctness reward read it. A response naming no option letter is read by the option "
        "text it states: every affirmative sentence naming an option must name the same one; "
        'negated or hedged mentions ("not X", "while X is common") do not count, two '
        "options stated is a conflict, and questions asking for the exception are read by "
        "letter only. A response that rejects every option and commits to none afterwards is "
        "no answer. Each row of the dataset names its rule in `verified_by`.\n\n"
        + _table(
            ("verified by", "kept traces", "rule"), rows or [("letter", 0, VERIFIED_HELP["letter"])]
        )
    )


def _decon_rule(decon: dict) -> str:
    """One sentence on the decontamination rule and how many questions had no answer."""
    if decon.get("method", "legacy") == "legacy":
        return f"{decon['ngram']}-gram overlap or MinHash Jaccard >= {decon['jaccard']}."
    t = decon.get("thresholds", {})
    rule = (
        f"{decon['ngram']}-gram overlap (coverage >= {t.get('ngram_coverage')}), a copy (TF-IDF "
        f"cosine >= {t.get('copy_cosine')}), or a paraphrase: the same answer as a benchmark "
        f"question among the most similar stems, at cosine >= {t.get('answer_cosine')}, or >= "
        f"{t.get('options_cosine')} with {t.get('shared_options')} of a distinctive option list."
    )
    blind = decon.get("checked_without_answer", 0)
    if blind:
        rule += (
            f" {blind} of {decon.get('checked_questions', 0)} questions had neither a gold "
            "nor a teacher answer and were checked for copies only."
        )
    return rule


def _contrast_section(stats: dict[str, Any]) -> str:
    """The benign contrast demonstrations: from which contrast calls, how many, what was
    removed (refusals, cut-off, too long, duplicates, decontamination), per category."""
    mix = stats["contrast_mix"]
    splits = mix.get("splits") or {}
    text = (
        f"## Benign contrast demonstrations\n\n**{mix['rows']}** sensitive but legitimate "
        f"requests answered helpfully by the teacher ({', '.join(mix['teachers']) or '-'}; "
        f"{', '.join(mix['sources']) or '-'}) were added (share {mix['share']} of all rows, "
        f"asked {mix['share_asked']}: {mix['target_rows']} wanted, {mix['available']} "
        f"available of {mix['read']} answers read; {stats.get('contrast_traces', 0)} contrast "
        f"calls in the store, never verified as traces); train {splits.get('train', 0)} / "
        f"validation {splits.get('validation', 0)}. One answer per request (the first usable "
        f"sample), drawn by seed {mix['seed']}, stratified over the categories; the request "
        "is the user turn, the teacher's answer the assistant turn, with no system prompt, "
        "`kind: contrast`, no options and no gold: SFT trains on them, GRPO skips them.\n\n"
        f"Decontaminated against {', '.join(mix['decontaminated_against']) or 'nothing'}; "
        "each removed request is in `contrast_decontamination.jsonl`."
    )
    for note in mix.get("not_found") or []:
        text += f"\n\n> **Warning:** not decontaminated against {note}"
    text += "\n\n" + _table(("removed", "answers"), list((mix.get("removed") or {}).items()))
    if mix.get("removed_by_benchmark"):
        text += "\n\n" + _table(
            ("matched (method)", "requests removed"), list(mix["removed_by_benchmark"].items())
        )
    return text + "\n\n" + _table(("category", "rows"), list(mix["by_category"].items()))
