"""Budget control (m1 / s1): a thinking budget after which the model is made to answer, and
a minimum under which its stop becomes "Wait"; on the transformers backend (the tiny model)
and over HTTP (a real local server that continues the final assistant turn)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medistill.errors import MedistillError
from medistill.evaluate import EvalConfig, run_eval

from chat_server import ChatServer


def test_a_thinking_budget_forces_the_answer_on_the_tiny_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = EvalConfig(
        model=str(tiny_model_dir), benchmark="sample", out=str(tmp_path / "run"), limit=4,
        max_new_tokens=48, thinking_budget=6, batch_size=4,
    )  # fmt: skip
    m = run_eval(cfg, show_progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run/predictions.jsonl").open()]
    forced = [r for r in rows if r["forced_answer"]]
    assert forced and m["budget"]["forced_answer_share"] == len(forced) / 4
    for r in forced:
        assert "The answer is " in r["response"] and r["output_tokens"] <= 6 + 24


def _continuing(messages: list[dict]) -> str:
    """A model that stops at once; asked to go on, it thinks a little, then answers."""
    last = messages[-1]
    if last["role"] == "assistant":
        if last["content"].endswith("Wait,"):
            return " the ferritin matters. The answer is B."
        return "B."
    return "Hmm."


def test_a_minimum_makes_a_short_stop_wait_over_http(tmp_path: Path) -> None:
    with ChatServer(_continuing) as srv:
        cfg = EvalConfig(
            model="served", backend="openai", base_url=[srv.url], benchmark="sample",
            out=str(tmp_path / "run"), limit=3, max_new_tokens=64, min_thinking_tokens=20,
        )  # fmt: skip
        m = run_eval(cfg, show_progress=False)
        continued = [b for b in srv.bodies if b["messages"][-1]["role"] == "assistant"]
    assert continued and all(b["continue_final_message"] for b in continued)
    assert all(not b.get("add_generation_prompt", True) for b in continued)
    rows = [json.loads(x) for x in (tmp_path / "run/predictions.jsonl").open()]
    assert all(r["waits"] >= 1 and "Wait," in r["response"] for r in rows)
    assert m["budget"]["waited_share"] == 1.0
    assert all(r["extracted"] == "B" for r in rows)


def test_budget_control_is_refused_where_the_backend_cannot_continue(tmp_path: Path) -> None:
    cfg = EvalConfig(
        model="m.gguf", backend="llamacpp", benchmark="sample", out=str(tmp_path / "r"),
        thinking_budget=100,
    )  # fmt: skip
    with pytest.raises(MedistillError, match="the llamacpp backend cannot"):
        run_eval(cfg, show_progress=False)
