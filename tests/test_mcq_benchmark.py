"""Your own questions (``--benchmark mcq --path FILE``): JSONL and CSV files written here, read
by the loader, ``inspect``, ``eval``, ``generate``, curation's decontamination and the plan of
``medistill run``; bad rows named by file, line and field; one file for training and
evaluation split by a seeded, recorded holdout rule (or refused)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medistill.cli import app
from medistill.config import build
from medistill.curate.decontam import load_eval_questions
from medistill.data import load_benchmark
from medistill.data.mcq_options import held_out
from medistill.errors import DataError, MedistillError
from medistill.evaluate import EvalConfig
from medistill.generate import GenerateConfig
from medistill.pipeline.plan import plan

runner = CliRunner()

QUESTIONS = [
    ("w1", "Which drug reverses warfarin?", ["Vitamin K", "Protamine", "Naloxone"], "A"),
    ("w2", "First-line treatment of anaphylaxis?", ["Antihistamine", "IM adrenaline"], "B"),
    (
        "w3",
        "Antidote for paracetamol overdose?",
        ["Atropine", "Flumazenil", "Acetylcysteine", "Naloxone", "Glucagon"],
        "C",
    ),
    (
        "w4",
        "Drug of choice for absence seizures?",
        ["Ethosuximide", "Phenytoin", "Carbamazepine", "Gabapentin"],
        "A",
    ),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def jsonl_bank(tmp: Path, n: int = 4) -> Path:
    """The questions as JSONL: options as an object or a list, answers as letter or text."""
    rows = []
    for i, (qid, q, opts, gold) in enumerate(QUESTIONS[:n]):
        options = {chr(65 + j): t for j, t in enumerate(opts)} if i % 2 else opts
        answer = opts["ABCDE".index(gold)] if i == 1 else gold.lower()
        rows.append(
            {
                "id": qid,
                "question": q,
                "options": options,
                "answer": answer,
                "subject": "pharmacology",
                "explanation": f"because {qid}",
            }
        )
    return write_jsonl(tmp / "bank.jsonl", rows)


def csv_bank(tmp: Path) -> Path:
    """The questions as CSV: A..E columns, short questions leave the last cells empty."""
    rows = []
    for qid, q, opts, gold in QUESTIONS:
        cells = opts + [""] * (5 - len(opts))
        rows.append([qid, q, *cells, gold if qid != "w2" else "im adrenaline"])
    return write_csv(tmp / "bank.csv", ["id", "question", "A", "B", "C", "D", "E", "answer"], rows)


def many(tmp: Path, n: int = 40, name: str = "big.jsonl") -> Path:
    rows = [
        {
            "id": f"q{i}",
            "question": f"Question number {i}?",
            "options": ["yes", "no"],
            "answer": "AB"[i % 2],
        }
        for i in range(n)
    ]
    return write_jsonl(tmp / name, rows)


# ------------------------------------------------------------------------------ the loader


def test_jsonl_and_csv_read_the_same_questions(tmp_path: Path) -> None:
    a = load_benchmark("mcq", jsonl_bank(tmp_path)).questions
    b = load_benchmark("mcq", csv_bank(tmp_path)).questions
    for qs in (a, b):
        assert [q.id for q in qs] == ["w1", "w2", "w3", "w4"]
        assert [q.gold for q in qs] == ["A", "B", "C", "A"]
        assert [len(q.options) for q in qs] == [3, 2, 5, 4]
        assert qs[2].options["C"] == "Acetylcysteine" and qs[0].source == "mcq"
    assert a[0].subject == "pharmacology" and a[0].meta["explanation"] == "because w1"


def test_column_mapping_renames_fields_in_both_formats(tmp_path: Path) -> None:
    header = ["qid", "stem", "opa", "opb", "opc", "correct", "topic"]
    path = write_csv(tmp_path / "exam.csv", header, [["7", "Q?", "x", "y", "z", "y", "t"]])
    columns = {
        "question": "stem",
        "answer": "correct",
        "id": "qid",
        "subject": "topic",
        "options": ["opa", "opb", "opc"],
    }
    (q,) = load_benchmark("mcq", path, columns=columns).questions
    assert (q.id, q.question, q.gold, q.subject) == ("7", "Q?", "B", "t")
    # opa.. columns are found without a mapping of options
    named = {k: v for k, v in columns.items() if k != "options"}
    (q,) = load_benchmark("mcq", path, columns=named).questions
    assert q.options == {"A": "x", "B": "y", "C": "z"}
    rows = [{"Stem": "Q?", "choices": {"A": "x", "B": "y"}, "key": "a"}]
    path = write_jsonl(tmp_path / "exam.jsonl", rows)
    (q,) = load_benchmark(
        "mcq", path, columns={"question": "Stem", "options": "choices", "answer": "key"}
    ).questions
    assert q.gold == "A" and q.id == "0000"
    with pytest.raises(MedistillError, match=r"columns\.stems: unknown key; valid: question"):
        load_benchmark("mcq", path, columns={"stems": "Stem"})


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ({"question": " ", "options": ["a", "b"], "answer": "A"}, "field 'question': empty value"),
        (
            {"question": "Q", "options": ["a"], "answer": "A"},
            "1 option(s): a question needs 2 to 10",
        ),
        (
            {"question": "Q", "options": [str(i) for i in range(11)], "answer": "A"},
            "11 option(s): a question needs 2 to 10",
        ),
        (
            {"question": "Q", "options": ["a", "b"], "answer": "E"},
            "field 'answer': answer 'E' is neither a letter of the options (A, B) nor the text",
        ),
        (
            {"question": "Q", "options": ["a", "b"], "answer": "c"},
            "field 'answer': answer 'c' is neither",
        ),
        (
            {"question": "Q", "options": ["same", "Same "], "answer": "same"},
            "answer 'same' matches options A and B: give the letter",
        ),
        (
            {"question": "Q", "options": ["a", "b"], "answer": 1},
            "answer 1 is not text: give the option's letter",
        ),
        ({"question": "Q", "options": ["a", "b"], "answer": ""}, "field 'answer': empty answer"),
        (
            {"question": "Q", "options": {"A": "a", "C": "c"}, "answer": "A"},
            "option letters must run A, B, C... without gaps",
        ),
        ({"question": "Q", "options": ["a", "b"]}, "field 'answer': empty answer"),
        ({"options": ["a", "b"], "answer": "A"}, "field 'question': missing field"),
    ],
)
def test_bad_jsonl_rows_name_file_line_and_field(tmp_path: Path, row: dict, named: str) -> None:
    good = {"id": "ok", "question": "Fine?", "options": ["a", "b"], "answer": "A"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, {"id": "bad", **row}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: ") as e:
        load_benchmark("mcq", path)
    assert named in str(e.value)
    skipped = load_benchmark("mcq", path, skip_invalid=True)
    assert [q.id for q in skipped] == ["ok"] and len(skipped.report.skipped) == 1


def test_bad_csv_rows_and_headers(tmp_path: Path) -> None:
    header = ["id", "question", "A", "B", "C", "answer"]
    path = write_csv(
        tmp_path / "b.csv",
        header,
        [["1", "Q1", "x", "y", "", "A"], ["1", "Q2", "x", "y", "z", "B"]],
    )
    with pytest.raises(DataError, match=r"b\.csv:3: field 'id': duplicate id '1' \(first seen on"):
        load_benchmark("mcq", path)
    path = write_csv(tmp_path / "b.csv", header, [["1", "Q1", "x", "", "z", "A"]])
    with pytest.raises(DataError, match=r"b\.csv:2: field 'B': option B is empty"):
        load_benchmark("mcq", path)
    path = write_csv(tmp_path / "b.csv", ["question", "A", "B", "correct"], [["Q", "x", "y", "A"]])
    with pytest.raises(DataError, match=r"b\.csv:1: field 'answer': no 'answer' column in the"):
        load_benchmark("mcq", path)
    path = write_csv(tmp_path / "b.csv", ["question", "first", "second", "answer"], [["Q", "x"]])
    with pytest.raises(DataError, match=r"b\.csv:1: field 'options': no option columns A, B"):
        load_benchmark("mcq", path)
    (tmp_path / "bank.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'.*save a spreadsheet"):
        load_benchmark("mcq", tmp_path / "bank.xlsx")
    with pytest.raises(MedistillError, match="'mcq' is your own questions file: give it with"):
        load_benchmark("mcq")


# ------------------------------------------------------------------------------ holdout


def test_holdout_splits_by_a_seeded_hash_of_ids_independent_of_order(tmp_path: Path) -> None:
    path = many(tmp_path)
    test = load_benchmark("mcq", path, holdout=0.25, holdout_seed=3)
    train = load_benchmark("mcq", path, holdout=0.25, holdout_seed=3, split="train")
    ids_test, ids_train = {q.id for q in test}, {q.id for q in train}
    assert ids_test.isdisjoint(ids_train) and len(ids_test | ids_train) == 40
    assert ids_test == {f"q{i}" for i in range(40) if held_out(f"q{i}", 0.25, 3)}
    assert 0 < len(ids_test) < 20  # about a quarter
    assert test.report.holdout == {
        **test.report.holdout,
        "share": 0.25,
        "seed": 3,
        "part": "test",
        "test": len(ids_test),
        "train": len(ids_train),
    }
    assert f"{len(ids_test)} of 40 questions held out" in test.report.notes[-1]
    rows = [json.loads(line) for line in path.read_text().splitlines()][::-1]
    shuffled = write_jsonl(tmp_path / "reversed.jsonl", rows)
    again = load_benchmark("mcq", shuffled, holdout=0.25, holdout_seed=3)
    assert {q.id for q in again} == ids_test
    other = load_benchmark("mcq", path, holdout=0.25, holdout_seed=4)
    assert {q.id for q in other} != ids_test
    with pytest.raises(DataError, match="split 'dev' with a holdout rule: choose test"):
        load_benchmark("mcq", path, holdout=0.25, split="dev")
    with pytest.raises(MedistillError, match="holdout must be between 0 and 1"):
        load_benchmark("mcq", path, holdout=1.5)
    with pytest.raises(MedistillError, match="holdout is for the mcq benchmark"):
        load_benchmark("sample", holdout=0.2)


# ------------------------------------------------------------------------------ commands


def test_inspect_reads_both_formats_and_names_bad_rows(tmp_path: Path) -> None:
    for path in (jsonl_bank(tmp_path), csv_bank(tmp_path)):
        r = runner.invoke(app, ["inspect", "mcq", "--path", str(path)])
        assert r.exit_code == 0, r.output
        assert "loaded 4 questions" in r.stdout and "gold letters: A=2, B=1, C=1" in r.stdout
    r = runner.invoke(app, ["inspect", "mcq"])
    assert r.exit_code == 2 and "give it with --path FILE" in r.output
    bad = write_csv(
        tmp_path / "bad.csv",
        ["question", "A", "B", "answer"],
        [["Q1", "x", "y", "A"], ["Q2", "x", "y", "Z"]],
    )
    r = runner.invoke(app, ["inspect", "mcq", "--path", str(bad)])
    assert r.exit_code == 2 and "bad.csv:3: field 'answer': answer 'Z'" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["inspect", "mcq", "--path", str(bad), "--skip-invalid"])
    assert r.exit_code == 0 and "skipped 1 invalid" in r.stdout
    exam = write_csv(tmp_path / "exam.csv", ["stem", "A", "B", "key"], [["Q", "x", "y", "b"]])
    r = runner.invoke(
        app,
        [
            "inspect",
            "mcq",
            "--path",
            str(exam),
            "--columns",
            '{"question": "stem", "answer": "key"}',
        ],
    )
    assert r.exit_code == 0 and "gold letters: B=1" in r.stdout, r.output
    r = runner.invoke(
        app,
        ["inspect", "mcq", "--path", str(many(tmp_path)), "--holdout", "0.25", "--split", "train"],
    )
    assert r.exit_code == 0 and "held out (split test)" in r.stdout and "read: train" in r.stdout


def test_eval_on_your_own_csv_through_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny_model_dir),
            "--benchmark",
            "mcq",
            "--path",
            str(csv_bank(tmp_path)),
            "--max-new-tokens",
            "4",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["benchmark"] == "mcq"
    r = runner.invoke(app, ["eval", "--model", str(tiny_model_dir), "--benchmark", "mcq"])
    assert r.exit_code == 2 and "give it with --path FILE" in r.output
    r = runner.invoke(app, ["eval", "--model", "x", "--benchmark", "sample", "--holdout", "0.2"])
    assert r.exit_code == 2 and "holdout is for benchmark mcq" in r.output


def test_eval_config_records_the_rule_in_its_identity(tmp_path: Path) -> None:
    path = many(tmp_path)
    cfg = build(
        EvalConfig,
        {
            "model": "m",
            "benchmark": "mcq",
            "path": str(path),
            "holdout": 0.25,
            "columns": {"id": "id"},
        },
        where="eval",
    )
    assert cfg.identity()["loader_kwargs"] == {
        "columns": {"id": "id"},
        "holdout": 0.25,
        "holdout_seed": 0,
    }
    plain = build(EvalConfig, {"model": "m", "benchmark": "mcq", "path": str(path)}, where="e")
    assert plain.identity()["loader_kwargs"] == {}  # a run stored before these keys matches
    with pytest.raises(MedistillError, match=r"holdout and loader_kwargs\.holdout differ"):
        build(
            EvalConfig,
            {"model": "m", "benchmark": "mcq", "holdout": 0.2, "loader_kwargs": {"holdout": 0.3}},
            where="eval",
        )


def test_generate_reads_the_train_part_and_records_the_rule(tmp_path: Path) -> None:
    from medistill.generate.requests import source_requests

    path = many(tmp_path)
    teacher = {"model": "t", "backend": "openai", "base_url": ["http://127.0.0.1:9/v1"]}
    cfg = build(
        GenerateConfig,
        {
            "teacher": teacher,
            "benchmark": "mcq",
            "path": str(path),
            "holdout": 0.25,
            "out": str(tmp_path / "t.db"),
        },
        where="generate",
    )
    requests, sources = source_requests(cfg)
    held = {f"q{i}" for i in range(40) if held_out(f"q{i}", 0.25, 0)}
    assert sources[0]["split"] == "train" and sources[0]["holdout"]["part"] == "train"
    assert sources[0]["questions"] == 40 - len(held) == len(requests)
    assert not {r.question.id for r in requests} & held
    with pytest.raises(MedistillError, match=r"split 'test' with holdout 0\.25: the teacher reads"):
        build(
            GenerateConfig,
            {
                "teacher": teacher,
                "benchmark": "mcq",
                "path": str(path),
                "holdout": 0.25,
                "split": "test",
            },
            where="generate",
        )
    with pytest.raises(MedistillError, match=r"sources\[0\]: columns is for benchmark mcq"):
        build(
            GenerateConfig,
            {
                "teacher": teacher,
                "sources": [{"benchmark": "sample", "columns": {"question": "q"}}],
            },
            where="generate",
        )


def test_generate_command_accepts_mcq(tmp_path: Path) -> None:
    """Through the real command: the file is read (a bad row is named) before any call."""
    bad = write_csv(tmp_path / "bad.csv", ["question", "A", "B", "answer"], [["Q", "x", "y", "Q"]])
    r = runner.invoke(
        app,
        [
            "generate",
            "--teacher",
            "openai:t@http://127.0.0.1:9/v1",
            "--benchmark",
            "mcq",
            "--path",
            str(bad),
            "--out",
            str(tmp_path / "t.db"),
        ],
    )
    assert r.exit_code == 2, r.output
    assert "bad.csv:2: field 'answer': answer 'Q' is neither" in r.output


def test_decontamination_reads_only_the_held_out_part(tmp_path: Path) -> None:
    path = many(tmp_path)
    whole = load_eval_questions([f"mcq={path}"])
    part = load_eval_questions([f"mcq={path}"], {"holdout": 0.25, "holdout_seed": 0})
    assert len(whole) == 40 and {q.id for q in part} == {
        f"q{i}" for i in range(40) if held_out(f"q{i}", 0.25, 0)
    }
    r = runner.invoke(
        app,
        [
            "curate",
            str(tmp_path / "missing.db"),
            "--eval-benchmarks",
            f"mcq={path}",
            "--eval-mcq",
            '{"holdout": 2}',
        ],
    )
    assert r.exit_code == 2 and "holdout must be between 0 and 1" in r.output


# ------------------------------------------------------------------------------ the plan


def recipe(tmp: Path, model: Path, gen: dict, entry: object) -> Path:
    data = {
        "run": {
            "name": "own",
            "root": str(tmp / "runs"),
            "eval_benchmarks": [entry],
            "stages": ["generate", "curate", "sft", "eval"],
        },
        "generate": {
            "teacher": {"model": "t", "backend": "openai", "base_url": ["http://127.0.0.1:9/v1"]},
            "max_tokens": 64,
            **gen,
        },
        "curate": {"max_tokens": 64},
        "sft": {"model": str(model), "max_length": 640},
        "eval": {"max_new_tokens": 64},
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_plan_refuses_training_and_testing_on_one_file_without_a_rule(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    bank = str(many(tmp_path))
    entry = {"benchmark": "mcq", "path": bank}
    with pytest.raises(MedistillError) as e:
        plan(recipe(tmp_path, tiny_model_dir, {"benchmark": "mcq", "path": bank}, entry))
    assert "generate.path and run.eval_benchmarks[0].path are the same file" in str(e.value)
    assert "holdout: 0.2, holdout_seed: 0" in str(e.value)
    with pytest.raises(MedistillError, match="with different rules"):
        plan(
            recipe(
                tmp_path,
                tiny_model_dir,
                {"benchmark": "mcq", "path": bank, "holdout": 0.2},
                {**entry, "holdout": 0.3},
            )
        )
    p = plan(
        recipe(
            tmp_path,
            tiny_model_dir,
            {"sources": [{"benchmark": "mcq", "path": bank, "holdout": 0.25}]},
            {**entry, "holdout": 0.25},
        )
    )
    assert p.configs["curate"].eval_mcq == {"holdout": 0.25, "holdout_seed": 0}
    assert p.configs["curate"].eval_benchmarks == [f"mcq={bank}"]
    for _, ecfg in p.configs["eval"]:  # every model: the held-out part
        assert ecfg.loader_kwargs == {"holdout": 0.25, "holdout_seed": 0}
    assert p.configs["generate"].resolved_sources()[0].split == "train"


def test_plan_reads_mcq_entries_as_strings_and_mappings(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    bank = str(csv_bank(tmp_path))
    p = plan(recipe(tmp_path, tiny_model_dir, {"benchmark": "sample_train"}, f"mcq={bank}"))
    assert p.configs["eval"][0][1].path == bank
    with pytest.raises(MedistillError, match=r"eval_benchmarks\[0\]: benchmark 'mcq' is your own"):
        plan(recipe(tmp_path, tiny_model_dir, {"benchmark": "sample_train"}, "mcq"))
    with pytest.raises(MedistillError, match=r"eval_benchmarks\[0\]\.holdout: only mcq"):
        plan(
            recipe(
                tmp_path,
                tiny_model_dir,
                {"benchmark": "sample_train"},
                {"benchmark": "sample_heldout", "holdout": 0.2},
            )
        )


def test_generate_without_a_path_is_refused_when_built(tmp_path: Path) -> None:
    teacher = {"model": "t", "backend": "openai", "base_url": ["http://127.0.0.1:9/v1"]}
    with pytest.raises(MedistillError, match="generate: benchmark 'mcq' is your own questions"):
        build(GenerateConfig, {"teacher": teacher, "benchmark": "mcq"}, where="generate")


def test_rehearsal_reads_your_own_file_as_is(tmp_path: Path) -> None:
    """A rehearsal makes stand-ins for missing splits; your own file is read from its path."""
    from medistill.data.standin import standin_data_dir

    bank = str(csv_bank(tmp_path))
    data = {
        "generate": {"benchmark": "mcq", "path": bank},
        "run": {"eval_benchmarks": [{"benchmark": "mcq", "path": bank}]},
    }
    notes: list[str] = []
    standin_data_dir(data, tmp_path / "work", notes, [])
    assert not [n for n in notes if "mcq" in n]


def test_chance_is_the_files_own(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Chance of a file of 3, 2, 5 and 4 options: the mean of 1/k, not a fixed 0.25."""
    from medistill.evaluate import run_eval

    cfg = build(
        EvalConfig,
        {
            "model": str(tiny_model_dir),
            "benchmark": "mcq",
            "path": str(jsonl_bank(tmp_path)),
            "max_new_tokens": 2,
            "out": str(tmp_path / "run"),
        },
        where="eval",
    )
    metrics = run_eval(cfg)
    assert metrics["chance"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 5 + 1 / 4) / 4)


