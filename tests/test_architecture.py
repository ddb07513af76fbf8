"""The layout's rules, checked on the source: no two daemon packages depend on each other, the CLI stays light.

Imports inside functions and under ``TYPE_CHECKING`` count: tools and readers follow them all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAEMON = REPO / "daemon" / "ovmsd"
GENERATED = DAEMON / "api" / "grpc" / "proto"


def imported_modules(path: Path, root: Path = REPO / "daemon") -> Iterator[str]:
    """Every module ``path`` imports; ``root`` is the folder its import path starts from (for relative imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                yield f"{base}.{node.module}" if node.module else base
            elif node.module:
                yield node.module


def unit_of(module: str) -> str | None:
    """The package (or top-level module) of ``ovmsd`` that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "ovmsd" and len(parts) > 1 else None


def daemon_sources() -> list[Path]:
    return [p for p in DAEMON.rglob("*.py") if GENERATED not in p.parents]


def dependency_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in daemon_sources():
        source = unit_of(".".join(path.relative_to(REPO / "daemon").with_suffix("").parts))
        if source is None or source == "__init__":
            continue
        targets = graph.setdefault(source, set())
        for module in imported_modules(path):
            target = unit_of(module)
            if target is not None and target != source:
                targets.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_daemon_packages_import_each_other() -> None:
    graph = dependency_graph()
    assert {"config", "source", "serving", "api", "observe", "runtime"} <= set(graph), sorted(graph)
    assert cycles(graph) == [], {n: sorted(t) for n, t in sorted(graph.items())}


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_path_is_the_folder_path() -> None:
    for path in daemon_sources():
        for module in imported_modules(path):
            if module.startswith("ovmsd."):
                parts = module.split(".")
                candidates = [REPO / "daemon" / Path(*parts[:i]) for i in range(len(parts), 1, -1)]
                assert any(c.with_suffix(".py").is_file() or (c / "__init__.py").is_file() for c in candidates), (
                    f"{path.relative_to(REPO)} imports {module}, which is no file under daemon/"
                )


def test_only_the_front_ends_touch_protobuf_and_grpc() -> None:
    allowed = {"api", "app"}
    for path in daemon_sources():
        unit = unit_of(".".join(path.relative_to(REPO / "daemon").with_suffix("").parts))
        if unit in allowed:
            continue
        for module in imported_modules(path):
            assert not module.startswith(("grpc", "google.protobuf")), f"{path.relative_to(REPO)} imports {module}"


def test_the_cli_never_imports_the_serving_code() -> None:
    for path in (REPO / "ovmsctl").rglob("*.py"):
        for module in imported_modules(path, REPO):
            assert unit_of(module) not in {"serving", "api", "app"}, f"{path.relative_to(REPO)}: {module}"
            assert not module.startswith("openvino"), f"{path.relative_to(REPO)} imports {module}"
