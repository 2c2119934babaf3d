"""Hugging Face model folder -> GGUF, with llama.cpp's own tools.

The converter is ``convert_hf_to_gguf.py`` from the llama.cpp that the installed
llama-cpp-python was built from (its sdist ships it: fetched once with ``pip download`` and
kept in the cache); k-quants come from llama.cpp's quantiser, called through
llama-cpp-python's ``llama_model_quantize``. No format writer of our own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from medistill.errors import MedistillError

log = logging.getLogger(__name__)

#: ``--quant`` choices: converter output types, and k-quants made from an f16 file.
CONVERTER_TYPES = ("f16", "bf16", "q8_0")
QUANTIZED = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M"}
QUANTS = (*CONVERTER_TYPES, *QUANTIZED)


def llama_cpp_version(needed_for: str = "GGUF export") -> str:
    """The installed llama-cpp-python's version; a clear error saying how to install it."""
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception as e:  # any failure means: not installed
        raise MedistillError(
            f"{needed_for} needs llama-cpp-python: pip install 'medistill[serve]' (it builds "
            "llama.cpp from source, ~6 minutes on 2 cores; see the README for CPUs that crash "
            "with 'Illegal instruction')"
        ) from e


def check_quant(quant: str) -> None:
    """Refuse a ``--quant`` that is not one of :data:`QUANTS`, naming the choices."""
    if quant not in QUANTS:
        raise MedistillError(f"unknown --quant {quant!r}; choose one of: {', '.join(QUANTS)}")


def converter_dir() -> Path:
    """The folder holding llama.cpp's ``convert_hf_to_gguf.py`` for the installed version."""
    version = llama_cpp_version()
    from medistill.models import default_cache_dir

    folder = default_cache_dir() / f"llama.cpp-{version}"
    if (folder / "convert_hf_to_gguf.py").is_file():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"llama-cpp-python=={version}",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            tmp,
            "-q",
        ]
        log.info("fetching llama.cpp's converter (llama-cpp-python %s sdist)", version)
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise MedistillError(
                f"could not fetch the llama-cpp-python {version} sdist for its converter: "
                f"{done.stderr.strip()[-300:]}"
            )
        prefix = f"{sdists[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        keep = ("convert_hf_to_gguf.py", "gguf-py/", "conversion/")
        with tarfile.open(sdists[0]) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(prefix) and m.name[len(prefix) :].startswith(keep)
            ]
            for m in members:
                m.name = m.name[len(prefix) :]
            staging = folder.with_suffix(".tmp")
            tar.extractall(staging, members=members, filter="data")
        staging.rename(folder)
    return folder


def to_gguf(model_dir: str | Path, out_file: str | Path, quant: str = "q8_0") -> Path:
    """Convert a model folder (safetensors) to one GGUF file of type ``quant``."""
    check_quant(quant)
    model_dir, out_file = Path(model_dir), Path(out_file)
    if not (model_dir / "config.json").is_file():
        raise MedistillError(f"{model_dir}: not a model folder (no config.json)")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    script = converter_dir() / "convert_hf_to_gguf.py"
    outtype = quant if quant in CONVERTER_TYPES else "f16"
    first = out_file if quant in CONVERTER_TYPES else out_file.with_suffix(".f16.gguf")
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(first)]
    cmd += ["--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MedistillError(
            f"llama.cpp's converter failed on {model_dir}: {done.stderr.strip()[-800:]}"
        )
    if quant in QUANTIZED:
        _quantize(first, out_file, QUANTIZED[quant])
        first.unlink()
    return out_file


def _quantize(src: Path, dst: Path, ftype: str) -> None:
    """llama.cpp's quantiser (``llama-quantize``) through llama-cpp-python's binding."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise MedistillError(f"llama.cpp could not quantise {src} to {ftype} (code {rc})")
