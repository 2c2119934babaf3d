"""Curation's safety mix: harmful-request -> refusal demonstrations added at a recipe-set share,
stratified over the categories, decontaminated against the safety test set and counted in the
card; SFT trains on them, GRPO's prompts leave them out. On a small MedSafetyBench-shaped
folder written here (the real one is in ../shared; see BENCHMARKS.md for it)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from conftest import synthetic_traces
from medistill.config import build
from medistill.curate import CurateConfig, run_curate
from medistill.curate.safety_mix import target_rows
from medistill.errors import DataError, MedistillError
from medistill.store import TraceStore
from medistill.train.data import prompt_rows, read_rows, resolve_dataset

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu", "do", "fe", "gi", "ha"]


def _request(rng: random.Random, n: int = 16) -> str:
    """A harmful-looking request of ``n`` distinct made-up words (no two alike)."""
    words = ["".join(rng.choice(SYLLABLES) for _ in range(3)) for _ in range(n)]
    return "How can a doctor secretly " + " ".join(words) + "?"


def write_medsafetybench(root: Path, *, train: int = 3, test: int = 2, seed: int = 0) -> Path:
    """MedSafetyBench's release layout: {test,train}/{gpt4,llama2}/..._category_{1..9}.csv."""
    rng = random.Random(seed)
    for split, n in (("test", test), ("train", train)):
        for source in ("gpt4", "llama2"):
            folder = root / split / source
            folder.mkdir(parents=True, exist_ok=True)
            for c in range(1, 10):
                with open(folder / f"med_safety_demonstrations_category_{c}.csv", "w",
                          newline="", encoding="utf-8") as fh:  # fmt: skip
                    w = csv.writer(fh)
                    w.writerow(["", "harmful_medical_request", "safe_response"])
                    for i in range(n):
                        w.writerow([i, _request(rng), f"I'm sorry, but I cannot help ({c}, {i})."])
    return root


def plant_near_copy(root: Path) -> str:
    """Make train/gpt4 category 2's first request a one-word edit of a test request; returns
    the train id it gets."""
    with open(root / "test/llama2/med_safety_demonstrations_category_5.csv", encoding="utf-8") as f:
        test_request = list(csv.DictReader(f))[1]["harmful_medical_request"]
    near = test_request.replace("secretly", "quietly")
    path = root / "train/gpt4/med_safety_demonstrations_category_2.csv"
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[1][1] = near
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return "train-gpt4-c2-000"


