"""The llama.cpp backend decoding several conversations at once (continuous batching on one
context, :mod:`medistill.backends.llamacpp_batch`) against llama-cpp-python's own
``create_chat_completion``, one conversation at a time, on a tiny GGUF whose answers vary with
the prompt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medistill.backends.base import FINISH_ERROR, FINISH_LENGTH, SamplingParams
from medistill.backends.config import BackendConfig
from medistill.errors import MedistillError


@pytest.fixture(scope="module")
def gguf(llama_cpp: None, tmp_path_factory) -> Path:
    """A 2-layer Llama with SmolLM2's tokenizer and chat template, weights drawn wide enough
    (std 0.3) that its greedy answers differ from prompt to prompt, as q8_0 GGUF."""
    pytest.importorskip("sentencepiece", reason="the serve extra's converter dependency")
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from medistill.deploy.gguf import to_gguf
    from medistill.models import resolve_model
    from test_gguf_offline import tiny_llama_with_smollm2_tokenizer

    tmp = tmp_path_factory.mktemp("gguf-batch")
    model = tiny_llama_with_smollm2_tokenizer(tmp / "tiny")  # skips without SmolLM2
    config = AutoConfig.from_pretrained(model)
    config.initializer_range = 0.3
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(model)
    torch.random.set_rng_state(state)
    source = Path(resolve_model("smollm2"))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy2(source / name, model / name)
    return to_gguf(model, tmp / "tiny-q8_0.gguf", "q8_0")


def _conversations(n: int) -> list[list[dict[str, str]]]:
    """``n`` questions of growing length (35 to ~35 + 40 n prompt tokens)."""
    return [[{"role": "user", "content": f"Question {i}: " + "word " * (40 * i)}] for i in range(n)]


def _one_stream(backend, messages, params: SamplingParams) -> dict:
    """llama-cpp-python's chat completion for one conversation on the backend's own model
    (one sequence), with the batched path's sampler: no penalties, no top-k, no min-p cut."""
    out = backend.llm.create_chat_completion(
        messages,
        max_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        top_k=0,
        min_p=0.0,
        repeat_penalty=1.0,
        frequency_penalty=0.0,
        presence_penalty=0.0,
    )
    choice = out["choices"][0]
    return {
        "text": choice["message"]["content"],
        "finish": choice["finish_reason"],
        "tokens": out["usage"]["completion_tokens"],
        "prompt": out["usage"]["prompt_tokens"],
    }


def _same(backend, convs, gens, params: SamplingParams) -> None:
    for messages, g in zip(convs, gens, strict=True):
        want = _one_stream(backend, messages, params)
        got = {
            "text": g.text,
            "finish": g.finish_reason,
            "tokens": g.output_tokens,
            "prompt": g.prompt_tokens,
        }
        assert got == want


def test_parallel_greedy_is_the_one_stream_answer(gguf: Path) -> None:
    """7 conversations through 3 slots, a context of 256 tokens: the long prompts' budgets end
    sooner (staggered finishes: freed slots are refilled mid-run), a 300-token prompt is an
    error row for itself alone, and every other answer is create_chat_completion's."""
    from medistill.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(str(gguf), n_ctx=256, n_parallel=3, n_threads=2)
    try:
        assert backend.preferred_batch_size() == 3
        convs = _conversations(6)
        convs.insert(2, [{"role": "user", "content": "long " * 300}])
        params = SamplingParams(max_new_tokens=48)
        done: list[int] = []
        gens: dict[int, object] = {}

        def keep(i: int, g) -> None:
            done.append(i)
            gens[i] = g

        backend.generate_each(convs, params, keep)
        assert sorted(done) == list(range(len(convs)))
        assert done[0] == 2  # the prompt that cannot fit is answered first, alone
        err = gens.pop(2)
        assert err.finish_reason == FINISH_ERROR and "exceed context window of 256" in err.error
        assert len({g.text for g in gens.values()}) == len(gens)  # answers differ
        cut = [g.output_tokens for g in gens.values()]
        assert max(cut) == 48 and min(cut) < 48  # some budgets cut by the context
        assert all(g.finish_reason == FINISH_LENGTH for g in gens.values())
        rest = [i for i in range(len(convs)) if i != 2]
        _same(backend, [convs[i] for i in rest], [gens[i] for i in rest], params)
    finally:
        backend.close()


