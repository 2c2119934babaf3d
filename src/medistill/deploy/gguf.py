"""Hugging Face model folder -> GGUF, with llama.cpp's own tools.

The converter is llama.cpp's ``convert_hf_to_gguf.py`` (with its ``conversion`` package and
its ``gguf-py``) of the llama.cpp that the installed llama-cpp-python was built from. medistill
carries none of llama.cpp's source: the converter is obtained at installation, from the
llama-cpp-python sdist (``vendor/llama.cpp/``), and found at export time by that version, on
disk only (no ``pip``, no network), in the first of:

1. ``$MEDISTILL_GGUF_CONVERTER``: a folder holding ``convert_hf_to_gguf.py`` (a llama.cpp
   checkout, for instance); set but without the script is an error, not a fallback;
2. the cache, ``<cache>/llama.cpp-<version>/`` (``~/.cache/medistill`` or ``$MEDISTILL_CACHE``).

Neither there is a one-line error naming both ways to fill the cache. ``make install`` fills it
(it builds llama-cpp-python and unpacks the converter from the same sdist). After
``pip install 'medistill[serve]'``, one step while online does::

    python -m medistill.deploy.gguf fetch

(the installed version's sdist from the package index; on an air-gapped machine, copy the
sdist over and add ``--sdist llama_cpp_python-X.tar.gz``). An export then needs no network.
K-quants come from llama.cpp's quantiser, called through llama-cpp-python's
``llama_model_quantize``. No format writer of our own.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from medistill.errors import MedistillError
from medistill.flags import parse_stage
from medistill.models import default_cache_dir

log = logging.getLogger(__name__)

#: ``--quant`` choices: converter output types, and k-quants made from an f16 file.
CONVERTER_TYPES = ("f16", "bf16", "q8_0")
QUANTIZED = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M"}
QUANTS = (*CONVERTER_TYPES, *QUANTIZED)

#: The converter's script, the one file every converter folder has.
SCRIPT = "convert_hf_to_gguf.py"
#: An explicit converter folder, looked in first.
CONVERTER_ENV = "MEDISTILL_GGUF_CONVERTER"
#: The command that fills the cache (the only place medistill asks pip for the converter).
FETCH_COMMAND = "python -m medistill.deploy.gguf fetch"
#: What else fills the cache: the project's installation (it runs the fetch from its sdist).
INSTALL_COMMAND = "make install"
#: Left out of a converter folder: gguf-py's command-line tools (not used to convert).
_SKIP = ("gguf-py/gguf/scripts/",)


def llama_cpp_version(needed_for: str = "GGUF export") -> str:
    """The installed llama-cpp-python's version; a clear error saying how to install it."""
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception as e:  # any failure means: not installed
        raise MedistillError(
            f"{needed_for} needs llama-cpp-python: `{INSTALL_COMMAND}` in a medistill checkout, "
            f"or pip install 'medistill[serve]' then `{FETCH_COMMAND}` (it builds llama.cpp from "
            "source, ~6-10 minutes on 2 cores; see the README for CPUs that crash with "
            "'Illegal instruction')"
        ) from e


def check_quant(quant: str) -> None:
    """Refuse a ``--quant`` that is not one of :data:`QUANTS`, naming the choices."""
    if quant not in QUANTS:
        raise MedistillError(f"unknown --quant {quant!r}; choose one of: {', '.join(QUANTS)}")


def cached_converter_dir(version: str) -> Path:
    """Where :func:`fetch_converter` keeps the converter of llama-cpp-python ``version``."""
    return default_cache_dir() / f"llama.cpp-{version}"


def converter_dir(version: str | None = None) -> Path:
    """The folder holding llama.cpp's ``convert_hf_to_gguf.py`` for the installed
    llama-cpp-python (or ``version``). Looks on disk only; see the module's docstring."""
    version = version or llama_cpp_version()
    explicit = os.environ.get(CONVERTER_ENV)
    if explicit:
        folder = Path(explicit).expanduser()
        if not (folder / SCRIPT).is_file():
            raise MedistillError(f"${CONVERTER_ENV}={explicit}: no {SCRIPT} in that folder")
        return folder
    cached = cached_converter_dir(version)
    if (cached / SCRIPT).is_file():
        return cached
    raise MedistillError(
        f"no llama.cpp converter for llama-cpp-python {version}: {cached} is empty and "
        f"${CONVERTER_ENV} is unset; fill the cache once with `{FETCH_COMMAND}` (online; "
        f"offline: add --sdist llama_cpp_python-{version}.tar.gz) or `{INSTALL_COMMAND}` "
        "in a medistill checkout"
    )


def extract_converter(sdist: str | Path, dest: str | Path) -> Path:
    """Unpack the converter from a llama-cpp-python sdist into ``dest`` (made whole or not at
    all): ``convert_hf_to_gguf.py``, ``conversion/``, ``gguf/`` (its ``gguf-py``, next to the
    script so that it shadows any other installed ``gguf``) and llama.cpp's ``LICENSE``."""
    sdist, dest = Path(sdist), Path(dest)
    top = sdist.name.removesuffix(".tar.gz")
    prefix = f"{top}/vendor/llama.cpp/"
    renames = {"gguf-py/gguf/": "gguf/", "conversion/": "conversion/"}
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix) or not (m.isfile() or m.isdir()):
                continue
            name = m.name[len(prefix) :]
            if name in (SCRIPT, "LICENSE"):
                m.name = name
            else:
                old = next((o for o in renames if name.startswith(o)), None)
                if old is None or name.startswith(_SKIP) or "__pycache__" in name:
                    continue
                m.name = renames[old] + name[len(old) :]
            members.append(m)
        if not any(m.name == SCRIPT for m in members):
            raise MedistillError(f"{sdist}: no vendor/llama.cpp/{SCRIPT} in this sdist")
        staging = dest.with_name(dest.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        tar.extractall(staging, members=members, filter="data")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, dest)
    return dest


