"""The package's rooms import one way: every arrow points down one layered order, no cycles.

Read from the source (every `import`, also those inside functions), so a lazy import cannot hide
an arrow that runs back up. The order is the README's (Development): foundations, then
contracts, landing, validation, postgres, orchestration, the definitions, the component, and the
CLI on top.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = [pytest.mark.pure]

PACKAGE = Path(__file__).resolve().parent.parent / "elt_assets"
# Lowest first. A room may import only rooms before it.
LAYERS = [
    "errors",
    "log",
    "settings",
    "contracts",
    "landing",
    "validation",
    "alerts",
    "postgres",
    "orchestration",
    "definitions",
    "component",
    "cli",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports (anywhere in it)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
                # `from elt_assets.landing import readers` imports a module, not a name.
                targets += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            found[name] |= {t for t in targets if t.startswith("elt_assets.") and t != name}
    modules = set(found) | {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in found[name] if t in modules} for name in modules}


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_every_room_is_in_the_layer_order() -> None:
    rooms = {room(m) for m in imports() if m != "elt_assets"}
    assert rooms <= set(LAYERS), sorted(rooms - set(LAYERS))


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in imports().items()
        for target in targets
        if module != "elt_assets" and LAYERS.index(room(target)) > LAYERS.index(room(module))
    ]
    assert upward == []


def test_no_module_imports_itself_back() -> None:
    graph = imports()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_walk_sees_imports_inside_functions() -> None:
    """`elt ingest` imports the definitions only when it runs (the CLI starts fast): the walk
    finds that arrow, so a lazy import running back up would be found as well."""
    assert "elt_assets.definitions" in imports()["elt_assets.cli.ingest"]