def test_run_command_adds_your_benchmark_to_the_runs_evaluations(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """``medistill run RECIPE --benchmark mcq --path FILE``: every model is also evaluated on
    the file (an entry added to run.eval_benchmarks, so curation decontaminates against it)."""
    from medistill.cli.tools import RunOptions, _added_benchmark

    bank = str(csv_bank(tmp_path))
    path = recipe(tmp_path, tiny_model_dir, {"benchmark": "sample_train"}, "sample_heldout")
    r = runner.invoke(app, ["run", str(path), "--benchmark", "mcq", "--path",
                            str(tmp_path / "nothere.csv"), "--dry-run"])  # fmt: skip
    assert r.exit_code == 2 and "mcq=" in r.output and "nothere.csv: file not found" in r.output
    r = runner.invoke(app, ["run", str(path), "--benchmark", "mcq", "--dry-run"])
    assert r.exit_code == 2 and "eval_benchmarks[1]: benchmark 'mcq' is your own" in r.output
    r = runner.invoke(app, ["run", str(path), "--holdout", "0.2", "--dry-run"])
    assert r.exit_code == 2 and "go with --benchmark NAME" in r.output
    opts = RunOptions(recipe=str(path), benchmark="mcq", path=bank, holdout=0.25)
    p = plan(path, _added_benchmark(opts, path))
    assert [e.benchmark for e in p.evals] == ["sample_heldout", "mcq"]
    assert p.configs["curate"].eval_benchmarks == ["sample_heldout", f"mcq={bank}"]
    assert p.configs["curate"].eval_mcq == {"holdout": 0.25, "holdout_seed": 0}
    mcq_runs = [c for _, c in p.configs["eval"] if c.benchmark == "mcq"]
    assert mcq_runs and all(c.path == bank for c in mcq_runs)


def test_a_run_trains_on_the_rest_and_decontaminates_against_the_held_out_share(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """generate + curate through ``medistill run`` on one CSV with a holdout rule: the teacher
    is asked the train part only, curation keeps it (decontaminated against the held-out
    share, which evaluation reads), and no held-out question reaches the dataset."""
    from medistill.pipeline import run_pipeline

    from chat_server import ChatServer

    sample = load_benchmark("sample").questions
    rows = [[q.id, q.question, *q.options.values(), *[""] * (5 - len(q.options)), q.gold]
            for q in sample]  # fmt: skip
    bank = write_csv(tmp_path / "own.csv", ["qid", "stem", "A", "B", "C", "D", "E", "key"], rows)
    by_text = {q.question: q for q in sample}

    def teacher(messages: list[dict]) -> str:
        q = next(q for text, q in by_text.items() if messages[-1]["content"].startswith(text))
        return f"Option {q.gold} fits the findings best.\nThe answer is {q.gold}."

    columns = {"id": "qid", "question": "stem", "answer": "key"}
    rule = {"holdout": 0.25, "holdout_seed": 7, "columns": columns}
    held = {q.id for q in sample if held_out(q.id, 0.25, 7)}
    with ChatServer(teacher) as srv:
        path = recipe(tmp_path, tiny_model_dir,
                      {"benchmark": "mcq", "path": str(bank), **rule},
                      {"benchmark": "mcq", "path": str(bank), **rule})  # fmt: skip
        data = yaml.safe_load(path.read_text())
        data["generate"]["teacher"]["base_url"] = [srv.url]
        data["run"]["stages"] = ["generate", "curate"]
        data["curate"] |= {"min_tokens": 4, "validation_fraction": 0.0, "hf_dataset": False}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        summary = run_pipeline(path, show_progress=False)
        asked = srv.stats["requests"]
    assert {v["action"] for v in summary["stages"].values()} == {"run"}
    assert asked == len(sample) - len(held) and 0 < len(held) < len(sample)
    out = tmp_path / "runs" / "own" / "curate" / "dataset"
    trained = {json.loads(line)["question_id"]
               for line in (out / "messages" / "train.jsonl").read_text().splitlines()}  # fmt: skip
    assert trained and trained <= {q.id for q in sample} and not trained & held
    removed = (out / "decontamination.jsonl").read_text().strip()
    assert removed == ""  # the train part is not the held-out part: nothing to remove


def test_a_spreadsheets_csv_export_is_read_as_saved(tmp_path: Path) -> None:
    """Excel writes a byte-order mark (UTF-8) and, in many locales, ';' between cells."""
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffquestion;A;B;answer\r\nWhich, of these?;x, y;z;B\r\n".encode())
    (q,) = load_benchmark("mcq", path).questions
    assert q.question == "Which, of these?" and q.options == {"A": "x, y", "B": "z"}
    assert q.gold == "B"
