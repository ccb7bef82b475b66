"""The code's shape stays easy to find one's way in (issues 12 and 21): subpackages by concern and at
most six loose modules; no import circle between ghmbench's modules (deferred imports inside functions
included) and no import that runs back up the layers; no module over 400 lines, no function over 60
lines and no line over 120 characters in ghmbench/ and scripts/; every repository path that the
README, docs/ or a docstring names exists, and the README's layout lists every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ghmbench"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_LINE_CHARS = 120
MAX_LOOSE_MODULES = 6  # besides __init__.py, __main__.py and cli.py (here the subpackage cli/)
MIN_SUBPACKAGES = 5

# The layers, lowest first: a module imports only from its own layer or the ones below. Loose modules
# are shared leaves (errors, value ranges, process groups) or entry points at the top.
LAYERS = [
    {"errors", "ranges", "distributed"},
    {"losses"},
    {"store"},
    {"data"},
    {"config"},
    {"detection"},
    {"run"},
    {"sweep"},
    {"reporting"},
    {"cli", "multirun", "__main__", "ghmbench"},
]


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
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
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


def _layer(module: str) -> int:
    """The layer of a module: its subpackage's (or its own, for a loose module)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "ghmbench"
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_no_import_runs_back_up():
    modules = _modules()
    upward = {
        f"{name} -> {dep}"
        for name, path in modules.items()
        for dep in _imports(path, modules)
        if dep != "ghmbench" and _layer(dep) > _layer(name)
    }
    assert upward == set()


def test_subpackages_by_concern_and_few_loose_modules():
    loose = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py", "cli.py"}
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert len(loose) <= MAX_LOOSE_MODULES, sorted(loose)
    assert len(subpackages) >= MIN_SUBPACKAGES, sorted(subpackages)
    assert subpackages <= set().union(*LAYERS), "a new subpackage needs its place in LAYERS"


def _sources() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py")])


def test_no_module_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_line_over_120_characters():
    long = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _sources()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if len(line) > MAX_LINE_CHARS
    ]
    assert long == []


def test_no_function_over_60_lines():
    long = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
            ):
                long[f"{path.relative_to(ROOT)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert long == {}


# a repository path: starts with one of the repository's top-level folders (or is a top-level file)
_PATH = re.compile(
    r"(?<![\w./-])((?:ghmbench|scripts|docs|conf|results|tests|\.ci)/[\w./-]*\w|[A-Z_]+\.md|Makefile|pyproject\.toml)"
)


# the wheel carries conf/ as ghmbench/conf (pyproject.toml's package-dir): in the repository it is conf/
_INSTALLED_AS = {"ghmbench/conf": "conf"}


def _named_paths(text: str) -> set[str]:
    return {_INSTALLED_AS.get(m.rstrip("."), m.rstrip(".")) for m in _PATH.findall(text)}


def test_every_path_the_docs_and_docstrings_name_exists():
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    for path in _sources():
        tree = ast.parse(path.read_text())
        docs = [
            ast.get_docstring(n) or ""
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
        ]
        texts[str(path.relative_to(ROOT))] = "\n".join(docs)
    missing = {}
    for where, text in texts.items():
        for named in _named_paths(text):
            candidates = (
                [ROOT / named, ROOT / named.replace(".", "/") + ".py"]
                if named.startswith("ghmbench.")
                else [ROOT / named]
            )
            if not any(c.exists() or list(ROOT.glob(named)) for c in candidates):
                missing.setdefault(where, []).append(named)
    assert missing == {}


def test_readme_layout_lists_every_module_and_only_existing_ones():
    """The layout block: the loose modules and subpackages on the ghmbench/ line(s), then one indented
    ``name/`` entry per subpackage listing its modules (and its own subpackages)."""
    block = re.search(r"## Layout\n\n```\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S).group(1)
    package_part = block.split("\nconf/")[0]
    owner, listed = "", {}
    for line in package_part.splitlines():
        head = re.match(r"(ghmbench/|  [a-z_]+/)", line)
        if head:
            owner = "" if head.group(1) == "ghmbench/" else head.group(1).strip()
            line = line[len(head.group(1)) :]
            listed.setdefault("", set()).add(owner) if owner else None
        listed.setdefault(owner, set()).update(re.findall(r"([a-z_]+(?:\.py|/))", line))

    def present(folder: Path) -> set[str]:
        files = {p.name for p in folder.glob("*.py")} - ({"__init__.py"} if folder != PACKAGE else set())
        return files | {f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").exists()}

    assert listed.pop("") == present(PACKAGE)
    for owner, names in listed.items():
        assert names == present(PACKAGE / owner), owner
