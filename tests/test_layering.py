"""The folders are layers (docs/layout.md): each folder imports only folders in layers below its own, so the
dependencies point one way, command line -> services -> core -> vocabulary, and no folder imports another back.

The graph is read with `ast` (nothing imported): every `import` and `from ... import` of our own code in
`controller/`, `workflows/` and `actions/`, at module level, inside functions and under TYPE_CHECKING alike.
A new folder, or an import that points up or sideways, fails here with the file and line that does it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from autonomy_controller.controller.config import REPO_ROOT

PACKAGE = "autonomy_controller"
CODE = ("controller", "workflows", "actions")
VOCABULARY = "controller/*.py"
"""The top-level modules of controller/ (models, addresses, config, validation, processes, approver_keys): one room."""

LAYERS: tuple[tuple[str, ...], ...] = (
    (VOCABULARY, "controller/render"),
    ("actions",),
    ("controller/case", "controller/ingest"),
    ("controller/ledger",),
    ("controller/triage",),
    ("controller/decision",),
    ("actions/adapters", "controller/attackers", "controller/planning"),
    ("controller/oversight",),
    ("workflows",),
    ("controller/lab", "controller/service"),
    ("controller/cli",),
)
"""Bottom to top. A room may import rooms of lower layers only; rooms of one layer do not import each other."""

LAYER_OF = {room: index for index, layer in enumerate(LAYERS) for room in layer}


def room(module: str) -> str:
    """The folder a dotted module (without the package prefix) lives in."""
    parts = module.split(".")
    if parts[0] == "controller":
        folder = len(parts) > 1 and (REPO_ROOT / "controller" / parts[1]).is_dir()
        return f"controller/{parts[1]}" if folder else VOCABULARY
    if parts[:2] == ["actions", "adapters"]:
        return "actions/adapters"
    return parts[0]


def modules() -> dict[str, Path]:
    found = {}
    for package in CODE:
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of each import of our code, without the package prefix."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(f"{PACKAGE}."):
                yield node.lineno, name.removeprefix(f"{PACKAGE}.")


def arrows() -> list[tuple[str, str, str]]:
    """(from room, to room, where) for every import that crosses rooms."""
    known = modules()

    def resolve(name: str) -> str:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    found = []
    for module, path in known.items():
        for line, name in imports(path):
            target = resolve(name)
            if target and room(target) != room(module):
                found.append((room(module), room(target), f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"))
    return found


def test_every_folder_has_a_layer() -> None:
    rooms = {room(module) for module in modules()}
    assert len(rooms) > 15  # the walk found the folders
    assert rooms - LAYER_OF.keys() == set(), "a new folder: give it a layer in LAYERS and docs/layout.md"


def test_every_import_points_down() -> None:
    crossing = arrows()
    assert len(crossing) > 300  # the walk found the imports
    assert pointing_up_or_sideways(crossing) == []


def pointing_up_or_sideways(crossing: list[tuple[str, str, str]]) -> list[str]:
    return [where for source, target, where in crossing if LAYER_OF[target] >= LAYER_OF[source]]


def test_the_check_finds_imports_that_point_up_or_sideways(tmp_path: Path) -> None:
    planted = tmp_path / "guard.py"  # as if in controller/decision/
    planted.write_text(
        f"from {PACKAGE}.controller.cli.common import console\n"  # up
        f"from {PACKAGE}.controller.planning import offline\n"  # up
        f"from {PACKAGE}.controller.decision.levels import Level\n"  # its own folder: fine
        f"from {PACKAGE}.controller.triage import verdict\n"  # down: fine
    )
    targets = [(line, room(name)) for line, name in imports(planted)]
    crossing = [
        ("controller/decision", target, f"line {line}") for line, target in targets if target != "controller/decision"
    ]
    assert pointing_up_or_sideways(crossing) == ["line 1", "line 2"]


def every_module() -> list[str]:
    names = []
    for package in CODE:
        root = importlib.import_module(f"{PACKAGE}.{package}")
        names += [info.name for info in pkgutil.walk_packages(root.__path__, f"{root.__name__}.")]
    return [name for name in names if not name.endswith("__main__")]  # __main__ runs the command line


@pytest.mark.parametrize("package", CODE)
def test_every_module_imports(package: str) -> None:
    names = [name for name in every_module() if name.startswith(f"{PACKAGE}.{package}.")]
    assert len(names) > 10
    for name in names:
        importlib.import_module(name)
