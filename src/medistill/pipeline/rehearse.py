"""``medistill run RECIPE --rehearse``: any recipe on a CPU in minutes, through the code paths
the recipe selects, so that a GPU run can fail only on what needs a GPU.

The recipe is first planned as it is (every key, every cross-stage rule). Then a copy is
rewritten, and every change is said:

- each model (student, distillation teacher, the curation tokenizer) becomes a tiny random
  model of the same architecture (``models.build_tiny_model``; student and teacher share
  one tokenizer, as same-family distillation needs);
- the teacher becomes a stand-in on 127.0.0.1 (``standin_teacher``) behind the same OpenAI
  client, with reasoning in ``reasoning_content`` when the recipe keeps think tags;
- a benchmark split this machine has no copy of becomes a stand-in file in that benchmark's
  own format (``data.standin``), read through the real loader;
- sizes shrink (a few questions, steps, tokens), in proportions the plan's length rules
  accept;
- what needs a GPU is swapped for its CPU path: vLLM generation in GRPO and vLLM evaluation
  for transformers, FlashAttention for SDPA, QLoRA for LoRA, FSDP/ZeRO for two DDP ranks over
  gloo (``launch``), several GPUs for two CPU processes.

Everything else (LoRA or full weights, bf16 with fp32 master weights, rewards, stages,
think tags, sources, samples, curation filters, decontamination, the report) runs as the
recipe says. The rehearsal's run folder is ``<root>/<name>-rehearsal``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medistill.config import load_recipe
from medistill.errors import MedistillError
from medistill.pipeline.checks import PROMPT_ALLOWANCE

log = logging.getLogger(__name__)

#: Sizes a rehearsal runs at (a 2-core CPU, a few minutes per recipe).
QUESTIONS = 8  # per generate source
TRACE_TOKENS = 192  # curate.max_tokens, hence eval.max_new_tokens
COMPLETION_TOKENS = 32  # GRPO / distillation completions
EVAL_QUESTIONS = 4
PROCESSES = 2  # CPU ranks standing in for several GPUs

_TEACHER_DROP = ("api_key_env", "requests_per_minute", "tokens_per_minute", "base_url")


@dataclass
class Rehearsal:
    """A rewritten recipe, ready to run, and what was swapped to make it."""

    recipe: Path
    data_dir: Path
    questions: list[Any]
    reasoning: bool
    notes: list[str] = field(default_factory=list)


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _tiny(spec: str, work: Path, cache: dict[str, str], notes: list[str], *, seed: int) -> str:
    """A tiny random model of ``spec``'s architecture (built once per rehearsal folder)."""
    from medistill.models import build_tiny_model, tiny_kind

    if spec in cache:
        return cache[spec]
    kind, how = tiny_kind(spec)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)[-60:]
    out = work / "models" / f"{name}-tiny-{kind}"
    if not (out / "config.json").is_file():
        build_tiny_model(out, seed=seed, model_type=kind)
    cache[spec] = str(out)
    _note(notes, f"model {spec} -> a tiny random {kind} model ({how}) at {out}")
    return str(out)


def _standin_data(data: dict[str, Any], work: Path, notes: list[str]) -> Path:
    """A data dir holding every split the recipe reads: the user's own copy where this
    machine has one ($MEDISTILL_DATA_DIR, linked), else a stand-in in the benchmark's format."""
    from medistill.data.registry import BENCHMARKS, data_dir, get_spec
    from medistill.data.standin import WRITERS, write_standin

    gen = data.get("generate") or {}
    sources = gen.get("sources") or (
        [{"benchmark": gen.get("benchmark") or "sample", "split": gen.get("split")}] if gen else []
    )
    run = data.get("run") or {}
    evals = [b.partition("=") for b in run.get("eval_benchmarks") or ["sample_heldout"]]
    decontam = list((data.get("curate") or {}).get("eval_benchmarks") or [])
    root = work / "data"
    root.mkdir(parents=True, exist_ok=True)
    user = data_dir()
    needed: list[tuple[str, str, str]] = []  # (benchmark, split, role)
    for src in sources:
        spec = get_spec(src["benchmark"])
        needed.append((spec.name, src.get("split") or spec.split, "train"))
    from medistill.data.safety import SAFETY_BENCHMARKS

    for name, _, _ in evals:
        if name in SAFETY_BENCHMARKS:  # harmful requests, not MCQs: read by the safety eval
            if name == "medsafetybench":
                _safety_data(root, user, notes)
            continue
        spec = get_spec(name)
        needed.append((spec.name, spec.split, "eval"))
    for entry in decontam:
        name = entry.partition("=")[0]
        if name in BENCHMARKS and name != "none":
            needed.append((name, BENCHMARKS[name].split, "eval"))
    roles: dict[str, list[tuple[str, str]]] = {"train": [], "eval": []}
    for bench, split, role in dict.fromkeys(needed):
        if bench.startswith("sample"):
            continue  # embedded: always there
        roles[role].append((bench, split))
    for pairs in roles.values():
        for slot, (bench, split) in enumerate(pairs):
            spec = get_spec(bench)
            real = next(
                (user / n for n in spec.local_candidates(split) if user and (user / n).exists()),
                None,
            )
            if real is not None:
                link = root / spec.local_candidates(split)[0]
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(real.resolve())
                _note(notes, f"{bench} {split}: your copy {real} (read as a real run reads it)")
            elif bench in WRITERS:
                path = write_standin(bench, split, root, slot=slot, slots=len(pairs))
                _note(
                    notes,
                    f"{bench} {split}: no copy on this machine -> a stand-in in its own format "
                    f"({path.name}; the embedded sample's questions)",
                )
            else:
                raise MedistillError(
                    f"rehearsal: {bench} {split} is not on this machine and has no stand-in; "
                    f"point $MEDISTILL_DATA_DIR at a copy, or leave it out of the recipe"
                )
    return root


