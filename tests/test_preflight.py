"""The preflight: what a recipe needs from this machine, checked before any stage starts.

Every check runs against a real condition of this CPU machine (no CUDA, no DeepSpeed, no vLLM,
no FlashAttention, no bitsandbytes; a key variable not set; a split neither local nor on an
offline Hub): where the machine has the piece, the test says so and skips. On main a dry-run of
each GPU recipe passed here, and its failures came stage by stage, after the teacher was paid.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from importlib.metadata import requires, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from typer.testing import CliRunner

from medistill.cli import app
from medistill.errors import MedistillError
from medistill.pipeline import run_pipeline
from medistill.pipeline.preflight import gpu_count, installed, recipe_problems, training_problems
from test_pipeline import write_recipe

ROOT = Path(__file__).resolve().parents[1]
GPU_RECIPES = ("qwen3-8b-8gpu.yaml", "qwen3-1.7b-gpu.yaml", "qwen3-1.7b-distill-gpu.yaml")
URL = "http://127.0.0.1:9/v1"  # a teacher on this machine: no key needed
#: A recipe key at the start of a problem, e.g. ``grpo.use_vllm:`` or ``generate.sources[0]:``.
KEY = re.compile(r"(run|generate|rubrics|curate|sft|grpo|distill|eval)\.[a-z_]+[\w.\[\]]*: ")


def _absent(*modules: str) -> None:
    for module in modules:
        if installed(module):
            pytest.skip(f"{module} is installed on this machine")


def _no_cuda() -> None:
    if gpu_count():
        pytest.skip("this machine has CUDA GPUs")


@pytest.fixture
def clean(monkeypatch, tmp_path: Path) -> Path:
    """A new user's shell: no teacher key, an empty data folder, the Hub offline."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TEACHER_API_KEY", raising=False)
    monkeypatch.delenv("MEDISTILL_PREFLIGHT_KEY", raising=False)
    return data


def _recipe(tmp_path: Path, **changes) -> Path:
    return write_recipe(tmp_path, URL, tmp_path / "no-such-model", **changes)


def _with(problems: list[str], start: str) -> list[str]:
    return [p for p in problems if p.startswith(start)]


def test_the_demo_and_a_cpu_recipe_need_nothing_missing(clean: Path, tmp_path: Path) -> None:
    assert recipe_problems(ROOT / "recipes/demo.yaml") == []
    assert recipe_problems(_recipe(tmp_path)) == []
    dry = run_pipeline(_recipe(tmp_path), dry_run=True, show_progress=False)
    assert dry["preflight"] == []


def test_a_deepspeed_config_needs_deepspeed_and_cuda(clean: Path, tmp_path: Path) -> None:
    _absent("deepspeed")
    _no_cuda()
    zero3 = str(ROOT / "recipes/accelerate/zero3.yaml")
    problems = recipe_problems(
        _recipe(tmp_path, **{"run.accelerate_config": zero3, "run.num_processes": 2})
    )
    (deepspeed,) = _with(problems, "run.accelerate_config: ")[:1]
    assert "DeepSpeed (ZeRO) config and DeepSpeed is not installed" in deepspeed
    assert "pip install 'medistill[gpu]'" in deepspeed
    assert any("zero3.yaml (DEEPSPEED sharding) needs a CUDA GPU" in p for p in problems)
    # FSDP needs CUDA but not DeepSpeed; plain DDP runs CPU ranks here (a supported path)
    fsdp = str(ROOT / "recipes/accelerate/fsdp.yaml")
    problems = recipe_problems(_recipe(tmp_path, **{"run.accelerate_config": fsdp}))
    assert len(problems) == 1 and "(FSDP sharding) needs a CUDA GPU" in problems[0]
    ddp = str(ROOT / "recipes/accelerate/ddp.yaml")
    assert recipe_problems(_recipe(tmp_path, **{"run.accelerate_config": ddp})) == []