def _sdist_version(sdist: Path) -> str:
    found = re.fullmatch(r"llama_cpp_python-(.+)\.tar\.gz", sdist.name)
    if not found:
        raise MedistillError(f"{sdist}: not a llama-cpp-python sdist (llama_cpp_python-X.tar.gz)")
    return found.group(1)


def fetch_converter(
    version: str | None = None,
    sdist: str | Path | None = None,
    dest: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Put the converter of llama-cpp-python ``version`` (default: the installed one, or the
    ``sdist``'s) in the cache, or ``dest``. From ``sdist`` it needs no network; otherwise the
    sdist comes from the package index (``pip download``) — the one place medistill asks the
    network for the converter, and only when told to (by ``make install`` or the user). A
    converter already there is kept without asking the index again, unless ``force``."""
    if sdist is not None:
        sdist = Path(sdist)
        if not sdist.is_file():
            raise MedistillError(f"--sdist {sdist}: no such file")
        version = version or _sdist_version(sdist)
        folder = Path(dest) if dest else cached_converter_dir(version)
        try:
            installed = llama_cpp_version()
        except MedistillError:
            installed = None
        if installed and installed != version and not dest:
            log.warning(
                "the installed llama-cpp-python is %s: an export uses this converter (%s) only "
                "with llama-cpp-python %s",
                installed,
                folder,
                version,
            )
        return extract_converter(sdist, folder)
    version = version or llama_cpp_version("fetching the converter")
    folder = Path(dest) if dest else cached_converter_dir(version)
    if (folder / SCRIPT).is_file() and not force:
        log.info("llama.cpp's converter for llama-cpp-python %s is already in %s", version, folder)
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}"]
        cmd += ["--no-deps", "--no-binary", ":all:", "-d", tmp, "-q"]
        log.info("fetching llama.cpp's converter (llama-cpp-python %s sdist)", version)
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not sdists:
            raise MedistillError(
                f"could not fetch the llama-cpp-python {version} sdist for its converter (offline:"
                f" copy the sdist over and add --sdist FILE): {done.stderr.strip()[-300:]}"
            )
        return extract_converter(sdists[0], folder)


def to_gguf(model_dir: str | Path, out_file: str | Path, quant: str = "q8_0") -> Path:
    """Convert a model folder (safetensors) to one GGUF file of type ``quant``."""
    check_quant(quant)
    model_dir, out_file = Path(model_dir), Path(out_file)
    if not (model_dir / "config.json").is_file():
        raise MedistillError(f"{model_dir}: not a model folder (no config.json)")
    needs = {"torch": "hf", "transformers": "hf", "sentencepiece": "serve"}  # Llama's vocab too
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        extras = ",".join(sorted({needs[m] for m in missing}))
        raise MedistillError(
            f"llama.cpp's converter needs {', '.join(missing)}: pip install 'medistill[{extras}]'"
        )
    script = converter_dir() / SCRIPT
    out_file.parent.mkdir(parents=True, exist_ok=True)
    outtype = quant if quant in CONVERTER_TYPES else "f16"
    first = out_file if quant in CONVERTER_TYPES else out_file.with_suffix(".f16.gguf")
    cmd = [sys.executable, str(script), str(model_dir), "--outfile", str(first)]
    cmd += ["--outtype", outtype]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MedistillError(
            f"llama.cpp's converter ({script}) failed on {model_dir}: {done.stderr.strip()[-800:]}"
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


#: ``python -m medistill.deploy.gguf``'s program name, in its messages.
PROG = "python -m medistill.deploy.gguf"


@dataclass
class FetchOptions:
    """Put llama.cpp's converter in medistill's cache."""

    version: str | None = field(
        default=None, metadata={"help": "llama-cpp-python version (none: the installed one)"}
    )
    sdist: str | None = field(
        default=None, metadata={"help": "a llama_cpp_python-X.tar.gz on disk (no network)"}
    )
    dest: str | None = field(default=None, metadata={"help": "folder to write (none: the cache)"})
    force: bool = field(default=False, metadata={"help": "fetch again even if cached"})


@dataclass
class WhereOptions:
    """Print the converter folder an export would use."""


def main(argv: list[str] | None = None) -> int:
    """``python -m medistill.deploy.gguf fetch|where``: fill the converter cache once while
    online (or from a copied sdist), or show which converter an export would use. Options come
    from :class:`FetchOptions` and :class:`WhereOptions` (:mod:`medistill.flags`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"fetch": FetchOptions, "where": WhereOptions}
    if not argv or argv[0] not in commands:
        usage = f"usage: {PROG} {{fetch,where}} [--help]\n" + "".join(
            f"  {name:<6} {_first_line(cls.__doc__)}\n" for name, cls in commands.items()
        )
        if argv and argv[0] in ("-h", "--help"):
            print(usage, end="")  # noqa: T201 (the command's output)
            return 0
        usage += f"{PROG}: error: choose a command: fetch or where"
        print(usage, file=sys.stderr)  # noqa: T201
        return 2
    command, rest = argv[0], argv[1:]
    try:
        opts = parse_stage(
            commands[command], rest, section=command, prog=f"{PROG} {command}", recipe=False
        )
        if isinstance(opts, FetchOptions):
            print(fetch_converter(opts.version, opts.sdist, opts.dest, opts.force))  # noqa: T201
        else:
            print(converter_dir())  # noqa: T201
    except MedistillError as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


if __name__ == "__main__":
    sys.exit(main())
