"""Loaders: exact counts on the real files, and located errors on bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medistill.data import (
    BENCHMARKS,
    get_spec,
    load_benchmark,
    load_medmcqa,
    load_questions,
    sample_path,
)
from medistill.data.formats import detect_cop_base
from medistill.errors import DataError, MedistillError


@pytest.mark.parametrize(
    ("name", "rel", "count", "no_gold", "subject0"),
    [
        ("medqa", "medqa/US_4options_test.jsonl", 1273, 0, "step1"),
        ("medqa5", "medqa/US_5options_test.jsonl", 1273, 0, "step1"),
        ("medqa", "medqa/US_4options_dev_subset100_lievin2022.jsonl", 100, 1, None),
        ("medmcqa", "medmcqa/dev.jsonl", 4183, 0, "Physiology"),
        ("pubmedqa", "pubmedqa/pqal_test_set.json", 500, 0, None),
        ("mmlu_medical", "mmlu_medical", 1089, 0, "anatomy"),
    ],
)
def test_real_files_exact_counts(shared_data: Path, name, rel, count, no_gold, subject0) -> None:
    data = load_benchmark(name, shared_data / rel)
    assert len(data) == count
    assert data.report.loaded == count
    assert len(data.report.no_gold) == no_gold
    assert not data.report.skipped
    assert data.questions[0].subject == subject0
    assert len({q.id for q in data}) == count
    for q in data:
        assert q.gold is None or q.gold in q.options
        assert list(q.options) == [chr(65 + i) for i in range(len(q.options))]


def test_medqa_details(shared_data: Path) -> None:
    four = load_benchmark("medqa", shared_data / "medqa/US_4options_test.jsonl").questions
    five = load_benchmark("medqa5", shared_data / "medqa/US_5options_test.jsonl").questions
    assert four[0].id == "0000" and four[-1].id == "1272"  # MIRAGE's qid convention
    assert Counter(q.gold for q in four) == {"A": 353, "B": 309, "C": 346, "D": 265}
    assert Counter(q.subject for q in four) == {"step1": 679, "step2&3": 594}
    assert {len(q.options) for q in five} == {5}
    # Same questions, same answer text, the letter may differ.
    assert all(a.options[a.gold] == b.options[b.gold] for a, b in zip(four, five, strict=True))
    dev = load_benchmark("medqa", shared_data / "medqa/US_4options_dev_subset100_lievin2022.jsonl")
    assert dev.report.no_gold == ["1116"]  # ids are the HF validation indices
    assert "without a gold answer" in dev.report.summary()


def test_medmcqa_cop_base_detected_and_overridden(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "medmcqa/dev.jsonl"
    data = load_benchmark("medmcqa", path)
    assert Counter(q.gold for q in data) == {"A": 1348, "B": 1085, "C": 925, "D": 825}
    assert "1-based" in data.report.notes[0]
    # The hub copy is 0-based: shift every cop and the loader must say so and agree.
    shifted = tmp_path / "dev0.jsonl"
    with open(path) as src, open(shifted, "w") as dst:
        for line in src:
            row = json.loads(line)
            row["cop"] -= 1
            dst.write(json.dumps(row) + "\n")
    zero = load_medmcqa(shifted)
    assert "0-based" in zero.report.notes[0]
    assert [q.gold for q in zero] == [q.gold for q in data]
    forced = load_medmcqa(path, cop_base=1, limit=5)
    assert "set by the user" in forced.report.notes[0]


@pytest.mark.parametrize(
    ("cops", "base", "word"),
    [([0, 1, 2], 0, "0-based"), ([1, 4], 1, "1-based"), ([1, 2, 3], 1, "assuming")],
)
def test_detect_cop_base(cops, base, word) -> None:
    got, note = detect_cop_base(cops)
    assert got == base and word in note


def test_pubmedqa_options_and_context(shared_data: Path) -> None:
    data = load_benchmark("pubmedqa", shared_data / "pubmedqa/pqal_test_set.json")
    assert Counter(q.gold for q in data) == {"A": 276, "B": 169, "C": 55}
    q = data.questions[0]
    assert q.options == {"A": "yes", "B": "no", "C": "maybe"}
    assert q.id == "12377809" and q.question.startswith("Context: ")
    assert get_spec("pubmedqa").chance == pytest.approx(1 / 3)


def test_mmlu_subjects(shared_data: Path) -> None:
    data = load_benchmark("mmlu_medical", shared_data / "mmlu_medical")
    assert Counter(q.subject for q in data) == {
        "anatomy": 135,
        "clinical_knowledge": 265,
        "college_biology": 144,
        "college_medicine": 173,
        "medical_genetics": 100,
        "professional_medicine": 272,
    }
    one = load_benchmark("mmlu_medical", shared_data / "mmlu_medical/anatomy_test.csv")
    assert len(one) == 135


def test_embedded_sample() -> None:
    data = load_benchmark("sample")
    assert len(data) == 60
    assert sample_path().exists()
    assert Counter(q.gold for q in data) == {"A": 15, "B": 15, "C": 15, "D": 15}
    assert all(len(q.options) == 4 and q.subject and q.meta.get("explanation") for q in data)
    assert len({q.subject for q in data}) >= 12


def test_sample_halves_are_disjoint_and_complete() -> None:
    train = load_benchmark("sample_train").questions
    heldout = load_benchmark("sample_heldout").questions
    assert len(train) == len(heldout) == 30
    assert {q.id for q in train} | {q.id for q in heldout} == {
        q.id for q in load_benchmark("sample").questions
    }
    assert not {q.id for q in train} & {q.id for q in heldout}
    assert [q.id for q in load_benchmark("sample_heldout", limit=3).questions] == [
        "sample-031",
        "sample-032",
        "sample-033",
    ]


def test_registry_names_and_typo() -> None:
    assert set(BENCHMARKS) == {
        "mcq",
        "medqa",
        "medqa5",
        "medmcqa",
        "pubmedqa",
        "mmlu_medical",
        "sample",
        "sample_train",
        "sample_heldout",
    }
    with pytest.raises(MedistillError, match="medqa, medqa5, medmcqa"):
        get_spec("medqaa")


def test_limit(shared_data: Path) -> None:
    assert len(load_benchmark("medqa", shared_data / "medqa/US_4options_test.jsonl", limit=7)) == 7


GOOD = {"id": "q1", "question": "Q?", "options": {"A": "x", "B": "y"}, "answer": "A"}

# (lines written to the file, line number, field, message fragment)
BAD_MCQ = [
    (['{"id": "q1", "question": "Q?"'], 1, None, "malformed JSON"),
    ([json.dumps({**GOOD, "question": ""})], 1, "question", "empty"),
    ([json.dumps({k: v for k, v in GOOD.items() if k != "question"})], 1, "question", "missing"),
    ([json.dumps({k: v for k, v in GOOD.items() if k != "options"})], 1, "options", "missing"),
    ([json.dumps({**GOOD, "options": {"A": "x", "B": ""}})], 1, "options", "option B is empty"),
    ([json.dumps({**GOOD, "options": {"A": "x", "C": "y"}})], 1, "options", "without gaps"),
    ([json.dumps({**GOOD, "options": {"A": "x"}})], 1, "options", "at least two"),
    ([json.dumps({**GOOD, "answer": "E"})], 1, "answer", "not among the options"),
    ([json.dumps({k: v for k, v in GOOD.items() if k != "answer"})], 1, "answer", "missing"),
    ([json.dumps(GOOD), json.dumps(GOOD)], 2, "id", "duplicate id 'q1'"),
    ([json.dumps(GOOD), "", "[1, 2]"], 3, None, "expected a JSON object"),
]


@pytest.mark.parametrize(("lines", "line", "field", "fragment"), BAD_MCQ)
def test_bad_input_is_located(tmp_path: Path, lines, line, field, fragment) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load_questions(path, "mcq")
    err = exc.value
    assert err.path == str(path) and err.line == line and err.field == field
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:{line}")


BAD_MEDQA = {"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A", "answer": "x"}


@pytest.mark.parametrize(
    ("row", "field", "fragment"),
    [
        ({**BAD_MEDQA, "answer_idx": "C"}, "answer_idx", "not among"),
        ({**BAD_MEDQA, "answer": "y"}, "answer", "does not match"),
        (
            {k: v for k, v in BAD_MEDQA.items() if k not in ("answer_idx", "answer")},
            "answer_idx",
            "missing",
        ),
    ],
)
def test_bad_medqa_rows(tmp_path: Path, row, field, fragment) -> None:
    path = tmp_path / "medqa.jsonl"
    path.write_text(json.dumps(BAD_MEDQA) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=fragment) as exc:
        load_benchmark("medqa", path)
    assert (exc.value.line, exc.value.field) == (2, field)


@pytest.mark.parametrize(
    ("row", "field"),
    [({"cop": 7}, "cop"), ({"opb": None}, "opb"), ({"id": ""}, "id"), ({"cop": None}, None)],
)
def test_bad_medmcqa_rows(tmp_path: Path, row, field) -> None:
    base = {"id": "m1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 4}
    path = tmp_path / "mm.jsonl"
    path.write_text(json.dumps(base) + "\n" + json.dumps({**base, "id": "m2", **row}) + "\n")
    if field is None:  # cop null = unlabelled: loaded without gold, and reported
        data = load_benchmark("medmcqa", path)
        assert data.report.no_gold == ["m2"]
        return
    with pytest.raises(DataError) as exc:
        load_benchmark("medmcqa", path)
    assert (exc.value.line, exc.value.field) == (2, field)


def test_bad_mmlu_row(tmp_path: Path) -> None:
    path = tmp_path / "x_test.csv"
    path.write_text('Q1,a,b,c,d,A\nQ2,a,b,c,d,F\n"Q3",a,b\n')
    with pytest.raises(DataError, match="not among") as exc:
        load_benchmark("mmlu_medical", path)
    assert (exc.value.line, exc.value.field) == (2, "answer")
    data = load_benchmark("mmlu_medical", path, skip_invalid=True)
    assert len(data) == 1 and len(data.report.skipped) == 2
    assert data.report.skipped[1].line == 3 and "6 columns" in data.report.skipped[1].reason


def test_skip_invalid_counts_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [json.dumps({**GOOD, "id": f"q{i}"}) for i in range(5)]
    rows[1] = "{broken"
    rows[3] = json.dumps({**GOOD, "id": "q3", "answer": "Z"})
    path.write_text("\n".join(rows) + "\n")
    data = load_questions(path, "mcq", skip_invalid=True)
    assert [q.id for q in data] == ["q0", "q2", "q4"]
    assert [(s.line, s.field) for s in data.report.skipped] == [(2, None), (4, "answer")]
    assert "skipped 2 invalid" in data.report.summary()


def test_missing_file_and_all_invalid(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_benchmark("medqa", tmp_path / "nope.jsonl")
    path = tmp_path / "bad.jsonl"
    path.write_text("{bad\n")
    with pytest.raises(DataError, match="no valid questions"):
        load_questions(path, "mcq", skip_invalid=True)


def test_hub_without_datasets_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("MEDISTILL_DATA_DIR", raising=False)
    with pytest.raises(MedistillError, match=r"the Hub \(no known copy\)"):
        load_benchmark("medqa5")


def test_data_dir_env(shared_data: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(shared_data))
    assert len(load_benchmark("medmcqa", limit=3)) == 3


def _medqa_rows(n: int, tag: str) -> str:
    rows = []
    for i in range(n):
        opts = {L: f"{tag} option {L}{i}" for L in "ABCD"}
        q = {"question": f"{tag} question {i}?", "options": opts, "answer_idx": "B"}
        rows.append(json.dumps({**q, "answer": opts["B"], "meta_info": "step1"}))
    return "\n".join(rows) + "\n"


def _medmcqa_rows(n: int, tag: str) -> str:
    rows = []
    for i in range(n):
        r = {"id": f"{tag}-{i}", "question": f"{tag} question {i}?", "cop": 4}
        r.update({k: f"{tag} {k}{i}" for k in ("opa", "opb", "opc", "opd")})
        rows.append(json.dumps({**r, "subject_name": "Anatomy"}))
    return "\n".join(rows) + "\n"


def test_a_train_split_never_reads_the_test_file(shared_data: Path, monkeypatch) -> None:
    """main returned MedQA's 1,273 *test* questions labelled ``train`` (and MedMCQA's dev file
    for its train split) whenever $MEDISTILL_DATA_DIR was set: the teacher's budget went on the
    evaluation set. Now a split absent offline is a one-line error naming every place looked."""
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(shared_data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, looked in (
        ("medqa", "medqa/US_4options_train.jsonl"),
        ("medmcqa", "medmcqa/train.json"),
    ):
        with pytest.raises(MedistillError) as exc:
            load_benchmark(name, split="train", limit=5)
        msg = str(exc.value)
        assert "\n" not in msg and f"benchmark {name!r} split 'train' not found" in msg
        assert str(shared_data / looked) in msg and "HF_HUB_OFFLINE" in msg
    # The default split still reads the test / dev file, labelled as such.
    assert {q.split for q in load_benchmark("medqa", limit=3)} == {"test"}
    assert {q.split for q in load_benchmark("medmcqa", split="dev", limit=3)} == {"dev"}


@pytest.mark.parametrize(
    ("name", "rel", "rows"),
    [
        ("medqa", "medqa/US_4options_train.jsonl", _medqa_rows),
        ("medqa", "medqa/questions/US/4_options/phrases_no_exclude_train.jsonl", _medqa_rows),
        ("medmcqa", "medmcqa/train.json", _medmcqa_rows),
    ],
)
def test_a_split_is_read_from_its_own_file(
    tmp_path: Path, monkeypatch, name: str, rel: str, rows
) -> None:
    """The official releases' train files are found under $MEDISTILL_DATA_DIR beside the test
    and dev files, and only they are read for ``split: train``."""
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(rows(7, "train"))
    test_rel = "medqa/US_4options_test.jsonl" if name == "medqa" else "medmcqa/dev.jsonl"
    (tmp_path / test_rel).write_text(rows(3, "test"))
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train = load_benchmark(name, split="train")
    assert len(train) == 7 and train.report.path == str(tmp_path / rel)
    assert {q.split for q in train} == {"train"}
    assert all(q.question.startswith("train") for q in train)
    default = load_benchmark(name)
    assert len(default) == 3 and all(q.question.startswith("test") for q in default)
    with pytest.raises(MedistillError, match="split 'validation' not found"):
        load_benchmark(name, split="validation")
