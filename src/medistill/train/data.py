"""Training data: the curated dataset (``format_version`` 3, or 2) read, checked and tokenised.

The contract with curation: each row is a conversational ``prompt`` (system?, user) and
``completion`` (one assistant turn ending with the answer-contract line), or the same as one
``messages`` list, plus ``options`` (letter -> text as shown), ``gold`` (the letter),
``question_id``, ``source`` and, from version 3, ``rubric`` (the question's own grading rubric,
``[{criterion, weight, points}]``, or null; the GRPO ``rubric`` reward reads it). A curated
folder declares its version in ``stats.json``; a version-2 folder is read as rows without
rubrics; a version-1 folder has no options and is refused with the command that re-curates it.
A plain JSONL file of such rows is accepted too, so a user can train on data from elsewhere.

A row's ``kind`` is ``trace`` (the default), ``safety`` (a harmful request and its refusal
from curation's safety mix) or ``contrast`` (a benign request and the teacher's helpful answer,
the mix's other side); the last two have no options and no gold. SFT trains on every row;
GRPO and on-policy distillation take their prompts from trace rows only (an open request has
no answer to score).

SFT sequences longer than ``max_length`` never lose their final answer line silently: they are
dropped and counted (``overlong: drop``, the default) or cut in the middle of the reasoning,
keeping the prompt, the start of the reasoning and the whole final line
(``overlong: truncate_middle``). TRL's own truncation (``keep_start``) would cut the end, and
with it the very line the student must learn to write.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medistill.data.loading import iter_jsonl
from medistill.data.options import format_options, options_or_none, permute
from medistill.data.schema import DATASET_FORMAT_VERSION as FORMAT_VERSION
from medistill.data.schema import DATASET_SPLITS as SPLITS
from medistill.errors import DataError, MedistillError
from medistill.prompts import answer_line_regex
from medistill.train.judge import row_criteria

log = logging.getLogger(__name__)

#: Versions this medistill trains on: 3 (rows may carry a ``rubric``) and 2 (no rubrics).
READ_VERSIONS = (2, 3)
KINDS = ("trace", "safety", "contrast")
#: Kinds without options or gold (open requests: curation's safety mix).
OPEN_KINDS = ("safety", "contrast")


@dataclass
class DatasetSource:
    """Where the rows of each split live, and what the folder says about itself."""

    spec: str
    files: dict[str, Path]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def card_summary(self) -> dict[str, Any]:
        """The data card's headline figures, for the model card."""
        s = self.stats
        keys = ("input_traces", "kept_traces", "kept_questions", "teacher_accuracy", "teachers")
        out = {k: s[k] for k in keys if k in s}
        decon = s.get("decontamination") or {}
        if decon:
            out["decontaminated_against"] = decon.get("benchmarks")
            out["contaminated_questions_removed"] = decon.get("removed_questions")
        mix = s.get("safety_mix")
        if mix:
            keys = ("source", "file", "rows", "share", "removed")
            out["safety_mix"] = {k: mix[k] for k in keys if k in mix}
        contrast = s.get("contrast_mix")
        if contrast:
            keys = ("sources", "rows", "share", "removed")
            out["contrast_mix"] = {k: contrast[k] for k in keys if k in contrast}
        return out


def resolve_dataset(spec: str) -> DatasetSource:
    """Find the training rows of ``spec``: a curated folder or a JSONL file.

    A folder must be ``format_version`` 3 or 2; an older one is refused with how to re-curate.
    """
    path = Path(spec)
    if path.is_file():
        return DatasetSource(spec, {"train": path})
    if not path.is_dir():
        raise MedistillError(f"dataset {spec}: no such folder or file")
    stats_path = path / "stats.json"
    stats: dict[str, Any] = {}
    if stats_path.exists():
        try:
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON ({e})", path=str(stats_path)) from None
        version = stats.get("format_version")
        if version not in READ_VERSIONS:
            raise MedistillError(
                f"dataset {spec} is format_version {version}, this medistill trains on version "
                f"{FORMAT_VERSION} (rows with options and gold, so rewards score as eval does). "
                f"Re-curate it: medistill curate {stats.get('store', '<trace store>')} --out {spec}"
            )
    files = {}
    for split in SPLITS:
        for fmt in ("prompt_completion", "messages"):
            candidate = path / fmt / f"{split}.jsonl"
            if candidate.exists():
                files[split] = candidate
                break
    if "train" not in files:
        raise MedistillError(
            f"dataset {spec}: no prompt_completion/train.jsonl or messages/train.jsonl (is it a "
            f"folder written by medistill curate?)"
        )
    return DatasetSource(spec, files, stats)


