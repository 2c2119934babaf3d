"""Several sources, one dataset: seeded stratified samples, a store that records the split and
file really read (and migrates older stores), and a card with per-source counts."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from medistill.config import build
from medistill.curate import CurateConfig, run_curate
from medistill.data import Question, allocate, sample_questions
from medistill.errors import MedistillError
from medistill.generate import GenerateConfig, build_requests, run_generate
from medistill.store import SCHEMA_VERSION, TraceStore

from chat_server import ChatServer

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# ------------------------------------------------------------------ seeded stratified samples


def _questions(sizes: dict[str, int]) -> list[Question]:
    out = []
    for subject, n in sizes.items():
        for i in range(n):
            out.append(
                Question(
                    f"{subject}-{i}",
                    "x",
                    "train",
                    f"q {subject} {i}",
                    {"A": "a", "B": "b"},
                    "A",
                    subject or None,
                )
            )
    random.Random(1).shuffle(out)  # subjects interleaved, as in a real file
    return out


MEDMCQA_DEV_SUBJECTS = {
    "Dental": 1318, "Surgery": 369, "Pathology": 337, "Medicine": 295, "Pharmacology": 243,
    "Anatomy": 234, "Pediatrics": 234, "Gynaecology & Obstetrics": 224, "Physiology": 171,
    "Biochemistry": 171, "Social & Preventive Medicine": 129, "Microbiology": 122,
    "Radiology": 69, "Forensic Medicine": 67, "Ophthalmology": 58, "ENT": 53, "Anaesthesia": 34,
    "Orthopaedics": 20, "Skin": 17, "Psychiatry": 16, "Unknown": 2,
}  # fmt: skip


@pytest.mark.parametrize(
    ("sizes", "n"),
    [
        ({"Anatomy": 50, "Surgery": 30, "Pharmacology": 20}, 10),
        ({"Anatomy": 50, "Surgery": 30, "Pharmacology": 20}, 100),  # everything
        ({"Anatomy": 1000, "Dental": 3, "Forensic": 1, "Skin": 2}, 40),  # tiny subjects get one
        ({"A": 7, "B": 7, "C": 7}, 10),  # equal remainders: ties by name
        ({"Anatomy": 9, "": 4}, 6),  # questions without a subject form their own stratum
        ({"Anatomy": 80, "Surgery": 15, "Dental": 5}, 2),  # fewer than the subjects
        # MedMCQA dev's 21 subjects at their sizes in the release (4,183 questions).
        (MEDMCQA_DEV_SUBJECTS, 1000),
        (MEDMCQA_DEV_SUBJECTS, 30),  # most subjects under one question at their share
    ],
)
@pytest.mark.parametrize("seed", [0, 7])
def test_stratified_sample_is_exact_proportional_and_seeded(
    sizes: dict[str, int], n: int, seed: int
) -> None:
    alloc = allocate(sizes, n)
    total = sum(sizes.values())
    assert sum(alloc.values()) == n
    # A subject too small for one question at its share gets one where n allows; the others
    # share what remains, each within one question of its share of it (of its plain share
    # n * size / total when no subject needed the floor).
    floored: set[str] = set()
    while n >= len(sizes):  # until no subject left is under one at its share of what remains
        rest_n, rest_total = n - len(floored), sum(sizes[s] for s in sizes if s not in floored)
        under = {s for s in sizes if s not in floored and rest_n * sizes[s] < rest_total}
        if not under:
            break
        floored |= under
    assert all(alloc[s] == 1 for s in floored)
    rest_n, rest_total = n - len(floored), sum(c for s, c in sizes.items() if s not in floored)
    for subject, size in sizes.items():
        assert 0 <= alloc[subject] <= size
        if n >= len(sizes):
            assert alloc[subject] >= 1, subject
        if subject not in floored:
            share = rest_n * size / rest_total
            assert abs(alloc[subject] - share) < 1, (subject, share)
    if not floored:
        assert all(abs(alloc[s] - n * c / total) < 1 for s, c in sizes.items())
    qs = _questions(sizes)
    got = sample_questions(qs, n, seed=seed, stratify="subject")
    assert len(got) == n and len({q.id for q in got}) == n
    by = Counter(q.subject or "" for q in got)
    assert {s: by.get(s, 0) for s in sizes} == alloc
    # The same seed draws the same questions, in the file's order; another seed others.
    again = sample_questions(list(qs), n, seed=seed, stratify="subject")
    assert [q.id for q in again] == [q.id for q in got]
    order = {q.id: i for i, q in enumerate(qs)}
    assert [order[q.id] for q in got] == sorted(order[q.id] for q in got)
    if n < total // 2:
        other = sample_questions(qs, n, seed=seed + 1, stratify="subject")
        assert {q.id for q in other} != {q.id for q in got}


def test_a_sample_larger_than_the_questions_is_an_error() -> None:
    qs = _questions({"Anatomy": 3, "Surgery": 2})
    for stratify in (None, "subject"):
        with pytest.raises(MedistillError, match="cannot sample 6 questions: only 5 available"):
            sample_questions(qs, 6, seed=0, stratify=stratify)
    assert len(sample_questions(qs, 5, stratify=None)) == 5
    with pytest.raises(MedistillError, match="cannot stratify by 'topic'"):
        sample_questions(qs, 2, stratify="topic")


# ------------------------------------------------------------------ recipe syntax and errors

T = {"model": "t", "base_url": ["http://127.0.0.1:9/v1"]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"sources": [{"benchmark": "medqa"}, {"benchmark": "medmcqa", "sample": {"n": "x"}}]},
            "r.yaml: generate.sources[1].sample.n: expected an integer, got 'x'",
        ),
        (
            {"sources": [{"benchmark": "medqa", "sample": {"n": 5, "stratfy": "subject"}}]},
            "r.yaml: generate.sources[0].sample: unknown key(s) 'stratfy' (did you mean "
            "'stratify'?)",
        ),
        (
            {"sources": [{"benchmark": "medmcqa", "sample": {"n": 5, "stratify": "topic"}}]},
            "r.yaml: generate.sources[0].sample: stratify 'topic'",
        ),
        ({"sources": [{"benchmark": "medmcq"}]}, "generate.sources[0]: unknown benchmark"),
        ({"sources": [{"split": "train"}]}, "generate.sources[0]: missing required 'benchmark'"),
        ({"sources": ["medqa"]}, "generate.sources[0]: expected a mapping, got 'medqa'"),
        ({"sources": "medqa"}, "generate.sources: expected a list of mappings"),
        ({"sources": []}, "sources is empty"),
        (
            {"sources": [{"benchmark": "medqa"}], "benchmark": "medqa"},
            "r.yaml: generate: sources and benchmark are both set",
        ),
        (
            {"sources": [{"benchmark": "medqa"}], "split": "train"},
            "r.yaml: generate: sources and split are both set",
        ),
        (
            {"sources": [{"benchmark": "medqa"}, {"benchmark": "medqa", "split": "dev"}]},
            "sources[0] and sources[1] both read medqa",
        ),
    ],
)
def test_source_errors_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(MedistillError) as exc:
        build(GenerateConfig, {"teacher": T, **values}, where="r.yaml: generate")
    assert message in str(exc.value)


def test_one_benchmark_is_still_one_source() -> None:
    cfg = build(GenerateConfig, {"teacher": T, "benchmark": "medqa", "split": "train"}, where="r")
    (src,) = cfg.resolved_sources()
    assert (src.benchmark, src.split, src.path, src.limit, src.sample) == (
        "medqa", "train", None, None, None
    )  # fmt: skip
    (default,) = build(GenerateConfig, {"teacher": T}, where="r").resolved_sources()
    assert default.benchmark == "sample"


def _recipe_generate(name: str) -> GenerateConfig:
    from medistill.config import load_recipe

    section = load_recipe(RECIPES / name)["generate"]
    return build(GenerateConfig, section, where=f"{name}: generate")


def test_pipeline_recipes_take_sources(tmp_path: Path) -> None:
    from medistill.pipeline import plan

    gpu = _recipe_generate("qwen3-1.7b-gpu.yaml")
    medqa, medmcqa = gpu.sources
    assert (medqa.benchmark, medqa.split, medqa.sample) == ("medqa", "train", None)
    assert (medmcqa.benchmark, medmcqa.split) == ("medmcqa", "train")
    assert medmcqa.sample.stratify == "subject" and 5_000 <= medmcqa.sample.n <= 20_000
    demo = _recipe_generate("demo.yaml")
    assert demo.sources is None and [s.benchmark for s in demo.resolved_sources()] == [
        "sample_train"
    ]
    both = tmp_path / "both.yaml"
    both.write_text(
        "run: {stages: [generate]}\ngenerate:\n  teacher: {model: t}\n  benchmark: medqa\n"
        "  sources: [{benchmark: medmcqa}]\n"
    )
    with pytest.raises(MedistillError, match=r"both.yaml: generate: sources and benchmark"):
        plan(both)
    two = tmp_path / "two.yaml"
    two.write_text(
        "run: {stages: [generate]}\ngenerate:\n  teacher: {model: t}\n  sources:\n"
        "    - {benchmark: medqa, split: train}\n"
        "    - {benchmark: medmcqa, split: train, sample: {n: 10, seed: 1, stratify: subject}}\n"
    )
    cfg = plan(two).configs["generate"]
    assert [(s.benchmark, s.split) for s in cfg.sources] == [
        ("medqa", "train"),
        ("medmcqa", "train"),
    ]
    assert cfg.sources[1].sample.n == 10 and cfg.out.endswith("generate/traces.db")


def test_cli_keeps_benchmark_flags_and_sources_stay_in_the_recipe(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medistill.cli import app

    r = CliRunner().invoke(app, ["generate", "--help"])
    assert r.exit_code == 0 and "--benchmark" in r.output and "--sources" not in r.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text("generate:\n  teacher: {model: t}\n  sources: [{benchmark: sample}]\n")
    r = CliRunner().invoke(app, ["generate", "--config", str(recipe), "--benchmark", "medqa"])
    assert r.exit_code != 0 and "sources and benchmark are both set" in r.output


# ------------------------------------------------------------------ two benchmarks, one store

N_MEDQA, N_MEDMCQA, SAMPLE = 4, 6, 4


def _write_benchmarks(root: Path) -> tuple[Path, Path]:
    """A MedQA train file and a MedMCQA train file, each in its release's native format, whose
    question ids collide (``c-0``, ``c-1``...). Every gold is B."""
    medqa = root / "medqa" / "US_4options_train.jsonl"
    medqa.parent.mkdir(parents=True)
    with open(medqa, "w") as fh:
        for i in range(N_MEDQA):
            opts = {L: f"usmle option {L}{i}" for L in "ABCD"}
            row = {"id": f"c-{i}", "question": f"usmle question {i}?", "options": opts}
            fh.write(json.dumps({**row, "answer_idx": "B", "answer": opts["B"]}) + "\n")
    medmcqa = root / "medmcqa" / "train.json"  # the official release: JSON lines, cop 1-based
    medmcqa.parent.mkdir(parents=True)
    with open(medmcqa, "w") as fh:
        for i in range(N_MEDMCQA):
            row = {"id": f"c-{i}", "question": f"aiims question {i}?", "cop": 2}
            row.update({k: f"aiims {k}{i}" for k in ("opa", "opb", "opc", "opd")})
            row["subject_name"] = "Anatomy" if i < 4 else "Physiology"
            fh.write(json.dumps(row) + "\n")
    return medqa, medmcqa


def _answer(messages: list[dict]) -> str:
    """Right on every MedQA question; on MedMCQA right only for even-numbered questions."""
    user = messages[-1]["content"]
    if "aiims question" in user:
        i = int(user.split("aiims question ")[1].split("?")[0])
        return f"Reasoning about item {i}.\nThe answer is {'B' if i % 2 == 0 else 'C'}."
    return "Reasoning.\nThe answer is B."


def test_two_benchmarks_one_store_one_card(tmp_path: Path, monkeypatch) -> None:
    """MedQA train plus a seeded, subject-stratified MedMCQA train sample into one store;
    curation keeps the two benchmarks' equal question ids apart and the card gives each
    source's split, file read, traces in, teacher accuracy and traces kept. On main a recipe
    could name one benchmark only (``sources`` was an unknown key)."""
    medqa_file, medmcqa_file = _write_benchmarks(tmp_path / "data")
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    db = tmp_path / "traces.db"
    with ChatServer(_answer) as srv:
        section = {
            "teacher": {"model": "teacher-x", "base_url": [srv.url], "concurrency": 4},
            "sources": [
                {"benchmark": "medqa", "split": "train"},
                {
                    "benchmark": "medmcqa",
                    "split": "train",
                    "sample": {"n": SAMPLE, "seed": 3, "stratify": "subject"},
                },
            ],
            "max_tokens": 64,
            "out": str(db),
        }
        cfg = build(GenerateConfig, section, where="r.yaml: generate")
        summary = run_generate(cfg, show_progress=False)
        assert summary["new_calls"] == N_MEDQA + SAMPLE
        again = run_generate(cfg, show_progress=False)  # resumes: the same sample, nothing new
    assert again["new_calls"] == 0 and again["already_stored"] == N_MEDQA + SAMPLE
    by_source = {s["benchmark"]: s for s in summary["sources"]}
    assert by_source["medqa"]["file"] == str(medqa_file.resolve())
    assert by_source["medmcqa"]["file"] == str(medmcqa_file.resolve())
    assert by_source["medmcqa"]["questions_read"] == N_MEDMCQA
    assert by_source["medmcqa"]["questions"] == SAMPLE
    assert {s["split"] for s in summary["sources"]} == {"train"}

    with TraceStore(db) as store:
        rows = list(store.iter_rows())
        reads = store.sources()
    assert len(rows) == N_MEDQA + SAMPLE
    pairs = {(r["source"], r["question_id"]) for r in rows}
    assert len(pairs) == len(rows)  # equal ids, two benchmarks, distinct questions
    assert {"c-0", "c-1"} <= {q for s, q in pairs if s == "medqa"} & {
        q for s, q in pairs if s == "medmcqa"
    }
    assert {(r["source"], r["split"], r["source_file"]) for r in rows} == {
        ("medqa", "train", str(medqa_file.resolve())),
        ("medmcqa", "train", str(medmcqa_file.resolve())),
    }
    assert [(r["source"], r["calls"]) for r in reads] == [("medqa", N_MEDQA), ("medmcqa", SAMPLE)]
    # The sample is stratified: 4 of 6 (Anatomy 4, Physiology 2) is 3 + 1.
    subjects = Counter(r["subject"] for r in rows if r["source"] == "medmcqa")
    assert subjects == {"Anatomy": 3, "Physiology": 1}

    out = tmp_path / "dataset"
    ccfg = CurateConfig(
        store=str(db), out=str(out), eval_benchmarks=[], hf_dataset=False, min_tokens=1,
        validation_fraction=0.0, dedup=False,
    )  # fmt: skip
    stats = run_curate(ccfg, show_progress=False)
    medmcqa_ids = {r["question_id"] for r in rows if r["source"] == "medmcqa"}
    medmcqa_right = sum(1 for q in medmcqa_ids if int(q.split("-")[1]) % 2 == 0)
    per = {s["source"]: s for s in stats["sources"]}
    assert [s["source"] for s in stats["sources"]] == ["medqa", "medmcqa"]
    assert per["medqa"] == {
        "source": "medqa",
        "read": [{"split": "train", "file": str(medqa_file.resolve()), "traces": N_MEDQA}],
        "input_traces": N_MEDQA,
        "input_questions": N_MEDQA,
        "teacher_accuracy": 1.0,
        "kept_traces": N_MEDQA,
        "kept_questions": N_MEDQA,
    }
    assert per["medmcqa"]["input_traces"] == per["medmcqa"]["input_questions"] == SAMPLE
    assert per["medmcqa"]["teacher_accuracy"] == round(medmcqa_right / SAMPLE, 4)
    assert per["medmcqa"]["kept_traces"] == medmcqa_right
    assert per["medmcqa"]["read"][0]["file"] == str(medmcqa_file.resolve())
    assert stats["kept_traces"] == N_MEDQA + medmcqa_right
    kept = [json.loads(line) for line in (out / "messages" / "train.jsonl").open()]
    assert len({(r["source"], r["question_id"]) for r in kept}) == len(kept)
    assert {r["source"] for r in kept if r["question_id"] == "c-0"} == {"medqa", "medmcqa"}
    card = (out / "README.md").read_text()
    acc = f"{100 * medmcqa_right / SAMPLE:.1f}%"
    assert (
        f"| medqa | train | `{medqa_file.resolve()}` | {N_MEDQA} | {N_MEDQA} | 100.0% | "
        f"{N_MEDQA} | {N_MEDQA} |" in card
    )
    assert (
        f"| medmcqa | train | `{medmcqa_file.resolve()}` | {SAMPLE} | {SAMPLE} | {acc} | "
        f"{medmcqa_right} | {medmcqa_right} |" in card
    )


def test_a_difficulty_eval_applies_to_its_own_benchmark_only(tmp_path: Path, monkeypatch) -> None:
    """The base student's predictions on MedMCQA (its run folder says so) never drop the MedQA
    question that has the same id."""
    _write_benchmarks(tmp_path / "data")
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    db = tmp_path / "traces.db"
    with ChatServer(lambda m: "Reasoning.\nThe answer is B.") as srv:
        sources = [{"benchmark": "medqa", "split": "train", "limit": 1},
                   {"benchmark": "medmcqa", "split": "train", "limit": 1}]  # fmt: skip
        section = {"teacher": {"model": "t", "base_url": [srv.url]}, "sources": sources}
        run_generate(
            build(GenerateConfig, {**section, "out": str(db)}, where="g"), show_progress=False
        )
    run = tmp_path / "base-medmcqa"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"identity": {"benchmark": "medmcqa"}}))
    (run / "predictions.jsonl").write_text(json.dumps({"id": "c-0", "correct": True}) + "\n")
    ccfg = CurateConfig(
        store=str(db), out=str(tmp_path / "ds"), eval_benchmarks=[], hf_dataset=False,
        min_tokens=1, validation_fraction=0.0, dedup=False,
        difficulty_eval=str(run / "predictions.jsonl"),
    )  # fmt: skip
    stats = run_curate(ccfg, show_progress=False)
    per = {s["source"]: s["kept_traces"] for s in stats["sources"]}
    assert per == {"medqa": 1, "medmcqa": 0} and stats["dropped"]["too_easy"] == 1


# ------------------------------------------------------------------ an older store


V1_COLUMNS = (
    "key TEXT PRIMARY KEY, question_id TEXT NOT NULL, sample_index INTEGER NOT NULL, source TEXT,"
    " teacher TEXT NOT NULL, question TEXT, options TEXT, gold TEXT, permutation TEXT,"
    " subject TEXT, messages TEXT NOT NULL, params TEXT NOT NULL, text TEXT, reasoning TEXT,"
    " finish_reason TEXT, truncated INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER,"
    " latency_s REAL, endpoint TEXT, attempts INTEGER, created_at REAL"
)


def test_a_schema_1_store_opens_migrates_and_resumes(tmp_path: Path) -> None:
    """A store written before the split and file were recorded: it opens, gains the columns
    (its rows keep NULL there), and a rerun makes only the calls it lacks."""
    db = tmp_path / "old.db"
    with ChatServer(_answer) as srv:
        teacher = {"model": "teacher-x", "base_url": [srv.url]}
        cfg = build(GenerateConfig, {"teacher": teacher, "benchmark": "sample", "limit": 3,
                                     "out": str(db)}, where="g")  # fmt: skip
        from medistill.data import load_benchmark

        first = build_requests(load_benchmark("sample", limit=3).questions, cfg)[0]
        con = sqlite3.connect(db)
        con.execute(f"CREATE TABLE traces ({V1_COLUMNS})")
        con.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        con.execute(
            "INSERT INTO traces (key, question_id, sample_index, source, teacher, messages,"
            " params, text, finish_reason, question, options, gold) VALUES"
            " (?,?,?,?,?,?,?,?,?,?,?,?)",
            (first.key, first.question.id, 0, "sample", "teacher-x", first.messages_json,
             json.dumps(first.params_dict), "Old.\nThe answer is B.", "stop",
             first.question.question, json.dumps(first.options), first.gold),
        )  # fmt: skip
        con.commit()
        con.close()
        summary = run_generate(cfg, show_progress=False)
    assert (summary["already_stored"], summary["new_calls"]) == (1, 2)
    with TraceStore(db) as store:
        version = store.db.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()[0]
        rows = list(store.iter_rows())
    assert int(version) == SCHEMA_VERSION == 3
    assert [(r["split"], r["source_file"] is None) for r in rows] == [
        (None, True), ("sample", False), ("sample", False)
    ]  # fmt: skip
    stats = run_curate(
        CurateConfig(store=str(db), out=str(tmp_path / "ds"), eval_benchmarks=[],
                     hf_dataset=False, min_tokens=1, validation_fraction=0.0),
        show_progress=False,
    )  # fmt: skip
    (sample,) = stats["sources"]
    assert [(r["split"], r["traces"]) for r in sample["read"]] == [(None, 1), ("sample", 2)]
    assert "(not recorded)" in (tmp_path / "ds" / "README.md").read_text()


def test_a_hub_copy_is_recorded_by_dataset_and_split(monkeypatch) -> None:
    """Read from the Hub, the file is a temporary copy: the record names the dataset and the
    Hub split that was downloaded instead."""
    import sys
    import types

    from medistill.data import load_benchmark

    asked = []

    def load_dataset(hub_id, config=None, split=None):
        asked.append((hub_id, config, split))
        row = {"id": "h-0", "question": "hub question?", "cop": 0, "subject_name": "Anatomy"}
        return [{**row, **{k: f"hub {k}" for k in ("opa", "opb", "opc", "opd")}}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.delenv("MEDISTILL_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    got = load_benchmark("medmcqa", split="train")
    assert asked == [("openlifescienceai/medmcqa", None, "train")]
    assert got.report.split == "train" and got.questions[0].gold == "A"
    assert got.report.source_file == "openlifescienceai/medmcqa (Hugging Face Hub, split train)"
    dev = load_benchmark("medmcqa")  # the default split is the Hub's validation split
    assert dev.report.source_file.endswith("(Hugging Face Hub, split validation)")
    assert dev.report.split == "dev"
