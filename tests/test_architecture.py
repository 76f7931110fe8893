"""The package's import graph, read from the source: no cycle, and no import upward.

Every import counts, including those under ``if TYPE_CHECKING:`` and those inside
functions: a type-only back-edge is still a module that knows about the one above it.
Each module has a layer below; a module may import only modules of its own layer or a
lower one, and never in a cycle. A new module must be given a layer here, which is where
the question "what may it know about?" gets answered.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

import microfs

PACKAGE = Path(microfs.__file__).parent

LAYERS: dict[str, int] = {
    # what every module may use
    "microfs.errors": 0,
    "microfs.schema": 1,
    "microfs.progress": 1,
    "microfs.arguments": 1,
    # definitions, and the pure logic they are made of
    "microfs.transformations": 2,
    "microfs.expectations": 2,
    "microfs.statistics": 2,
    "microfs.quality_report": 7,
    "microfs.group_definition": 2,
    "microfs.synthetic": 2,
    "microfs.known": 2,
    "microfs.view_definition": 3,
    # storage of definitions and of data; the point-in-time join
    "microfs.registry": 4,
    "microfs._asof_kernel": 4,
    "microfs.pit": 5,
    "microfs._commit_log": 5,
    "microfs.feature_group": 6,
    # planning frames from definitions and groups
    "microfs._frame_spec": 7,
    "microfs._frame_plan": 7,
    "microfs.daft_engine": 8,
    # the online store and the vectors it serves
    "microfs.online": 8,
    "microfs.serving": 9,
    # the objects users hold, and the store that wires them
    "microfs.feature_view": 10,
    "microfs.store": 11,
    # the edges: command line, package façade
    "microfs.server": 12,
    "microfs._cli_verbs": 12,
    "microfs.cli": 13,
    "microfs.__main__": 14,
    "microfs": 14,
}
"""Each module's layer; a subpackage's modules share its layer (``microfs.online.*``)."""


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str) -> set[str]:
    """The absolute names of everything a module imports (every import statement)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a submodule counts as itself)."""
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    root = package.name
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for target in imports(path, name):
            if target != root and not target.startswith(root + "."):
                continue
            while target not in files:  # `from microfs.x import Name` names the module x
                target = target.rpartition(".")[0]
            parent_package = name.startswith(target + ".") and files[target].name == "__init__.py"
            if target != name and not parent_package:
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The graph's cycles: its strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(name: str) -> int | None:
    """A module's layer: its own, or its subpackage's (the package façade's is its own)."""
    if name in LAYERS:
        return LAYERS[name]
    parent = name.rpartition(".")[0]
    return layer(parent) if "." in parent else None


def upward_imports(graph: Mapping[str, set[str]]) -> list[str]:
    """Each import of a module from a higher layer, as ``"a (n) -> b (m)"``."""
    found = []
    for name, targets in sorted(graph.items()):
        own = layer(name)
        for target in sorted(targets):
            other = layer(target)
            if own is not None and other is not None and other > own:
                found.append(f"{name} ({own}) -> {target} ({other})")
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in import_graph(PACKAGE) if layer(name) is None]
    assert unplaced == [], f"give these modules a layer in LAYERS: {unplaced}"


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_no_module_imports_from_a_higher_layer() -> None:
    assert upward_imports(import_graph(PACKAGE)) == []


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "microfs"
    (package / "online").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "store.py").write_text("from microfs.online import OnlineStore\n")
    (package / "online" / "__init__.py").write_text("from microfs.online.table import T\n")
    (package / "online" / "table.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from microfs import store\n"
    )
    (package / "_stray.py").write_text("")
    graph = import_graph(package)
    assert [name for name in graph if layer(name) is None] == ["microfs._stray"]
    assert cycles(graph) == [["microfs.online", "microfs.online.table", "microfs.store"]]
    assert upward_imports(graph) == ["microfs.online.table (8) -> microfs.store (11)"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_private_name_is_exported(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported = ast.literal_eval(node.value)
            private = [n for n in exported if n.startswith("_") and not n.startswith("__")]
            assert private == [], f"{path.name} exports private names {private}"
