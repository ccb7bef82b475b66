"""The code's shape stays easy to find one's way in (issue 12): no import circle between ghmbench's
modules (deferred imports inside functions included), no module over 400 lines and no function over
60 lines in ghmbench/ and scripts/, and every repository path that the README, docs/ or a docstring
names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ghmbench"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """ghmbench modules that ``path`` imports anywhere (top level or inside a function)."""
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != this and not (path.name == "__init__.py" and name.startswith(this + ".")):
                found.add(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def _sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py")])


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_over_60_lines():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long[f"{path.relative_to(ROOT)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert long == {}


# a repository path: starts with one of the repository's top-level folders (or is a top-level file)
_PATH = re.compile(r"(?<![\w./-])((?:ghmbench|scripts|docs|conf|results|tests|\.ci)/[\w./-]*\w|[A-Z_]+\.md|Makefile|pyproject\.toml)")


# the wheel carries conf/ as ghmbench/conf (pyproject.toml's package-dir): in the repository it is conf/
_INSTALLED_AS = {"ghmbench/conf": "conf"}


def _named_paths(text: str) -> set[str]:
    return {_INSTALLED_AS.get(m.rstrip("."), m.rstrip(".")) for m in _PATH.findall(text)}


def test_every_path_the_docs_and_docstrings_name_exists():
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    for path in _sources():
        tree = ast.parse(path.read_text())
        docs = [ast.get_docstring(n) or "" for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]
        texts[str(path.relative_to(ROOT))] = "\n".join(docs)
    missing = {}
    for where, text in texts.items():
        for named in _named_paths(text):
            candidates = [ROOT / named, ROOT / named.replace(".", "/") + ".py"] if named.startswith("ghmbench.") else [ROOT / named]
            if not any(c.exists() or list(ROOT.glob(named)) for c in candidates):
                missing.setdefault(where, []).append(named)
    assert missing == {}


def test_readme_layout_lists_every_module_and_only_existing_ones():
    block = re.search(r"## Layout\n\n```\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S).group(1)
    package_part = block.split("\nconf/")[0]
    listed = set(re.findall(r"([a-z_]+(?:\.py|/))", package_part)) - {"ghmbench/"}
    present = {p.name for p in PACKAGE.glob("*.py")} | {f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert listed == present