def check_row(rec: Any, *, path: str, line: int) -> dict[str, Any]:
    """One training row, validated and normalised to ``prompt`` / ``completion`` / metadata.

    Raises :class:`DataError` naming the file, line and field of the first problem.
    """
    if not isinstance(rec, dict):
        raise DataError(f"expected an object, got {type(rec).__name__}", path=path, line=line)
    if "messages" in rec and "prompt" not in rec:
        msgs = _messages(rec["messages"], path=path, line=line, fld="messages")
        if not msgs or msgs[-1]["role"] != "assistant":
            raise DataError(
                "the last message must be the assistant's", path=path, line=line, field="messages"
            )
        prompt, completion = msgs[:-1], msgs[-1:]
    else:
        for name in ("prompt", "completion"):
            if name not in rec:
                raise DataError("missing field", path=path, line=line, field=name)
        prompt = _messages(rec["prompt"], path=path, line=line, fld="prompt")
        completion = _messages(rec["completion"], path=path, line=line, fld="completion")
        if [m["role"] for m in completion] != ["assistant"]:
            raise DataError(
                "expected one assistant message", path=path, line=line, field="completion"
            )
    if not prompt or prompt[-1]["role"] != "user":
        raise DataError(
            "the prompt must end with a user message", path=path, line=line, field="prompt"
        )
    kind = rec.get("kind") or "trace"
    if kind not in KINDS:
        raise DataError(
            f"{kind!r}: expected {' or '.join(KINDS)}", path=path, line=line, field="kind"
        )
    if kind in OPEN_KINDS:  # curate's safety mix (refusal or contrast): no options, no gold
        options: dict[str, str] = {}
        gold = None
    else:
        options, gold = _options_and_gold(rec, path=path, line=line)
    return {
        "kind": kind,
        "prompt": prompt,
        "completion": completion,
        "options": options,
        "gold": gold,
        "question_id": str(rec.get("question_id") or rec.get("id") or f"{Path(path).stem}:{line}"),
        "source": str(rec.get("source") or ""),
        "rubric": _rubric(rec.get("rubric"), path=path, line=line),
    }


def _rubric(value: Any, *, path: str, line: int) -> list[dict[str, Any]] | None:
    """A row's own rubric, checked (``None`` when it has none): ``[{criterion, weight, points}]``
    with the same item keys in every row (a ``datasets`` column needs one type)."""
    if value is None:
        return None
    try:
        row_criteria(value)
    except ValueError as e:
        raise DataError(str(e), path=path, line=line, field="rubric") from None
    return [
        {"criterion": c["criterion"].strip(), "weight": c.get("weight"), "points": c["points"]}
        for c in value
    ]


def _options_and_gold(rec: dict[str, Any], *, path: str, line: int) -> tuple[dict[str, str], str]:
    """A question row's options (letter -> text) and gold letter, checked."""
    options = rec.get("options")
    if not isinstance(options, dict) or sum(v is not None for v in options.values()) < 2:
        raise DataError(
            "missing or fewer than two options (a format_version 1 row? re-curate it)",
            path=path,
            line=line,
            field="options",
        )
    options = options_or_none(options, f"{path}:{line}") or {}
    gold = rec.get("gold")
    if gold not in options:
        raise DataError(
            f"{gold!r} is not one of the options {''.join(options)}",
            path=path,
            line=line,
            field="gold",
        )
    return options, gold


