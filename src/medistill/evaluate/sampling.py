"""How an eval run decodes: the recipe's settings where it gives them, else the model's own.

A thinking model is meant to be sampled: Qwen3's ``generation_config.json`` says
``do_sample: true, temperature: 0.6, top_p: 0.95, top_k: 20``, and its card warns that greedy
decoding in thinking mode repeats endlessly. A greedy evaluation of such a model scores its
loops as "no answer" and drags its baseline down. So for each of ``temperature``, ``top_p``
and ``top_k`` that the recipe (or command line) leaves unset, :func:`resolve` takes the
model's ``generation_config.json`` (a local folder's file; a Hub id's from the Hugging Face
cache or the Hub) when it samples (``do_sample: true``), and greedy decoding otherwise. A
value the recipe sets always wins. A run sampled by the model's settings asks each question
``sampled_samples`` times with seeds ``seed, seed + 1, ...`` and reports the mean accuracy
over the samples, its spread and each sample's (``samples_accuracy`` in ``metrics.json``).

What was used, and where each value came from, is written to the run's ``config.json``
(``sampling_used``), copied into ``metrics.json`` (``sampling``) and shown by the report.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medistill.evaluate.metrics import wilson_interval
from medistill.models import resolve_model

if TYPE_CHECKING:
    from medistill.evaluate.config import EvalConfig

log = logging.getLogger(__name__)

#: The keys :func:`resolve` fills in.
RESOLVED_KEYS = ("temperature", "top_p", "top_k", "samples", "vote")
#: Where a value came from.
FROM_RECIPE = "recipe"
FROM_MODEL = "generation_config.json"
FROM_DEFAULT = "default"

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@functools.lru_cache(maxsize=64)
def generation_config(model: str, backend: str) -> tuple[dict[str, Any] | None, str]:
    """The model's ``generation_config.json`` as a dict (``None`` when there is none to
    read) and where it was read, or why it was not.

    A local folder (or the packaged ``smollm2``) is read directly; a Hub id goes through
    ``huggingface_hub.hf_hub_download``, which answers from the local cache and honours
    ``HF_HUB_OFFLINE``. A ``.gguf`` file and a name that is neither (a hosted API's
    ``deepseek-reasoner``) have none.
    """
    path = Path(resolve_model(model)).expanduser()
    if path.is_dir():
        file = path / "generation_config.json"
        if not file.is_file():
            return None, f"{path} has no generation_config.json"
        return _read(file), str(file)
    if path.suffix == ".gguf" or backend == "llamacpp":
        return None, "a GGUF file carries no generation_config.json"
    if not _HUB_ID.match(model):
        return None, f"{model!r} is not a local folder or a Hub id"
    try:
        from huggingface_hub import hf_hub_download

        file = Path(hf_hub_download(model, "generation_config.json"))
    except Exception as e:  # unreachable Hub, offline without a cached copy, no such file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"{model}/generation_config.json not read ({type(e).__name__}: {reason})"
    return _read(file), f"{model}/generation_config.json ({file})"


def _read(file: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("%s unreadable (%s): decoding greedily", file, e)
        return None
    return data if isinstance(data, dict) else None


def is_resolved(cfg: EvalConfig) -> bool:
    """Whether ``cfg``'s sampling keys are all decided (``top_k`` may stay ``None``)."""
    return all(getattr(cfg, k) is not None for k in RESOLVED_KEYS if k != "top_k")


