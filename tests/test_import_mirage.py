"""``import-traces --preset mirage``: MIRAGE's JSON-answer outputs joined to their benchmark.

Hand-written rows in tmp files pin the parsing, the join and every located error; the real
GPT-3.5 / GPT-4 outputs in ../shared are imported and curated end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medistill.curate import CurateConfig, run_curate
from medistill.curate.filters import REASONS, verify
from medistill.errors import DataError, MedistillError
from medistill.store import TraceStore
from medistill.store.import_mapping import parse_mapping, parse_questions, parse_where
from medistill.store.importer import (
    import_traces,
    json_answer_response,
    load_join_questions,
    parse_json_response,
)

MIRAGE_MEDMCQA = "llm_outputs/mirage_medmcqa_cot_gpt35_gpt4.jsonl"
MIRAGE_MEDQA = "llm_outputs/mirage_medqa_cot_gpt35_gpt4.jsonl"
GPT4 = "OpenAI/gpt-4-32k"
GPT35 = "OpenAI/gpt-35-turbo-16k"
THINK = "step_by_step_thinking"
OPTS = {"A": "Index finger", "B": "Thumb", "C": "Little finger", "D": "Ring finger"}
REASONING = (
    "The recurrent branch of the median nerve supplies the thenar muscles, so its injury "
    "weakens opposition and abduction of the first digit. The other digits keep their "
    "function because the ulnar nerve supplies the hypothenar and most intrinsic muscles."
)
# Three MedQA-format questions: the loader numbers them "0000".."0002", MIRAGE's qid form.
BENCH = [
    {"question": "Which digit loses opposition after a median nerve injury at the wrist?",
     "options": OPTS, "answer_idx": "B", "meta_info": "step1"},
    {"question": "Which digit is supplied by the ulnar nerve on its palmar side entirely?",
     "options": OPTS, "answer_idx": "C", "meta_info": "step1"},
    {"question": "Which digit is usually examined first for the pulp sensation of the median?",
     "options": OPTS, "answer_idx": "A", "meta_info": "step2&3"},
]  # fmt: skip


def mirage_row(qid: str, answer: Any, *, model: str = GPT4, gold: str = "B", **kw: Any) -> dict:
    """One MIRAGE output row whose single raw response is well-formed JSON."""
    raw = json.dumps({THINK: REASONING, "answer_choice": answer})
    return {"dataset": "medqa", "split": "test", "setting": "cot", "model": model,
            "retrieval": None, "qid": qid, "raw_responses": [raw], "gold": gold, **kw}  # fmt: skip


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as JSON lines; a str row is written as it is (to make a malformed line)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    """A hand-written MedQA test file laid out as the published release."""
    return write_jsonl(tmp_path / "medqa_test.jsonl", BENCH)


def _rows(store: Path) -> list[dict[str, Any]]:
    with TraceStore(store) as s:
        return list(s.iter_rows())


# ---------------------------------------------------------------- parsing the JSON answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"step_by_step_thinking": "Thenar.", "answer_choice": "B"}', ("Thenar.", "B")),
        ('{"step_by_step_thinking": "Thenar.", "answer_choice": "B. Thumb"}',
         ("Thenar.", "B. Thumb")),
        ('```json\n{"step_by_step_thinking": "T.", "answer_choice": "C"}\n```', ("T.", "C")),
        # Broken JSON: a missing comma, an unescaped quote, a cut-off end, a null.
        ('{"step_by_step_thinking": "Thenar." "answer_choice": "B"}', ("Thenar.", "B")),
        ('{"step_by_step_thinking": "The "thenar" group.", "answer_choice": "B"}',
         ('The "thenar" group.', "B")),
        ('{"step_by_step_thinking": "Line one.\\nLine two, \\"quoted\\".", "answer_choice": B}',
         ('Line one.\nLine two, "quoted".', "B")),
        ('{"step_by_step_thinking": "The answer is B because the thenar', (
            "The answer is B because the thenar", None)),
        ('{"step_by_step_thinking": "Let us see each option:", "answer_choice": ""}',
         ("Let us see each option:", None)),
        ('{"step_by_step_thinking": "Thenar.", "answer_choice": null}', ("Thenar.", None)),
        ('{"step_by_step_thinking": ["Step 1.", "Step 2."], "answer_choice": "A"}',
         ("Step 1.\nStep 2.", "A")),
        # Prose: a content filter, an API error, a bare quoted word.
        ("The response was filtered due to the prompt triggering the content policy.", None),
        ("Error communicating with OpenAI: ('Connection aborted.')", None),
        ("'content'", None),
    ],
)  # fmt: skip
def test_parse_json_response(raw: str, expected: tuple[str | None, str | None] | None) -> None:
    assert parse_json_response(raw, THINK, "answer_choice") == expected


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B. Thumb", "B"),
        ("B. Thumb (first digit)", "B"),  # letter first, text paraphrased
        ("Thumb", "B"),  # the option's own text
        ("little finger", "C"),
        # No single letter (None here): kept as the JSON field, never guessed.
        ("B and C", None),
        ("A. Index finger, C. Little finger", None),
        ("None of the above", None),
        ("Unable to answer without the image", None),
        ("E", None),  # not one of the four options
    ],
)
def test_answer_choice_becomes_the_contract_line_or_is_dropped(
    answer: str, letter: str | None
) -> None:
    response = json_answer_response(answer, OPTS)
    if letter:
        assert response == f"The answer is {letter}."
    else:
        assert response == json.dumps({"answer_choice": answer})
    row = {"question": "Q?", "options": OPTS, "gold": "B", "text": response,
           "reasoning": REASONING, "finish_reason": "stop"}  # fmt: skip
    if letter:
        assert verify(row).letter == letter
    else:  # curation drops it whatever the gold is: the importer never guesses a letter
        for gold in OPTS:
            assert verify({**row, "gold": gold}).reason in (
                "no_answer", "refusal", "conflicting_answers"
            )  # fmt: skip


def test_a_missing_answer_is_an_empty_response_dropped_as_no_answer() -> None:
    assert json_answer_response(None, OPTS) == ""
    row = {"question": "Q?", "options": OPTS, "gold": "B", "text": "", "reasoning": REASONING}
    assert verify(row).reason == "no_answer"


# ---------------------------------------------------------------- import on hand-written rows


def test_import_joins_by_id_reads_the_model_and_filters(tmp_path: Path, bench: Path) -> None:
    rows = [
        mirage_row("0000", "B. Thumb"),
        mirage_row("0001", "C", gold="C"),
        mirage_row("0000", "A", model=GPT35),
        mirage_row("0002", "B and C", gold="A"),
        {**mirage_row("0001", "C", gold="C", model=GPT35), "raw_responses": []},  # filtered
    ]
    src = write_jsonl(tmp_path / "mirage.jsonl", rows)
    store = tmp_path / "s.db"
    mapping = parse_mapping(None, "mirage")
    kw: dict[str, Any] = {"origin": "mirage", "mapping": mapping,
                          "questions": [f"medqa={bench}"], "where": [f"model={GPT4}"]}  # fmt: skip
    s = import_traces(src, store, **kw)
    assert (s["read"], s["imported"], s["filtered"], s["skipped"]) == (5, 3, 2, 0)
    again = import_traces(src, store, **kw)
    assert (again["imported"], again["already_present"], again["filtered"]) == (0, 3, 2)
    got = _rows(store)
    assert [r["question_id"] for r in got] == ["0000", "0001", "0002"]
    r0 = got[0]
    assert r0["teacher"] == f"mirage:{GPT4}" and r0["source"] == "medqa"
    assert r0["question"] == BENCH[0]["question"] and r0["options"] == OPTS
    assert (r0["gold"], r0["subject"], r0["reasoning"]) == ("B", "step1", REASONING)
    assert r0["text"] == "The answer is B." and r0["endpoint"] == "import:mirage.jsonl"
    assert got[2]["text"] == '{"answer_choice": "B and C"}'
    # Both models: the same question twice, one trace per model.
    s = import_traces(src, store, **{**kw, "where": [f"model={GPT4}", f"model={GPT35}"],
                                     "skip_invalid": True})  # fmt: skip
    assert (s["imported"], s["already_present"], s["skipped"]) == (1, 3, 1)
    teachers = sorted(r["teacher"] for r in _rows(store) if r["question_id"] == "0000")
    assert teachers == [f"mirage:{GPT35}", f"mirage:{GPT4}"]
    # The alias reads the same layout (MedRAG's retrieval runs).
    assert parse_mapping(None, "mirage-medrag") == mapping


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (mirage_row("0007", "B"), r"mirage.jsonl:2: field 'qid': id '0007' is not among the 3"),
        (mirage_row("0000", "B", gold="C"),
         r"mirage.jsonl:2: field 'gold': gold C differs from the medqa answer key \(B\)"),
        ({**mirage_row("0000", "B"), "raw_responses": []},
         r"mirage.jsonl:2: field 'raw_responses': empty list"),
        ({k: v for k, v in mirage_row("0000", "B").items() if k != "qid"},
         r"mirage.jsonl:2: field 'qid': missing field"),
        ({**mirage_row("0000", "B"), "gold": "F"},
         r"mirage.jsonl:2: field 'gold': gold answer 'F' is not among the options"),
        ("{not json", r"mirage.jsonl:2: malformed JSON"),
        ([1, 2], r"mirage.jsonl:2: expected an object, got list"),
    ],
)  # fmt: skip
def test_import_errors_name_file_line_and_field(
    tmp_path: Path, bench: Path, row: Any, match: str
) -> None:
    src = write_jsonl(tmp_path / "mirage.jsonl", [mirage_row("0000", "B"), row])
    mapping = parse_mapping(None, "mirage")
    kw = {"origin": "mirage", "mapping": mapping, "questions": {"medqa": str(bench)}}
    with pytest.raises(DataError, match=match):
        import_traces(src, tmp_path / "s.db", **kw)
    s = import_traces(src, tmp_path / "s2.db", skip_invalid=True, **kw)
    assert (s["imported"], s["skipped"]) == (1, 1)
    assert "mirage.jsonl:2" in s["skipped_rows"][0]


def test_questions_are_required_and_resolved_by_name(
    tmp_path: Path, bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_jsonl(tmp_path / "mirage.jsonl", [mirage_row("0000", "B")])
    mapping = parse_mapping(None, "mirage")
    with pytest.raises(MedistillError, match="pass --questions"):
        import_traces(src, tmp_path / "s.db", origin="mirage", mapping=mapping)
    assert not (tmp_path / "s.db").exists()  # nothing created before the check
    # A bare name reads the benchmark from $MEDISTILL_DATA_DIR, laid out as released.
    data = tmp_path / "data"
    (data / "medqa").mkdir(parents=True)
    (data / "medqa" / "US_4options_test.jsonl").write_text(bench.read_text())
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(data))
    s = import_traces(src, tmp_path / "s.db", origin="m", mapping=mapping, questions=["medqa"])
    assert s["imported"] == 1
    # A row whose dataset names a benchmark not loaded, with two loaded, is located.
    two = {"medqa": str(bench), "medqa5": str(bench)}
    other = write_jsonl(tmp_path / "o.jsonl", [{**mirage_row("0000", "B"), "dataset": "pubmedqa"}])
    with pytest.raises(DataError, match=r"o.jsonl:1: field 'dataset': no --questions for"):
        import_traces(other, tmp_path / "s.db", origin="m", mapping=mapping, questions=two)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: parse_where(["model"]), "expected FIELD=VALUE"),
        (lambda: parse_where(["=x"]), "expected FIELD=VALUE"),
        (lambda: parse_questions(["medqa="]), "expected NAME or NAME=PATH"),
        (lambda: load_join_questions(parse_questions(["nosuch=x.jsonl"])),
         "unknown benchmark 'nosuch'"),
        (lambda: load_join_questions(parse_questions(["medqa=/nonexistent/medqa.jsonl"])),
         "/nonexistent/medqa.jsonl: file not found"),
        (lambda: parse_mapping(None, "mirag"), "unknown preset 'mirag'.*mirage"),
        (lambda: parse_mapping("id=qid"), r"needs \['response'\]"),
        (lambda: parse_mapping("reasoning=r,json_reasoning=t", "mirage"), "not both"),
    ],
)  # fmt: skip
def test_option_errors(call: Any, match: str) -> None:
    with pytest.raises(MedistillError, match=match):
        call()


def test_where_values_and_teacher_fallback(tmp_path: Path, bench: Path) -> None:
    """``--where`` compares non-strings as JSON; a row without a model keeps the origin."""
    rows = [mirage_row("0000", "B", retrieval="medcorp"), mirage_row("0001", "C", gold="C")]
    rows[1].pop("model")
    src = write_jsonl(tmp_path / "m.jsonl", rows)
    kw = {"origin": "mirage", "mapping": parse_mapping(None, "mirage"),
          "questions": {"medqa": str(bench)}}  # fmt: skip
    s = import_traces(src, tmp_path / "s.db", where=["retrieval=null"], **kw)
    assert (s["imported"], s["filtered"]) == (1, 1)
    assert _rows(tmp_path / "s.db")[0]["teacher"] == "mirage"
    s = import_traces(src, tmp_path / "t.db", where={"retrieval": "medcorp"}, **kw)
    assert (s["imported"], s["filtered"]) == (1, 1)


def test_cli_import_mirage(tmp_path: Path, bench: Path) -> None:
    from typer.testing import CliRunner

    from medistill.cli import app

    src = write_jsonl(tmp_path / "m.jsonl", [mirage_row("0000", "B"), mirage_row("0000", "A",
                      model=GPT35)])  # fmt: skip
    base = ["import-traces", str(src), "--store", str(tmp_path / "s.db"), "--origin", "mirage",
            "--preset", "mirage"]  # fmt: skip
    runner = CliRunner()
    r = runner.invoke(app, base)
    assert r.exit_code == 2 and "pass --questions" in r.output
    r = runner.invoke(app, [*base, "--questions", f"medqa={bench}", "--where", f"model={GPT4}"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (summary["imported"], summary["filtered"]) == (1, 1)
    r = runner.invoke(app, [*base, "--questions", f"medqa={bench}", "--where", "model"])
    assert r.exit_code == 2 and "expected FIELD=VALUE" in r.output


# ---------------------------------------------------------------- the real MIRAGE outputs


def test_mirage_medqa_outputs_join_on_the_test_set(shared_data: Path, tmp_path: Path) -> None:
    """MedQA's qid "0000".."1272" is the loader's row index; the 6 empty GPT-3.5 responses
    are skipped and located."""
    s = import_traces(
        shared_data / MIRAGE_MEDQA,
        tmp_path / "s.db",
        origin="mirage",
        mapping=parse_mapping(None, "mirage"),
        questions={"medqa": str(shared_data / "medqa/US_4options_test.jsonl")},
        skip_invalid=True,
    )
    assert (s["read"], s["imported"], s["skipped"], s["filtered"]) == (2546, 2540, 6, 0)
    assert all("field 'raw_responses': empty list" in r for r in s["skipped_rows"])


def test_mirage_gpt4_medmcqa_import_and_curate(shared_data: Path, tmp_path: Path) -> None:
    """GPT-4's 4,183 MedMCQA dev outputs: import, re-import, curate; the counts add up, the
    teacher accuracy is GPT-4's (MIRAGE reports ~70% CoT) and every kept turn ends with the
    contract line for the row's gold."""
    store = tmp_path / "traces.db"
    kw: dict[str, Any] = {
        "origin": "mirage",
        "mapping": parse_mapping(None, "mirage"),
        "questions": [f"medmcqa={shared_data / 'medmcqa/dev.jsonl'}"],
        "where": [f"model={GPT4}"],
    }
    first = import_traces(shared_data / MIRAGE_MEDMCQA, store, **kw)
    assert (first["read"], first["imported"], first["filtered"], first["skipped"]) == (
        8366, 4183, 4183, 0
    )  # fmt: skip
    again = import_traces(shared_data / MIRAGE_MEDMCQA, store, **kw)
    assert (again["imported"], again["already_present"]) == (0, 4183)
    out = tmp_path / "out"
    cfg = CurateConfig(store=str(store), out=str(out), eval_benchmarks=[], hf_dataset=False)
    stats = run_curate(cfg, show_progress=False)
    n = stats["input_traces"]
    assert n == 4183
    assert stats["kept_traces"] + sum(stats["dropped"].values()) == n
    acc = stats["teacher_accuracy"]
    # The measured figure, for the record (shown with -s / on failure).
    print(f"GPT-4 MedMCQA dev: teacher accuracy {acc:.4f}, kept {stats['kept_traces']}/{n}")
    assert 0.62 <= acc <= 0.80
    assert list(stats["teachers"]) == [f"mirage:{GPT4}"]
    # Refusals ("None of the above", content filter) and unreadable answers are dropped.
    assert stats["dropped"]["refusal"] + stats["dropped"]["no_answer"] > 50
    kept = [
        json.loads(line)
        for split in ("train", "validation")
        for line in (out / "messages" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert len(kept) == stats["kept_traces"] > 2500
    for row in kept:
        turn = row["messages"][-1]["content"]
        assert turn.endswith(f"\n\nThe answer is {row['gold']}."), turn[-200:]
        assert row["source"] == "medmcqa" and row["teacher"] == f"mirage:{GPT4}"
    dropped = [json.loads(x) for x in (out / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == n - len(kept) and {d["reason"] for d in dropped} <= set(REASONS)