def test_vllm_settings_need_vllm_and_cuda(clean: Path, tmp_path: Path) -> None:
    _absent("vllm")
    _no_cuda()
    teacher = {"model": "m", "backend": "vllm", "tensor_parallel_size": 2}
    recipe = _recipe(
        tmp_path,
        **{"generate.teacher": teacher, "grpo.use_vllm": True, "run.eval_backend": "vllm"},
    )
    problems = recipe_problems(recipe)
    for key in ("generate.teacher.backend", "grpo.use_vllm", "run.eval_backend"):
        assert _with(problems, f"{key}: vLLM is not installed; pip install 'medistill[gpu]'")
        assert _with(problems, f"{key}: vLLM needs a CUDA GPU")
    # the teacher's evaluation needs the same engine: said once, under the teacher's key
    assert len(_with(problems, "generate.teacher.backend: vLLM is not installed")) == 1
    assert all(KEY.match(p) for p in problems), problems


def test_flash_attention_and_qlora_need_their_packages(clean: Path, tmp_path: Path) -> None:
    _absent("flash_attn", "bitsandbytes")
    _no_cuda()
    recipe = _recipe(tmp_path, **{"sft.attn_implementation": "flash_attention_2"})
    problems = recipe_problems(recipe)
    (flash,) = _with(problems, "sft.attn_implementation: flash_attention_2 needs FlashAttention")
    assert "pip install flash-attn==" in flash and "or set sft.attn_implementation: sdpa" in flash
    assert _with(problems, "sft.attn_implementation: flash_attention_2 needs a CUDA GPU")
    # QLoRA on a CPU is refused by the config itself (planning); on a CUDA machine without
    # bitsandbytes the preflight names it: the same config with load_in_4bit set after it
    # was built (this machine cannot build it).
    from medistill.train.config import SFTRecipe

    cfg = SFTRecipe(model="m", dataset="d", output_dir=str(tmp_path / "sft"))
    cfg.load_in_4bit = True
    (qlora,) = training_problems("sft", cfg)
    assert qlora.startswith("sft.load_in_4bit: QLoRA needs bitsandbytes, not installed; ")
    assert "pip install 'medistill[gpu]'" in qlora and "or set sft.load_in_4bit: false" in qlora


def test_a_remote_teacher_needs_its_key_variable(clean: Path, tmp_path: Path, monkeypatch) -> None:
    remote = {"model": "t", "base_url": ["https://api.example.com/v1"]}
    recipe = _recipe(
        tmp_path, **{"generate.teacher": {**remote, "api_key_env": "MEDISTILL_PREFLIGHT_KEY"}}
    )
    problems = recipe_problems(recipe)
    assert problems == [
        "generate.teacher.api_key_env: MEDISTILL_PREFLIGHT_KEY is not set, and "
        "https://api.example.com/v1 needs an API key; export MEDISTILL_PREFLIGHT_KEY=<your "
        "key> before the run (never in the recipe)"
    ]
    monkeypatch.setenv("MEDISTILL_PREFLIGHT_KEY", "sk-never-printed")
    assert recipe_problems(recipe) == []
    monkeypatch.delenv("MEDISTILL_PREFLIGHT_KEY")
    local = {"model": "t", "base_url": [URL], "api_key_env": "MEDISTILL_PREFLIGHT_KEY"}
    assert recipe_problems(_recipe(tmp_path, **{"generate.teacher": local})) == []


def test_a_split_neither_here_nor_on_the_hub(clean: Path, tmp_path: Path) -> None:
    recipe = _recipe(
        tmp_path,
        **{
            "generate.benchmark": "medqa",
            "generate.split": "train",
            "run.eval_benchmarks": ["sample_heldout", f"medqa={tmp_path / 'nowhere.jsonl'}"],
        },
    )
    problems = recipe_problems(recipe)
    (train,) = _with(problems, "generate.benchmark: medqa split train is not here: looked in ")
    assert str(clean / "medqa/US_4options_train.jsonl") in train
    assert "the Hub is offline here (HF_HUB_OFFLINE" in train and "GBaker/MedQA" in train
    (missing,) = _with(problems, "run.eval_benchmarks: medqa=")
    assert missing.endswith("nowhere.jsonl: file not found")
    assert len(problems) == 2  # curate's decontamination list names the same file once
    (clean / "medqa").mkdir()
    (clean / "medqa/US_4options_train.jsonl").write_text("{}\n")
    (tmp_path / "nowhere.jsonl").write_text("{}\n")
    assert recipe_problems(recipe) == []


