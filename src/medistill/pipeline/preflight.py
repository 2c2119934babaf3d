"""Preflight: what a recipe's settings need from the machine that will run it, checked first.

A GPU run that can only fail should fail in seconds, before the teacher is paid: DeepSpeed's
ImportError under ``accelerate launch``, a vLLM engine on a machine without CUDA or with
fewer GPUs than its ``tensor_parallel_size``, FlashAttention or bitsandbytes missing, the
teacher's API key not set, a training split that is neither local nor reachable on the Hub.

Each check reads a setting and looks at this machine only: imports are found with
:func:`importlib.util.find_spec` (nothing heavy is imported), GPUs are counted with torch, the
Hub is probed once with a short timeout and only when a split is not local. Nothing is
loaded or downloaded. A problem is one line naming the recipe key and the fix.

``medistill run`` (and ``--dry-run``) runs the checks of the stages it will run, after planning
and before any stage; ``medistill preflight RECIPE`` lists every problem of every stage. Each
stage command (``medistill generate``, ``sft``, ...) first checks what its own process needs
(imports, CUDA, GPUs: :func:`stage_problems`); the split it reads and the teacher's key it
meets at its own start, before any spend. The rehearsal reports :func:`recipe_problems` for
the recipe as written, then runs its CPU stand-in (``run_pipeline(..., preflight=False)``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from medistill.data.registry import data_dir, get_spec, hub_offline
from medistill.data.safety import SAFETY_BENCHMARKS, medsafetybench_root, xstest_file
from medistill.errors import MedistillError
from medistill.pipeline.launch import SHARDED, TRAINING_STAGES, accelerate_config_type, launch_mode
from medistill.pipeline.plan import plan

log = logging.getLogger(__name__)

#: The pinned GPU stack (pyproject's ``gpu`` extra: vLLM, torch, transformers, DeepSpeed,
#: bitsandbytes, TRL as one combination TRL 1.16 supports).
GPU_INSTALL = "pip install 'medistill[gpu]'"
#: FlashAttention builds against the installed torch, so it is installed after the extra.
FLASH_INSTALL = "pip install flash-attn==2.8.3.post2 --no-build-isolation (after medistill[gpu])"
#: Hosts a teacher on this machine answers on: no API key is needed for them.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
#: Seconds the one Hub probe may take.
HUB_TIMEOUT_S = 3.0
#: attn_implementation -> the module it needs (transformers' own availability checks).
FLASH_MODULES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def gpu_count() -> int:
    """CUDA devices torch sees on this machine (0 without torch or CUDA)."""
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # no torch, or a broken CUDA install: no GPU for us
        return 0


class _Machine:
    """This machine's answers, each looked up once per preflight."""

    def __init__(self) -> None:
        self._gpus: int | None = None
        self._hub: tuple[str | None] | None = None  # (why not,) once probed

    @property
    def gpus(self) -> int:
        if self._gpus is None:
            self._gpus = gpu_count()
        return self._gpus

    def hub_unreachable(self) -> str | None:
        """Why the Hub cannot serve a split here, or ``None`` when it can."""
        if self._hub is None:
            self._hub = (_hub_problem(),)
        return self._hub[0]