def test_a_prompt_longer_than_one_decode_call(gguf: Path) -> None:
    """A 700-token prompt is read in chunks (512 tokens a call) while the others answer."""
    from medistill.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(str(gguf), n_ctx=1024, n_parallel=2, n_threads=2)
    try:
        convs = [*_conversations(2), [{"role": "user", "content": "long " * 700}]]
        params = SamplingParams(max_new_tokens=24)
        gens = backend.generate(convs, params)
        assert gens[2].prompt_tokens > 700
        _same(backend, convs, gens, params)
    finally:
        backend.close()


def test_sampling_is_seeded_per_conversation(gguf: Path) -> None:
    """Temperature sampling: each conversation has its own seeded sampler, so its answer is
    the one-stream answer under the same seed, whichever others share the context; another
    seed gives other answers."""
    from medistill.backends.llamacpp import LlamaCppBackend

    convs = _conversations(4)
    params = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=7)
    backend = LlamaCppBackend(str(gguf), n_ctx=512, n_parallel=4, n_threads=2)
    try:
        gens = backend.generate(convs, params)
        assert [g.text for g in backend.generate(convs[::-1], params)] == [
            g.text for g in gens[::-1]
        ]
        _same(backend, convs, gens, params)
        other = backend.generate(convs, SamplingParams(max_new_tokens=24, temperature=1.0, seed=8))
        assert [g.text for g in other] != [g.text for g in gens]
    finally:
        backend.close()


def test_n_parallel_is_a_backend_and_eval_key(gguf: Path, tmp_path: Path) -> None:
    """``n_parallel`` (and eval's ``n_threads``) reach the backend from a recipe's eval keys;
    a bad ``n_parallel`` is refused."""
    from medistill.evaluate import run_eval
    from medistill.evaluate.config import EvalConfig
    from medistill.evaluate.run_folder import make_backend, read_predictions

    cfg = EvalConfig(
        model=str(gguf),
        backend="llamacpp",
        benchmark="sample",
        limit=5,
        max_new_tokens=16,
        n_parallel=3,
        n_threads=1,
        out=str(tmp_path / "run"),
    )
    backend = make_backend(cfg)  # as run_eval builds it
    try:
        assert backend.preferred_batch_size() == 3 and backend.n_threads == 1
    finally:
        backend.close()
    metrics = run_eval(cfg, show_progress=False)
    rows = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert len(rows) == 5 and metrics["n"] == 5
    assert all(r["output_tokens"] and r["prompt_tokens"] for r in rows)
    with pytest.raises(MedistillError, match="n_parallel must be at least 1"):
        BackendConfig(model=str(gguf), backend="llamacpp", n_parallel=0)


def test_stop_strings_cut_like_create_completion(gguf: Path) -> None:
    """A stop string ends the answer where it begins (finish ``stop``), counting the tokens
    generated up to it, as llama-cpp-python's ``create_completion`` does."""
    from medistill.backends.llamacpp import LlamaCppBackend
    from medistill.backends.llamacpp_batch import ParallelDecoder

    backend = LlamaCppBackend(str(gguf), n_ctx=512, n_parallel=2, n_threads=2)
    decoder = ParallelDecoder(backend.llm, n_parallel=2, n_ctx_seq=512, n_threads=2)
    try:
        convs = _conversations(3)
        prompts = [backend.token_ids(backend.chat_prompt(m)) for m in convs]
        params = SamplingParams(max_new_tokens=32)
        full = {f.index: f for f in decoder.run(prompts, params, n_ctx=512)}
        stop = full[1].text[25:31]  # inside the second answer only
        assert stop and all(stop not in full[i].text for i in (0, 2))
        cut = {f.index: f for f in decoder.run(prompts, params, n_ctx=512, stop=[stop.encode()])}
        assert cut[1].finish_reason == "stop" and cut[1].text == full[1].text[:25]
        assert (cut[0].text, cut[2].text) == (full[0].text, full[2].text)
        for i, p in enumerate(prompts):
            want = backend.llm.create_completion(
                p, max_tokens=32, temperature=0.0, top_k=0, min_p=0.0, repeat_penalty=1.0,
                stop=[stop],
            )  # fmt: skip
            assert cut[i].text == want["choices"][0]["text"]
            assert cut[i].finish_reason == want["choices"][0]["finish_reason"]
            assert len(cut[i].tokens) == want["usage"]["completion_tokens"]
    finally:
        decoder.close()
        backend.close()
