"""`medistill run RECIPE --rehearse`: every shipped recipe runs end to end on this CPU through
the code paths it selects, with tiny models of the same architectures, a stand-in teacher
on 127.0.0.1 and stand-in benchmark files read by the real loaders; and the parts it is made
of (tiny architectures, stand-in files, the stand-in teacher) do what they claim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medistill.answers.refusal import is_refusal
from medistill.data import load_benchmark
from medistill.data.standin import WRITERS, write_standin
from medistill.errors import MedistillError
from medistill.generate import shuffle_question
from medistill.pipeline import rehearse
from medistill.pipeline.rehearse_checks import check_trained, weights_moved
from medistill.pipeline.standin_teacher import StandInTeacher, kept_port
from medistill.prompts import get_template
from medistill.tiny_model import TINY_KINDS, build_tiny_model, tiny_kind

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(
    p.name
    for p in (ROOT / "recipes").glob("*.yaml")
    if "run" in (yaml.safe_load(p.read_text()) or {})
)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("Qwen/Qwen3-1.7B", "qwen3"),
        ("Qwen/Qwen2.5-1.5B-Instruct", "qwen2"),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "qwen2"),
        ("meta-llama/Llama-3.2-3B-Instruct", "llama"),
        ("google/medgemma-4b-it", "gemma3_text"),
        ("smollm2", "llama"),
        ("someone/unknown-model", "llama"),
    ],
)
def test_a_hub_id_names_the_architecture_of_its_tiny_stand_in(spec: str, kind: str) -> None:
    assert tiny_kind(spec)[0] == kind


@pytest.mark.parametrize("kind", sorted(TINY_KINDS))
def test_tiny_models_of_every_kind_build_load_and_share_one_tokenizer(
    kind: str, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = build_tiny_model(tmp_path / kind, model_type=kind)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == kind
    assert tiny_kind(str(out))[0] == kind  # a local folder: its config.json says
    tok = AutoTokenizer.from_pretrained(out)
    llama = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "llama-ref"))
    assert tok.get_vocab() == llama.get_vocab()  # a student and its teacher share it
    ids = tok("The answer is B.", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == len(tok)


@pytest.mark.parametrize("benchmark", sorted(WRITERS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_stand_in_files_are_read_by_the_real_loader(
    benchmark: str, split: str, tmp_path: Path, monkeypatch
) -> None:
    from medistill.data.registry import get_spec

    spec = get_spec(benchmark)
    split = split if split == "train" else spec.split
    path = write_standin(benchmark, split, tmp_path, slot=1, slots=2)
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(tmp_path))
    got = load_benchmark(benchmark, split=split).questions
    assert got and all(q.split == split and q.gold for q in got)
    assert {q.question for q in got} <= {q.question for q in load_benchmark("sample").questions}
    other = write_standin(benchmark, split, tmp_path / "b", slot=0, slots=2)
    assert not {q.question for q in got} & {
        json.loads(x)["question"] for x in other.read_text().splitlines()
    }  # two stand-ins never share a question
    assert str(path.relative_to(tmp_path)) in spec.local_candidates(split)


def test_the_stand_in_teacher_answers_the_options_as_shown(tmp_path: Path) -> None:
    """Options shuffled by generate: the stand-in finds the gold option's text among them,
    answers with its shown letter (one question in five wrongly), and knows nothing else."""
    import urllib.request

    questions = load_benchmark("sample").questions[:20]
    tpl = get_template("cot")
    right = wrong = 0
    with StandInTeacher(questions, reasoning=True) as t:
        for i, q in enumerate(questions):
            shown, _ = shuffle_question(q, seed=3, sample_index=i)
            messages = tpl.messages(shown)
            body = json.dumps({"model": "x", "messages": messages}).encode()
            req = urllib.request.Request(
                t.url + "/chat/completions", body, {"Content-Type": "application/json"}
            )
            reply = json.loads(urllib.request.urlopen(req, timeout=10).read())
            msg = reply["choices"][0]["message"]
            assert msg["reasoning_content"] and msg["content"].startswith("The answer is ")
            letter = msg["content"].removeprefix("The answer is ").rstrip(".")
            right += letter == shown.gold
            wrong += letter != shown.gold
        assert t.answer("a question nobody asked")[1] == "I am not sure."
        # an open request sent alone (a benign contrast request): a helpful answer
        body = json.dumps(
            {"model": "x", "messages": [{"role": "user", "content": "How is lithium "
                                         "toxicity recognised on the ward?"}]}
        ).encode()  # fmt: skip
        req = urllib.request.Request(
            t.url + "/chat/completions", body, {"Content-Type": "application/json"}
        )
        msg = json.loads(urllib.request.urlopen(req, timeout=10).read())["choices"][0]["message"]
        assert "lithium toxicity" in msg["content"] and not is_refusal(msg["content"])
    assert right >= 12 and 1 <= wrong <= 8


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_rehearses_on_a_cpu(name: str, tmp_path: Path, monkeypatch) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MEDISTILL_DATA_DIR", None)  # the splits a GPU run reads: stand-ins here
    cmd = [sys.executable, "-m", "medistill.cli", "run", str(ROOT / "recipes" / name)]
    r = subprocess.run(
        [*cmd, "--rehearse"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert "Traceback" not in r.stderr, r.stderr[-5000:]  # e.g. the stand-in's hang-ups
    # GRPO's completions end (below: most of them); a step that still cut off over a fifth is
    # flagged against the cap the rehearsal set (listed as a swap), never the recipe's own
    out = r.stdout + r.stderr
    if "raise max_completion_length" in out:
        assert f"max_completion_length={rehearse.COMPLETION_TOKENS}" in out
        assert "max_completion_length=2048" not in out
    recipe = yaml.safe_load((ROOT / "recipes" / name).read_text())
    runs = list((tmp_path / "runs").glob("*-rehearsal"))
    assert len(runs) == 1, runs
    run = runs[0]
    swapped = [line for line in r.stdout.splitlines() if line.startswith("  swapped: ")]
    assert any("stand-in teacher on 127.0.0.1" in s for s in swapped)
    assert not any("your copy" in s for s in swapped)  # read as it is: not a swap
    # a recipe that deploys: its export and eval-deployed run on the convertible stand-in
    # where llama.cpp, its converter and SmolLM2's tokenizer are here, else are named as not run
    deploys = recipe.get("deploy", {}).get("enabled") is not False and "export" in (
        recipe["run"].get("stages") or ["export"]
    )
    if deploys and rehearse.deploy_rehearsal.deploy_rehearsable() is None:
        assert any("export and eval-deployed run after the other stages" in s for s in swapped)
        assert "  checked: export and eval-deployed on the convertible stand-in: " in r.stdout
    elif deploys:
        assert any("eval-deployed" in line for line in (r.stdout + r.stderr).splitlines())
    if "gpu" in name:  # what a real run of it would stop on here: reported, then swapped
        assert "  preflight of the recipe as written: " in r.stdout
    stages = recipe["run"].get("stages") or ["generate", "curate", "sft", "grpo", "eval"]
    # export and eval-deployed run after the others on their own stand-in, with no manifest
    # (checked by the line above)
    for stage in [s for s in stages if s not in ("export", "eval-deployed")]:
        m = json.loads((run / stage / "pipeline.json").read_text())
        assert m["status"] == "finished", stage
    curate = json.loads((run / "curate" / "pipeline.json").read_text())["figures"]
    assert curate["kept_traces"] > 0
    for stage in ("sft", "grpo", "distill"):
        if stage not in stages:
            continue
        figures = json.loads((run / stage / "pipeline.json").read_text())["figures"]
        assert figures["launcher"] in ("process", "accelerate")
        section = recipe.get(stage) or {}
        if section.get("attn_implementation", "").startswith("flash"):
            assert any(f"{stage}: FlashAttention -> SDPA" in s for s in swapped)
        if section.get("use_vllm"):
            assert any(f"{stage}: vLLM generation" in s for s in swapped)
        if (recipe["run"].get("num_processes") or 1) > 1:
            digests = figures["rank_weight_digests"]
            assert len(digests) == 2 and len(set(digests)) == 1
        train = json.loads((run / stage / "medistill_train.json").read_text())
        precision = train["precision"]
        assert precision["trainable_weights"] == ["float32"]  # weights that train at lr 1e-6
        if section.get("bf16") is not False:
            assert precision["compute"].startswith("bfloat16")
        # Each training stage moved the weights it trains (GRPO with every completion cut off
        # finished with the SFT model's weights), and the rehearsal says by how much.
        monkeypatch.chdir(tmp_path)  # the run's paths are relative to where it ran
        moved = check_trained(run, [stage])[stage]  # raises where nothing changed
        assert moved["tensors_changed"] > 0, (stage, moved)
        assert f"  checked: {stage} changed {moved['tensors_changed']} of " in r.stdout
        if section.get("max_completion_length"):  # the cap is a swap, with its numbers
            cap = section["max_completion_length"]
            assert any(f"max_completion_length {cap} -> " in s for s in swapped), swapped
    if "grpo" in stages:  # completions that end, rewards that differ within a group
        log = [json.loads(x) for x in (run / "grpo" / "log.jsonl").read_text().splitlines()]
        steps = [x for x in log if "completions/clipped_ratio" in x]
        assert min(x["completions/clipped_ratio"] for x in steps) < 0.5, steps
        assert min(x["frac_reward_zero_std"] for x in steps) < 1.0, steps
        assert "  checked: grpo: " in r.stdout
    # every value the rehearsal changed is listed as it ran (not "2 samples each" for 1)
    rewritten = yaml.safe_load((run / "rehearsal" / "recipe.yaml").read_text())
    for key in ("samples", "max_tokens"):
        old, new = (recipe.get("generate") or {}).get(key), rewritten["generate"].get(key)
        if old != new:
            assert any(f"{key} {old} -> {new}" in s for s in swapped), (key, swapped)
        else:
            assert not any(f" {key} " in s for s in swapped if "generate values" in s), key
    models = {
        json.loads(p.read_text())["model_type"] for p in run.glob("rehearsal/models/*/config.json")
    }
    student = (recipe.get("sft") or {}).get("model", "")
    assert tiny_kind(student)[0] in models
    report = (run / "report" / "report.md").read_text()
    assert "| student: SFT |" in report
    # titled as a rehearsal, and the stand-in teacher named as what it is
    title = f"Rehearsal (CPU, tiny random models) — {recipe['run']['title']}"
    assert report.startswith(f"# {title}\n")
    assert title in (run / "report" / "report.html").read_text()
    teacher_rows = [x for x in report.splitlines() if x.startswith("| teacher: ")]
    if recipe["run"].get("eval_teacher", True) is False:  # the demo: no teacher row to name
        assert teacher_rows == [], teacher_rows
    else:
        assert teacher_rows and all(
            x.startswith("| teacher: stand-in teacher (knows the answer key) for ")
            for x in teacher_rows
        )
    # an unchanged recipe, rehearsed again: every stage skips (the stand-in keeps its port)
    again = subprocess.run(
        [*cmd, "--rehearse"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    managed = [s for s in stages if s not in ("export", "eval-deployed")]  # run after, as above
    table = [x.split() for x in again.stdout.splitlines() if x.split()[:1] in ([s] for s in stages)]
    assert len(table) == len(managed) and all(row[1] == "skip" for row in table), again.stdout


@pytest.mark.slow
def test_a_rehearsal_reads_the_copies_this_machine_has(shared_data: Path, tmp_path: Path) -> None:
    """With $MEDISTILL_DATA_DIR set, the splits found there (MedQA test, MedMCQA dev in
    ../shared) are read as the real run reads them; only the missing train splits become
    stand-ins, and the rehearsal says which is which."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDISTILL_DATA_DIR": str(shared_data)}
    cmd = [sys.executable, "-m", "medistill.cli", "run", str(ROOT / "recipes/qwen3-1.7b-gpu.yaml")]
    r = subprocess.run(
        [*cmd, "--rehearse"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert f"medqa test: your copy {shared_data}/medqa/US_4options_test.jsonl" in r.stdout
    assert "medmcqa dev: your copy" in r.stdout
    assert "medqa train: no copy on this machine -> a stand-in" in r.stdout
    run = next((tmp_path / "runs").glob("*-rehearsal"))
    curate = json.loads((run / "curate" / "pipeline.json").read_text())["figures"]
    assert curate["kept_traces"] > 0
    report = (run / "report" / "report.md").read_text()
    assert "| teacher: stand-in teacher (knows the answer key) for deepseek-reasoner |" in report
    swapped = [line for line in r.stdout.splitlines() if line.startswith("  swapped: ")]
    assert not any("your copy" in s for s in swapped)  # read as it is, said so
    assert "  as is: medqa test: your copy" in r.stdout


@pytest.mark.slow
def test_per_question_rubrics_through_the_pipeline(tmp_path: Path) -> None:
    """run.stages with rubrics: the teacher writes a rubric per question into the store,
    curation carries it into the dataset, and GRPO's rubric reward reads each row's own
    (its judge is the stand-in too)."""
    recipe = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    recipe["run"]["stages"] = ["generate", "rubrics", "curate", "sft", "grpo", "eval", "report"]
    recipe["rubrics"] = {"min_criteria": 5}
    recipe["deploy"] = {"enabled": False}  # run.stages above leaves the deploy stages out
    recipe["grpo"]["rewards"] = {
        "correctness": 1.0,
        "rubric": {"weight": 1.0, "model": "judge", "criteria": None},
    }
    path = tmp_path / "rubric-demo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "medistill.cli", "run", str(path), "--rehearse"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    run = tmp_path / "runs" / "demo-rehearsal"
    rubrics = json.loads((run / "rubrics" / "pipeline.json").read_text())["figures"]
    assert rubrics["new_valid"] > 0 and rubrics["new_invalid"] == 0
    rows = [json.loads(x) for x in (run / "curate/dataset/messages/train.jsonl").open()]
    assert rows and all(row["rubric"] for row in rows)
    log = (run / "grpo" / "log.jsonl").read_text()
    from_row = [json.loads(x).get("rubric/from_row") for x in log.splitlines()]
    assert any(v and v > 0 for v in from_row), log[-2000:]


def test_a_safety_benchmark_gets_a_stand_in_in_its_release_layout(
    tmp_path: Path, monkeypatch
) -> None:
    from medistill.data.safety import load_safety
    from medistill.pipeline.rehearse import prepare

    monkeypatch.delenv("MEDISTILL_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    recipe = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    recipe["run"]["eval_benchmarks"] = ["sample_heldout", "medsafetybench", "safety_sample"]
    path = tmp_path / "msb.yaml"
    path.write_text(yaml.safe_dump(recipe))
    r = prepare(path)
    assert any("medsafetybench: no copy on this machine" in n for n in r.notes)
    rows = load_safety(path=r.data_dir / "medsafetybench", per_category=2)
    assert len(rows) == 18 and {x.source for x in rows} == {"gpt4", "llama2"}


def _copy_model(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_training_stage_that_changed_no_weight_fails_the_rehearsal(tmp_path: Path) -> None:
    """The check that GRPO with every completion cut off (0 weights moved) failed: a stage
    folder equal to its start raises, naming the stage; one changed element is counted; a
    model saved in bf16 after an fp32 start is not "changed" by the cast alone."""
    import torch
    from safetensors.torch import load_file, save_file

    base = build_tiny_model(tmp_path / "base", model_type="qwen3")
    stage = _copy_model(base, tmp_path / "run" / "grpo")
    (stage / "medistill_train.json").write_text(json.dumps({"base_model": str(base)}))
    with pytest.raises(MedistillError, match="grpo finished without changing a weight"):
        check_trained(tmp_path / "run", ["generate", "grpo", "eval"])
    weights = load_file(stage / "model.safetensors")
    assert weights_moved(base, stage)["tensors_changed"] == 0
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, stage / "model.safetensors")
    assert weights_moved(base, stage)["tensors_changed"] == 0  # a cast is not training
    name = next(iter(weights))
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1e-3
    save_file(weights, stage / "model.safetensors")
    moved = check_trained(tmp_path / "run", ["grpo"])["grpo"]
    assert moved["tensors_changed"] == 1 and moved["elements_changed"] == 1
    assert 0 < moved["share_changed"] < 1e-4


def test_the_stand_in_teacher_keeps_its_port_and_lets_clients_hang_up(
    tmp_path: Path, capfd
) -> None:
    """The port is kept per rehearsal folder (the teacher URL is in every config hash), and a
    client that resets its connection mid-request prints no traceback."""
    import socket
    import struct
    import time

    port = kept_port(tmp_path / "standin_port")
    assert kept_port(tmp_path / "standin_port") == port
    questions = load_benchmark("sample").questions[:2]
    with StandInTeacher(questions, port=port) as t:
        assert t.url == f"http://127.0.0.1:{port}/v1"
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 500\r\n\r\n{")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # RST: the server's read fails with ConnectionResetError
        time.sleep(0.5)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err


def test_the_swap_list_is_the_rewritten_recipe(tmp_path: Path, monkeypatch) -> None:
    """Every value the rehearsal rewrote is listed as it will run: the distill recipe's one
    sample stays one (the list once said "2 samples each"), its sample of 20,000 becomes 4,
    GRPO's completion cap is listed; the title and the teacher say rehearsal."""
    from medistill.pipeline.rehearse import COMPLETION_TOKENS, prepare

    monkeypatch.delenv("MEDISTILL_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    r = prepare(ROOT / "recipes" / "qwen3-1.7b-distill-gpu.yaml")
    rewritten = yaml.safe_load(r.recipe.read_text())
    assert rewritten["generate"]["samples"] == 1
    gen = next(n for n in r.notes if n.startswith("generate values: "))
    assert "sources[0].sample.n 20000 -> 4" in gen and "samples" not in gen
    assert not any("2 samples each" in n for n in r.notes)
    distill = next(n for n in r.notes if n.startswith("distill values: "))
    assert f"max_completion_length 2048 -> {COMPLETION_TOKENS}" in distill
    teacher = rewritten["generate"]["teacher"]
    assert teacher["backend"] == "openai" and teacher["base_url"] == [
        f"http://127.0.0.1:{r.port}/v1"
    ]
    assert teacher["model"] == "stand-in teacher (knows the answer key) for Qwen3-8B"
    assert rewritten["run"]["title"].startswith("Rehearsal (CPU, tiny random models) — ")
    again = prepare(ROOT / "recipes" / "qwen3-1.7b-distill-gpu.yaml")
    assert again.recipe.read_text() == r.recipe.read_text()  # same folder, same recipe


def test_a_lora_stage_is_judged_by_its_adapter(tmp_path: Path) -> None:
    """PEFT starts every LoRA B matrix at zero: an adapter whose B matrices are all still
    zero fails the check (a merged bf16 copy would round a small first step away), one that
    moved is counted."""
    import torch
    from safetensors.torch import save_file

    base = build_tiny_model(tmp_path / "base")
    stage = _copy_model(base, tmp_path / "run" / "sft")
    (stage / "medistill_train.json").write_text(
        json.dumps({"base_model": str(base), "adapter": "adapter"})
    )
    (stage / "adapter").mkdir()
    (stage / "adapter" / "adapter_config.json").write_text(json.dumps({"init_lora_weights": True}))
    a, b = "m.layers.0.q_proj.lora_A.weight", "m.layers.0.q_proj.lora_B.weight"
    tensors = {a: torch.randn(4, 64), b: torch.zeros(64, 4)}
    save_file(tensors, stage / "adapter" / "adapter_model.safetensors")
    with pytest.raises(MedistillError, match="B matrices are still zero"):
        check_trained(tmp_path / "run", ["sft"])
    tensors[b][0, 0] = 1e-6
    save_file(tensors, stage / "adapter" / "adapter_model.safetensors")
    moved = check_trained(tmp_path / "run", ["sft"])["sft"]
    assert (moved["tensors_changed"], moved["tensors"], moved["elements_changed"]) == (1, 1, 1)
