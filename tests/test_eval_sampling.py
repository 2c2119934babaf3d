"""Thinking models evaluated as their makers specify: where the recipe sets no sampling, the
model's own ``generation_config.json`` decides (Qwen3 thinking: temperature 0.6, top_p 0.95,
top_k 20), over a seeded number of samples whose mean and spread are reported; an explicit
recipe value always wins; what was used and where it came from is in ``config.json``,
``metrics.json`` and the report. And one loop rule flags a loop on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medistill.backends.base import Generation
from medistill.backends.loops import TEXT_RULE, TOKEN_RULE, mark_loop
from medistill.evaluate import EvalConfig, run_eval
from medistill.evaluate.sampling import generation_config, resolve

QWEN3_THINKING = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20}


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory) -> Path:
    """A tiny model whose generation_config.json samples as Qwen3's does."""
    from medistill.tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("thinking") / "model", seed=0)
    file = folder / "generation_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), **QWEN3_THINKING}))
    generation_config.cache_clear()
    return folder


def _cfg(model: Path, out: Path, **kw) -> EvalConfig:
    return EvalConfig(
        model=str(model), backend="transformers", benchmark="sample", limit=3,
        max_new_tokens=4, out=str(out), sampled_samples=2, **kw,
    )  # fmt: skip


def test_a_thinking_model_is_sampled_as_its_generation_config_says(
    thinking_model: Path, tmp_path: Path
) -> None:
    """main: temperature 0 (greedy) whatever the model asks for, and nothing recorded."""
    out = tmp_path / "run"
    m = run_eval(_cfg(thinking_model, out), show_progress=False)
    used = json.loads((out / "config.json").read_text())["sampling_used"]
    assert {k: used[k] for k in ("temperature", "top_p", "top_k")} == {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
    }
    assert used["source"]["temperature"] == used["source"]["top_k"] == "generation_config.json"
    assert used["generation_config"] == str(thinking_model / "generation_config.json")
    assert (used["samples"], used["vote"], used["source"]["samples"]) == (
        2,
        "mean",
        "sampled_samples",
    )
    assert m["sampling"] == used  # metrics.json says it too
    ident = json.loads((out / "config.json").read_text())["identity"]["sampling"]
    assert (ident["temperature"], ident["top_k"]) == (0.6, 20)
    # two seeded samples of three questions: the headline is their mean, with its spread
    spread = m["samples_accuracy"]
    assert len(spread["per_sample"]) == 2 and m["n"] == 3 and m["n_answers"] == 6
    assert spread["mean"] == pytest.approx(sum(spread["per_sample"]) / 2)
    assert m["accuracy"]["lenient"]["value"] == pytest.approx(spread["mean"])
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["sample"] for r in rows) == [0, 0, 0, 1, 1, 1]
    again = run_eval(_cfg(thinking_model, out), show_progress=False)  # resumes: same settings
    assert again["samples_accuracy"] == spread


