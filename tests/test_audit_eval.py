"""The explanation audit through the real ``medistill eval``: consistency and early answering
in metrics.json with a real tiny model, resume of ``early_answering.jsonl``, the recorded skip
for a backend without log-probabilities, and the step judge against a real local HTTP server."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medistill.backends import Generation
from medistill.data import load_benchmark
from medistill.errors import DataError
from medistill.evaluate import run_eval
from medistill.evaluate.budget import answer_cue
from medistill.evaluate.config import EvalConfig
from medistill.evaluate.early_answer import FILE, FRACTIONS
from medistill.evaluate.metrics import validate_metrics
from medistill.evaluate.run import generation_row
from medistill.evaluate.run_folder import RunFolder, read_predictions
from medistill.prompts import get_template

from chat_server import ChatServer

N = 4


def _responses(questions) -> dict[str, str]:
    """What a model wrote: three answers whose reasoning concludes the answer line's option,
    one whose reasoning argues for another."""
    out = {}
    for i, q in enumerate(questions):
        gold = q.gold
        if i == 1:
            other = next(k for k in q.options if k != gold)
            out[q.id] = (
                f"The findings are typical of {q.options[other]}, so option {other} is correct."
                "\n\n"
                f"Answer: {gold}"
            )
        else:
            out[q.id] = (
                f"{q.meta.get('explanation', '')[:160]}\nTherefore, the answer is "
                f"{q.options[gold]}.\n\nThe answer is {gold}."
            )
    return out


def _seeded(cfg: EvalConfig) -> dict[str, str]:
    """A run folder whose answers are in (as a killed run leaves them): the rows the real row
    builder makes from these responses. ``run_eval`` then resumes with the audit."""
    questions = load_benchmark(cfg.benchmark, limit=cfg.limit).questions
    responses = _responses(questions)
    run = RunFolder.prepare(cfg, overwrite=False)
    tpl = get_template(cfg.template)
    with open(run.path / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for q in questions:
            g = Generation(text=responses[q.id], finish_reason="stop", output_tokens=40)
            fh.write(json.dumps(generation_row(q, tpl.messages(q), g)) + "\n")
    return responses


def _cfg(model: Path, out: Path, **kw) -> EvalConfig:
    return EvalConfig(
        model=str(model), benchmark="sample", limit=N, max_new_tokens=8, out=str(out), **kw
    )


def test_eval_writes_consistency_and_early_answering(tiny_model_dir: Path, tmp_path: Path):
    cfg = _cfg(tiny_model_dir, tmp_path / "run")
    _seeded(cfg)
    m = run_eval(cfg, show_progress=False)
    ex = m["explanations"]
    cons = ex["consistency"]
    assert cons["n"] == N and cons["argues_other"] == 1 / N and cons["consistent"] == 3 / N
    assert cons["inconsistent"] == 1 / N
    lo, hi = cons["inconsistent_ci"]
    assert 0 < lo < 1 / N < hi < 1
    rows = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert [r["reasoning_verdict"] for r in rows].count("argues_other") == 1
    lb = ex["load_bearing"]
    assert lb["n"] == N and lb["fractions"] == list(FRACTIONS) and lb["backend"] == "transformers"
    assert len(lb["match_final"]) == len(lb["mean_prob_final"]) == 5
    assert all(0 < p < 1 for p in lb["mean_prob_final"])
    assert "load_bearing_skipped" not in ex
    early = read_predictions(tmp_path / "run" / FILE)
    assert len(early) == N and all(len(r["logprobs"]) == 5 for r in early)
    assert lb["fixed_before_reasoning"] == sum(r["argmax"][0] == r["final"] for r in early) / N

    # The 0% point is the prompt, then the template's answer cue: the letters read there by
    # one plain forward pass (no cache) agree with the branch read off the cached trunk.
    import torch

    from medistill.backends.hf import TransformersBackend

    q = load_benchmark("sample", limit=1).questions[0]
    backend = TransformersBackend(str(tiny_model_dir))
    prompt = backend.token_ids(backend.render(get_template("cot").messages(q)))
    ids = prompt + backend.token_ids(answer_cue("").rstrip())
    with torch.inference_mode():
        logits = backend.lm(input_ids=torch.tensor([ids])).logits[0, -1]
    lp = torch.log_softmax(logits.float(), -1)
    letters = {k: backend.token_ids(f" {k}")[0] for k in q.options}
    norm = sum(math.exp(lp[t]) for t in letters.values())
    first = next(r for r in early if r["id"] == q.id)
    want = math.exp(lp[letters[first["final"]]]) / norm
    assert first["prob_final"][0] == pytest.approx(want, abs=1e-4)
    # and the 100% point: the whole reasoning before the cue
    reasoning = _responses([q])[q.id].rsplit("\n\nThe answer is", 1)[0] + "\n\n"
    full = prompt + backend.token_ids(reasoning) + backend.token_ids(answer_cue(reasoning).rstrip())
    with torch.inference_mode():
        lp = torch.log_softmax(backend.lm(input_ids=torch.tensor([full])).logits[0, -1].float(), -1)
    norm = sum(math.exp(lp[t]) for t in letters.values())
    want = math.exp(lp[letters[first["final"]]]) / norm
    assert first["prob_final"][-1] == pytest.approx(want, abs=1e-4)
    assert first["n_tokens"] == len(backend.token_ids(reasoning))


def test_early_answering_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model_dir, tmp_path / "run")
    _seeded(cfg)
    first = run_eval(cfg, show_progress=False)["explanations"]["load_bearing"]
    path = tmp_path / "run" / FILE
    lines = path.read_text().splitlines()
    # killed mid-write after two answers: two rows and a torn third
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])
    again = run_eval(cfg, show_progress=False)["explanations"]["load_bearing"]
    assert again == first
    rows = read_predictions(path)
    assert len(rows) == N and [json.dumps(r) for r in rows[:2]] == lines[:2]
    before = path.read_bytes()
    run_eval(cfg, show_progress=False)  # all done: nothing scored again
    assert path.read_bytes() == before


def test_audit_off_is_recorded(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Audit off: no early answering, and why; consistency still, also for rows written
    before the audit existed (no verdict in the row: read from its response)."""
    cfg = _cfg(tiny_model_dir, tmp_path / "run", audit=False)
    _seeded(cfg)
    preds = tmp_path / "run" / "predictions.jsonl"
    old = [
        {k: v for k, v in r.items() if k != "reasoning_verdict"} for r in read_predictions(preds)
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in old))
    ex = run_eval(cfg, show_progress=False)["explanations"]
    assert ex["load_bearing"] is None and "audit is off" in ex["load_bearing_skipped"]
    assert ex["consistency"]["n"] == N and ex["consistency"]["argues_other"] == 1 / N
    assert not (tmp_path / "run" / FILE).exists()
    # metrics.json's one schema checks the block: a share outside [0, 1] names its field
    path = tmp_path / "run" / "metrics.json"
    bad = json.loads(path.read_text())
    validate_metrics(bad, path)
    bad["explanations"]["consistency"]["inconsistent"] = 1.5
    with pytest.raises(DataError, match=r"explanations\.consistency\.inconsistent"):
        validate_metrics(bad, path)


