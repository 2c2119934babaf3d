"""The shape of ``src/medistill`` as an import graph, checked on every run.

Four rules keep the package readable (issue 26): no module imports another module's private
name; no import cycle, counting imports hidden inside functions; an import of our own module
inside a function only where that module pulls a heavy third-party package at import time (the
one reason to defer it: ``medistill --help`` must not load torch; the command-line package, which
nothing imports, may defer what each command runs); no module over 450 lines
unless its docstring says it is one concept. Package ``__init__`` files only hand names on.

Each rule is also run on a small synthetic package that breaks it, so a checker that stopped
seeing the problem fails here too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Third-party packages heavy enough (import time, memory, optional installs) to import lazily.
HEAVY = {
    "torch",
    "transformers",
    "trl",
    "datasets",
    "peft",
    "accelerate",
    "vllm",
    "llama_cpp",
    "deepspeed",
    "bitsandbytes",
    "sentence_transformers",
    "pandas",
    "pyarrow",
    "matplotlib",
    "playwright",
    "lm_eval",
}
MAX_LINES = 450


@dataclass
class Module:
    """One module of the package: where it is and what it imports."""

    name: str
    path: Path
    is_package: bool
    lines: int
    docstring: str
    top: set[str] = field(default_factory=set)  # our modules imported at module level
    inner: list[tuple[int, str]] = field(default_factory=list)  # (line, our module) in functions
    heavy_top: set[str] = field(default_factory=set)  # heavy packages imported at module level
    private: list[tuple[int, str]] = field(default_factory=list)  # (line, "module._name")
    from_own_init: list[int] = field(default_factory=list)  # lines importing the own package


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(body: list[ast.stmt], in_function: bool):
    """Yield (import node, inside a function) for every import outside TYPE_CHECKING blocks."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _walk(node.orelse, in_function)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
            continue
        nested = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child_field in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(node, child_field, None)
            if isinstance(children, list):
                stmts = [c for c in children if isinstance(c, ast.stmt | ast.ExceptHandler)]
                flat: list[ast.stmt] = []
                for c in stmts:
                    flat.extend(c.body if isinstance(c, ast.ExceptHandler) else [c])
                yield from _walk(flat, in_function or nested)
        if isinstance(node, ast.Match):
            for case in node.cases:
                yield from _walk(case.body, in_function)