def test_only_the_stages_that_will_run_are_checked(clean: Path, tmp_path: Path) -> None:
    _absent("vllm")
    recipe = _recipe(tmp_path, **{"grpo.use_vllm": True})
    assert _with(run_pipeline(recipe, dry_run=True, show_progress=False)["preflight"], "grpo.")
    only = run_pipeline(recipe, dry_run=True, only="curate", show_progress=False)
    assert only["preflight"] == []
    without = _recipe(
        tmp_path, **{"grpo.use_vllm": True, "run.stages": ["generate", "curate", "sft"]}
    )
    assert recipe_problems(without) == []


def test_a_run_stops_before_generate_with_one_line(clean: Path, tmp_path: Path) -> None:
    _absent("vllm", "flash_attn")
    recipe = _recipe(
        tmp_path, **{"grpo.use_vllm": True, "sft.attn_implementation": "flash_attention_2"}
    )
    with pytest.raises(MedistillError) as e:
        run_pipeline(recipe, show_progress=False)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{recipe}: sft.attn_implementation: ")
    assert re.search(r"\(and \d+ more: medistill preflight .* lists them\)$", msg)
    assert not (tmp_path / "runs").exists()  # no stage started: the teacher was never called


def test_stage_commands_check_their_own_section_first(clean: Path, tmp_path: Path) -> None:
    """Before any model is loaded (the model named does not exist)."""
    _absent("flash_attn", "vllm")
    _no_cuda()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "sft:\n  model: no/such-model\n  dataset: nowhere\n  attn_implementation: "
        f"flash_attention_2\n  output_dir: {tmp_path / 'sft'}\n"
    )
    r = CliRunner().invoke(app, ["sft", "--config", str(recipe)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: sft.attn_implementation: flash_attention_2 needs FlashAttention"
    ), r.output
    assert not (tmp_path / "sft").exists()
    r = CliRunner().invoke(
        app, ["eval", "--model", "m", "--backend", "vllm", "--out", str(tmp_path / "e")]
    )
    assert r.exit_code == 2 and "error: eval.backend: vLLM is not installed" in r.output


def test_a_rank_launched_with_deepspeed_needs_deepspeed(tmp_path: Path, monkeypatch) -> None:
    """`accelerate launch` with a DeepSpeed config marks its ranks (ACCELERATE_USE_DEEPSPEED);
    a rank without DeepSpeed stops in one line instead of accelerate's ImportError."""
    _absent("deepspeed")
    from medistill.train.config import SFTRecipe

    cfg = SFTRecipe(model="m", dataset="d", output_dir=str(tmp_path / "sft"))
    assert training_problems("sft", cfg, launched=True) == []
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    (problem,) = training_problems("sft", cfg, launched=True)
    assert "DeepSpeed is not installed; pip install 'medistill[gpu]'" in problem


def test_the_preflight_command_lists_every_problem(clean: Path, tmp_path: Path) -> None:
    _absent("vllm", "flash_attn")
    recipe = _recipe(
        tmp_path, **{"grpo.use_vllm": True, "sft.attn_implementation": "flash_attention_2"}
    )
    r = CliRunner().invoke(app, ["preflight", str(recipe)])
    assert r.exit_code == 2, r.output
    missing = [line for line in r.output.splitlines() if line.startswith("missing: ")]
    assert missing == [f"missing: {p}" for p in recipe_problems(recipe)] and len(missing) >= 3
    assert r.output.strip().splitlines()[-1].startswith(f"error: {recipe}: {len(missing)} ")
    r = CliRunner().invoke(app, ["preflight", str(ROOT / "recipes/demo.yaml")])
    assert r.exit_code == 0 and "nothing missing on this machine" in r.output


def _clean_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TEACHER_API_KEY", "WORLD_SIZE")}
    return {**env, "MEDISTILL_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("name", GPU_RECIPES)
def test_a_gpu_recipe_dry_run_fails_here_in_seconds(name: str, tmp_path: Path) -> None:
    """A new user's `--dry-run` on this CPU machine: the plan, then one line naming the first
    missing piece, its recipe key and its fix; exit status 2. On main it exited 0."""
    data = tmp_path / "data"
    data.mkdir()
    cmd = [sys.executable, "-m", "medistill.cli", "run", str(ROOT / "recipes" / name), "--dry-run"]
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, cwd=tmp_path, env=_clean_env(data), capture_output=True, text=True, timeout=300
    )
    took = time.perf_counter() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    assert "generate  run  never run" in r.stdout  # the plan is printed first
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    line = errors[0].removeprefix(f"error: {ROOT / 'recipes' / name}: ")
    assert KEY.match(line), line
    assert re.search(r"pip install|export |put it at|set [a-z_.]+: ", line), line
    assert took < 120, took  # planning imports TRL; the checks themselves take milliseconds
    assert not (tmp_path / "runs").exists()


def test_the_demo_dry_run_passes_in_a_new_users_shell(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    cmd = [sys.executable, "-m", "medistill.cli", "run", str(ROOT / "recipes/demo.yaml")]
    r = subprocess.run(
        [*cmd, "--dry-run"],
        cwd=tmp_path,
        env=_clean_env(data),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "generate  run  never run" in r.stdout


# --- the pinned GPU stack -------------------------------------------------------------------


def _extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data["project"]["optional-dependencies"]


def _expand(extra: str, extras: dict[str, list[str]]) -> list[Requirement]:
    """An extra's requirements, its ``medistill[...]`` references followed."""
    out = []
    for spec in extras[extra]:
        req = Requirement(spec)
        if req.name == "medistill":
            for inner in sorted(req.extras):
                out += _expand(inner, extras)
        else:
            out.append(req)
    return out


def _trl_requires(extra: str | None = None) -> dict[str, Requirement]:
    """The installed TRL's declared requirements (its METADATA), of one extra or the core."""
    out = {}
    for spec in requires("trl") or []:
        req = Requirement(spec)
        in_extra = req.marker is not None and req.marker.evaluate({"extra": extra or ""})
        core = req.marker is None
        if (extra and in_extra) or (not extra and core):
            out[req.name] = req
    return out


def _pin(reqs: list[Requirement], name: str) -> Version:
    """The version ``name`` is pinned to (``==``), consistent with every other requirement."""
    named = [r for r in reqs if r.name == name]
    pins = [Version(s.version) for r in named for s in r.specifier if s.operator == "=="]
    assert len(set(pins)) == 1, f"{name} is not pinned once: {named}"
    assert all(pins[0] in r.specifier for r in named), named
    return pins[0]


def test_the_gpu_extra_pins_the_stack_trl_supports() -> None:
    """`pip install 'medistill[gpu]'` gives one combination: the vLLM TRL declares support
    for (on main: no such extra, and `vllm>=0.6` allowed any vLLM), the torch and
    transformers that vLLM pins, the DeepSpeed TRL's extra asks for."""
    extras = _extras()
    gpu = _expand("gpu", extras)
    trl = _pin(gpu, "trl")
    assert trl == Version(version("trl")), "the stack was chosen against the installed TRL"
    vllm = _pin(gpu, "vllm")
    assert vllm in _trl_requires("vllm")["vllm"].specifier
    assert _pin(gpu, "deepspeed") in _trl_requires("deepspeed")["deepspeed"].specifier
    transformers = _pin(gpu, "transformers")
    assert transformers in _trl_requires()["transformers"].specifier
    # vLLM 0.31.0's METADATA (not installable here): torch==2.13.0, transformers<5.18,>=5.10.4
    assert vllm == Version("0.31.0")
    assert _pin(gpu, "torch") == Version("2.13.0")
    assert Version("5.10.4") <= transformers < Version("5.18")
    assert any(r.name == "bitsandbytes" for r in gpu)
    # no extra may pull a vLLM outside TRL's range
    supported = _trl_requires("vllm")["vllm"].specifier
    for name in extras:
        for req in _expand(name, extras):
            if req.name == "vllm":
                (spec,) = req.specifier
                assert spec.operator == "==" and Version(spec.version) in supported, (name, req)


def test_the_tests_run_the_gpu_stacks_trl_and_transformers() -> None:
    """The CPU rehearsal must exercise the library versions a GPU run installs (on main, CI
    rehearsed transformers 5.25 while vLLM 0.31 needs < 5.18): the test extra pins the gpu
    extra's TRL and transformers, and the installed ones are those."""
    extras = _extras()
    gpu, test = _expand("gpu", extras), _expand("test", extras)
    for name in ("trl", "transformers"):
        assert _pin(test, name) == _pin(gpu, name), name
        assert Version(version(name)) == _pin(gpu, name), f"{name} {version(name)} installed"
    assert Version(version("torch").split("+")[0]) == _pin(gpu, "torch")
