"""The export's model card (``README.md``): what the model is for and not for, what it was
trained on, how it scored (with 95% confidence intervals) and how to run it.

Everything comes from files: the training manifest (``medistill_train.json``), the curated
dataset's ``stats.json``, and eval run folders' ``metrics.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medistill.backends.config import served_label
from medistill.notice import NOT_FOR_CLINICAL_USE


def write_export_card(
    out: Path,
    *,
    name: str,
    export: dict[str, Any],
    training: dict[str, Any] | None,
    dataset: Path | None,
    eval_runs: list[Path],
    source: Path,
) -> Path:
    """Write ``out/README.md`` and return its path."""
    training = training or {}
    ident = training.get("identity") or {}
    base = training.get("base_model") or ident.get("model")
    fmt = export["format"]
    tags = ["medistill", "medical", "distillation", *([fmt] if fmt == "gguf" else [])]
    front = ["---", f"library_name: {'gguf' if fmt == 'gguf' else 'transformers'}"]
    if base:
        front.append(f"base_model: {base}")
    front += [f"tags: [{', '.join(tags)}]", "---"]
    dataset = dataset or _dataset_from(ident.get("dataset"), source)
    parts = [
        "\n".join(front),
        f"# {name}",
        NOT_FOR_CLINICAL_USE,
        _summary(name, export, training, base),
        "## Intended use and limits\n\n" + _INTENDED_USE,
        "## Files\n\n" + _files_table(export),
        "## How to run it\n\n" + _how_to_run(export),
        "## Evaluation\n\n" + _eval_section(eval_runs, source, export),
        "## Training data\n\n" + _data_section(training, dataset),
        "## Provenance\n\n" + _provenance(export, training),
    ]
    path = out / "README.md"
    tmp = out / "README.md.tmp"
    tmp.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


_INTENDED_USE = (
    "- **For:** research on distilling medical reasoning into small models that run privately, "
    "and teaching: reading how a model reasons through an exam-style multiple-choice question.\n"
    "- **Not for:** diagnosis, treatment, triage or any advice about a real patient, nor any "
    "decision without a qualified clinician. Exam accuracy is not clinical validity: the "
    "questions are multiple choice, English, and written for exams, not for the cases a "
    "hospital sees.\n"
    "- **Limits:** a small student is often close to chance on hard benchmarks; it inherits "
    "its teacher's errors and biases; its reasoning can sound right and be wrong; the safety "
    "rewards used in training, if any, are rule-based checks, not a clinical review. "
    "Quantisation (GGUF) can change answers and lengthen reasoning: the evaluation below names "
    "the weights it measured."
)


def _summary(name: str, export: dict[str, Any], training: dict[str, Any], base: Any) -> str:
    stage = training.get("stage")
    what = (
        f"A student trained with `medistill {stage}` from **{base}**"
        if stage
        else f"The model in `{export['source']}`"
    )
    form = (
        f"exported as one GGUF file ({export['quant']}, made by llama.cpp's own converter"
        + (" and quantiser)" if export["quant"] in ("q4_k_m", "q5_k_m") else ")")
        if export["format"] == "gguf"
        else "exported as a standalone Hugging Face folder (LoRA merged; safetensors)"
    )
    trained = (
        " It answers medical multiple-choice questions with its reasoning, then a final line "
        "`The answer is X.`."
        if stage
        else ""
    )
    return f"{what}, {form}.{trained} The chat template travels with the model."


def _files_table(export: dict[str, Any]) -> str:
    rows = ["| file | size | sha256 |", "|---|---|---|"]
    for f, size in export["files"].items():
        digest = export["sha256"].get(f)
        rows.append(f"| `{f}` | {_size(size)} | {f'`{digest[:16]}…`' if digest else ''} |")
    return "\n".join(rows)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _how_to_run(export: dict[str, Any]) -> str:
    if export["format"] == "gguf":
        gguf = next(iter(export["files"]))
        return (
            "```bash\n"
            f"medistill serve --model {gguf}          # llama.cpp, OpenAI API on 127.0.0.1:8000\n"
            f"medistill serve --model {gguf} --ui     # and the explain page for clinicians\n"
            "medistill eval --backend openai --base-url http://127.0.0.1:8000/v1 "
            "--model student --benchmark medqa\n"
            "```\n\nAny llama.cpp build reads the file too, e.g. "
            f"`llama-server -m {gguf} --jinja`."
        )
    return (
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        'model = AutoModelForCausalLM.from_pretrained("<this folder>")\n'
        'tokenizer = AutoTokenizer.from_pretrained("<this folder>")\n```\n\n'
        "Or `medistill eval --model <this folder>`, `vllm serve <this folder>`, or "
        "`medistill export-model --model <this folder> --format gguf` for CPUs."
    )


def _eval_section(runs: list[Path], source: Path, export: dict[str, Any]) -> str:
    rows = []
    for run in runs:
        try:
            m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        acc = (m.get("accuracy") or {}).get("lenient") or {}
        this = _same_model(m.get("model"), source)
        label = str(m.get("label") or run.name).replace("|", "/")
        tokens = (m.get("output_tokens") or {}).get("mean")
        rows.append(
            f"| {'**' + label + '** (this model)' if this else label} | {m.get('benchmark')} "
            f"| {m.get('mode')} | {m.get('n')} | {_pct(acc.get('value'))} "
            f"[{_pct(acc.get('ci_low'))}, {_pct(acc.get('ci_high'))}] "
            f"| {_pct((m.get('no_answer_rate') or {}).get('lenient'))} "
            f"| {_pct(m.get('truncation_rate'))} | {'' if tokens is None else f'{tokens:.0f}'} |"
        )
    if not rows:
        return (
            "Not evaluated yet. Run `medistill eval --model <this model> --benchmark medqa` "
            "(or pass `--eval-runs` to `medistill export-model`) before trusting it anywhere."
        )
    head = (
        "| model | benchmark | mode | n | accuracy [95% CI] | no answer | cut off | "
        "tokens/answer |\n|---|---|---|---|---|---|---|---|"
    )
    weights = (
        " These runs measured the Hugging Face weights before conversion; a GGUF "
        f"{export['quant']} file can differ: the *As deployed* section, where there is one, "
        "measured this file itself (`medistill run`'s eval-deployed stage; by hand, "
        "`medistill eval --backend llamacpp --model <file>.gguf`)."
        if export["format"] == "gguf"
        else ""
    )
    return (
        head
        + "\n"
        + "\n".join(rows)
        + "\n\nAccuracy is lenient extraction (the shared answer extractor) with Wilson 95% "
        "intervals; no answer and cut off are shares of all questions." + weights
    )


def _same_model(model: Any, source: Path) -> bool:
    if not model:
        return False
    try:
        return Path(str(model)).resolve() == source.resolve()
    except OSError:
        return False


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


def _dataset_from(dataset: Any, source: Path) -> Path | None:
    """The curated dataset folder the training manifest names (absolute, or from the cwd)."""
    if not dataset:
        return None
    path = Path(str(dataset))
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "stats.json").is_file():
            return candidate
    return None


def _data_section(training: dict[str, Any], dataset: Path | None) -> str:
    lines = []
    data = training.get("data") or {}
    stats: dict[str, Any] = {}
    if dataset is not None:
        try:
            stats = json.loads((dataset / "stats.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            stats = {}
    if stats:
        lines.append(
            f"- Curated dataset `{dataset}` (its own card: `{dataset}/README.md`): "
            f"{stats.get('kept_traces')} of {stats.get('input_traces')} teacher traces kept, "
            f"{stats.get('kept_questions')} questions."
        )
        acc = stats.get("teacher_accuracy")
        if isinstance(acc, dict):
            acc = acc.get("overall", acc.get("value"))
        teachers = ", ".join(
            f"{served_label(t)} ({v.get('verified_correct')}/{v.get('traces')} correct)"
            for t, v in (stats.get("teachers") or {}).items()
            if isinstance(v, dict)
        )
        if teachers:
            lines.append(f"- Teachers, verified with the shared answer extractor: {teachers}.")
        if isinstance(acc, int | float):
            lines.append(f"- Teacher accuracy over all traces: {100 * acc:.1f}%.")
        dec = stats.get("decontamination") or {}
        against = dec.get("benchmarks")
        if against:
            names = ", ".join(against) if isinstance(against, list) else str(against)
            removed = dec.get("removed_questions") or 0
            if isinstance(removed, dict):  # per benchmark
                removed = sum(v for v in removed.values() if isinstance(v, int))
            lines.append(
                f"- Decontaminated against {names}: {removed} training question(s) removed."
            )
        sources = stats.get("kept_by_source") or {}
        if sources:
            lines.append(
                "- Sources: " + ", ".join(f"{k} ({v} traces)" for k, v in sources.items()) + "."
            )
    elif data:
        lines += [f"- {k}: {json.dumps(v)}" for k, v in data.items()]
    if data.get("sft_rows_trained") is not None:
        lines.append(f"- Rows trained on: {data['sft_rows_trained']}.")
    return "\n".join(lines) or "No training-data card was found for this model."


def _provenance(export: dict[str, Any], training: dict[str, Any]) -> str:
    lines = [f"- Exported from `{export['source']}` on {export['created']}."]
    if training:
        lines.append(
            f"- Training stage `{training.get('stage')}`, settings hash "
            f"`{str(training.get('identity_hash'))[:12]}`, finished {training.get('finished')}."
        )
        versions = training.get("versions") or {}
        if versions:
            lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    return "\n".join(lines)
