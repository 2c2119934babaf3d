"""``medistill run RECIPE --rehearse``: any recipe on a CPU in minutes, through the code paths
the recipe selects, so that a GPU run can fail only on what needs a GPU.

The recipe is first planned as it is (every key, every cross-stage rule). Then a copy is
rewritten, and every change is said:

- each model (student, distillation teacher, the curation tokenizer) becomes a tiny random
  model of the same architecture (``tiny_model.build_tiny_model``; student and teacher share
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

So that each stage does its work, not merely exits 0: the stand-in's traces are short, SFT
runs fast enough (:data:`SFT_STEPS`, :data:`SFT_LEARNING_RATE`) for the tiny student to learn
them and to stop, so GRPO's completions end within :data:`COMPLETION_TOKENS` and its rewards
differ within a group; after the run every training stage's saved weights are compared with
the ones it started from (:mod:`~medistill.pipeline.rehearse_checks`), and a stage that
changed none fails the rehearsal. Every value rewritten is listed as it ran
(:mod:`~medistill.pipeline.rehearse_notes`); the report is titled as a rehearsal and its
teacher row names the stand-in; the stand-in keeps one port per rehearsal folder, so an
unchanged recipe rehearsed again skips every stage. The preflight of the recipe as written
(:func:`medistill.pipeline.preflight.recipe_problems`) is reported first: what a real run of it
on this machine would stop on. The recipe's ``export`` and ``eval-deployed`` run after the rest
on a convertible stand-in student where llama.cpp can (:mod:`~medistill.pipeline.rehearse_deploy`).
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

from medistill.backends.config import ENGINE_KEYS
from medistill.config import load_recipe
from medistill.data import load_benchmark
from medistill.data.safety import SAFETY_BENCHMARKS
from medistill.data.standin import standin_data_dir
from medistill.models import model_name
from medistill.pipeline import rehearse_deploy as deploy_rehearsal
from medistill.pipeline.checks import PROMPT_ALLOWANCE
from medistill.pipeline.deploy_plan import DEPLOY_STAGES
from medistill.pipeline.entries import parse_entries
from medistill.pipeline.launch import SHARDED, accelerate_config_type, launch_mode
from medistill.pipeline.plan import plan
from medistill.pipeline.preflight import recipe_problems
from medistill.pipeline.rehearse_checks import check_trained, describe, grpo_health
from medistill.pipeline.rehearse_notes import changes
from medistill.pipeline.runner import run_pipeline
from medistill.pipeline.standin_teacher import StandInTeacher, kept_port
from medistill.tiny_model import build_tiny_model, tiny_kind

log = logging.getLogger(__name__)

#: Sizes a rehearsal runs at (a 2-core CPU, a minute or two per recipe).
QUESTIONS = 8  # per generate source
TRACE_TOKENS = 128  # curate.max_tokens, hence eval.max_new_tokens (stand-in traces: ~60)
#: GRPO / distillation completions: the stand-in teacher's traces are ~60 tokens in the tiny
#: tokenizer, so a student that learned them ends well inside this cap.
COMPLETION_TOKENS = 128  # <= eval.max_new_tokens (TRACE_TOKENS), as the plan requires
EVAL_QUESTIONS = 4
PROCESSES = 2  # CPU ranks standing in for several GPUs
#: SFT long and fast enough for a tiny random student to learn the stand-in's short answer
#: format, end of turn included: GRPO then samples completions that end, with rewards that
#: differ within a group (at the recipe's own rate it would learn nothing in minutes).
SFT_STEPS = 120
SFT_LEARNING_RATE = {"lora": 1e-2, "full": 5e-3}
#: The tiny models' embeddings are drawn at this std (transformers': 0.02). Tied to the
#: output layer, they bound the logits: at 0.02 no LoRA adapter (which does not train them)
#: can make a 64-wide model sure of any next token, so it would never learn to stop.
EMBEDDING_STD = 0.15
GRPO_GENERATIONS = 4
GRPO_PROMPTS_PER_STEP = 4  # in all processes together (a rehearsal trains on ~6 questions)
#: GRPO steps: a step whose every group sampled equal rewards has no gradient (it happened in
#: about one demo-with-rubrics rehearsal in several at one step), so three give it the chances
#: a real run's hundreds of steps have; the weight check still requires a change.
GRPO_STEPS = 3
TITLE = "Rehearsal (CPU, tiny random models)"
STANDIN_NAME = "stand-in teacher (knows the answer key)"

_TEACHER_DROP = ("api_key_env", "requests_per_minute", "tokens_per_minute", "base_url")


@dataclass
class Rehearsal:
    """A rewritten recipe, ready to run, and what was swapped to make it."""

    recipe: Path
    data_dir: Path
    questions: list[Any]
    reasoning: bool
    port: int
    stages: list[str]
    notes: list[str] = field(default_factory=list)  # what was swapped, with the values used
    kept: list[str] = field(default_factory=list)  # files of this machine read as they are
    preflight: list[str] = field(default_factory=list)  # the recipe as written, here
    deploy: dict[str, Any] | None = None  # the recipe's run + deploy sections: rehearse them


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _tiny(spec: str, work: Path, cache: dict[str, str], notes: list[str], *, seed: int) -> str:
    """A tiny random model of ``spec``'s architecture (built once per rehearsal folder)."""
    if spec in cache:
        return cache[spec]
    kind, how = tiny_kind(spec)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)[-60:]
    out = work / "models" / f"{name}-tiny-{kind}"
    if not (out / "config.json").is_file():
        build_tiny_model(out, seed=seed, model_type=kind)
        _scale_embeddings(out)
    cache[spec] = str(out)
    _note(
        notes,
        f"model {spec} -> a tiny random {kind} model ({how}; embeddings at std {EMBEDDING_STD}, "
        f"so that it can learn to stop) at {out}",
    )
    return str(out)


