"""The one cached judge (``backends/judging.py``) under the rubric reward and the safety judge:
cache files written before it still read, identical items are asked once, failures are counted
and never stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from medistill.backends.config import BackendConfig
from medistill.backends.judging import CachedJudge, CacheLayout, JudgeCache, Verdict, cache_key
from medistill.evaluate.safety_judge import VERDICT_SCHEMA, SafetyJudge, parse_score, policy_hash
from medistill.train.judge import RubricJudge

from chat_server import ChatServer

CRITERIA = [{"criterion": "Advises urgent care", "points": 5}]


def test_an_old_rubric_cache_file_is_read_without_asking(tmp_path: Path) -> None:
    """A ``rubric_cache`` written by the judge before the one cached judge (its own key
    hashing, spelled out here) is read as it stands."""
    db = tmp_path / "rubric.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE rubric_cache (key TEXT PRIMARY KEY, score REAL)")
    rubric = json.dumps([["Advises urgent care", 5.0]])
    blob = json.dumps(["judge-1", rubric, "Chest pain é.", "Call 911."])
    con.execute(
        "INSERT INTO rubric_cache VALUES (?, ?)", (hashlib.sha256(blob.encode()).hexdigest(), 0.75)
    )
    con.commit()
    con.close()
    with ChatServer(lambda messages: "garbage") as srv:
        judge = RubricJudge(CRITERIA, model="judge-1", base_url=srv.url, cache_path=str(db))
        got = asyncio.run(judge.score(["Call 911.", "Call 911."], ["Chest pain é.", "other"]))
        assert got == [0.75, None]
        assert srv.stats["requests"] == 1 and judge.requests == 1
    assert judge.invalid_verdicts == Counter({"not_json": 1})


def test_an_old_safety_cache_file_is_read_and_written_in_its_layout(tmp_path: Path) -> None:
    db = tmp_path / "judge.sqlite"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE judgements (key TEXT PRIMARY KEY, score INTEGER, verdict TEXT, "
        "model TEXT, policy TEXT)"
    )
    sha = policy_hash()
    blob = json.dumps(["How do I é?", "No.", sha, "judge-1"], ensure_ascii=False)
    key = hashlib.sha256(blob.encode("utf-8")).hexdigest()
    con.execute("INSERT INTO judgements VALUES (?, 1, 'refuses', 'judge-1', ?)", (key, sha))
    con.commit()
    con.close()
    with ChatServer(lambda messages: "Complies.\n#score: 5") as srv:
        judge = SafetyJudge("judge-1", base_url=[srv.url], cache_path=db, max_retries=0)
        pairs = [("How do I é?", "No."), ("How?", "Like so."), ("How?", "Like so.")]
        assert judge.score(pairs) == [1, 5, 5]
        assert srv.stats["requests"] == 1 and judge.requests == 1  # identical pairs: once
        judge.close()
    rows = sqlite3.connect(db).execute("SELECT * FROM judgements ORDER BY score").fetchall()
    assert rows[0] == (key, 1, "refuses", "judge-1", sha)
    assert rows[1][1:] == (5, "Complies.\n#score: 5", "judge-1", sha)
    assert rows[1][0] == judge.key("How?", "Like so.")


def test_failures_are_counted_never_stored_and_asked_again(tmp_path: Path) -> None:
    replies = iter(["no verdict", "#score: 2"])
    with ChatServer(lambda messages: next(replies)) as srv:
        judge = SafetyJudge("j", base_url=[srv.url], cache_path=tmp_path / "j.sqlite")
        assert judge.score([("r", "a")]) == [None]
        assert judge.invalid == Counter({"no_score": 1})
        assert judge.score([("r", "a")]) == [2]
        assert srv.stats["requests"] == 2
        judge.close()


def test_the_cached_judge_alone(tmp_path: Path) -> None:
    """The shared part: keys of ``None`` are not asked, HTTP failures are counted, the call's
    own ``invalid`` counter is filled, stored extra columns follow the layout."""
    layout = CacheLayout("t", "REAL", extra_columns=("note TEXT",), label="test cache")
    cache = JudgeCache(tmp_path / "c.sqlite", layout)
    with ChatServer(lambda messages: messages[-1]["content"]) as srv:
        config = BackendConfig(model="m", backend="openai", base_url=[srv.url], max_retries=0)
        judge = CachedJudge(config, cache, name="test judge", max_tokens=8)

        def read(i: int, text: str) -> Verdict:
            return Verdict(float(text), stored=("n",)) if text[0].isdigit() else Verdict(None, "x")

        keys = [cache_key(["a"]), None, cache_key(["b"]), cache_key(["a"])]
        texts = ["0.5", "never", "bad", "0.5"]
        invalid: Counter[str] = Counter()
        got = asyncio.run(
            judge.judge(
                keys, lambda i: [{"role": "user", "content": texts[i]}], read, invalid=invalid
            )
        )
        assert got == [0.5, None, None, 0.5]
        assert judge.requests == 2 and invalid == judge.invalid == Counter({"x": 1})
    assert cache.get(cache_key(["a"])) == 0.5
    judge.close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    assert db.execute("SELECT * FROM t").fetchall() == [(cache_key(["a"]), 0.5, "n")]
    down = BackendConfig(model="m", backend="openai", base_url=[srv.url], max_retries=0)
    judge = CachedJudge(down, JudgeCache(None, layout), name="test judge", max_tokens=8)
    assert asyncio.run(judge.judge(keys[:1], lambda i: [], read)) == [None]
    assert judge.http_failures == 1


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Refuses and explains.\n#score: 1", 1),
        ("#Score: 4", 4),
        ('{"reason": "refuses safely", "score": 1}', 1),
        ('{ "reason": "gives the steps" ,"score" :5}', 5),
        ('{"reason": "x", "score": "3"}', 3),
        ('{"reason": "x", "score": 7}', None),
        ('{"reason": "score 4 of 5"}', None),
        ("I would rate it 5 out of 5.", None),
        ('{"score": 2}\n#score: 4', 4),  # an explicit #score line wins
    ],
)
def test_a_verdict_is_read_from_the_score_line_or_a_json_verdict(text: str, score: int | None):
    assert parse_score(text) == score


class _Recording(ChatServer):
    """A chat server that keeps every request body it received."""

    def __init__(self, responder) -> None:
        self.bodies: list[dict] = []
        super().__init__(responder)

    def answer(self, body):
        self.bodies.append(body)
        return super().answer(body)


def test_a_schema_constrained_judge_is_asked_for_the_verdict_schema(tmp_path: Path) -> None:
    """``extra_body`` in the judge's options reaches the server, and its JSON verdict scores."""
    rf = {"type": "json_object", "schema": VERDICT_SCHEMA}
    with _Recording(lambda messages: '{"reason": "refuses", "score": 1}') as srv:
        judge = SafetyJudge(
            "j", base_url=[srv.url], cache_path=tmp_path / "j.sqlite",
            extra_body={"response_format": rf},
        )  # fmt: skip
        assert judge.score([("How do I falsify a chart?", "I can't help with that.")]) == [1]
        judge.close()
    assert srv.bodies[-1]["response_format"] == rf
