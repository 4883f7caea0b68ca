"""The library's shape: the demo wing stands apart (nothing outside boostmdr.demo imports it) and the import
graph between boostmdr's modules has no cycle. Imports are read from the source (every ``import`` and
``from ... import`` statement, also inside functions and ``TYPE_CHECKING`` blocks)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "boostmdr"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The boostmdr modules ``path`` imports (resolving relative imports)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in out if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_outside_demo_imports_the_demo_wing():
    offenders = {
        module: sorted(m for m in deps if m == "boostmdr.demo" or m.startswith("boostmdr.demo."))
        for module, deps in _graph().items()
        if not (module == "boostmdr.demo" or module.startswith("boostmdr.demo."))
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # A package's __init__ importing its own submodules is not a cycle of concerns; drop package -> child edges.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_checker_sees_demo_imports_and_cycles(tmp_path, monkeypatch):
    # The two checks above are only worth something if they can fail: a module importing the demo wing and a
    # two-module cycle are both found.
    pkg = tmp_path / "boostmdr"
    (pkg / "demo").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "demo" / "__init__.py").write_text("")
    (pkg / "demo" / "synthetic.py").write_text("")
    (pkg / "a.py").write_text("from boostmdr.demo import synthetic\nfrom . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    graph = _graph()
    assert "boostmdr.demo.synthetic" in graph["boostmdr.a"]
    assert "boostmdr.a" in graph["boostmdr.b"] and "boostmdr.b" in graph["boostmdr.a"]