def _messages(value: Any, *, path: str, line: int, fld: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise DataError("expected a list of messages", path=path, line=line, field=fld)
    out = []
    for i, m in enumerate(value):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("content"), str)
            or m.get("role")
            not in (
                "system",
                "user",
                "assistant",
            )
        ):
            raise DataError(
                f"message {i}: expected {{role: system|user|assistant, content: str}}",
                path=path,
                line=line,
                field=fld,
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Validated rows of one JSONL file (a bad row raises with file, line and field)."""
    for line, rec in iter_jsonl(path):
        if isinstance(rec, DataError):
            raise rec
        yield check_row(rec, path=str(path), line=line)


def read_rows(source: DatasetSource, split: str = "train") -> list[dict[str, Any]]:
    """All rows of ``split`` (empty when the split is absent)."""
    path = source.files.get(split)
    return list(iter_rows(path)) if path else []


def prompt_rows(source: DatasetSource, *, limit: int | None = None) -> list[dict[str, Any]]:
    """One row per distinct question (first trace's prompt), for GRPO and distillation.

    Curation may keep several traces of a question; on-policy training needs each prompt once.
    Safety-mix rows (``kind: safety`` or ``contrast``) are left out: they have no answer a
    reward could score.
    """
    seen: set[tuple[str, str]] = set()
    out = []
    for row in read_rows(source, "train"):
        if row["kind"] in OPEN_KINDS:
            continue
        key = (row["source"], row["question_id"])
        if key in seen:
            continue
        seen.add(key)
        out.append({k: v for k, v in row.items() if k != "completion"})
        if limit and len(out) >= limit:
            break
    if not out:
        raise MedistillError(f"dataset {source.spec}: no training rows")
    return out


def permuted_prompts(
    rows: list[dict[str, Any]], orders: int, seed: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Each GRPO prompt in ``orders`` option orders: the curated one, then seeded shuffles
    with the options block of the user turn rewritten and the gold moved with its option.

    Returns the rows and how many copies kept the curated order because the user turn did
    not hold the options block as ``A. text`` lines (a custom template): never a half-moved
    prompt. Deterministic for a seed, so a resumed run trains on the same prompts.
    """
    if orders <= 1:
        return list(rows), 0
    out: list[dict[str, Any]] = []
    unchanged = 0
    for order in range(orders):
        for row in rows:
            if order == 0 or len(row["options"]) < 2:
                out.append(row)
                continue
            rng = random.Random(f"{seed}:{order}:{row['source']}:{row['question_id']}")
            shown = permute(row["options"], row["gold"], rng, must_move=True)
            old_block = format_options(row["options"])
            user = row["prompt"][-1]["content"]
            if old_block not in user:
                unchanged += 1
                out.append(row)
                continue
            new_user = user.replace(old_block, format_options(shown.options))
            prompt = [*row["prompt"][:-1], {**row["prompt"][-1], "content": new_user}]
            out.append({**row, "prompt": prompt, "options": shown.options, "gold": shown.gold})
    return out, unchanged


# ----------------------------------------------------------------------------- SFT tokenisation


def _ids(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> list[int]:
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )
    return list(enc["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _final_line_start(tokenizer: Any, completion: list[int], letters: str) -> int | None:
    """Index in ``completion`` where the final answer line (with the line break before it)
    starts, or ``None`` if it has none.

    Walks back from the end until the decoded tail holds the whole contract line.
    """
    pattern = answer_line_regex(letters)
    for k in range(1, min(len(completion), 96) + 1):
        tail = tokenizer.decode(completion[-k:], skip_special_tokens=True).strip()
        if pattern.fullmatch(tail):
            start = len(completion) - k
            # Keep the line break before it, so the line stays a line of its own.
            while start > 0 and not tokenizer.decode(completion[start - 1 : start]).strip():
                start -= 1
            return start
        if "\n" in tail:
            return None
    return None


def tokenize_sft(
    row: dict[str, Any], tokenizer: Any, *, max_length: int | None, overlong: str
) -> dict[str, Any]:
    """Token ids and completion mask of one SFT row, and what the length policy did.

    ``status`` is ``ok``, ``dropped`` (too long, ``overlong: drop``, or too long even after
    cutting), or ``truncated_middle``. The completion starts where the tokenised prompt and
    prompt + completion diverge, as in TRL's own preparation.
    """
    prompt_ids = _ids(tokenizer, row["prompt"], generation_prompt=True)
    full = _ids(tokenizer, row["prompt"] + row["completion"], generation_prompt=False)
    plen = _common_prefix(prompt_ids, full)
    status = "ok"
    if max_length is not None and len(full) > max_length:
        if overlong != "truncate_middle":
            return {"input_ids": [], "completion_mask": [], "status": "dropped"}
        completion = full[plen:]
        letters = "".join(row["options"])  # a safety row has none, hence no final line
        end = _strip_end(tokenizer, completion)
        start = _final_line_start(tokenizer, end, letters) if letters else None
        keep_tail = len(completion) - start if start is not None else None
        room = max_length - plen - (keep_tail or 0)
        if keep_tail is None or room < 16:  # no final line to keep, or no room for reasoning
            return {"input_ids": [], "completion_mask": [], "status": "dropped"}
        full = full[:plen] + completion[:room] + completion[-keep_tail:]
        status = "truncated_middle"
    mask = [0] * plen + [1] * (len(full) - plen)
    return {"input_ids": full, "completion_mask": mask, "status": status}


def _strip_end(tokenizer: Any, completion: list[int]) -> list[int]:
    """The completion without its trailing end-of-turn tokens (``<|im_end|>``, newline)."""
    special = set(tokenizer.all_special_ids)
    end = len(completion)
    while end and (
        completion[end - 1] in special or not tokenizer.decode(completion[end - 1 : end]).strip()
    ):
        end -= 1
    return completion[:end]


def sft_dataset(
    rows: list[dict[str, Any]], tokenizer: Any, *, max_length: int | None, overlong: str
) -> tuple[Any, Counter[str]]:
    """A tokenised ``datasets.Dataset`` (``input_ids``, ``completion_mask``) and status counts."""
    from datasets import Dataset

    counts: Counter[str] = Counter()
    kept: dict[str, list] = {"input_ids": [], "completion_mask": []}
    for row in rows:
        enc = tokenize_sft(row, tokenizer, max_length=max_length, overlong=overlong)
        counts[enc["status"]] += 1
        if enc["status"] != "dropped":
            kept["input_ids"].append(enc["input_ids"])
            kept["completion_mask"].append(enc["completion_mask"])
    if counts["dropped"]:
        log.warning(
            "%d of %d traces are longer than max_length=%s tokens and were dropped (overlong=%s)",
            counts["dropped"],
            len(rows),
            max_length,
            overlong,
        )
    if counts["truncated_middle"]:
        log.info("%d traces were cut in the middle to fit max_length", counts["truncated_middle"])
    return Dataset.from_dict(kept), counts
