"""Continuous batching for local generation: same answers as ``model.generate``, finished
sequences leave at once, degenerate loops end early with their own finish reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medistill.backends import SamplingParams
from medistill.backends.hf_decode import LoopRule
from medistill.data import load_benchmark
from medistill.evaluate import EvalConfig, run_eval
from medistill.prompts import get_template

QUESTIONS = load_benchmark("sample").questions
TPL = get_template("cot")


@pytest.mark.parametrize(
    ("tokens", "period"),
    [
        ([7] * 96, 1),  # one token over and over
        ([1, 2, 3] * 40, 3),  # "The answer is A. The answer is A. ..."
        (list(range(50)) + [5, 6, 7, 8, 9, 10] * 17, 6),  # a loop after varied text
        (list(range(60)) * 4, 60),  # a paragraph repeated four times
        ([7] * 95, None),  # too short to call
        (list(range(300)), None),  # varied text
        (list(range(60)) * 3, None),  # a paragraph three times: could be a quoted list
        ([1, 2, 3] * 30 + [9], None),  # the loop broke: it ended on its own
        ([4, 4, 9] + [4] * 20 + list(range(100, 200)), None),  # a run earlier, then text
    ],
)
def test_loop_rule(tokens: list[int], period: int | None) -> None:
    assert LoopRule().period(tokens) == period


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path):
    from medistill.backends.hf import TransformersBackend

    return TransformersBackend(str(tiny_model_dir), batch_size=3)


@pytest.fixture(scope="module")
def varied(tiny_model_dir: Path, tmp_path_factory):
    """A tiny random Llama initialised wide enough that its tokens depend on the prompt
    (the default tiny model repeats one token whatever it reads)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from medistill.backends.hf import TransformersBackend

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.3,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    path = tmp_path_factory.mktemp("varied")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return TransformersBackend(str(path), batch_size=3)


def _eos_that_stops_some_rows_early(backend, msgs) -> list[int]:
    """Tokens the model writes mid-answer in some rows, made stop tokens: rows end at
    different steps, so slots free up and refill at different times."""
    from medistill.backends.hf_decode import stream_decode

    prompts = [
        backend.tokenizer(backend.render(m), add_special_tokens=False)["input_ids"] for m in msgs
    ]
    ids = {
        f.index: f.tokens
        for f in stream_decode(
            backend.lm, prompts, slots=8, max_new_tokens=20, eos_ids=[], loop_rule=None
        )
    }
    return sorted({ids[0][2], ids[1][7], ids[4][11]} - set(ids[2]) - set(ids[5]))


def test_same_tokens_as_generate_with_exit_and_refill(varied) -> None:
    backend = varied
    msgs = [TPL.messages(q) for q in QUESTIONS[:8]]
    saved = backend.eos_ids
    backend.eos_ids = _eos_that_stops_some_rows_early(backend, msgs)
    assert backend.eos_ids
    try:
        params = SamplingParams(max_new_tokens=20)
        plain = []
        for i in range(0, len(msgs), 3):
            plain += backend.generate_plain(msgs[i : i + 3], params)
        backend.stop_loops = False
        order: list[int] = []
        streamed: dict[int, object] = {}

        def keep(i, g):
            order.append(i)
            streamed[i] = g

        backend.generate_each(msgs, params, keep)
    finally:
        backend.eos_ids, backend.stop_loops = saved, True
    assert sorted(order) == list(range(8))
    reasons = {g.finish_reason for g in plain}
    assert reasons == {"stop", "length"}  # both kinds of ending are exercised
    for i, want in enumerate(plain):
        got = streamed[i]
        assert (got.text, got.finish_reason, got.output_tokens, got.prompt_tokens) == (
            want.text,
            want.finish_reason,
            want.output_tokens,
            want.prompt_tokens,
        )
    # A row that stopped early was handed back before rows that ran to the budget.
    first_length = min(order.index(i) for i, g in enumerate(plain) if g.truncated)
    assert any(order.index(i) < first_length for i, g in enumerate(plain) if not g.truncated)


def test_a_degenerate_loop_ends_early_as_repetition(backend) -> None:
    """The tiny random model repeats one token: the loop stop ends it at 96 tokens, and the
    text is the start of what ``generate`` writes to the budget."""
    msgs = [TPL.messages(q) for q in QUESTIONS[:4]]
    params = SamplingParams(max_new_tokens=160)
    plain = backend.generate_plain(msgs, params)
    looped = backend.generate(msgs, params)
    for want, got in zip(plain, looped, strict=True):
        assert want.finish_reason == "length"
        assert got.finish_reason == "repetition" and got.output_tokens < 160
        assert want.text.startswith(got.text)


def test_eval_records_repetition_as_cut_off(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    m = run_eval(
        EvalConfig(model=str(tiny_model_dir), limit=4, max_new_tokens=160, out=str(out)),
        show_progress=False,
    )
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert {r["finish_reason"] for r in rows} == {"repetition"}
    assert m["finish_reasons"] == {"repetition": 4}
    assert m["truncation_rate"] == 1.0 and m["repetition_rate"] == 1.0
    stored = json.loads((out / "config.json").read_text())
    assert stored["identity"]["request"] == {"stop_loops": True}


def test_sliding_window_model_falls_back_to_generate(tiny_model_dir: Path, tmp_path: Path):
    """A cache that cannot be re-batched (sliding window) uses ``model.generate``."""
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    from medistill.backends.hf import TransformersBackend

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = MistralConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=16,
        eos_token_id=tok.eos_token_id,
    )
    path = tmp_path / "mistral"
    MistralForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    b = TransformersBackend(str(path), batch_size=2)
    msgs = [TPL.messages(q) for q in QUESTIONS[:3]]
    gens = b.generate(msgs, SamplingParams(max_new_tokens=6))
    assert b._plain_generate and len(gens) == 3
    assert [g.text for g in gens] == [g.text for g in b.generate_plain(msgs, SamplingParams(6))]
