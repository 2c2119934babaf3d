"""Curation: verification and filters, selection, dedup, output formats and the data card,
on real SQLite stores built here and on the real HuatuoGPT-o1 traces in ../shared."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medistill.curate import CurateConfig, run_curate
from medistill.curate.filters import (
    REASONS,
    leaked_gold,
    repetition_ratio,
    token_counter,
    verify,
)
from medistill.errors import DataError, MedistillError
from medistill.store import TraceRecord, TraceStore
from medistill.store.import_mapping import parse_mapping
from medistill.store.importer import import_traces

OPTS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Alteplase"}
REASONING = (
    "The patient has an acute ischaemic stroke within the window for thrombolysis. "
    "Bleeding has been excluded on the CT scan, the blood pressure is controlled and the "
    "glucose is normal, so the treatment that restores perfusion is a thrombolytic agent. "
    "Antiplatelets and anticoagulants do not dissolve the clot."
)


def rec(
    qid: str,
    text: str,
    *,
    sample: int = 0,
    gold: str = "D",
    options: dict[str, str] | None = None,
    permutation: dict[str, str] | None = None,
    finish: str = "stop",
    question: str | None = None,
    subject: str | None = None,
    reasoning: str | None = None,
    teacher: str = "teacher-x",
    source: str = "unit",
) -> TraceRecord:
    """A stored teacher call as generate writes it."""
    q = question or f"Question {qid}: a 64-year-old presents with sudden weakness. Best drug?"
    key = hashlib.sha256(f"{qid}/{sample}/{text}/{teacher}".encode()).hexdigest()
    return TraceRecord(
        key=key,
        question_id=qid,
        sample_index=sample,
        teacher=teacher,
        messages=[{"role": "user", "content": q}],
        params={"temperature": 0.7},
        text=text,
        finish_reason=finish,
        source=source,
        question=q,
        options=options or OPTS,
        gold=gold,
        permutation=permutation,
        subject=subject,
        reasoning=reasoning,
    )


def row(r: TraceRecord) -> dict:
    """The record as ``TraceStore.iter_rows`` returns it."""
    d = {k: getattr(r, k) for k in ("key", "question_id", "source", "teacher", "question")}
    d.update(
        options=r.options,
        gold=r.gold,
        permutation=r.permutation,
        text=r.text,
        reasoning=r.reasoning,
        finish_reason=r.finish_reason,
        truncated=r.truncated,
        subject=r.subject,
    )
    return d


def write_store(path: Path, records: list[TraceRecord]) -> Path:
    with TraceStore(path) as store:
        store.put_many(records)
    return path


@pytest.mark.parametrize(
    ("text", "kw", "reason", "letter"),
    [
        (REASONING + "\n\nThe answer is D.", {}, None, "D"),
        (REASONING + "\n\nThe answer is (A).", {}, "incorrect", "A"),
        (REASONING + " Still thinking about the", {"finish": "length"}, "truncated", None),
        # A loop the local backend stopped early is cut off too, whatever it repeated.
        (REASONING + " The answer is D." * 30, {"finish": "repetition"}, "truncated", "D"),
        ("I'm sorry, I cannot provide medical advice.", {}, "refusal", None),
        (REASONING, {}, "no_answer", None),
        (REASONING + "\nThe answer is B or D.", {}, "conflicting_answers", None),
        (REASONING + "\nThe answer is D.\nFinal answer: A", {}, "conflicting_answers", "A"),
        (
            "The provided answer is D, so I will justify it. " + REASONING + " The answer is D.",
            {},
            "leaked_gold",
            "D",
        ),
        # Shown as shuffled: shown B is original D (the gold), so a "B" is correct.
        (
            REASONING + " The answer is B.",
            {
                "gold": "B",
                "options": {"A": "Aspirin", "B": "Alteplase", "C": "Warfarin", "D": "Heparin"},
                "permutation": {"A": "A", "B": "D", "C": "C", "D": "B"},
            },
            None,
            "D",
        ),
        ("The answer is D.", {"gold": "E"}, "malformed", None),
        (
            "The answer is D.",
            {"permutation": {"A": "A", "B": "A", "C": "C", "D": "D"}},
            "malformed",
            None,
        ),
        ("", {}, "malformed", None),
    ],
)
def test_verify_table(text, kw, reason, letter):
    v = verify(row(rec("q1", text, **kw)))
    assert v.reason == reason, v.detail
    assert v.letter == letter
    if reason is None:
        assert v.assistant.rstrip().endswith("The answer is " + (kw.get("gold") or "D") + ".")


def test_lenient_mode_accepts_a_fallback_and_appends_the_answer_line():
    r = row(rec("q1", REASONING + "\n\nSo, D.", gold="D"))
    assert verify(r, mode="strict").reason == "no_answer"
    v = verify(r, mode="lenient")
    assert v.reason is None and v.letter == "D"
    assert v.assistant.endswith("So, D.\n\nThe answer is D.")
    # A prose answer naming one option is read in lenient mode (the extractor's stated_text)
    prose = row(rec("q1", REASONING + "\n\nSo the best choice here is alteplase.", gold="D"))
    assert verify(prose, mode="strict").reason == "no_answer"
    v = verify(prose, mode="lenient")
    assert (v.reason, v.letter, v.verified_by) == (None, "D", "option_text")


def test_separate_reasoning_goes_first_and_think_tags_are_optional():
    r = row(rec("q1", "The answer is D.", reasoning=REASONING))
    assert verify(r).assistant == REASONING + "\n\nThe answer is D."
    tagged = verify(r, think_tags=True).assistant
    assert tagged.startswith("<think>\n" + REASONING + "\n</think>\n\nThe answer is D.")


@pytest.mark.parametrize(
    ("response", "letter", "expected_tail"),
    [
        # Already the contract's line: kept as it is, not repeated.
        ("Heparin does not lyse clots.\nThe answer is D.", "D", "lyse clots.\nThe answer is D."),
        # Another form of a bare answer line is replaced by the contract's line.
        ("Heparin does not lyse clots.\n\n**Final answer: (D)**", "D", "s.\n\nThe answer is D."),
        ("Heparin does not lyse clots.\nAnswer: D.", "D", "clots.\n\nThe answer is D."),
        ("Heparin does not lyse clots.\nThe correct answer is D", "D", "s.\n\nThe answer is D."),
        ("The answer is (D).", "D", "The answer is D."),
        # A last line with more than the answer keeps its content; the line is appended.
        ("The answer is D, alteplase, given the timing.", "D", "timing.\n\nThe answer is D."),
        # A last line naming another letter is never rewritten.
        ("I first thought: Answer: B.", "D", "Answer: B.\n\nThe answer is D."),
        # The JSON answer field of an API teacher gets the line after it.
        ('{"answer_choice": "D"}', "D", '{"answer_choice": "D"}\n\nThe answer is D.'),
    ],
)
def test_assistant_turn_ends_with_exactly_one_contract_line(response, letter, expected_tail):
    from medistill.curate.filters import assistant_turn
    from medistill.prompts import answer_line, answer_line_regex

    out = assistant_turn({"text": response, "options": OPTS}, letter)
    assert out.endswith(expected_tail)
    last = out.rsplit("\n", 1)[-1]
    assert last == answer_line(letter) and answer_line_regex("ABCD").fullmatch(last)
    assert out.count(answer_line(letter)) == 1


@pytest.mark.parametrize(
    ("text", "high"),
    [
        (REASONING, False),
        ("The answer is A. " * 40, True),
        ("Let me think. " + "The patient has a pulse and the oxygen level is low. " * 12, True),
        ("", False),
    ],
)
def test_repetition_ratio(text, high):
    assert (repetition_ratio(text) > 0.2) is high


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("According to the answer key, the answer is C.", True),
        ("The given correct answer is B, which makes sense because...", True),
        ("We are told the answer is D, so let us work backwards.", True),
        ("The ground truth answer is alteplase.", True),
        ("The correct answer is D because thrombolysis restores perfusion.", False),
        ("Given the answer choices, heparin is the closest.", False),
    ],
)
def test_leaked_gold(text, leak):
    assert leaked_gold(text) is leak


def test_token_counter_uses_the_student_tokenizer(tiny_model_dir):
    count, name = token_counter(str(tiny_model_dir))
    approx, approx_name = token_counter(None)
    assert "approximate" in approx_name and str(tiny_model_dir) in name
    n = count([REASONING])[0]
    assert n > 0 and n != approx([REASONING])[0]


def _own_store(tmp_path: Path) -> Path:
    """12 questions x 3 samples with every kind of trace."""
    records = []
    for i in range(12):
        qid = f"q{i:02d}"
        question = (
            f"Case {i}: a {30 + i}-year-old {'man' if i % 2 else 'woman'} presents with "
            f"{['fever', 'chest pain', 'cough', 'rash', 'headache', 'jaundice'][i % 6]} for "
            f"{i + 2} days after travel to region {i * 7}. Examination finding number {i * 13}. "
            "Which of the following is the best next drug?"
        )
        subject = "Neurology" if i < 8 else "Cardiology"
        for s in range(3):
            if i == 0 and s == 2:
                text = REASONING + " The answer is A."  # one wrong sample
            else:
                text = REASONING + " " + "Further detail. " * (s * 5) + f"The answer is D. ({s})"
            records.append(rec(qid, text, sample=s, question=question, subject=subject))
    records.append(rec("q99", REASONING + " cut off", finish="length"))
    return write_store(tmp_path / "traces.db", records)


def _cfg(tmp_path: Path, store: Path, **kw) -> CurateConfig:
    return CurateConfig(
        store=str(store), out=str(tmp_path / "out"), eval_benchmarks=[], min_tokens=5, **kw
    )


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("selection", "kept", "not_selected"),
    [("all", 35, 0), ("k", 24, 11), ("shortest", 12, 23), ("majority", 12, 23)],
)
def test_selection_policies_and_counts_add_up(tmp_path, selection, kept, not_selected):
    store = _own_store(tmp_path)
    stats = run_curate(_cfg(tmp_path, store, selection=selection, k=2), show_progress=False)
    assert stats["input_traces"] == 37
    assert stats["dropped"]["incorrect"] == 1 and stats["dropped"]["truncated"] == 1
    assert stats["kept_traces"] == kept
    assert stats["dropped"]["not_selected"] == not_selected
    assert stats["kept_traces"] + sum(stats["dropped"].values()) == 37
    out = tmp_path / "out"
    rows = _jsonl(out / "messages" / "train.jsonl") + _jsonl(out / "messages" / "validation.jsonl")
    assert len(rows) == kept
    assert len(_jsonl(out / "dropped.jsonl")) == 37 - kept
    if selection == "shortest":  # sample 0 has no filler
        tail = "The answer is D. (0)\n\nThe answer is D."
        assert all(r["messages"][-1]["content"].endswith(tail) for r in rows)


def test_majority_drops_questions_whose_plurality_is_wrong(tmp_path):
    records = [
        rec("qa", REASONING + " The answer is D.", sample=0),
        rec("qa", REASONING + " The answer is B.", sample=1),
        rec("qa", REASONING + " The answer is B.", sample=2),
        rec("qb", REASONING + " The answer is D.", sample=0, question="Another question?"),
    ]
    store = write_store(tmp_path / "t.db", records)
    stats = run_curate(_cfg(tmp_path, store, selection="majority"), show_progress=False)
    assert stats["dropped"]["no_majority"] == 1  # qa's only correct trace
    assert stats["dropped"]["incorrect"] == 2 and stats["kept_traces"] == 1


def test_output_formats_split_and_card(tmp_path):
    store = _own_store(tmp_path)
    cfg = _cfg(tmp_path, store, validation_fraction=0.3, seed=3)
    stats = run_curate(cfg, show_progress=False)
    out = tmp_path / "out"
    train = _jsonl(out / "messages" / "train.jsonl")
    val = _jsonl(out / "messages" / "validation.jsonl")
    assert train and val
    # All traces of a question land in one split.
    assert not {r["question_id"] for r in train} & {r["question_id"] for r in val}
    m = train[0]["messages"]
    assert [t["role"] for t in m] == ["system", "user", "assistant"]
    assert "A. Aspirin" in m[1]["content"]
    assert m[2]["content"].endswith("The answer is D. (0)\n\nThe answer is D.")
    pc = _jsonl(out / "prompt_completion" / "train.jsonl")[0]
    assert pc["prompt"] == m[:2] and pc["completion"] == m[2:]
    assert pc["gold"] == "D" and pc["options"]["D"] == "Alteplase"
    assert 0 < pc["teacher_pass_rate"] <= 1
    # Same seed, same split; another seed, another split.
    again = run_curate(cfg, show_progress=False)
    assert again["splits"] == stats["splits"]
    # The card names every reason and the totals.
    card = (out / "README.md").read_text()
    for reason in REASONS:
        assert f"| {reason} |" in card
    assert f"**{stats['kept_traces']}** of 37 traces" in card
    assert (out / "token_lengths.png").stat().st_size > 1000
    datasets = pytest.importorskip("datasets")
    dd = datasets.load_from_disk(str(out / "hf" / "messages"))
    assert dd["train"].num_rows == len(train) and dd["validation"].num_rows == len(val)
    assert not (out / ".curate-work.sqlite").exists()


def test_difficulty_filter_and_subject_balance(tmp_path):
    store = _own_store(tmp_path)
    preds = tmp_path / "predictions.jsonl"
    preds.write_text(
        "\n".join(
            json.dumps({"id": qid, "correct": c})
            for qid, c in [("q01", True), ("q02", False), ("q03", True), ("q03", False)]
        )
    )
    stats = run_curate(
        _cfg(tmp_path, store, difficulty_eval=str(preds), max_per_subject=3), show_progress=False
    )
    assert stats["question_reasons"]["too_easy"] == 2  # q01 (1.0) and q03 (0.5)
    assert stats["dropped"]["too_easy"] == 6
    rows = _jsonl(tmp_path / "out" / "messages" / "train.jsonl")
    rows += _jsonl(tmp_path / "out" / "messages" / "validation.jsonl")
    per_subject = {(r["subject"], r["question_id"]) for r in rows}
    assert sorted(s for s, _ in per_subject) == ["Cardiology"] * 3 + ["Neurology"] * 3
    assert stats["question_reasons"]["subject_cap"] == (8 - 2 - 3) + (4 - 3)


def test_exact_and_near_duplicate_questions(tmp_path):
    base = (
        "A 45-year-old man has crushing chest pain radiating to the left arm for two hours. "
        "He smokes and has hypertension treated with lisinopril. The ECG shows ST elevation "
        "in leads II, III and aVF, and the nearest catheterisation laboratory is far away."
    )
    records = [
        rec("a", REASONING + " The answer is D.", question=base),
        # Same text with other case, punctuation and option order: exact duplicate.
        rec(
            "b",
            REASONING + " The answer is C.",
            question=base.upper().replace(".", " !"),
            gold="C",
            options={"A": "Aspirin", "B": "Heparin", "C": "Alteplase", "D": "Warfarin"},
        ),
        # One word changed: near duplicate.
        rec("c", REASONING + " The answer is D.", question=base.replace("crushing", "severe")),
        rec(
            "d", REASONING + " The answer is D.", question="Which vitamin deficiency causes scurvy?"
        ),
    ]
    store = write_store(tmp_path / "t.db", records)
    stats = run_curate(_cfg(tmp_path, store), show_progress=False)
    assert stats["question_reasons"] == {"duplicate_exact": 1, "duplicate_near": 1}
    assert stats["kept_traces"] == 2
    details = {d["question_id"]: d["detail"] for d in _jsonl(tmp_path / "out" / "dropped.jsonl")}
    assert details["b"] == "of unit/a" and details["c"].startswith("of unit/a (jaccard 0.")
    off = run_curate(_cfg(tmp_path, store, dedup=False), show_progress=False)
    assert off["kept_traces"] == 4


def test_bad_config_and_missing_store_are_clear_errors(tmp_path):
    with pytest.raises(MedistillError, match="not found"):
        run_curate(_cfg(tmp_path, tmp_path / "nope.db"), show_progress=False)
    store = _own_store(tmp_path)
    with pytest.raises(MedistillError, match="choose one of: all, k, shortest, majority"):
        run_curate(_cfg(tmp_path, store, selection="best"), show_progress=False)
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "q1", "correct": true}\nnot json\n')
    with pytest.raises(MedistillError, match=r"p.jsonl:2: malformed JSON"):
        run_curate(_cfg(tmp_path, store, difficulty_eval=str(bad)), show_progress=False)
    bad.write_text('{"id": "q1", "correct": true}\n{"id": "q2"}\n')
    with pytest.raises(MedistillError, match=r"p.jsonl:2: field 'correct': missing field"):
        run_curate(_cfg(tmp_path, store, difficulty_eval=str(bad)), show_progress=False)


# ------------------------------------------------------------------- import + real traces

HUATUO = "reasoning_traces/huatuogpt_o1_demo_data.json"


def test_import_errors_name_file_line_and_field(tmp_path):
    f = tmp_path / "traces.jsonl"
    good = {"q": "Which drug?", "opts": ["x", "y"], "ans": "B", "cot": "Because.", "resp": "y"}
    bad = {**good, "ans": "E"}
    f.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    mapping = parse_mapping("question=q,options=opts,gold=ans,reasoning=cot,response=resp")
    with pytest.raises(DataError, match=r"traces.jsonl:2: field 'ans'"):
        import_traces(f, tmp_path / "s.db", origin="x", mapping=mapping)
    summary = import_traces(f, tmp_path / "s.db", origin="x", mapping=mapping, skip_invalid=True)
    assert (summary["imported"], summary["skipped"]) == (1, 1)
    assert "traces.jsonl:2" in summary["skipped_rows"][0]
    with pytest.raises(MedistillError, match="valid:"):
        parse_mapping("question=q,answer=a")
    with pytest.raises(MedistillError, match="needs"):
        parse_mapping("question=q")


def test_import_parquet_with_gold_as_option_text(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    opts = {"A": "Aspirin", "B": "Alteplase"}
    rows = [{"Q": "Drug?", "options": opts, "gold": "Alteplase", "R": REASONING + " Answer: B"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    mapping = parse_mapping("question=Q,options=options,gold=gold,response=R")
    s = import_traces(tmp_path / "t.parquet", tmp_path / "s.db", origin="pq", mapping=mapping)
    assert s["imported"] == 1
    with TraceStore(tmp_path / "s.db") as store:
        (r,) = list(store.iter_rows())
    assert r["gold"] == "B" and r["teacher"] == "pq" and r["endpoint"] == "import:t.parquet"


def test_huatuogpt_traces_curate_end_to_end(shared_data, tmp_path, monkeypatch):
    """The 198 real teacher traces: import, curate against every benchmark, counts add up."""
    monkeypatch.setenv("MEDISTILL_DATA_DIR", str(shared_data))
    store = tmp_path / "traces.db"
    mapping = parse_mapping(None, "huatuogpt-o1")
    first = import_traces(shared_data / HUATUO, store, origin="huatuogpt-o1", mapping=mapping)
    assert (first["read"], first["imported"]) == (198, 198)
    again = import_traces(shared_data / HUATUO, store, origin="huatuogpt-o1", mapping=mapping)
    assert (again["imported"], again["already_present"]) == (0, 198)
    out = tmp_path / "out"
    cfg = CurateConfig(store=str(store), out=str(out), extract_mode="lenient")
    stats = run_curate(cfg, show_progress=False)
    assert stats["input_traces"] == 198
    assert stats["kept_traces"] + sum(stats["dropped"].values()) == 198
    assert stats["decontamination"]["benchmark_questions"] == 1273 + 4183 + 500 + 1089
    # Known facts of this file: one question appears twice (options reordered), and most
    # responses answer an open-ended rewrite of the question, naming no option.
    assert stats["dropped"]["duplicate_exact"] == 1
    assert stats["dropped"]["no_answer"] > 100
    assert 20 <= stats["kept_traces"] <= 60
    card = (out / "README.md").read_text()
    assert "**total in** | **198**" in card and "huatuogpt-o1" in card
    kept = sum(len(_jsonl(out / "messages" / f"{s}.jsonl")) for s in ("train", "validation"))
    assert kept == stats["kept_traces"]
    dropped = _jsonl(out / "dropped.jsonl")
    assert len(dropped) == 198 - kept
    assert {d["reason"] for d in dropped} <= set(REASONS)
    # Every kept assistant turn is the CoT followed by the response and a strict answer line.
    row0 = _jsonl(out / "messages" / "train.jsonl")[0]
    assert row0["messages"][-1]["content"].endswith(f"The answer is {row0['gold']}.")


def test_cli_import_and_curate_from_a_recipe(tmp_path):
    from typer.testing import CliRunner

    from medistill.cli import app

    runner = CliRunner()
    src = tmp_path / "traces.jsonl"
    rows = [
        {"q": f"Question {i} about drug {i * 17} for disease {i * 29}?", "opts": OPTS,
         "ans": "D", "cot": REASONING, "resp": f"The answer is {'D' if i % 3 else 'A'}."}
        for i in range(9)
    ]  # fmt: skip
    src.write_text("\n".join(json.dumps(r) for r in rows))
    store = tmp_path / "s.db"
    mapping = "question=q,options=opts,gold=ans,reasoning=cot,response=resp"
    r = runner.invoke(
        app, ["import-traces", str(src), "--store", str(store), "--origin", "x", "--map", mapping]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["imported"] == 9
    recipe = tmp_path / "r.yaml"
    recipe.write_text("curate:\n  selection: all\n  min_tokens: 4\n  eval_benchmarks: []\n")
    out = tmp_path / "ds"
    r = runner.invoke(app, ["curate", str(store), "--config", str(recipe), "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert summary["kept_traces"] == 6 and summary["dropped"] == {"incorrect": 3}
    recipe.write_text("curate:\n  selektion: all\n")
    r = runner.invoke(app, ["curate", str(store), "--config", str(recipe), "--out", str(out)])
    assert r.exit_code == 2 and "unknown key(s) 'selektion' (did you mean 'selection'?)" in r.output
    src.write_text('{"q": "x"}\n')
    r = runner.invoke(
        app, ["import-traces", str(src), "--store", str(store), "--origin", "x", "--map", mapping]
    )
    assert r.exit_code == 2 and "traces.jsonl:1: field 'opts': missing field" in r.output


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_traces(tmp_path):
    """Curate 6,000 and 48,000 synthetic traces in fresh processes: peak RSS must not grow
    with the input (state lives in the scratch SQLite file, not in Python objects). The
    SQLite page cache, bounded by ``sqlite_cache_mb``, is set small so it cannot hide growth."""
    import subprocess
    import sys

    from paraphrase import write_synthetic_store

    peaks = {}
    for n in (6_000, 48_000):
        store = tmp_path / f"t{n}.db"
        write_synthetic_store(store, n, samples_per_question=4, seed=1)
        code = (
            "import json, resource\n"
            "from medistill.curate import CurateConfig, run_curate\n"
            f"s = run_curate(CurateConfig(store={str(store)!r}, out={str(tmp_path / str(n))!r},"
            " eval_benchmarks=[], hf_dataset=False, sqlite_cache_mb=2), show_progress=False)\n"
            "print(json.dumps([s['input_traces'], s['kept_traces'],"
            " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        n_in, kept, rss_kb = json.loads(out.stdout.strip().splitlines()[-1])
        assert n_in == n and 0 < kept < n
        peaks[n] = rss_kb / 1024
    # 8x the traces: a few MB of per-kept-trace bookkeeping at most, not 8x the memory.
    assert peaks[48_000] - peaks[6_000] < 25, peaks


def test_parallel_verification_gives_the_same_dataset(tmp_path):
    """Verification in two worker processes writes byte-identical outputs."""
    from paraphrase import write_synthetic_store

    store = tmp_path / "t.db"
    write_synthetic_store(store, 1200, samples_per_question=3, seed=4)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        cfg = CurateConfig(
            store=str(store), out=str(out), eval_benchmarks=[], workers=workers, batch_size=100,
            hf_dataset=False,
        )  # fmt: skip
        stats = run_curate(cfg, show_progress=False)
        outs.append((stats["dropped"], stats["kept_traces"]))
        outs.append((out / "messages" / "train.jsonl").read_bytes())
        outs.append((out / "dropped.jsonl").read_bytes())
    assert outs[:3] == outs[3:]
    assert outs[0][1] > 0 and sum(outs[0][0].values()) > 0


def test_the_card_names_the_model_a_hosted_alias_serves(tmp_path: Path) -> None:
    """Traces stored under ``deepseek-reasoner`` (the id the request named) are V3.2's in
    thinking mode now, not R1's: the data card says so (on main it printed the bare alias);
    an id no provider aliases stays as it is."""
    records = [
        rec(f"q{i}", REASONING + " The answer is D.", teacher=t)
        for i, t in enumerate(["deepseek-reasoner", "deepseek-reasoner", "my-own-70b"])
    ]
    store = write_store(tmp_path / "traces.db", records)
    run_curate(_cfg(tmp_path, store), show_progress=False)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| DeepSeek-V3.2 (thinking mode, deepseek-reasoner) | 2 |" in card
    assert "| my-own-70b | 1 |" in card
