"""The curation test-data generators: paraphrases, synthetic questions, synthetic traces."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from medistill.data import Question, load_benchmark
from medistill.store import TraceStore

from paraphrase import (
    paraphrase_question,
    synthetic_questions,
    synthetic_trace_records,
    verbatim_copy,
    write_synthetic_store,
)

_FINAL = re.compile(r"\nThe answer is \(([A-D])\)\.$")
_AGE = re.compile(r"\b\d+-(?:year|month)-old\b")
_WORD = re.compile(r"\w+")


def _q(stem: str, qid: str = "q1") -> Question:
    return Question(
        id=qid,
        source="medqa",
        split="test",
        question=stem,
        options={"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Alteplase"},
        gold="C",
        subject="step2&3",
    )


STEMS = {
    "vignette": (
        "A 45-year-old man presents to the emergency department because of chest pain for "
        "2 hours. He has a history of hypertension. His temperature is 37.6°C (99.7°F), pulse "
        "is 96/min, and blood pressure is 150/90 mm Hg. Physical examination shows diaphoresis. "
        "Serum glucose concentration is 112 mg/dL. Which of the following is the most likely "
        "diagnosis?"
    ),
    "two_sentences_and_question": (
        "A 3-month-old girl is brought to the physician with poor feeding. The patient has a "
        "heart rate of 160/min. What is the most likely cause?"
    ),
    "one_sentence": (
        "A 62-year-old woman with fatigue, pallor, a hemoglobin of 8.1 g/dL, and a mean "
        "corpuscular volume of 72 μm3 most likely has which of the following?"
    ),
    "no_age": (
        "Blood pressure is 180/110 mmHg. Serum potassium is 3.1 mEq/L. Plasma renin activity "
        "is low. Which of the following is the most likely diagnosis?"
    ),
}


def _shingles(text: str, k: int = 5) -> set[str]:
    w = _WORD.findall(text.lower())
    return {" ".join(w[i : i + k]) for i in range(len(w) - k + 1)}


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


# --- paraphrase --------------------------------------------------------------------------------


def test_paraphrase_is_deterministic() -> None:
    qs = list(synthetic_questions(30, seed=5))
    a = [paraphrase_question(q, random.Random(7)) for q in qs]
    b = [paraphrase_question(q, random.Random(7)) for q in qs]
    assert a == b
    c = [paraphrase_question(q, random.Random(8)) for q in qs]
    assert a != c


@pytest.mark.parametrize("name", sorted(STEMS))
@pytest.mark.parametrize("seed", range(5))
def test_paraphrase_rewrites_stem_and_shuffles_options(name: str, seed: int) -> None:
    q = _q(STEMS[name])
    p = paraphrase_question(q, random.Random(seed))
    assert p.id == "para-q1" and p.meta == {"planted_from": "q1", "kind": "paraphrase"}
    assert p.question != q.question
    assert p.question.endswith("?")  # the question sentence stays last
    assert _numbers(p.question) != _numbers(q.question)  # at least one number changed
    assert list(p.options) == list(q.options)  # same letters...
    assert list(p.options.values()) != list(q.options.values())  # ...shuffled texts
    assert sorted(p.options.values()) == sorted(q.options.values())
    assert p.options[p.gold] == q.options[q.gold]  # gold follows its text
    assert (p.subject, p.source) == (q.subject, q.source)


@pytest.mark.parametrize(
    ("name", "age"),
    [
        ("vignette", "45-year-old"),
        ("two_sentences_and_question", "3-month-old"),
        ("one_sentence", "62-year-old"),
    ],
)
def test_paraphrase_changes_ages(name: str, age: str) -> None:
    for seed in range(10):
        p = paraphrase_question(_q(STEMS[name]), random.Random(seed))
        assert age not in p.question
        assert len(_AGE.findall(p.question)) == 1


def _order(text: str, keys: list[str]) -> list[str]:
    return sorted(keys, key=text.index)


@pytest.mark.parametrize("seed", range(8))
def test_paraphrase_reorders_sentences_or_clauses(seed: int) -> None:
    # Several sentences: the middle ones move; the opening stays first, the question last.
    keys = ["chest pain", "hypertension", "temperature", "diaphoresis", "glucose", "diagnosis"]
    p = paraphrase_question(_q(STEMS["vignette"]), random.Random(seed))
    order = _order(p.question, keys)
    assert order != keys and order[0] == keys[0] and order[-1] == keys[-1]
    # One sentence: its comma clauses move instead.
    keys = ["fatigue", "pallor", "hemoglobin", "corpuscular", "which of"]
    p = paraphrase_question(_q(STEMS["one_sentence"]), random.Random(seed))
    order = _order(p.question.lower(), keys)
    assert order != keys and order[0] == keys[0] and order[-1] == keys[-1]


def test_paraphrase_unit_and_temperature_rewrites() -> None:
    texts = [
        paraphrase_question(_q(STEMS["vignette"]), random.Random(s)).question for s in range(40)
    ]
    assert any("°F (" in t for t in texts)  # temperature pair flipped to F first
    assert any("mmHg" in t for t in texts)  # "mm Hg" <-> "mmHg"
    assert any("mg/dl" in t for t in texts)
    assert any("per minute" in t for t in texts)
    assert any("comes to" in t for t in texts)  # synonym swaps happen sometimes
    assert any("presents to" in t for t in texts)


def test_paraphrase_without_gold_and_planted_id() -> None:
    q = _q(STEMS["no_age"])
    q.gold = None
    p = paraphrase_question(q, random.Random(0), id="train-17", source="pubmed_train")
    assert (p.id, p.source, p.gold) == ("train-17", "pubmed_train", None)


def test_verbatim_copy() -> None:
    q = _q(STEMS["vignette"])
    v = verbatim_copy(q, random.Random(0))
    assert v.id == "verb-q1" and v.meta == {"planted_from": "q1", "kind": "verbatim"}
    assert (v.question, v.options, v.gold) == (q.question, q.options, q.gold)
    assert list(v.options.items()) == list(q.options.items())
    v.options["A"] = "changed"
    assert q.options["A"] == "Aspirin"  # a copy, not a view


# --- synthetic questions -----------------------------------------------------------------------


def test_synthetic_questions_valid_and_distinct() -> None:
    qs = list(synthetic_questions(3000, seed=0))
    assert len({q.id for q in qs}) == len({q.question for q in qs}) == 3000
    for q in qs:
        assert list(q.options) == ["A", "B", "C", "D"]
        assert len(set(q.options.values())) == 4
        assert q.gold in q.options
        assert 30 <= len(q.question.split()) <= 150
        assert q.question.endswith("?") and q.source == "synthetic"
    assert len({q.subject for q in qs}) >= 12
    golds = Counter(q.gold for q in qs)
    assert min(golds.values()) > 600  # gold position is balanced


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_questions_deterministic(seed: int) -> None:
    a = list(synthetic_questions(200, seed=seed))
    assert a == list(synthetic_questions(200, seed=seed))
    assert a[:50] == list(synthetic_questions(50, seed=seed))  # a prefix of a longer run
    other = list(synthetic_questions(200, seed=seed + 10))
    assert not {q.question for q in a} & {q.question for q in other}


def test_synthetic_questions_not_near_duplicates() -> None:
    sh = [_shingles(q.question) for q in synthetic_questions(400, seed=3)]
    worst = max(len(a & b) / len(a | b) for i, a in enumerate(sh) for b in sh[i + 1 :])
    assert worst < 0.5


# --- synthetic traces --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "per_q"), [(10, 4), (7, 1), (9, 3)])
def test_trace_records_count_and_indices(n: int, per_q: int) -> None:
    recs = list(synthetic_trace_records(n, samples_per_question=per_q, seed=1))
    assert len(recs) == n
    assert [r.sample_index for r in recs] == [i % per_q for i in range(n)]
    assert len({r.key for r in recs}) == n
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.key) for r in recs)


def test_trace_records_mix() -> None:
    recs = list(synthetic_trace_records(6000, samples_per_question=4, seed=0))
    kinds = Counter(r.endpoint.removeprefix("synthetic://") for r in recs)
    assert abs(kinds["truncated"] / 6000 - 0.03) < 0.012
    assert abs(kinds["no_final"] / 6000 - 0.02) < 0.01
    assert 0.003 < kinds["loop"] / 6000 < 0.02
    assert 0.003 < kinds["refusal"] / 6000 < 0.02
    right = total = 0
    for r in recs:
        kind = r.endpoint.removeprefix("synthetic://")
        m = _FINAL.search(r.text)
        assert (r.finish_reason == "length") == (kind == "truncated") == r.truncated
        assert r.teacher == "synthetic-teacher" and r.params == '{"temperature": 0.7}'
        assert r.messages.startswith('[{"role": "user", "content": ')
        assert r.completion_tokens == int(len(r.text.split()) * 1.3)
        if kind in ("ok", "loop"):
            assert m is not None and m.group(1) in r.options
            total += 1
            right += m.group(1) == r.gold
        else:
            assert m is None
        if kind == "ok":
            assert 80 <= len(r.text.split()) <= 420
        if kind == "refusal":
            assert "cannot provide medical advice" in r.text
        if kind == "loop":
            assert max(Counter(re.split(r"(?<=\.)\s+", r.text)).values()) >= 20
    assert 0.62 < right / total < 0.78


def test_trace_records_deterministic() -> None:
    a = list(synthetic_trace_records(50, seed=2))
    b = list(synthetic_trace_records(50, seed=2))
    assert [r.row() for r in a] == [r.row() for r in b]


def test_write_synthetic_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    assert write_synthetic_store(path, 1003, samples_per_question=4, seed=0, batch=100) == 1003
    with TraceStore(path) as store:
        assert len(store) == 1003
        rows = list(store.iter_rows())
        truncated = sum(r["truncated"] for r in rows)
        assert store.totals()["truncated"] == truncated > 0
    recs = list(synthetic_trace_records(1003, 4, 0))
    assert [r["key"] for r in rows] == [r.key for r in recs]
    assert rows[0]["messages"][0]["role"] == "user"
    assert rows[0]["options"] == recs[0].options and rows[0]["params"] == {"temperature": 0.7}
    # Same keys: writing again adds nothing.
    assert write_synthetic_store(path, 1003, batch=500) == 0


# --- against the real benchmarks ---------------------------------------------------------------


def test_paraphrase_real_medqa(shared_data: Path) -> None:
    qs = load_benchmark("medqa", shared_data / "medqa/US_4options_test.jsonl").questions[:20]
    rng = random.Random(0)
    for q in qs:
        p = paraphrase_question(q, rng)
        assert p.question != q.question
        assert p.options[p.gold] == q.options[q.gold]
        assert sorted(p.options.values()) == sorted(q.options.values())
        assert list(p.options.values()) != list(q.options.values())
        if _numbers(q.question):
            assert _numbers(p.question) != _numbers(q.question)
        for age in _AGE.findall(q.question):
            assert age not in p.question
        # Light: most of the wording survives.
        a, b = _shingles(q.question), _shingles(p.question)
        assert len(a & b) / len(a) > 0.3


def test_synthetic_questions_share_no_13_gram_with_medqa(shared_data: Path) -> None:
    real: set[str] = set()
    for q in load_benchmark("medqa", shared_data / "medqa/US_4options_test.jsonl").questions:
        real |= _shingles(q.question, 13)
    hits = [q.id for q in synthetic_questions(2000, seed=0) if _shingles(q.question, 13) & real]
    assert not hits
