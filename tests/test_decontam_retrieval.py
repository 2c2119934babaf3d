"""Decontamination by retrieval and answer agreement: the rule table on hand-written cases, and
the hand-written calibration set (tests/data/decontam_calibration: 48 MedQA test questions,
each with a light paraphrase, a heavy rewrite and a same-topic hard negative) through the user
path, import then curate, against the real MedQA test file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medistill.curate import CurateConfig, run_curate
from medistill.curate.decontam import BenchmarkIndex, informative_answer, same_answer
from medistill.data import Question, load_benchmark
from medistill.store import TraceRecord, TraceStore

CALIBRATION = Path(__file__).parent / "data" / "decontam_calibration"

# A small benchmark written for these tests (not taken from any dataset).
GOUT = (
    "A 58-year-old man wakes at night with excruciating pain, redness and swelling of the "
    "first metatarsophalangeal joint of his right foot. He drank heavily at a wedding the "
    "evening before and recently started hydrochlorothiazide for hypertension. Joint "
    "aspiration shows needle-shaped, negatively birefringent crystals. Which of the following "
    "is the most appropriate long-term therapy to prevent recurrences once the attack settles?"
)
GOUT_OPTS = {"A": "Allopurinol", "B": "Colchicine for one week only", "C": "Probenecid with "
             "aspirin", "D": "Intra-articular triamcinolone"}  # fmt: skip
KAWASAKI = (
    "A 3-year-old boy has had a fever of 39.8 C for six days despite antipyretics. He has "
    "bilateral non-exudative conjunctival injection, cracked red lips, a strawberry tongue, "
    "a polymorphous truncal rash, swelling of the hands and feet and a single 2-cm cervical "
    "lymph node. Which of the following is the most appropriate next step in management?"
)
KAWASAKI_OPTS = {"A": "Intravenous immunoglobulin and high-dose aspirin", "B": "Oral amoxicillin",
                 "C": "Prednisolone alone", "D": "Observation and antipyretics"}  # fmt: skip
FACT = "Which of the following is true?"
FACT_OPTS = {"A": "Insulin is secreted by alpha cells", "B": "Glucagon lowers blood glucose",
             "C": "Somatostatin comes from delta cells", "D": "Amylin raises glucose"}  # fmt: skip
OTHERS = [
    (
        "A 71-year-old woman with long-standing atrial fibrillation who stopped warfarin "
        "presents with sudden severe abdominal pain out of proportion to a soft, non-tender "
        "abdomen and a raised lactate. Which of the following is the most likely diagnosis?",
        {
            "A": "Acute mesenteric ischaemia",
            "B": "Perforated ulcer",
            "C": "Diverticulitis",
            "D": "Biliary colic",
        },
        "A",
    ),
    (
        "A 24-year-old woman has episodes of palpitations, headache and sweating with blood "
        "pressure of 210/120 mm Hg during the attacks; plasma free metanephrines are raised. "
        "Which drug should be started first before surgery?",
        {"A": "Phenoxybenzamine", "B": "Propranolol", "C": "Hydralazine", "D": "Furosemide"},
        "A",
    ),
]


def _bench() -> list[Question]:
    qs = [
        Question("gout", "bench", "test", GOUT, GOUT_OPTS, "A"),
        Question("kawasaki", "bench", "test", KAWASAKI, KAWASAKI_OPTS, "A"),
        Question("fact", "bench", "test", FACT, FACT_OPTS, "C"),
    ]
    qs += [Question(f"o{i}", "bench", "test", q, o, g) for i, (q, o, g) in enumerate(OTHERS)]
    return qs


GOUT_REWRITE = (
    "Sixty-year-old male, untreated hypertension, recently put on a thiazide diuretic. After "
    "a night of binge drinking he woke with an exquisitely painful, hot, swollen big toe. Tap "
    "of the joint: needle-like crystals with negative birefringence. What should he take in "
    "the long run to stop further attacks?"
)
GOUT_NEGATIVE = (
    "A 64-year-old woman on a thiazide has a hot, swollen right knee for two days. Aspiration "
    "shows rhomboid, weakly positively birefringent crystals and the knee radiograph shows "
    "chondrocalcinosis. Her creatinine clearance is 20 mL/min. Which of the following is the "
    "best treatment for the acute attack?"
)
GOUT_NEG_OPTS = dict(GOUT_OPTS)  # the very same option list, another answer


@pytest.mark.parametrize(
    ("question", "options", "answer", "expect"),
    [
        # A heavy rewrite that keeps the answer: a paraphrase of its original.
        (GOUT_REWRITE, GOUT_OPTS, "A", ("gout", "paraphrase")),
        # ... with the options reordered: the answer is compared as text, not as a letter.
        (
            GOUT_REWRITE,
            {"A": GOUT_OPTS["D"], "B": GOUT_OPTS["B"], "C": GOUT_OPTS["A"], "D": GOUT_OPTS["C"]},
            "C",
            ("gout", "paraphrase"),
        ),
        # The same rewrite without any answer is checked for copies only.
        (GOUT_REWRITE, GOUT_OPTS, None, None),
        # Same topic, same option list, another correct answer: a different question.
        (GOUT_NEGATIVE, GOUT_NEG_OPTS, "D", None),
        # A lightly edited copy with an answer that disagrees (a wrong teacher) is still a copy.
        (KAWASAKI.replace("3-year-old", "4-year-old"), KAWASAKI_OPTS, "B", ("kawasaki", "ngram")),
        # Terse notes of the Kawasaki vignette, same answer.
        (
            "3M, 6 days of fever ~40 C unresponsive to paracetamol; red eyes without discharge, "
            "fissured lips, strawberry tongue, truncal rash, puffy hands/feet, one large neck "
            "node. Next step?",
            KAWASAKI_OPTS,
            "A",
            ("kawasaki", "paraphrase"),
        ),
        # A one-line fact question with the same answer text is not a rewrite of a vignette.
        ("Treatment of choice for Kawasaki disease?", KAWASAKI_OPTS, "A", None),
        # A generic stem identifies nothing without its options...
        (FACT, {"A": "Ca", "B": "Mg", "C": "Na", "D": "K"}, "A", None),
        # ... and is the same item with them (too short for a 13-gram: the copy test).
        (
            FACT,
            dict(zip("ABCD", reversed(list(FACT_OPTS.values())), strict=True)),
            None,
            ("fact", "copy"),
        ),
        # Unrelated.
        (
            "Which enzyme is deficient in classic phenylketonuria?",
            ["Phenylalanine hydroxylase", "Tyrosinase", "Homogentisate oxidase"],
            "A",
            None,
        ),
    ],
)
def test_retrieval_rules(question, options, answer, expect):
    idx = BenchmarkIndex(_bench())
    m = idx.check(question, options, answer)
    assert (None if m is None else (m.benchmark_id, m.method)) == expect, m
    if m is not None:
        record = m.to_dict()
        assert record["benchmark"] == "bench" and record["score"] > 0
        if m.method != "ngram":
            assert record["cosine"] > 0 and {"same_answer", "shared_options"} <= set(record)


def test_legacy_method_is_the_old_rule():
    """The earlier rule stays available for comparison: n-grams plus MinHash near duplicates."""
    idx = BenchmarkIndex(_bench(), method="legacy")
    shuffled = dict(zip("ABCD", reversed(list(GOUT_OPTS.values())), strict=True))
    m = idx.check(GOUT.replace("58-year-old", "61-year-old"), shuffled)
    assert m is not None and m.benchmark_id == "gout" and m.method in ("ngram", "near_duplicate")
    assert idx.check(GOUT_REWRITE, GOUT_OPTS, "A") is None  # what the old rule missed


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Allopurinol", "allopurinol.", True),
        ("Reassurance and continuous monitoring", "Reassurance and monitoring", True),
        ("Reassurance", "Reassurance and monitoring", False),
        (
            "Intravenous immunoglobulin and high-dose aspirin",
            "Intravenous immunoglobulin and high dose aspirin",
            True,
        ),
        ("Colchicine", "Allopurinol", False),
        ("", "", False),
    ],
)
def test_same_answer(a, b, same):
    assert same_answer(a, b) is same


@pytest.mark.parametrize(
    ("text", "informative"),
    [
        ("All of the above", False),
        ("Both A and B", False),
        ("3", False),
        ("yes", False),
        ("Vitamin B12", True),
        ("B cell", True),
        ("<10%", False),
    ],
)
def test_informative_answer(text, informative):
    assert informative_answer(text) is informative


def _calibration() -> list[dict]:
    rows = []
    for path in sorted(CALIBRATION.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            row = json.loads(line)
            row["where"] = f"{path.name}:{n}"
            rows.append(row)
    return rows


def test_the_calibration_set_is_complete():
    rows = _calibration()
    kinds = Counter(r["kind"] for r in rows)
    assert kinds == {"light": 48, "heavy": 48, "hard_negative": 48}, kinds
    by_index = Counter(r["index"] for r in rows)
    assert len(by_index) == 48 and set(by_index.values()) == {3}
    for r in rows:
        assert r["answer"] in r["options"], r["where"]


def test_calibration_set_through_import_and_curate(shared_data, tmp_path):
    """The goals of issue 9 on the hand-written set, through ``run_curate`` as a user runs it:
    light paraphrases >= 99% removed, heavy rewrites >= 95%, hard negatives <= 1% flagged,
    1,000 unrelated MedMCQA questions <= 0.1% flagged; every removal names the right item."""
    medqa_path = shared_data / "medqa" / "US_4options_test.jsonl"
    medqa = load_benchmark("medqa", medqa_path).questions
    unrelated = load_benchmark("medmcqa", shared_data / "medmcqa" / "dev.jsonl").questions[:1000]
    rows = _calibration()
    records = []
    for i, r in enumerate(rows):
        records.append(("cal", f"{r['kind']}-{r['index']}-{i}", r["question"], r["options"],
                        r["answer"]))  # fmt: skip
    for q in unrelated:
        records.append(("medmcqa", q.id, q.question, q.options, q.gold))
    with TraceStore(tmp_path / "t.db") as store:
        store.put_many(
            [
                TraceRecord(
                    key=f"{src}/{qid}",
                    question_id=qid,
                    sample_index=0,
                    teacher="t",
                    messages=[],
                    params={},
                    finish_reason="stop",
                    source=src,
                    question=q,
                    options=o,
                    gold=g,
                    text=f"Weighing the findings. The answer is {g}.",
                )
                for src, qid, q, o, g in records
            ]
        )
    out = tmp_path / "out"
    cfg = CurateConfig(
        store=str(tmp_path / "t.db"), out=str(out), eval_benchmarks=[f"medqa={medqa_path}"],
        min_tokens=1, hf_dataset=False, dedup=False,
    )  # fmt: skip
    stats = run_curate(cfg, show_progress=False)
    removed = {
        (r["source"], r["question_id"]): r
        for r in map(json.loads, (out / "decontamination.jsonl").read_text().splitlines())
    }
    hit: Counter[str] = Counter()
    for i, r in enumerate(rows):
        m = removed.get(("cal", f"{r['kind']}-{r['index']}-{i}"))
        if m is not None:
            hit[r["kind"]] += 1
            if r["kind"] != "hard_negative":
                assert m["benchmark_id"] == medqa[r["index"]].id, (r["where"], m)
    false_pos = [q.question[:80] for q in unrelated if ("medmcqa", q.id) in removed]
    assert hit["light"] / 48 >= 0.99, hit
    assert hit["heavy"] / 48 >= 0.95, hit
    assert hit["hard_negative"] / 48 <= 0.01, hit
    assert len(false_pos) <= 1, false_pos
    decon = stats["decontamination"]
    assert decon["distinct_benchmark_items"] == 48 and decon["checked_without_answer"] == 0
    assert "48 distinct benchmark items" in (out / "README.md").read_text()


def test_a_misspelled_method_names_the_recipe_key_and_the_choices():
    from medistill.config import build
    from medistill.errors import MedistillError

    with pytest.raises(MedistillError, match=r"r\.yaml: curate\.decontam_method: 'retreival'"):
        build(CurateConfig, {"store": "s", "out": "o", "decontam_method": "retreival"},
              where="r.yaml: curate")  # fmt: skip


def test_the_old_flat_decontam_keys_and_flags_still_read_with_a_deprecation_line(caplog):
    from medistill.config import build
    from medistill.curate.config import DecontamConfig
    from medistill.flags import parse_stage

    nested = build(CurateConfig, {"decontam": {"method": "legacy", "ngram": 8}}, where="r")
    assert nested.decontam == DecontamConfig(method="legacy", ngram=8)
    with caplog.at_level("WARNING"):
        flat = build(CurateConfig, {"decontam_method": "legacy", "decontam_ngram": "8"}, where="r")
    assert flat.decontam == nested.decontam
    assert "decontam_method, decontam_ngram are deprecated; write decontam.method" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        cli = parse_stage(CurateConfig, ["--decontam-method", "legacy", "--decontam-ngram", "8"],
                          section="curate", prog="medistill curate")  # fmt: skip
    assert cli.decontam == nested.decontam and "write decontam.method" in caplog.text
    # The card's settings record keeps the flat keys it always had.
    record = flat.record()
    assert record["decontam_method"] == "legacy" and "decontam" not in record
