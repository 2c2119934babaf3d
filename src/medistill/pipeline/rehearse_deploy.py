"""The rehearsal's ``export`` and ``eval-deployed``: the two stages run for real, on a stand-in.

The rehearsal's tiny student carries a tokenizer trained on the spot, which llama.cpp's GGUF
converter does not know (it refuses BPE pre-tokenizers it has no hash for), so the trained
stand-in student cannot become a GGUF. Where llama-cpp-python, llama.cpp's converter and
SmolLM2's tokenizer are installed, the rehearsal therefore runs the recipe's two deploy stages,
after the rest of the run, on a second stand-in: a tiny random Llama with SmolLM2's tokenizer
(:func:`convertible_student`), exported and evaluated through the same stage functions
(:mod:`medistill.pipeline.deploy_run`) with the recipe's ``deploy:`` section and the
rehearsal's eval settings. Its answers are not the trained student's, so no paired comparison
is made (``deployment.json``'s ``comparison`` is null). Elsewhere the rehearsal says the two
stages were not rehearsed, and why.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from medistill.errors import MedistillError
from medistill.models import smollm2_path
from medistill.pipeline.deploy_plan import DEPLOY_STAGES, deploy_unavailable
from medistill.pipeline.deploy_run import run_eval_deployed, run_export
from medistill.pipeline.plan import plan

log = logging.getLogger(__name__)

#: Questions per benchmark the deployed stand-in answers.
DEPLOY_QUESTIONS = 2


def deploy_note(why: str | None) -> str:
    """What the rehearsal says of the deploy stages: run on the convertible stand-in, or not
    rehearsed (``why``: what is missing here)."""
    if why is None:
        return (
            "deploy: export and eval-deployed run after the other stages on a tiny random Llama "
            "with SmolLM2's tokenizer (the trained stand-in student's tokenizer, trained here, "
            f"is not one llama.cpp's GGUF converter knows), {DEPLOY_QUESTIONS} questions per "
            "benchmark, no paired comparison (it is not the trained student)"
        )
    return (
        "deploy: export and eval-deployed are NOT rehearsed (the tiny stand-in student's "
        "tokenizer, trained here, is not one llama.cpp's GGUF converter knows, and the "
        f"convertible stand-in cannot run here: {why}); they are tested on a tiny Llama with a "
        "real tokenizer (tests/test_pipeline_deploy.py)"
    )


def deploy_rehearsable() -> str | None:
    """Why the rehearsal cannot run the deploy stages here (``None`` when it can)."""
    why = deploy_unavailable()
    if why is not None:
        return why
    try:
        source = smollm2_path()
    except MedistillError as e:
        return f"SmolLM2's tokenizer (a GGUF-convertible one) is not installed: {e}"
    if not (Path(source) / "tokenizer.json").is_file():
        return f"{source} holds no tokenizer.json (SmolLM2's tokenizer, a convertible one)"
    return None


def convertible_student(out: Path) -> Path:
    """A 2-layer, 64-wide random Llama with SmolLM2-135M-Instruct's tokenizer and chat
    template (built once per folder): a model llama.cpp's converter accepts, in seconds."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    source = Path(smollm2_path())
    config = AutoConfig.from_pretrained(source)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 64, 128, 2
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 16
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    torch.random.set_rng_state(state)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    return out


def deploy_recipe(rehearsal_recipe: Path, written: dict[str, Any]) -> Path:
    """The rehearsal's recipe with the deploy stages back as the recipe as ``written`` has
    them (required: the caller checked they can run), each benchmark at
    :data:`DEPLOY_QUESTIONS` questions; written beside the rehearsal's recipe."""
    data = yaml.safe_load(rehearsal_recipe.read_text(encoding="utf-8"))
    run = data.setdefault("run", {})
    stages = (written.get("run") or {}).get("stages")
    if stages:
        run["stages"] = list(stages)
    else:
        run.pop("stages", None)
    deploy = {**(written.get("deploy") or {}), "enabled": True}
    deploy["limit"] = min(int(deploy.get("limit") or DEPLOY_QUESTIONS), DEPLOY_QUESTIONS)
    data["deploy"] = deploy
    out = rehearsal_recipe.with_name("recipe-deploy.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def rehearse_deploy(rehearsal_recipe: Path, written: dict[str, Any]) -> dict[str, Any]:
    """Run ``export`` and ``eval-deployed`` of the recipe as ``written`` on the convertible
    stand-in student (see the module docstring); return both stages' figures."""
    recipe = deploy_recipe(rehearsal_recipe, written)
    p = plan(recipe)
    missing = [s for s in DEPLOY_STAGES if s not in p.configs]
    if missing:
        raise MedistillError(f"{recipe}: the rehearsal's deploy plan has no {', '.join(missing)}")
    student = convertible_student(rehearsal_recipe.parent / "models" / "deploy-student-llama")
    exp = dataclasses.replace(p.configs["export"], source=str(student), eval_runs=[])
    dep = p.configs["eval-deployed"]
    dep = dataclasses.replace(dep, source=str(student), unquantised=dict.fromkeys(dep.unquantised))
    log.info("rehearsal: export and eval-deployed on %s (SmolLM2's tokenizer)", student)
    p.stage_dir("eval-deployed").mkdir(parents=True, exist_ok=True)
    export = run_export(exp, Path(exp.out))
    deployed = run_eval_deployed(dep, p.stage_dir("eval-deployed"), fresh=True, previous=None)
    return {"student": str(student), "export": export, "eval-deployed": deployed}


def describe_deploy(figures: dict[str, Any]) -> str:
    """One line of what :func:`rehearse_deploy` made: the files and the answers they gave."""
    files = ", ".join(
        f"{key} ({f['bytes'] / 1e6:.1f} MB)" for key, f in figures["export"]["files"].items()
    )
    deployed = figures["eval-deployed"]
    runs = ", ".join(f"{name} ({r['n']} answers)" for name, r in deployed["runs"].items())
    peak = max(f["peak_rss_bytes"] for f in deployed["files"].values())
    return (
        f"export and eval-deployed on the convertible stand-in: exported {files}; evaluated "
        f"with llama.cpp: {runs}; peak memory {peak / 2**20:.0f} MiB"
    )