def resolve(cfg: EvalConfig) -> tuple[EvalConfig, dict[str, Any]]:
    """``cfg`` with every sampling key decided, and the record of what was used and why.

    Per key: the recipe's value; else, when the model's ``generation_config.json`` samples,
    its value (``temperature`` 1.0 and ``top_p`` 1.0 where it samples without naming them,
    as transformers reads it); else greedy (``temperature`` 0, ``top_p`` 1, no ``top_k``).
    ``samples``: the recipe's, else ``sampled_samples`` when the model's own settings make
    decoding sample (a temperature the recipe sets keeps one sample unless it sets more),
    else 1;
    ``vote``: the recipe's, else ``mean`` for ``sampled_samples``, else ``majority``.
    Resolving a resolved config changes no value.
    """
    explicit = {k: getattr(cfg, k) for k in RESOLVED_KEYS if getattr(cfg, k) is not None}
    wanted = {"temperature", "top_p", "top_k"} - set(explicit)
    gen, where = (None, "not read: the recipe sets every sampling key")
    if wanted and cfg.mode == "generate":
        gen, where = generation_config(cfg.model, cfg.backend)
    samples_from_model = bool(gen and gen.get("do_sample") is True)
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    model_defaults = {"temperature": 1.0, "top_p": 1.0, "top_k": None}
    greedy = {"temperature": 0.0, "top_p": 1.0, "top_k": None}
    for key in ("temperature", "top_p", "top_k"):
        if key in explicit:
            values[key], source[key] = explicit[key], FROM_RECIPE
        elif samples_from_model:
            value = gen.get(key, model_defaults[key])  # type: ignore[union-attr]
            values[key] = None if key == "top_k" and not value else value
            source[key] = FROM_MODEL if key in gen else f"{FROM_DEFAULT} (sampled)"  # type: ignore[operator]
        else:
            values[key], source[key] = greedy[key], f"{FROM_DEFAULT} (greedy)"
    # the model's own sampling (not a temperature the recipe chose) gets several samples
    model_sampled = values["temperature"] > 0 and source["temperature"] != FROM_RECIPE
    if "samples" in explicit:
        values["samples"], source["samples"] = explicit["samples"], FROM_RECIPE
    elif model_sampled and cfg.mode == "generate":
        values["samples"], source["samples"] = cfg.sampled_samples, "sampled_samples"
    else:
        values["samples"], source["samples"] = 1, FROM_DEFAULT
    if "vote" in explicit:
        values["vote"], source["vote"] = explicit["vote"], FROM_RECIPE
    else:
        by_default = source["samples"] == "sampled_samples"
        values["vote"], source["vote"] = ("mean" if by_default else "majority"), FROM_DEFAULT
    record = {
        **{k: values[k] for k in RESOLVED_KEYS},
        "seed": cfg.seed,
        "source": source,
        "generation_config": where,
    }
    if wanted and not gen and "not read" in where:
        log.warning("%s: %s; decoding greedily where the recipe sets no sampling", cfg.model, where)
    return dataclasses.replace(cfg, **values), record


def describe(record: dict[str, Any]) -> str:
    """One line for a report: ``temperature 0.6, top_p 0.95, top_k 20 (generation_config.json);
    mean of 4 samples`` or ``greedy (default: ...)``."""
    src = record.get("source") or {}
    if not record.get("temperature"):
        where = src.get("temperature", "?")
        text = f"greedy (temperature 0: {where})"
    else:
        parts = [f"temperature {record['temperature']:g}", f"top_p {record.get('top_p'):g}"]
        if record.get("top_k"):
            parts.append(f"top_k {record['top_k']}")
        origins = sorted({src.get(k, "?") for k in ("temperature", "top_p", "top_k")})
        text = f"{', '.join(parts)} ({'; '.join(origins)})"
    n = record.get("samples") or 1
    if n > 1:
        how = "mean" if record.get("vote") == "mean" else "majority vote"
        text += f"; {how} of {n} samples (seeds {record.get('seed') or 0}..)"
    return text


def samples_accuracy(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The accuracy of each sample (``sample`` k of every question and order, lenient
    extraction, error rows left out) and their mean and standard deviation: the spread a
    sampled model's score has from one seed to the next. ``None`` with fewer than two."""
    by_sample: dict[int, list[bool]] = {}
    for r in rows:
        if r.get("gold") and r.get("finish_reason") != "error" and "sample" in r:
            by_sample.setdefault(int(r["sample"]), []).append(r.get("extracted") == r["gold"])
    if len(by_sample) < 2:
        return None
    per = [sum(v) / len(v) for _, v in sorted(by_sample.items()) if v]
    mean = sum(per) / len(per)
    std = (sum((a - mean) ** 2 for a in per) / (len(per) - 1)) ** 0.5
    return {"mean": mean, "std": std, "per_sample": per}


def per_question_intervals(metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Turn ``metrics`` computed over every sample's row (``vote`` mean) into figures per
    question: ``n`` is the number of questions (and orders) scored, and each accuracy's 95%
    interval is the Wilson interval of its mean at that ``n`` (samples of one question are
    not independent trials, so the pooled count would overstate the precision).
    ``n_answers`` keeps the pooled count."""
    scored = [r for r in rows if r.get("gold") and r.get("finish_reason") != "error"]
    questions = len({(r.get("base_id"), r.get("shift")) for r in scored})
    metrics["n_answers"] = metrics["n"]
    metrics["n"] = questions
    for mode, acc in metrics["accuracy"].items():
        if acc.get("value") is None or not questions:
            continue
        lo, hi = wilson_interval(acc["value"] * questions, questions)  # type: ignore[arg-type]
        metrics["accuracy"][mode] = {
            **acc,
            "ci_low": lo,
            "ci_high": hi,
            "correct": None,
            "n": questions,
            "answers": acc.get("n"),
        }