def curate(tmp: Path, n_traces: int = 30, **safety) -> tuple[dict, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    with TraceStore(tmp / "traces.db") as store:
        store.put_many(synthetic_traces(n_traces))
    cfg = CurateConfig(
        store=str(tmp / "traces.db"),
        out=str(tmp / "dataset"),
        eval_benchmarks=["sample_heldout"],
        hf_dataset=True,
        min_tokens=4,
        max_tokens=100_000,
        validation_fraction=0.0,
        **safety,
    )
    return run_curate(cfg, show_progress=False), tmp / "dataset"


def test_safety_mix_keys_are_checked_when_the_config_is_built(tmp_path: Path) -> None:
    where = "recipe.yaml: curate"
    for values, message in (
        ({"safety_mix": "medsafetybench", "safety_mix_share": 0}, r"share must be in \(0, 1\)"),
        ({"safety_mix": "medsafetybench", "safety_mix_share": 1.5}, r"share must be in \(0, 1\)"),
        ({"safety_mix": "advbench"}, "unknown safety set; choose medsafetybench"),
        ({"safety_mix": "safety_sample"}, "unknown safety set"),  # an evaluation set
        ({"safety_mix": "medsafetybench", "safety_mix_split": "test"}, "split safety is evaluated"),
        ({"safety_mix": "medsafetybench", "safety_mix_file": "x.jsonl"}, "not both"),
    ):
        with pytest.raises(MedistillError, match=message) as e:
            build(CurateConfig, values, where=where)
        assert str(e.value).startswith(where)
    assert build(CurateConfig, {"safety_mix": "none"}, where=where).safety_mix is None
    assert target_rows(30, 0.25) == 10 and target_rows(28, 0.2) == 7


def test_a_bad_file_line_is_named_before_curation_starts(tmp_path: Path) -> None:
    bad = tmp_path / "mine.jsonl"
    bad.write_text(
        json.dumps({"request": "Help me falsify a chart.", "safe_response": "I can't."})
        + "\n"
        + json.dumps({"request": "Help me hide an error."})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"mine\.jsonl:2: field 'safe_response': missing"):
        curate(tmp_path / "run", safety_mix_file=str(bad))
    assert not (tmp_path / "run" / "dataset" / "messages").exists()  # failed before writing
    bad.write_text('{"request": "x", "safe_response": ""}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"mine\.jsonl:1: field 'safe_response': expected a non"):
        curate(tmp_path / "run", safety_mix_file=str(bad))
    with pytest.raises(MedistillError, match=r"safety_mix_file .*nowhere\.jsonl: not found"):
        curate(tmp_path / "run", safety_mix_file=str(tmp_path / "nowhere.jsonl"))


def test_the_mix_share_is_exact_stratified_decontaminated_and_counted(tmp_path: Path) -> None:
    root = write_medsafetybench(tmp_path / "msb")
    planted = plant_near_copy(root)
    stats, out = curate(
        tmp_path / "run", safety_mix="medsafetybench", safety_mix_path=str(root),
        safety_mix_share=0.25,
    )  # fmt: skip
    kept = stats["kept_traces"]
    mix = stats["safety_mix"]
    assert kept == 30 and mix["rows"] == mix["target_rows"] == 10
    assert mix["rows"] / (kept + mix["rows"]) == 0.25 == mix["share"]
    # stratified: every category, none more than one apart
    assert len(mix["by_category"]) == 9 and set(mix["by_category"].values()) == {1, 2}
    # decontaminated: the planted near copy of a test request is removed and logged
    assert mix["removed"]["contaminated_safety_test"] == 1
    assert mix["read"] == 54 and mix["available"] == 53
    log = [json.loads(line) for line in (out / "safety_decontamination.jsonl").open()]
    assert [r["id"] for r in log] == [planted] and log[0]["benchmark_id"] == "test-llama2-c5-001"
    assert any("medsafetybench test (36 requests" in a for a in mix["decontaminated_against"])
    rows = [json.loads(line) for line in (out / "messages/train.jsonl").open()]
    safety = [r for r in rows if r["kind"] == "safety"]
    assert len(safety) == 10 and len(rows) == 40
    assert planted not in {r["question_id"] for r in safety}
    assert {r["kind"] for r in rows} == {"trace", "safety"}
    first = safety[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]  # no system prompt
    assert first["options"] == {} and first["gold"] is None and first["tokens"] > 0
    assert first["messages"][1]["content"].startswith("I'm sorry")
    on_disk = json.loads((out / "stats.json").read_text())["safety_mix"]
    assert on_disk["rows"] == 10 and on_disk["splits"] == {"train": 10, "validation": 0}
    card = (out / "README.md").read_text()
    assert "## Safety mix" in card and "**10** harmful-request -> refusal" in card
    assert "| contaminated_safety_test | 1 |" in card and "| 3. Respect for the law |" in card
    # the same seed draws the same rows; the HF copy holds them too
    from datasets import load_from_disk

    hf = load_from_disk(str(out / "hf/messages"))["train"]
    assert hf.num_rows == 40 and hf.filter(lambda r: r["kind"] == "safety").num_rows == 10
    again, _ = curate(
        tmp_path / "again", safety_mix="medsafetybench", safety_mix_path=str(root),
        safety_mix_share=0.25,
    )  # fmt: skip
    assert again["safety_mix"]["by_source"] == mix["by_source"]


def test_a_users_file_and_what_training_reads(tmp_path: Path) -> None:
    write_medsafetybench(tmp_path / "msb")  # the test split the file is checked against
    rng = random.Random(1)
    mine = tmp_path / "refusals.jsonl"
    with mine.open("w", encoding="utf-8") as fh:
        for i in range(12):
            rec = {"request": _request(rng), "safe_response": "No: that would harm a patient.",
                   "category": ["privacy", "honesty", "law"][i % 3]}  # fmt: skip
            fh.write(json.dumps(rec) + "\n")
    stats, out = curate(
        tmp_path / "run", safety_mix_file=str(mine), safety_mix_path=str(tmp_path / "msb"),
        safety_mix_share=0.1,
    )  # fmt: skip
    mix = stats["safety_mix"]
    assert mix["rows"] == 3 and mix["by_category"] == {"honesty": 1, "law": 1, "privacy": 1}
    assert mix["file"] == str(mine) and mix["by_source"] == {"refusals.jsonl": 3}
    assert f"`{mine}`" in (out / "README.md").read_text()
    # SFT reads every row, safety rows included; GRPO's prompts are the traces' questions only
    source = resolve_dataset(str(out))
    rows = read_rows(source, "train")
    assert sum(r["kind"] == "safety" for r in rows) == 3 and len(rows) == 33
    safety = next(r for r in rows if r["kind"] == "safety")
    assert safety["options"] == {} and safety["gold"] is None
    prompts = prompt_rows(source)
    assert len(prompts) == 30 and {p["kind"] for p in prompts} == {"trace"}
    assert source.card_summary["safety_mix"]["rows"] == 3


def test_sft_drops_an_overlong_safety_row_it_cannot_cut(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from medistill.train.data import tokenize_sft

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = {
        "kind": "safety",
        "prompt": [{"role": "user", "content": "Help me falsify a chart."}],
        "completion": [{"role": "assistant", "content": "I cannot help with that. " * 40}],
        "options": {},
        "gold": None,
    }
    assert tokenize_sft(row, tok, max_length=None, overlong="drop")["status"] == "ok"
    cut = tokenize_sft(row, tok, max_length=40, overlong="truncate_middle")
    assert cut["status"] == "dropped"  # no final answer line to keep


def test_a_recipe_passes_the_safety_mix_to_curation_unchanged(tmp_path: Path) -> None:
    from medistill.pipeline import plan
    from test_pipeline import write_recipe

    model = tmp_path / "model"
    model.mkdir()
    recipe = write_recipe(
        tmp_path, "http://127.0.0.1:9/v1", model,
        **{"curate.safety_mix": "medsafetybench", "curate.safety_mix_share": 0.15},
    )  # fmt: skip
    cfg = plan(recipe).configs["curate"]
    assert (cfg.safety_mix, cfg.safety_mix_share, cfg.safety_mix_split) == (
        "medsafetybench",
        0.15,
        "train",
    )
    bad = write_recipe(tmp_path, "http://127.0.0.1:9/v1", model, **{"curate.safety_mix_share": 2})
    with pytest.raises(MedistillError, match=r"tiny\.yaml: curate: safety_mix_share must be"):
        plan(bad)


def test_the_embedded_training_set_and_the_wider_decontamination(
    tmp_path: Path, monkeypatch
) -> None:
    """``safety_train_sample`` needs no download; the refusal demonstrations are checked against
    every safety evaluation set: benign_clinical test and safety_sample always, XSTest and
    MedSafetyBench test where found (a warning in the card where not)."""
    from medistill.data.safety import load_safety

    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(tmp_path / "empty"))
    mine = tmp_path / "refusals.jsonl"
    benign_test = load_safety("benign_clinical", split="test")[5].request
    with mine.open("w", encoding="utf-8") as fh:
        for r in load_safety("safety_train_sample", split="train")[:8]:
            fh.write(json.dumps({"request": r.request, "safe_response": r.safe_response}) + "\n")
        fh.write(json.dumps({"request": benign_test, "safe_response": "No."}) + "\n")
    stats, out = curate(tmp_path / "file", safety_mix_file=str(mine), safety_mix_share=0.2)
    mix = stats["safety_mix"]
    assert mix["removed"]["contaminated_safety_test"] == 1
    assert any(a.startswith("benign_clinical test (99") for a in mix["decontaminated_against"])
    assert any(a.startswith("safety_sample test (18") for a in mix["decontaminated_against"])
    assert [n.split(":")[0] for n in mix["not_found"]] == ["medsafetybench test", "xstest"]
    card = (out / "README.md").read_text()
    assert "not decontaminated against xstest" in card
    stats, out = curate(
        tmp_path / "embedded", safety_mix="safety_train_sample", safety_mix_share=0.2
    )
    mix = stats["safety_mix"]
    assert mix["source"] == "safety_train_sample" and mix["read"] == 36
    assert mix["rows"] == mix["target_rows"] == 8 and len(mix["by_category"]) == 8
    assert "contrast_mix" not in stats and stats["contrast_traces"] == 0
    rows = [json.loads(line) for line in (out / "messages/train.jsonl").open()]
    refusals = [r for r in rows if r["kind"] == "safety"]
    assert len({r["messages"][1]["content"][:20] for r in refusals}) > 1  # not one template
