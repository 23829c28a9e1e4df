"""The code base's modules import each other without circles.

A module-level import circle hides which module is built on which, and is
usually kept alive by imports moved inside functions. This check reads the
source (no imports are run): it fails on any circle among the project's
modules, and on any import inside a function or class body that does not say
on its line why it is there (start-up cost, or a late-bound call from outside).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "landlord", "meters", "payments", "supply", "disputes")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is loaded (not those only for type checkers)."""
    out: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
    return out


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: set[str] = set()
        for node in _top_level_imports(tree):
            for target in _targets(name, path.name == "__init__.py", node):
                # Importing a package's __init__ (all empty here) is no dependency.
                if target in modules and target != name and target not in PACKAGES:
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_in_a_circle():
    assert _cycles(_graph()) == []


def test_the_check_finds_a_circle():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert _cycles(graph) == [["a.x", "a.y", "a.z"]]


def test_relative_imports_resolve_to_modules():
    tree = ast.parse("from . import billing\nfrom .ledger import Leg\nfrom .. import x\n")
    nodes = _top_level_imports(tree)
    assert _targets("payments.services", False, nodes[0]) == {"payments", "payments.billing"}
    assert _targets("payments.services", False, nodes[1]) == {
        "payments.ledger",
        "payments.ledger.Leg",
    }
    assert "meters" in _targets("meters.sockets.base", False, nodes[2])


def test_imports_inside_functions_say_why():
    unexplained = []
    for name, path in _modules().items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source, filename=str(path))
        top = {id(node) for node in _top_level_imports(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
                if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                    continue
                if _in_type_checking_block(tree, node):
                    continue
                if "#" not in lines[node.lineno - 1]:
                    unexplained.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == []


def _in_type_checking_block(tree: ast.Module, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and _is_type_checking(node)
            and any(child is target for child in ast.walk(node))
        ):
            return True
    return False


def _layers() -> list[list[str]]:
    """The rows of the layer table in docs/architecture.md, top row first."""
    rows = []
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = line.split("|")
        if line.startswith("| ") and len(cells) > 3 and not line.startswith("| Layer"):
            rows.append(re.findall(r"`([a-z_/]+(?:\.py|/))`", cells[2]))
    return rows


def _row_of(module: str, rows: list[list[str]]) -> int | None:
    path = module.replace(".", "/")
    for i, paths in enumerate(rows):
        for item in paths:
            if item == f"{path}.py" or (item.endswith("/") and f"{path}/".startswith(item)):
                return i
    return None


def test_modules_depend_only_on_their_layer_or_the_layers_above():
    """docs/architecture.md's table of layers is true: no module it lists imports
    a module from a lower row."""
    rows = _layers()
    assert len(rows) >= 8
    graph = _graph()
    upward = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if (mine := _row_of(module, rows)) is not None
        and (theirs := _row_of(target, rows)) is not None
        and theirs > mine
    ]
    assert upward == []
