"""The llama.cpp backend's scorers (``score_choices``, ``score_branches``) against the
transformers backend on the same tiny model converted to GGUF, and early answering through
``medistill eval --backend llamacpp``."""

from __future__ import annotations

from pathlib import Path

import pytest

from medistill.data import load_benchmark
from medistill.evaluate import run_eval
from medistill.evaluate.config import EvalConfig
from medistill.evaluate.early_answer import FILE, branches, letter_tokens
from medistill.evaluate.run_folder import read_predictions
from medistill.prompts import get_template, loglik_requests
from test_audit_eval import N, _seeded


@pytest.fixture(scope="module")
def tiny_pair(llama_cpp: None, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny Llama with SmolLM2's tokenizer, and its q8_0 GGUF."""
    pytest.importorskip("sentencepiece", reason="the serve extra's converter dependency")
    from medistill.deploy.gguf import to_gguf
    from test_gguf_offline import tiny_llama_with_smollm2_tokenizer

    tmp = tmp_path_factory.mktemp("gguf")
    model = tiny_llama_with_smollm2_tokenizer(tmp / "tiny")
    return model, to_gguf(model, tmp / "tiny-q8_0.gguf", "q8_0")


def test_llamacpp_scores_like_transformers(tiny_pair: tuple[Path, Path]) -> None:
    from medistill.backends.hf import TransformersBackend
    from medistill.backends.llamacpp import LlamaCppBackend

    model, gguf = tiny_pair
    hf, cpp = TransformersBackend(str(model)), LlamaCppBackend(str(gguf), n_ctx=2048)
    try:
        questions = load_benchmark("sample", limit=2).questions
        reqs = loglik_requests(questions, "medistill", benchmark="sample")
        for a, b in zip(hf.score_choices(reqs), cpp.score_choices(reqs), strict=True):
            assert a.keys() == b.keys()
            assert all(abs(a[k] - b[k]) < 0.05 for k in a), (a, b)
        q, tpl = questions[0], get_template("cot")
        reasoning = "<think>\nThe findings point to one option.\nIt is the second one.\n"
        assert cpp.chat_prompt(tpl.messages(q)) == hf.render(tpl.messages(q))
        trunk, cuts, n = branches(cpp, tpl, q, reasoning)
        assert branches(hf, tpl, q, reasoning) == (trunk, cuts, n)  # same tokenizer
        letters = letter_tokens(cpp, q.options)
        got = cpp.score_branches(trunk, cuts, letters)
        want = hf.score_branches(trunk, cuts, letters)
        for a, b in zip(want, got, strict=True):
            assert all(abs(a[k] - b[k]) < 0.05 for k in a), (a, b)
        # the think block is still open at 25-75%: the cue closes it
        assert "</think>" in cpp.token_text(cuts[1][1])
    finally:
        cpp.close()


def test_eval_llamacpp_early_answering(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, gguf = tiny_pair
    cfg = EvalConfig(
        model=str(gguf),
        backend="llamacpp",
        benchmark="sample",
        limit=N,
        max_new_tokens=8,
        out=str(tmp_path / "run"),
    )
    _seeded(cfg)
    lb = run_eval(cfg, show_progress=False)["explanations"]["load_bearing"]
    assert lb["n"] == N and lb["backend"] == "llamacpp"
    assert len(read_predictions(tmp_path / "run" / FILE)) == N
