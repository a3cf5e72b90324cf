"""The layout holds: one-way imports, one door for plugins, the underscore meaning "not API".

The import graph is read from the source with ``ast`` (imports inside functions
count too: a lazy import is still a dependency), so these tests fail as soon as
a change brings a circle or a plugin reaching into the core back.
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import modelpack
from modelpack.manifest import TASKS

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "modelpack"
PUBLIC_MODULES = {"errors", "manifest", "plugin", "testing", "serve", "deploy", "spark", "batch",
                  "mlflow", "ray", "dask"}
# The manifest renders itself as HTML for notebooks through _display, which reads the manifest's types.
ALLOWED_CIRCLES = [{"modelpack.manifest", "modelpack._display"}]
PLUGIN_DOOR = {"modelpack", "modelpack.plugin", "modelpack.testing"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every modelpack module ``path`` imports, at the top or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from . import x` imports a module
    return {m for m in found if m.split(".")[0] == "modelpack"}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in _imports(path):
            while target and target not in modules:  # `from pkg import name`: the package itself
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)  # a module importing its own package's face is no circle
        graph[name] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_but_the_manifest_display_one():
    circles = _circles(_graph())
    assert [c for c in circles if c not in ALLOWED_CIRCLES] == []


def test_load_never_imports_the_export_side():
    graph = _graph()
    reachable, todo = set(), ["modelpack._load"]
    while todo:
        for target in graph[todo.pop()] - reachable:
            reachable.add(target)
            todo.append(target)
    assert not reachable & {"modelpack._export", "modelpack._registry", "modelpack._conversion",
                            "modelpack.plugin", "modelpack._fidelity"}


def test_plugins_import_only_the_public_door():
    offenders = []
    for path in sorted((ROOT / "converters").glob("*/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] == "modelpack" and n not in PLUGIN_DOOR]
    assert offenders == []


def test_the_underscore_means_not_api():
    top = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
           if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__init__.py"}
    public = {name for name in top if not name.startswith("_")}
    assert public == PUBLIC_MODULES
    for folder in ("serve", "deploy"):  # public folders keep their insides private
        inside = {p.stem for p in (SRC / folder).glob("*.py") if p.name != "__init__.py"}
        assert all(name.startswith("_") for name in inside), (folder, inside)


def test_no_public_name_shadows_its_module():
    for name in PUBLIC_MODULES:
        module = importlib.import_module(f"modelpack.{name}")
        assert getattr(modelpack, name) is module, name


def test_the_parts_show_as_folders():
    folders = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert {"_package", "_formats", "_runtime", "_devices", "_cli", "serve", "deploy"} <= folders


def test_one_writer_replaces_files():
    """Every write-beside-then-rename goes through modelpack._atomic."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "_atomic.py":
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(SRC)}: {word}" for word in ("os.replace(", "os.rename(", "mkstemp(")
                      if word in text]
    assert offenders == []


def test_only_the_command_line_parses_arguments():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "_cli" not in p.parts and "argparse" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_one_task_list():
    schema = json.loads((SRC / "schema" / "manifest-1.json").read_text(encoding="utf-8"))
    assert tuple(schema["properties"]["task"]["enum"]) == TASKS
