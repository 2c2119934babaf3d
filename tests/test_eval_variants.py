"""--permute-options K and --samples N --vote majority: each question asked several ways,
on the HTTP backend (a real local server) and on the transformers backend (the tiny model),
resumable, with per-order accuracy, consistency across orders and the vote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medistill.data import load_benchmark
from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval
from medistill.evaluate.variants import _vote, aggregate, shifted, shifts

from chat_server import ChatServer

QS = load_benchmark("sample").questions
BY_TEXT = {q.question.strip(): q for q in QS}


def _question(messages: list[dict]):
    return next(q for t, q in BY_TEXT.items() if messages[-1]["content"].startswith(t))


def _gold_text(messages: list[dict]) -> str:
    q = _question(messages)
    return q.options[q.gold]


def _by_content(messages: list[dict]) -> str:
    """Answers by content: finds the gold option's text wherever it is shown."""
    user = messages[-1]["content"]
    line = next(x for x in user.splitlines() if x[2:].strip() == _gold_text(messages).strip())
    return f"The answer is {line[0]}."


def _by_position(messages: list[dict]) -> str:
    return "The answer is A."


def _cfg(tmp: Path, url: str, **kw) -> EvalConfig:
    return EvalConfig(
        model="served", backend="openai", base_url=[url], benchmark="sample",
        out=str(tmp), limit=12, max_new_tokens=16, **kw,
    )  # fmt: skip


def test_shifts_are_cyclic_seeded_and_move_the_gold() -> None:
    q = QS[0]
    assert shifts(4, 1, 0) == [0] and len(set(shifts(4, 4, 0))) == 4
    assert shifts(4, 3, 0) == shifts(4, 3, 0) and shifts(4, 3, 0)[0] == 0
    s = shifted(q, 1)
    texts = list(q.options.values())
    assert list(s.options.values()) == [*texts[1:], texts[0]]
    assert s.options[s.gold] == q.options[q.gold]


def test_permuted_orders_tell_content_from_position(tmp_path: Path) -> None:
    with ChatServer(_by_content) as srv:
        m = run_eval(_cfg(tmp_path / "content", srv.url, permute_options=4), show_progress=False)
    p = m["variants"]["permutation"]
    assert p["orders"] == [0, 1, 2, 3] and p["questions"] == 12
    assert p["correct_under_every_order"] == 1.0 and p["chosen_text_changes"] == 0.0
    assert m["n"] == 48 and m["accuracy"]["lenient"]["value"] == 1.0
    assert m["accuracy_published"]["n"] == 48  # every order's answer read by the published rule
    with ChatServer(_by_position) as srv:
        m = run_eval(_cfg(tmp_path / "pos", srv.url, permute_options=4), show_progress=False)
        asked = srv.stats["requests"]
        again = run_eval(_cfg(tmp_path / "pos", srv.url, permute_options=4), show_progress=False)
        assert srv.stats["requests"] == asked  # resumed: nothing asked twice
    p = m["variants"]["permutation"]
    assert p["chosen_text_changes"] == 1.0 and p["correct_under_every_order"] == 0.0
    assert abs(sum(p["accuracy_by_order"].values()) / 4 - m["accuracy"]["lenient"]["value"]) < 1e-9
    assert again["variants"] == m["variants"]
    rows = [json.loads(x) for x in (tmp_path / "pos/predictions.jsonl").open()]
    assert len(rows) == 48 and {r["shift"] for r in rows} == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("answers", "winner"),
    [
        (["x", "y", "x"], "x"),
        (["y", "x", "x", "y"], "y"),  # a tie: the earliest sample's answer
        ([None, None, "x"], "x"),  # no answer only when no sample answered
        ([None, None], None),
    ],
)
def test_the_vote_and_its_tie_rule(answers: list, winner) -> None:
    assert _vote(answers) == winner


def test_samples_vote_on_the_tiny_model_and_sum_their_tokens(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = EvalConfig(
        model=str(tiny_model_dir), benchmark="sample", out=str(tmp_path / "run"), limit=4,
        max_new_tokens=8, temperature=0.9, samples=3, batch_size=4,
    )  # fmt: skip
    m = run_eval(cfg, show_progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run/predictions.jsonl").open()]
    assert len(rows) == 12 and sorted({r["sample"] for r in rows}) == [0, 1, 2]
    assert m["n"] == 4 and m["variants"]["vote"]["samples"] == 3
    assert m["accuracy_published"] is None  # the published rule reads one response, not a vote
    voted, _ = aggregate(rows)
    for q in voted:
        mine = [r for r in rows if r["base_id"] == q["base_id"]]
        assert q["output_tokens"] == sum(r["output_tokens"] for r in mine)
    with pytest.raises(MedistillError, match="greedy decoding"):
        run_eval(
            EvalConfig(model=str(tiny_model_dir), benchmark="sample", out=str(tmp_path / "g"),
                       samples=3),
            show_progress=False,
        )  # fmt: skip