def test_an_explicit_temperature_0_wins(thinking_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    m = run_eval(_cfg(thinking_model, out, temperature=0.0), show_progress=False)
    used = m["sampling"]
    assert used["temperature"] == 0.0 and used["source"]["temperature"] == "recipe"
    assert used["samples"] == 1 and "samples_accuracy" not in m and m["n"] == 3
    assert (
        json.loads((out / "config.json").read_text())["identity"]["sampling"]["temperature"] == 0.0
    )


def test_explicit_samples_and_vote_win(thinking_model: Path) -> None:
    cfg, used = resolve(_cfg(thinking_model, Path("x"), samples=3, vote="majority", top_k=5))
    assert (cfg.temperature, cfg.top_k, cfg.samples, cfg.vote) == (0.6, 5, 3, "majority")
    assert used["source"]["top_k"] == used["source"]["samples"] == "recipe"


def test_a_model_that_does_not_sample_is_decoded_greedily(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg, used = resolve(_cfg(tiny_model_dir, tmp_path))
    assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.samples) == (0.0, 1.0, None, 1)
    assert used["source"]["temperature"] == "default (greedy)"
    assert used["generation_config"].endswith("generation_config.json")


def test_an_unreachable_hub_says_which_defaults_were_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    generation_config.cache_clear()
    try:
        cfg, used = resolve(EvalConfig(model="medistill-test/no-such-model"))
    finally:
        generation_config.cache_clear()
    assert cfg.temperature == 0.0 and used["source"]["temperature"] == "default (greedy)"
    assert (
        "medistill-test/no-such-model/generation_config.json not read"
        in (used["generation_config"])
    )


def test_the_report_states_each_models_decoding(thinking_model: Path, tmp_path: Path) -> None:
    from medistill.report import build_report

    sampled, greedy = tmp_path / "sampled", tmp_path / "greedy"
    run_eval(_cfg(thinking_model, sampled, label="thinking"), show_progress=False)
    run_eval(_cfg(thinking_model, greedy, label="greedy", temperature=0), show_progress=False)
    md = build_report([sampled, greedy], tmp_path / "report").markdown
    lines = [x for x in md.splitlines() if x.startswith("- thinking:") or x.startswith("- greedy:")]
    assert len(lines) == 2, md
    assert "temperature 0.6, top_p 0.95, top_k 20 (generation_config.json)" in lines[0]
    assert "mean of 2 samples" in lines[0] and "SD over samples" in lines[0]
    assert "greedy (temperature 0: recipe)" in lines[1]
    assert "Decoding" in (tmp_path / "report" / "report.html").read_text()


# ----------------------------------------------------------------------------- loops


def test_one_loop_rule_on_tokens_and_on_text() -> None:
    looped = Generation(text="Wait, let me check. " * 60, finish_reason="length")
    assert mark_loop(looped).finish_reason == "repetition"  # text only (HTTP, llama.cpp)
    assert mark_loop(looped, [1, 2, 3] * 40).finish_reason == "repetition"  # token ids
    assert mark_loop(looped, list(range(300))).finish_reason == "length"  # ids say no loop
    varied = Generation(text=" ".join(str(i) for i in range(400)), finish_reason="length")
    assert mark_loop(varied).finish_reason == "length"
    ended = Generation(text="Wait. " * 60 + "The answer is A.", finish_reason="stop")
    assert mark_loop(ended).finish_reason == "stop"  # ended on its own: never relabelled
    assert TEXT_RULE.min_span == 4 * TOKEN_RULE.min_span


def test_an_http_loop_is_flagged_as_cut_off(tmp_path: Path) -> None:
    """A server's answer that loops to the budget is a ``repetition`` row (main: ``length``
    on HTTP, ``repetition`` only where transformers stopped it)."""
    from chat_server import ChatServer

    with ChatServer(lambda messages: "I think so. " * 240, truncate_every=1) as srv:
        cfg = EvalConfig(
            model="served", backend="openai", base_url=[srv.url], benchmark="sample",
            limit=2, out=str(tmp_path / "r"), temperature=0,
        )  # fmt: skip
        m = run_eval(cfg, show_progress=False)
    assert m["finish_reasons"] == {"repetition": 2} and m["repetition_rate"] == 1.0


def test_top_k_is_applied_by_local_decoding(tiny_model_dir: Path) -> None:
    """top_k 1 at temperature 1 is greedy decoding: the cut is really made."""
    from transformers import AutoModelForCausalLM

    from medistill.backends.hf_decode import stream_decode

    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts = [[5, 6, 7, 8], [9, 10, 11]]

    def run(**kw) -> list[list[int]]:
        out = stream_decode(lm, prompts, slots=2, max_new_tokens=12, eos_ids=[], **kw)
        return [f.tokens for f in sorted(out, key=lambda f: f.index)]

    assert run(temperature=1.0, top_k=1, seed=3) == run(temperature=0.0)
    assert run(temperature=5.0, seed=3) != run(temperature=0.0)