def _scale_embeddings(folder: Path) -> None:
    """Redraw nothing, rescale: the tiny model's (tied) embeddings to :data:`EMBEDDING_STD`."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        if name in tensors:
            w = tensors[name]
            tensors[name] = (w * (EMBEDDING_STD / float(w.float().std()))).to(w.dtype)
    save_file(tensors, path, metadata={"format": "pt"})


def _to_stand_in(teacher: dict[str, Any], url: str) -> dict[str, Any]:
    """A teacher section pointed at the stand-in on ``url``: the OpenAI backend (whatever
    the recipe's, openai or an in-process vLLM engine), without the keys of another endpoint
    or engine, named as what it is (the report's teacher row reads this name)."""
    out = {
        k: v for k, v in teacher.items() if k not in (*_TEACHER_DROP, *ENGINE_KEYS, "batch_size")
    }
    out["model"] = f"{STANDIN_NAME} for {model_name(str(teacher.get('model') or 'the teacher'))}"
    out["backend"] = "openai"
    out["base_url"] = [url]
    out["concurrency"] = min(int(out.get("concurrency") or 8), 8)
    return out


def _shrink_generate(gen: dict[str, Any], url: str, notes: list[str]) -> None:
    teacher = dict(gen.get("teacher") or {})
    old = f"{teacher.get('backend', 'openai')} teacher {teacher.get('model')}"
    gen["teacher"] = _to_stand_in(teacher, url)
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


def _cpu_training(sec: dict[str, Any], stage: str, notes: list[str], processes: int) -> None:
    """What needs a GPU becomes its CPU path; sizes shrink (GRPO's batch over ``processes``
    ranks stays within the few questions a rehearsal trains on: a batch larger than the
    dataset would run 0 steps)."""
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
        max_steps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        save_steps=1,
        logging_steps=1,
        dataloader_num_workers=0,
    )
    if stage == "sft":
        sec.update(max_length=TRACE_TOKENS + PROMPT_ALLOWANCE, max_steps=SFT_STEPS)
        lr = SFT_LEARNING_RATE["lora" if sec.get("use_peft") else "full"]
        sec.update(learning_rate=lr, save_steps=SFT_STEPS, logging_steps=5)
        _note(
            notes,
            "sft: a faster rate and more steps, so the tiny random student learns the stand-in's "
            "short answer format (GRPO or distillation then samples completions that end)",
        )
    else:
        sec["max_completion_length"] = COMPLETION_TOKENS
        sec.pop("max_prompt_length", None)
        for key in ("generation_batch_size", "steps_per_generation"):
            sec.pop(key, None)
    if stage == "grpo":
        sec.update(num_generations=GRPO_GENERATIONS, max_steps=GRPO_STEPS, save_steps=GRPO_STEPS)
        per_rank = max(1, GRPO_PROMPTS_PER_STEP // processes)
        sec["per_device_train_batch_size"] = GRPO_GENERATIONS * per_rank
        rewards = copy.deepcopy(sec.get("rewards"))
        if isinstance(rewards, dict) and isinstance(rewards.get("conciseness"), dict):
            c = rewards["conciseness"]
            c["budget"] = COMPLETION_TOKENS
            c["buffer"] = min(int(c.get("buffer", 8)), COMPLETION_TOKENS // 2)
            sec["rewards"] = rewards


def prepare(recipe: str | Path, work_root: Path | None = None) -> Rehearsal:
    """Plan ``recipe`` as it is, then write its rehearsal copy (see the module docstring)."""
    path = Path(recipe)
    original = plan(path)  # the recipe as written must plan: every key, every length rule
    written = load_recipe(path)
    data = copy.deepcopy(written)
    notes: list[str] = []
    kept: list[str] = []
    run = dict(data.get("run") or {})
    name = f"{original.run.name}-rehearsal"
    root = Path(original.run.root)
    work = (work_root or root) / name / "rehearsal"
    work.mkdir(parents=True, exist_ok=True)
    port = kept_port(work / "standin_port")
    url = f"http://127.0.0.1:{port}/v1"
    run["name"], run["root"] = name, str(work_root or root)
    run["title"] = f"{TITLE} — {original.run.title or f'medistill run {original.run.name}'}"
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
    deploy = None
    if any(s in original.configs for s in DEPLOY_STAGES):
        # Said, never a silent pass: run after the others on a convertible stand-in, or not.
        if run.get("stages"):
            run["stages"] = [s for s in run["stages"] if s not in DEPLOY_STAGES]
        data["deploy"] = {**(data.get("deploy") or {}), "enabled": False}
        why = deploy_rehearsal.deploy_rehearsable()
        deploy = None if why else {k: copy.deepcopy(written.get(k)) for k in ("run", "deploy")}
        _note(notes, deploy_rehearsal.deploy_note(why))
    models: dict[str, str] = {}
    reasoning = bool((data.get("curate") or {}).get("think_tags"))
    if "generate" in original.configs:
        _shrink_generate(data["generate"], url, notes)
    if "rubrics" in original.configs and isinstance(data["rubrics"].get("teacher"), dict):
        data["rubrics"]["teacher"] = _to_stand_in(data["rubrics"]["teacher"], url)
        _note(notes, "rubrics: the teacher that writes them -> the stand-in teacher")
    if "rubrics" in original.configs:
        data["rubrics"].pop("max_cost", None)
    rubric = ((data.get("grpo") or {}).get("rewards") or {}).get("rubric")
    if isinstance(rubric, dict):
        rubric.pop("api_key_env", None)
        rubric["base_url"] = [url]
        _note(notes, "grpo: the rubric reward's judge -> the stand-in teacher")
    if "curate" in original.configs:
        cur = data["curate"]
        cur["max_tokens"] = TRACE_TOKENS
        cur["min_tokens"] = min(int(cur.get("min_tokens") or 4), 4)
        cur.pop("difficulty_eval", None)
        if cur.get("safety_mix") or cur.get("safety_mix_file"):
            # Even two natural-language rows (a refusal, an open answer) beside 8 stand-in
            # traces keep a tiny random student from learning their answer format in
            # SFT_STEPS: GRPO then samples no reward at all and changes no weight.
            cur["safety_mix"] = cur["safety_mix_file"] = None
            cur["safety_mix_contrast_share"] = 0.0
            _note(notes, "curate: the safety mix is left out (a tiny random student learns "
                  "the stand-in's answer format only from its traces alone)")  # fmt: skip
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
        _cpu_training(sec, stage, notes, int(run.get("num_processes") or 1))
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
    data_dir = standin_data_dir(data, work, notes, kept)
    out = work / "recipe.yaml"
    questions = _questions(data, data_dir)
    notes.extend(changes(written, data, skip=set(models.values())))
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return Rehearsal(
        recipe=out,
        data_dir=data_dir,
        questions=questions,
        reasoning=reasoning,
        port=port,
        stages=list(original.configs),
        notes=notes,
        kept=kept,
        preflight=_preflight(path),
        deploy=deploy,
    )


def _preflight(path: Path) -> list[str]:
    """The preflight of the recipe as written, on this machine: what a real run of it here
    would stop on (reported; the rehearsal's swaps then stand in for those parts)."""
    return list(recipe_problems(path))


def _questions(data: dict[str, Any], data_dir: Path) -> list[Any]:
    """Every question the stand-in teacher may be asked: all of each generate source's split
    and of each evaluation benchmark (the teacher is evaluated too)."""
    gen = data.get("generate") or {}
    reads = [
        (src.get("benchmark") or "sample", src.get("path"), src.get("split"))
        for src in (gen.get("sources") or ([gen] if gen else []))
    ]
    listed = (data.get("run") or {}).get("eval_benchmarks") or ["sample_heldout"]
    for entry in parse_entries(listed, "rehearsal"):
        if entry.benchmark not in SAFETY_BENCHMARKS:  # a request is answered, not looked up
            reads.append((entry.benchmark, entry.path, None))
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
    """Rehearse ``recipe`` (see the module docstring). The summary's ``rehearsal`` lists the
    preflight of the recipe as written, every swap with the values used, the files read as
    they are, and how much of its weights each training stage changed: a stage that changed
    none raises :class:`MedistillError` (it would pass on a GPU and teach nothing)."""
    r = prepare(recipe)
    for line in r.preflight:
        log.warning("rehearsal: the recipe as written, on this machine: %s", line)
    for note in r.notes:
        log.info("rehearsal: %s", note)
    env = {"MEDISTILL_DATA_DIR": str(r.data_dir), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with (
        StandInTeacher(r.questions, reasoning=r.reasoning, port=r.port) as teacher,
        _env(**env),
    ):
        # The preflight of the recipe as written is r.preflight (reported); the rewritten
        # one runs a sharded accelerate config as CPU ranks, which a real run may not.
        summary = run_pipeline(r.recipe, preflight=False, **run_kwargs)
        if r.deploy is not None and not run_kwargs.get("dry_run"):
            summary["rehearsal_deploy"] = deploy_rehearsal.rehearse_deploy(r.recipe, r.deploy)
    checks: list[str] = []
    weights: dict[str, Any] = {}
    if not run_kwargs.get("dry_run"):
        run_dir = r.recipe.parent.parent
        weights = check_trained(run_dir, r.stages)
        checks = [describe(stage, moved) for stage, moved in weights.items()]
        health = grpo_health(run_dir) if "grpo" in r.stages else None
        checks += [health] if health else []
        if summary.get("rehearsal_deploy"):
            checks.append(deploy_rehearsal.describe_deploy(summary["rehearsal_deploy"]))
    summary["rehearsal"] = {
        "recipe": str(r.recipe),
        "preflight": r.preflight,
        "swapped": r.notes,
        "as_is": r.kept,
        "checks": checks,
        "weights_changed": weights,
        "teacher": dict(teacher.stats),
        # stages of the recipe this rehearsal did not run (named in "swapped" with the reason)
        "not_rehearsed": [s for s in r.stages if s in DEPLOY_STAGES and r.deploy is None],
        "deploy": summary.pop("rehearsal_deploy", None),  # on the convertible stand-in
    }
    for stage in summary["rehearsal"]["not_rehearsed"]:
        log.warning("rehearsal: stage %s of the recipe was not rehearsed", stage)
    return summary