def _safety_data(root: Path, user: Path | None, notes: list[str]) -> None:
    """MedSafetyBench for a rehearsal: the user's copy (linked) or a stand-in in its release
    layout made of the embedded safety sample."""
    import csv

    from medistill.data.safety import CATEGORIES, load_safety, medsafetybench_root

    target = root / "medsafetybench"
    if target.exists():
        return
    try:
        real = medsafetybench_root(user / "medsafetybench" if user else None)
    except MedistillError:
        real = None
    if real is not None:
        target.symlink_to(Path(real).resolve())
        _note(notes, f"medsafetybench: your copy {real}")
        return
    sample = load_safety("safety_sample")
    for source in ("gpt4", "llama2"):
        folder = target / "test" / source
        folder.mkdir(parents=True, exist_ok=True)
        for category in CATEGORIES:
            rows = [r for r in sample if r.category == category]
            with open(folder / f"med_safety_demonstrations_category_{category}.csv", "w",
                      newline="", encoding="utf-8") as fh:  # fmt: skip
                w = csv.writer(fh)
                w.writerow(["", "harmful_medical_request", "safe_response"])
                for i, r in enumerate(rows):
                    w.writerow([i, r.request, r.safe_response])
    _note(notes, "medsafetybench: no copy on this machine -> a stand-in in its release layout "
                 "(the embedded safety sample)")  # fmt: skip


def _to_stand_in(teacher: dict[str, Any]) -> dict[str, Any]:
    """A teacher section pointed at the stand-in: the OpenAI backend, without the keys of
    another endpoint or engine (its URL is filled in when the stand-in starts)."""
    from medistill.backends.config import ENGINE_KEYS

    out = {
        k: v for k, v in teacher.items() if k not in (*_TEACHER_DROP, *ENGINE_KEYS, "batch_size")
    }
    out["backend"] = "openai"
    out["concurrency"] = min(int(out.get("concurrency") or 8), 8)
    return out


