"""The import contract of docs/architecture.md, read from the source (every import,
also those inside functions):

- nothing below the wire (servicers, interceptors, app) imports grpc, and
  nothing below it imports the wire;
- the server never imports training; training imports only the shared core;
- the shared core imports nothing of the server, training or the CLI;
- no two modules import each other, directly or through others;
- no hand-written module is much over 500 lines.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "training", "vectoros", "clients")
GENERATED = ("vectoros.v1",)
# The wire: protobuf in and out, gRPC status codes, the server's assembly.
WIRE = ("server.app", "server.interceptors", "server.services", "server.healthcheck")
GRPC_ROOTS = ("grpc", "grpc_health", "grpc_reflection", "grpc_status")
MAX_LINES = 520
# Modules still to split, with why they wait. This list only shrinks.
KNOWN_LARGE = {"training.embedder": "the embedding-throughput work (issue 15) is changing it now"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = module_name(path)
            if not name.startswith(GENERATED):
                found[name] = path
    return found


MODULES = project_modules()


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """Every module `module` imports (absolute names, project and third-party)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            found.add(target)
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    found.add(f"{target}.{alias.name}")
    return found


IMPORTS = {module: imports_of(module) for module in MODULES}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _below_the_wire(module: str) -> bool:
    return _within(module, ("server",)) and not _within(module, WIRE)


def test_nothing_below_the_wire_imports_grpc_or_the_wire():
    broken = []
    for module, imported in IMPORTS.items():
        if _below_the_wire(module) or _within(module, ("vectoros.core", "training")):
            for name in imported:
                if _within(name, GRPC_ROOTS) or _within(name, WIRE) or name.endswith("_pb2_grpc"):
                    broken.append(f"{module} imports {name}")
    assert not broken, broken


def test_the_server_never_imports_training():
    broken = [f"{m} imports {n}" for m, names in IMPORTS.items() if _within(m, ("server",))
              for n in names if _within(n, ("training",))]
    assert not broken, broken


def test_training_imports_only_the_shared_core():
    broken = [f"{m} imports {n}" for m, names in IMPORTS.items() if _within(m, ("training",))
              for n in names if _within(n, ("server", "vectoros.cli", "clients"))]
    assert not broken, broken


def test_the_core_imports_nothing_above_it():
    broken = [f"{m} imports {n}" for m, names in IMPORTS.items() if _within(m, ("vectoros.core",))
              for n in names if _within(n, ("server", "training", "vectoros.cli", "clients"))]
    assert not broken, broken


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
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
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return components


def project_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, names in IMPORTS.items():
        graph[module]
        for name in names:
            if name in MODULES and name != module:
                graph[module].add(name)
    return graph


def test_no_import_cycles():
    assert _cycles(project_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(set(MODULES) - set(KNOWN_LARGE)))
def test_modules_hold_one_idea(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by idea (docs/architecture.md)"