def test_loglik_run_has_no_explanations(tiny_model_dir: Path, tmp_path: Path) -> None:
    m = run_eval(_cfg(tiny_model_dir, tmp_path / "ll", mode="loglik"), show_progress=False)
    assert "explanations" not in m


STEPS = (
    "1. The pain is positional and eases when leaning forward.\n"
    "2. The ECG shows diffuse ST elevation everywhere.\n"
    "3. Garbage step that the judge cannot read.\n\n"
    "So the pericardium is inflamed.\n\nThe answer is B."
)


def _judge(messages: list[dict]) -> str:
    step = messages[-1]["content"].split("## Step of the student's reasoning")[1]
    if "positional" in step:
        return "The step is right.\nCORRECT"
    if "ECG" in step:
        return "WRONG"
    if "pericardium" in step:
        return "CANT_TELL"
    return "I am not sure what to say."


def test_http_backend_skips_load_bearing_and_step_judge(tmp_path: Path) -> None:
    """An OpenAI-compatible model: consistency, load-bearing skipped with its reason, and step
    errors from a real judge over HTTP (cached; failed judgements counted, asked again)."""
    with ChatServer(lambda msgs: STEPS) as model, ChatServer(_judge) as judge:
        cfg = EvalConfig(
            model="served",
            backend="openai",
            base_url=[model.url],
            benchmark="sample",
            limit=3,
            out=str(tmp_path / "run"),
            step_judge=True,
            judge_model="judge-1",
            judge_base_url=[judge.url],
            judge_options={"timeout_s": 5.0, "max_retries": 0, "concurrency": 4},
        )
        m = run_eval(cfg, show_progress=False)
        ex = m["explanations"]
        assert ex["load_bearing"] is None
        assert (
            "backend openai gives no option-letter log-probabilities"
            in (ex["load_bearing_skipped"])
        )
        assert ex["consistency"]["n"] == 3
        steps = ex["step_errors"]
        # per answer: 4 steps, one unreadable verdict (failed), one wrong, one can't tell
        assert steps["n_answers"] == 3 and steps["n_steps"] == 9 and steps["failed"] == 3
        assert steps["wrong_share"] == pytest.approx(1 / 3)
        assert steps["wrong_per_answer"] == pytest.approx(1 / 3)
        assert steps["cant_tell_share"] == pytest.approx(1 / 3)
        assert steps["judge"] == "judge-1" and steps["weak_judge"] is None
        asked = judge.stats["requests"]
        assert asked == 12
        again = run_eval(cfg, show_progress=False)["explanations"]["step_errors"]
        assert judge.stats["requests"] - asked == 3  # only the failed ones, asked again
        assert again == steps