def _shrink_generate(gen: dict[str, Any], notes: list[str]) -> None:
    teacher = dict(gen.get("teacher") or {})
    old = f"{teacher.get('backend', 'openai')} teacher {teacher.get('model')}"
    gen["teacher"] = _to_stand_in(teacher)
    _note(notes, f"{old} -> a stand-in teacher on 127.0.0.1 (same OpenAI client and store)")
    for src in gen.get("sources") or [gen]:
        if src.get("sample"):
            src["sample"] = {**src["sample"], "n": min(int(src["sample"]["n"]), QUESTIONS // 2)}
        else:
            src["limit"] = min(int(src.get("limit") or QUESTIONS), QUESTIONS)
    gen["samples"] = min(int(gen.get("samples") or 1), 2)
    gen["max_tokens"] = min(int(gen.get("max_tokens") or 256), 256)
    for key in ("max_requests", "max_cost"):
        gen.pop(key, None)
    _note(notes, f"generate: at most {QUESTIONS} questions per source, 2 samples each")


def _cpu_training(sec: dict[str, Any], stage: str, notes: list[str]) -> None:
    """What needs a GPU becomes its CPU path; sizes shrink."""
    if sec.get("bf16") is None and not sec.get("fp16"):
        sec["bf16"] = True  # what the recipe gets on a bf16 GPU: fp32 masters, bf16 autocast
    if sec.get("bf16") or sec.get("fp16"):
        sec["use_cpu"] = True  # transformers trains in half precision on a CPU only when told
        _note(notes, f"{stage}: bf16 autocast on the CPU, as on a bf16 GPU (the default there)")
    if sec.get("attn_implementation", "").startswith("flash_attention"):
        sec["attn_implementation"] = "sdpa"
        _note(notes, f"{stage}: FlashAttention -> SDPA (FlashAttention needs a GPU)")
    if sec.get("load_in_4bit") or sec.get("load_in_8bit"):
        sec["load_in_4bit"] = sec["load_in_8bit"] = False
        _note(notes, f"{stage}: QLoRA -> LoRA on unquantised weights (bitsandbytes needs CUDA)")
    if sec.get("use_liger_kernel"):
        sec["use_liger_kernel"] = False
        _note(notes, f"{stage}: Liger kernels off (they need a GPU)")
    if sec.get("use_vllm"):
        sec["use_vllm"] = False
        _note(notes, f"{stage}: vLLM generation -> transformers generation (vLLM needs CUDA)")
    for key in [k for k in sec if k.startswith("vllm_")]:
        sec.pop(key)
    for key in ("push_to_hub", "hub_model_id", "torch_compile"):
        sec.pop(key, None)
    sec.update(
        max_steps=2 if stage == "sft" else 1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        save_steps=1,
        logging_steps=1,
        dataloader_num_workers=0,
    )
    if stage == "sft":
        sec["max_length"] = TRACE_TOKENS + PROMPT_ALLOWANCE
    else:
        sec["max_completion_length"] = COMPLETION_TOKENS
        sec.pop("max_prompt_length", None)
        for key in ("generation_batch_size", "steps_per_generation"):
            sec.pop(key, None)
    if stage == "grpo":
        sec["num_generations"] = 2
        rewards = copy.deepcopy(sec.get("rewards"))
        if isinstance(rewards, dict) and isinstance(rewards.get("conciseness"), dict):
            c = rewards["conciseness"]
            c["budget"] = COMPLETION_TOKENS
            c["buffer"] = min(int(c.get("buffer", 8)), COMPLETION_TOKENS // 2)
            sec["rewards"] = rewards


def prepare(recipe: str | Path, work_root: Path | None = None) -> Rehearsal:
    """Plan ``recipe`` as it is, then write its rehearsal copy (see the module docstring)."""
    from medistill.pipeline.plan import plan

    path = Path(recipe)
    original = plan(path)  # the recipe as written must plan: every key, every length rule
    data = copy.deepcopy(load_recipe(path))
    notes: list[str] = []
    run = dict(data.get("run") or {})
    name = f"{original.run.name}-rehearsal"
    root = Path(original.run.root)
    work = (work_root or root) / name / "rehearsal"
    work.mkdir(parents=True, exist_ok=True)
    run["name"], run["root"] = name, str(work_root or root)
    from medistill.pipeline.launch import SHARDED, accelerate_config_type, launch_mode

    if run.get("accelerate_config"):
        run["accelerate_config"] = original.run.accelerate_config  # resolved beside the recipe
        kind = accelerate_config_type(original.run.accelerate_config) or ""
        if kind.startswith(SHARDED):
            _note(
                notes,
                f"run: {kind} ({Path(original.run.accelerate_config).name}) -> plain DDP on "
                "CPU ranks (sharding needs GPUs); fp32 master weights come from medistill's "
                "fp32 load with bf16 autocast instead of the engine's",
            )
    if launch_mode(original.run) == "inline" and original.run.launcher == "auto":
        run["launcher"] = "process"
        _note(
            notes,
            "run: each training stage in its own process, as on a CUDA machine (here it "
            "would run in-process)",
        )
    n = original.run.num_processes
    if n and n > PROCESSES:
        run["num_processes"] = PROCESSES
        _note(notes, f"run: {n} processes -> {PROCESSES} CPU processes (DDP over gloo)")
    if original.run.eval_backend != "transformers":
        run["eval_backend"] = "transformers"
        _note(notes, "eval: the run's models are evaluated with transformers (vLLM needs CUDA)")
    data["run"] = run
    models: dict[str, str] = {}
    reasoning = bool((data.get("curate") or {}).get("think_tags"))
    if "generate" in original.configs:
        _shrink_generate(data["generate"], notes)
    if "rubrics" in original.configs and isinstance(data["rubrics"].get("teacher"), dict):
        data["rubrics"]["teacher"] = _to_stand_in(data["rubrics"]["teacher"])
        _note(notes, "rubrics: the teacher that writes them -> the stand-in teacher")
    if "rubrics" in original.configs:
        data["rubrics"].pop("max_cost", None)
    rubric = ((data.get("grpo") or {}).get("rewards") or {}).get("rubric")
    if isinstance(rubric, dict):
        rubric.pop("api_key_env", None)
        _note(notes, "grpo: the rubric reward's judge -> the stand-in teacher")
    if "curate" in original.configs:
        cur = data["curate"]
        cur["max_tokens"] = TRACE_TOKENS
        cur["min_tokens"] = min(int(cur.get("min_tokens") or 4), 4)
        cur.pop("difficulty_eval", None)
    student = original.values.get("sft", {}).get("model") or next(
        (original.values[s].get("model") for s in ("grpo", "distill") if s in original.values),
        None,
    )
    for stage in ("sft", "grpo", "distill"):
        if stage not in original.configs:
            continue
        sec = data.setdefault(stage, {})
        if sec.get("model"):
            sec["model"] = _tiny(str(sec["model"]), work, models, notes, seed=0)
        if stage == "distill" and sec.get("teacher"):
            sec["teacher"] = _tiny(str(sec["teacher"]), work, models, notes, seed=1)
        _cpu_training(sec, stage, notes)
    if "curate" in original.configs:
        tok = data["curate"].get("tokenizer")
        if tok:
            data["curate"]["tokenizer"] = (
                _tiny(str(student), work, models, notes, seed=0)
                if student and tok == student
                else _tiny(str(tok), work, models, notes, seed=0)
            )
    if "eval" in original.configs:
        ev = data.setdefault("eval", {})
        ev.update(limit=EVAL_QUESTIONS, max_new_tokens=TRACE_TOKENS, batch_size=EVAL_QUESTIONS)
        _note(notes, f"eval: {EVAL_QUESTIONS} questions per benchmark, {TRACE_TOKENS} tokens")
    _note(notes, f"sizes: traces <= {TRACE_TOKENS} tokens, 2 SFT steps, 1 GRPO/distill step")
    data_dir = _standin_data(data, work, notes)
    out = work / "recipe.yaml"
    questions = _questions(data, data_dir)
    # the teacher's URL is known only once the stand-in starts: written by run()
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return Rehearsal(
        recipe=out, data_dir=data_dir, questions=questions, reasoning=reasoning, notes=notes
    )


def _questions(data: dict[str, Any], data_dir: Path) -> list[Any]:
    """Every question the stand-in teacher may be asked: all of each generate source's split
    and of each evaluation benchmark (the teacher is evaluated too)."""
    from medistill.data import load_benchmark

    gen = data.get("generate") or {}
    reads = [
        (src.get("benchmark") or "sample", src.get("path"), src.get("split"))
        for src in (gen.get("sources") or ([gen] if gen else []))
    ]
    from medistill.data.safety import SAFETY_BENCHMARKS

    for entry in (data.get("run") or {}).get("eval_benchmarks") or ["sample_heldout"]:
        name, _, path = entry.partition("=")
        if name not in SAFETY_BENCHMARKS:  # a harmful request is answered, not looked up
            reads.append((name, path or None, None))
    questions = []
    with _env(MEDISTILL_DATA_DIR=str(data_dir)):
        for name, path, split in reads:
            questions.extend(load_benchmark(name, path=path, split=split).questions)
    return questions


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def rehearse(recipe: str | Path, **run_kwargs: Any) -> dict[str, Any]:
    """Rehearse ``recipe`` (see the module docstring); the summary lists what was swapped."""
    from medistill.pipeline import run_pipeline
    from medistill.pipeline.standin_teacher import StandInTeacher

    r = prepare(recipe)
    for note in r.notes:
        log.info("rehearsal: %s", note)
    data = load_recipe(r.recipe)
    with StandInTeacher(r.questions, reasoning=r.reasoning) as teacher:
        if "generate" in data:
            data["generate"]["teacher"]["base_url"] = [teacher.url]
        if isinstance((data.get("rubrics") or {}).get("teacher"), dict):
            data["rubrics"]["teacher"]["base_url"] = [teacher.url]
        rubric = ((data.get("grpo") or {}).get("rewards") or {}).get("rubric")
        if isinstance(rubric, dict):  # the judge, too, is the stand-in
            rubric["base_url"] = [teacher.url]
        r.recipe.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        env = {
            "MEDISTILL_DATA_DIR": str(r.data_dir),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
        with _env(**env):
            # The preflight of the recipe as written is the rehearsal's to report; the
            # rewritten one runs a sharded accelerate config as CPU ranks.
            summary = run_pipeline(r.recipe, preflight=False, **run_kwargs)
    summary["rehearsal"] = {
        "recipe": str(r.recipe),
        "swapped": r.notes,
        "teacher": dict(teacher.stats),
    }
    return summary