def scan(root: Path, package: str) -> dict[str, Module]:
    """Every module under ``root/package`` with the imports the rules look at."""
    paths = sorted((root / package).rglob("*.py"))
    modules: dict[str, Module] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        modules[_module_name(root, path)] = Module(
            name=_module_name(root, path),
            path=path,
            is_package=path.name == "__init__.py",
            lines=len(text.splitlines()),
            docstring=ast.get_docstring(tree) or "",
        )
    for mod in modules.values():
        tree = ast.parse(mod.path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        for node, in_function in _walk(tree.body, False):
            targets: list[tuple[str, str | None]] = []  # (module, imported name or None)
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == package:
                        targets.append((a.name, None))
                        aliases[a.asname or a.name] = a.name
                    elif a.name.split(".")[0] in HEAVY and not in_function:
                        mod.heavy_top.add(a.name.split(".")[0])
                    continue
            else:
                if node.level:
                    base = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                if source.split(".")[0] in HEAVY and not in_function:
                    mod.heavy_top.add(source.split(".")[0])
                if source.split(".")[0] != package:
                    continue
                for a in node.names:
                    sub = f"{source}.{a.name}"
                    if sub in modules:
                        targets.append((sub, None))
                        aliases[a.asname or a.name] = sub
                    else:
                        targets.append((source, a.name))
            for target, name in targets:
                if target not in modules:
                    continue
                if in_function:
                    mod.inner.append((node.lineno, target))
                else:
                    mod.top.add(target)
                if name and name.startswith("_") and not name.startswith("__"):
                    mod.private.append((node.lineno, f"{target}.{name}"))
                own_package = mod.name if mod.is_package else mod.name.rpartition(".")[0]
                if (
                    target == own_package
                    and target != package
                    and not mod.is_package
                    and name is not None
                ):
                    mod.from_own_init.append(node.lineno)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                mod.private.append((node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
    return modules


def heavy_modules(modules: dict[str, Module]) -> set[str]:
    """Modules that import a heavy package at import time, themselves or through ours."""
    heavy = {m.name for m in modules.values() if m.heavy_top}
    changed = True
    while changed:
        changed = False
        for m in modules.values():
            if m.name not in heavy and m.top & heavy:
                heavy.add(m.name)
                changed = True
    return heavy


def entry_packages(modules: dict[str, Module]) -> set[str]:
    """Sub-packages no module outside them imports (the command line): the leaves of the graph.

    A deferred import there cannot hide a cycle (nothing imports back into them), and it keeps
    ``medistill --help`` from loading every stage, so their commands may import what they run.
    """
    packages = {m.name for m in modules.values() if m.is_package and "." in m.name}
    out = set()
    for pkg in packages:
        inside = {n for n in modules if n == pkg or n.startswith(pkg + ".")}
        imported = {t for m in modules.values() if m.name not in inside for t in m.top}
        imported |= {t for m in modules.values() if m.name not in inside for _, t in m.inner}
        if not imported & inside:
            out.add(pkg)
    return out


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (or a module importing itself)."""
    graph = {m.name: m.top | {t for _, t in m.inner} for m in modules.values()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def problems(root: Path, package: str) -> dict[str, list[str]]:
    """Every rule's findings, one readable line each."""
    modules = scan(root, package)
    heavy = heavy_modules(modules)
    leaves = entry_packages(modules)
    found: dict[str, list[str]] = {"private": [], "cycle": [], "inner": [], "size": [], "init": []}
    for m in modules.values():
        rel = m.path.relative_to(root)
        found["private"] += [f"{rel}:{line} imports {what}" for line, what in m.private]
        found["inner"] += [
            f"{rel}:{line} imports {target} inside a function (it pulls no heavy package)"
            for line, target in m.inner
            if target not in heavy and not any(m.name.startswith(p + ".") for p in leaves)
        ]
        found["init"] += [
            f"{rel}:{line} imports from its own package's __init__" for line in m.from_own_init
        ]
        if m.lines > MAX_LINES and "one concept" not in m.docstring:
            found["size"].append(f"{rel}: {m.lines} lines and no 'one concept' docstring")
    found["cycle"] = [" -> ".join(group) for group in cycles(modules)]
    return {rule: list(dict.fromkeys(lines)) for rule, lines in found.items()}


@pytest.fixture(scope="module")
def found() -> dict[str, list[str]]:
    return problems(SRC, "medistill")


@pytest.mark.parametrize("rule", ["private", "cycle", "inner", "size", "init"])
def test_package_keeps_its_shape(found: dict[str, list[str]], rule: str) -> None:
    assert found[rule] == [], "\n".join(found[rule])


def test_package_inits_only_hand_names_on() -> None:
    """A package ``__init__`` holds imports, ``__all__`` and a docstring: no code of its own."""
    bad = []
    for path in sorted((SRC / "medistill").rglob("__init__.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno} defines {node.name}")
    assert bad == [], "\n".join(bad)


# ----------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_finds_each_kind_of_problem(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import _helper\n\ndef f():\n    from pkg import c\n",
            "pkg/b.py": "def _helper():\n    from pkg.a import f\n",
            "pkg/c.py": "import json\n",
            "pkg/heavy.py": "import torch\n",
            "pkg/lazy.py": "def g():\n    from pkg.heavy import torch\n",
            "pkg/sub/__init__.py": "X = 1\n",
            "pkg/sub/d.py": '"""Big."""\nfrom pkg.sub import X\n' + "y = 1\n" * 460,
            "pkg/sub/e.py": '"""Big but one concept: a table."""\n' + "y = 1\n" * 460,
            "pkg/f.py": "import pkg.c as c\n\nc._hidden\n",
        },
    )
    got = problems(tmp_path, "pkg")
    assert got["private"] == [
        "pkg/a.py:1 imports pkg.b._helper",
        "pkg/f.py:3 imports pkg.c._hidden",
    ]
    assert got["cycle"] == ["pkg.a -> pkg.b"]  # b's import hides inside a function: still a cycle
    assert got["inner"] == [
        "pkg/a.py:4 imports pkg.c inside a function (it pulls no heavy package)",
        "pkg/b.py:2 imports pkg.a inside a function (it pulls no heavy package)",
    ]  # pkg.lazy's deferred import of the torch-pulling module is allowed
    assert got["size"] == ["pkg/sub/d.py: 462 lines and no 'one concept' docstring"]
    assert got["init"] == ["pkg/sub/d.py:2 imports from its own package's __init__"]


def test_checker_passes_a_clean_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\n\n__all__ = ['f']\n",
            "pkg/a.py": "from typing import TYPE_CHECKING\n\nfrom pkg.b import helper\n"
            "if TYPE_CHECKING:\n    from pkg.c import C\n\ndef f():\n    return helper()\n",
            "pkg/b.py": "def helper():\n    return 1\n",
            "pkg/c.py": "from pkg.a import f\n\nclass C:\n    pass\n",
            "pkg/cmd/__init__.py": "",  # the command line: nothing imports it
            "pkg/cmd/app.py": "def main():\n    from pkg.b import helper\n",
        },
    )
    assert all(v == [] for v in problems(tmp_path, "pkg").values())


if __name__ == "__main__":  # `python tests/test_import_graph.py`: every finding, rule by rule
    for rule, lines in problems(SRC, "medistill").items():
        print(f"{rule}: {len(lines)}")
        for line in lines:
            print(f"  {line}")