def _hub_problem() -> str | None:
    if hub_offline():
        return "the Hub is offline here (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set)"
    if not installed("datasets"):
        return "the Hub needs `pip install datasets` (medistill[hub])"
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        req = urllib.request.Request(endpoint + "/api/whoami-v2", method="HEAD")
        urllib.request.urlopen(req, timeout=HUB_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None  # it answered (401 without a token): reachable
    except Exception as e:  # no network, DNS, proxy, timeout
        return f"the Hub ({endpoint}) is unreachable from here ({type(e).__name__})"
    return None


# --- the checks ---------------------------------------------------------------------------


def _cuda(key: str, what: str, m: _Machine) -> list[str]:
    if m.gpus:
        return []
    return [
        f"{key}: {what} needs a CUDA GPU and torch sees none on this machine; run on the GPU "
        f"machine (or rehearse here on the CPU: medistill run RECIPE --rehearse)"
    ]


def _vllm(key: str, tp_key: str, tp: int, m: _Machine) -> list[str]:
    """A vLLM engine (``key`` chose it) with ``tp`` GPUs per engine."""
    out = []
    if not installed("vllm"):
        out.append(f"{key}: vLLM is not installed; {GPU_INSTALL} (vLLM 0.31.0, the pinned stack)")
    out += _cuda(key, "vLLM", m)
    if m.gpus and tp > m.gpus:
        out.append(
            f"{tp_key}: {tp} GPUs per vLLM engine, this machine has {m.gpus}; set "
            f"{tp_key}: {m.gpus} or less"
        )
    return out


def backend_problems(
    key: str, cfg: Any, m: _Machine | None = None, *, key_env: bool = True
) -> list[str]:
    """A model backend's needs (a teacher, a model under evaluation): vLLM and its GPUs for
    ``backend: vllm``; with ``key_env``, the API key's variable for an ``openai`` backend on
    another host (a server that wants no key takes any value). ``key`` is the recipe key of
    the section holding ``backend`` (``generate.teacher``)."""
    m = m or _Machine()
    backend = getattr(cfg, "backend", None)
    if backend == "vllm":
        return _vllm(f"{key}.backend", f"{key}.tensor_parallel_size", cfg.tensor_parallel_size, m)
    if backend == "openai" and key_env:
        remote = [u for u in cfg.base_url or [] if not _local(u)]
        var = cfg.api_key_env
        if remote and not os.environ.get(var):
            return [
                f"{key}.api_key_env: {var} is not set, and {remote[0]} needs an API key; "
                f"export {var}=<your key> before the run (never in the recipe)"
            ]
    return []


def _local(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.")


def split_problem(
    key: str, name: str, split: str | None, path: str | None, m: _Machine | None = None
) -> str | None:
    """Whether benchmark ``name``'s ``split`` can be read: its ``path``, the embedded sample,
    a local file under ``$MEDISTILL_DATA_DIR`` (the registry's candidates) or the Hub. The
    problem names every place looked and how to provide the split."""
    m = m or _Machine()
    if name in SAFETY_BENCHMARKS:  # the others are embedded
        find = {"medsafetybench": medsafetybench_root, "xstest": xstest_file}.get(name)
        try:
            if find is not None:
                find(path)
        except MedistillError as e:
            return f"{key}: {e}"
        return None
    if path:
        return None if Path(path).exists() else f"{key}: {name}={path}: file not found"
    try:
        spec = get_spec(name)
    except MedistillError as e:
        return f"{key}: {e}"
    if spec.loader_kwargs.get("source") == "sample":
        return None  # embedded in the package
    split = split or spec.split
    root, candidates = data_dir(), spec.local_candidates(split)
    if root is None:
        looked = ["$MEDISTILL_DATA_DIR (not set)"]
    else:
        looked = [str(root / rel) for rel in candidates] or [f"{root} (no file name known)"]
        if any((root / rel).exists() for rel in candidates):
            return None
    hub_split = spec.hub_split_for(split)
    if not spec.hub_id:
        hub = "no Hub copy is known"
    elif hub_split is None:
        hub = f"the Hub copy {spec.hub_id} has no {split} split"
    else:
        reason = m.hub_unreachable()
        if reason is None:
            return None
        hub = f"{reason} ({spec.hub_id})"
    target = (
        f"put it at $MEDISTILL_DATA_DIR/{candidates[0]}" if candidates else "pass its file path"
    )
    return (
        f"{key}: {name} split {split} is not here: looked in {', '.join(looked)}; {hub}; "
        f"{target}" + (" or go online" if spec.hub_id and hub_split is not None else "")
    )


def training_problems(
    section: str, cfg: Any, m: _Machine | None = None, *, launched: bool = False
) -> list[str]:
    """An ``sft``/``grpo``/``distill`` config's needs: FlashAttention, bitsandbytes (QLoRA),
    vLLM for generation, and CUDA for them. Under ``accelerate launch`` with DeepSpeed
    (``launched``: this process is a rank), DeepSpeed itself."""
    m = m or _Machine()
    out: list[str] = []
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if launched and deepspeed and not installed("deepspeed"):
        out.append(
            f"{section}: launched with a DeepSpeed accelerate config and DeepSpeed is not "
            f"installed; {GPU_INSTALL} (DeepSpeed 0.19.8)"
        )
    attn = getattr(cfg, "attn_implementation", None) or ""
    key = f"{section}.attn_implementation"
    if attn in FLASH_MODULES:
        if not installed(FLASH_MODULES[attn]):
            out.append(
                f"{key}: {attn} needs FlashAttention ({FLASH_MODULES[attn]}), not installed; "
                f"{FLASH_INSTALL}, or set {key}: sdpa"
            )
        out += _cuda(key, attn, m)
    elif "/" in attn and not installed("kernels"):  # a Hub kernel, e.g. kernels-community/...
        out.append(f"{key}: the Hub kernel {attn} needs `pip install kernels`, or set sdpa")
    quant = [q for q in ("load_in_4bit", "load_in_8bit") if getattr(cfg, q, False)]
    if quant and not installed("bitsandbytes"):
        out.append(
            f"{section}.{quant[0]}: QLoRA needs bitsandbytes, not installed; {GPU_INSTALL} "
            f"(bitsandbytes 0.50.2), or set {section}.{quant[0]}: false"
        )
    if getattr(cfg, "use_vllm", False):
        tp = getattr(cfg, "vllm_tensor_parallel_size", 1) or 1
        if getattr(cfg, "vllm_mode", "colocate") == "colocate":
            out += _vllm(f"{section}.use_vllm", f"{section}.vllm_tensor_parallel_size", tp, m)
        elif not installed("vllm"):  # server mode: TRL's client needs vLLM too
            out.append(f"{section}.use_vllm: vLLM is not installed; {GPU_INSTALL}")
    return out


def launch_problems(run: Any, m: _Machine | None = None) -> list[str]:
    """``run.accelerate_config`` / ``run.num_processes`` on this machine: DeepSpeed installed
    for a DeepSpeed (ZeRO) config, CUDA for any sharded one (FSDP, ZeRO), and as many GPUs
    as processes where CUDA is present (without CUDA a plain DDP config runs CPU ranks)."""
    m = m or _Machine()
    out: list[str] = []
    file = run.accelerate_config
    kind = accelerate_config_type(file)
    n = run.num_processes
    if file and n is None:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        n = data.get("num_processes") if isinstance(data.get("num_processes"), int) else None
    if kind is not None and kind.startswith("DEEPSPEED") and not installed("deepspeed"):
        out.append(
            f"run.accelerate_config: {file} is a DeepSpeed (ZeRO) config and DeepSpeed is not "
            f"installed; {GPU_INSTALL} (DeepSpeed 0.19.8)"
        )
    if kind is not None and kind.startswith(SHARDED):
        out += _cuda("run.accelerate_config", f"{Path(file).name} ({kind} sharding)", m)
    if n and m.gpus and n > m.gpus:
        out.append(
            f"run.num_processes: {n} training processes, this machine has {m.gpus} GPUs; set "
            f"run.num_processes: {m.gpus}"
        )
    return out


def stage_problems(section: str, cfg: Any, m: _Machine | None = None) -> list[str]:
    """What one stage command's own process needs from this machine: imports, CUDA and GPU
    counts (``section``: its recipe section). The splits it reads and the teacher's key it
    meets at its own start, before any spend, with a one-line error; a pipeline checks those
    too (:func:`plan_problems`), since its later stages start hours after the first."""
    m = m or _Machine()
    if section in ("generate", "rubrics"):
        return backend_problems(f"{section}.teacher", cfg.teacher, m, key_env=False)
    if section in ("sft", "grpo", "distill"):
        return training_problems(section, cfg, m, launched=True)
    if section == "eval":
        return backend_problems("eval", cfg, m, key_env=False)
    return []


def _source_problems(cfg: Any, m: _Machine) -> list[str]:
    several = cfg.sources is not None
    out = []
    for i, src in enumerate(cfg.resolved_sources()):
        key = f"generate.sources[{i}]" if several else "generate.benchmark"
        problem = split_problem(key, src.benchmark, src.split, src.path, m)
        if problem:
            out.append(problem)
    return out


def _curate_problems(cfg: Any, m: _Machine, run_benchmarks: Iterable[str] = ()) -> list[str]:
    """curate's decontamination benchmarks and safety mix; an entry the pipeline added from
    ``run.eval_benchmarks`` is named under that key."""
    out = []
    from_run = set(run_benchmarks)
    for entry in cfg.eval_benchmarks:
        key = "run.eval_benchmarks" if entry in from_run else "curate.eval_benchmarks"
        out.append(_entry_problem(key, entry, m))
    if cfg.safety_mix == "medsafetybench":
        out.append(
            split_problem("curate.safety_mix_path", "medsafetybench", None, cfg.safety_mix_path, m)
        )
    return [p for p in out if p]


def _entry_problem(key: str, entry: str, m: _Machine) -> str | None:
    """A ``name`` or ``name=path`` benchmark entry (its default split)."""
    name, _, path = entry.partition("=")
    return split_problem(key, name.strip(), None, path.strip() or None, m)


def plan_problems(p: Any, stages: Iterable[str] | None = None) -> list[str]:
    """Every problem of a planned recipe (:class:`medistill.pipeline.Plan`) on this machine,
    for ``stages`` (default: every stage of the plan), in stage order, without repeats."""
    chosen = set(p.configs if stages is None else stages)
    m = _Machine()
    out: list[str] = []
    launch_checked = False
    for stage, cfg in p.configs.items():
        if stage not in chosen:
            continue
        if stage in ("generate", "rubrics"):
            out += backend_problems(f"{stage}.teacher", cfg.teacher, m)
            if stage == "generate":
                out += _source_problems(cfg, m)
        elif stage == "curate":
            out += _curate_problems(cfg, m, [e.text() for e in p.evals])
        elif stage in TRAINING_STAGES:
            if not launch_checked and launch_mode(p.run) == "accelerate":
                out += launch_problems(p.run, m)
                launch_checked = True
            out += training_problems(stage, cfg, m)
        elif stage == "eval":
            for key, ecfg in cfg:
                if key == "teacher":
                    out += backend_problems("generate.teacher", ecfg, m)
                elif ecfg.backend == "vllm":  # the students' backend: run.eval_backend
                    tp = ecfg.tensor_parallel_size
                    out += _vllm("run.eval_backend", "eval.tensor_parallel_size", tp, m)
            out += [_entry_problem("run.eval_benchmarks", e.text(), m) for e in p.evals]
    return list(dict.fromkeys(x for x in out if x))


def recipe_problems(recipe_path: str | Path) -> list[str]:
    """Every problem that stops the recipe as written on this machine, one line each naming
    the recipe key and the fix (empty when it can run here). Every stage of the recipe is
    checked, whatever a previous run finished. A recipe that does not plan raises its
    planning error (a :class:`MedistillError`)."""
    return plan_problems(plan(recipe_path))


def one_line(problems: list[str], where: str | Path | None = None) -> str:
    """The first problem, and how many more (``medistill preflight RECIPE`` lists them)."""
    more = len(problems) - 1
    tail = f" (and {more} more: medistill preflight {where or 'RECIPE'} lists them)" if more else ""
    return f"{where}: {problems[0]}{tail}" if where else f"{problems[0]}{tail}"


def check_stage(section: str, cfg: Any) -> None:
    """Refuse to start a stage command whose own settings this machine cannot run."""
    problems = stage_problems(section, cfg)
    if problems:
        raise MedistillError(one_line(problems))
