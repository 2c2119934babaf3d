"""Prompt templates and metric math."""

from __future__ import annotations

from pathlib import Path

import pytest

from medistill.backends import make_backend
from medistill.data import Question
from medistill.errors import MedistillError
from medistill.evaluate.metrics import compute_metrics, wilson_interval
from medistill.prompts import get_template, render_chat

Q = Question(
    id="q",
    source="t",
    split="t",
    question=" Which? ",
    options={"A": "x", "B": "y", "C": "z"},
    gold="B",
)


def test_cot_template_asks_for_final_line() -> None:
    tpl = get_template(None)
    msgs = tpl.messages(Q)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"].startswith("Which?\n\nA. x\nB. y\nC. z\n\n")
    assert '"The answer is X."' in msgs[1]["content"] and "A, B or C" in msgs[1]["content"]
    assert tpl.loglik_context(Q) == "Which?\nA. x\nB. y\nC. z\nAnswer:"


def test_yaml_template(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        'system: ""\nuser: "Q: {question}\\n{options}\\nLetter ({letters})?"\n'
        'option_format: "({letter}) {text}"\n'
    )
    tpl = get_template(str(path))
    assert tpl.name == "mine"
    assert tpl.messages(Q) == [
        {"role": "user", "content": "Q: Which?\n(A) x\n(B) y\n(C) z\nLetter (A, B, C)?"}
    ]
    path.write_text("user: no placeholders\n")
    with pytest.raises(MedistillError, match="must contain"):
        get_template(str(path))
    path.write_text("usr: typo\n")
    with pytest.raises(MedistillError, match="unknown template field"):
        get_template(str(path))
    with pytest.raises(MedistillError, match="cot, direct"):
        get_template("nope")


def test_chat_template_applied(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = render_chat(tok, get_template("cot").messages(Q))
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    tok.chat_template = None
    assert render_chat(tok, [{"role": "user", "content": "hi"}]) == "User: hi\n\nAssistant:"


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [(8, 50, 0.0834, 0.2852), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (0, 0, 0.0, 0.0)],
)
def test_wilson(k, n, lo, hi) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-3)


def test_compute_metrics() -> None:
    rows = [
        {
            "id": "1",
            "gold": "A",
            "extracted": "A",
            "extracted_strict": "A",
            "rule": "answer_is",
            "finish_reason": "stop",
            "output_tokens": 10,
            "latency_s": 1.0,
            "subject": "s1",
        },
        {
            "id": "2",
            "gold": "B",
            "extracted": "B",
            "extracted_strict": None,
            "rule": "last_line",
            "finish_reason": "stop",
            "output_tokens": 30,
            "latency_s": 1.0,
            "subject": "s1",
        },
        {
            "id": "3",
            "gold": "C",
            "extracted": None,
            "extracted_strict": None,
            "rule": "none",
            "finish_reason": "length",
            "output_tokens": 50,
            "latency_s": 2.0,
            "subject": "s2",
        },
        {
            "id": "4",
            "gold": None,
            "extracted": "D",
            "extracted_strict": "D",
            "rule": "answer_is",
            "finish_reason": "stop",
            "output_tokens": 10,
            "latency_s": 1.0,
            "subject": "s2",
        },
    ]
    m = compute_metrics(rows, chance=0.25, wall_s=2.5)
    assert m["n"] == 3 and m["n_no_gold"] == 1
    assert m["accuracy"]["lenient"]["value"] == pytest.approx(2 / 3)
    assert m["accuracy"]["strict"]["value"] == pytest.approx(1 / 3)
    assert m["no_answer_rate"] == {"strict": pytest.approx(2 / 3), "lenient": pytest.approx(1 / 3)}
    assert m["truncation_rate"] == 0.25
    assert m["output_tokens"]["mean"] == 25 and m["output_tokens"]["median"] == 20
    assert m["throughput"]["answers_per_s"] == pytest.approx(4 / 2.5)
    assert m["by_subject"]["s1"]["accuracy"] == 1.0 and m["by_subject"]["s2"]["n"] == 1
    assert m["rules"] == {"answer_is": 2, "last_line": 1, "none": 1}


def test_vllm_backend_is_guarded() -> None:
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(MedistillError, match="pip install 'medistill\\[vllm\\]'"):
            make_backend("vllm", "some/model")
    else:  # pragma: no cover - only on GPU machines with vLLM installed
        pytest.skip("vLLM is installed here")
