"""Every import of our own code names it through `autonomy_controller` (setup.py): the repository root is on
sys.path while tests run from a checkout, so a bare `import controller` would still work there, load a second
copy of the module, and break only in an installed wheel."""

from __future__ import annotations

import ast
from pathlib import Path

from autonomy_controller.controller.config import REPO_ROOT

CODE = ("controller", "workflows", "actions")
FOLDERS = (*CODE, "bench", "tests")


def bare_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        where = f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', 0)}"
        found += [f"{where}: {name}" for name in names if name.split(".")[0] in CODE]
    return found


def test_no_module_imports_our_code_by_its_bare_folder_name() -> None:
    files = [path for folder in FOLDERS for path in (REPO_ROOT / folder).rglob("*.py")]
    assert len(files) > 150  # the walk found the code
    offenders = [line for path in files for line in bare_imports(path)]
    assert offenders == []
