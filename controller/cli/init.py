"""`autonomy init DIR`: write an editable configuration folder (a "home") for a team to keep in git.

It copies the defaults the product ships (levels, policies with their tests, playbooks, approver keys file, the
example alerts) and writes `autonomy.yaml`, the marker by which every command finds the folder (controller/config.py).
Nothing is overwritten: an existing home, or any file the copy would replace, stops it before a byte is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
import yaml

from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, fail
from autonomy_controller.controller.config import HOME_LAYOUT, HOME_MARKER, defaults_home, home_layout

COPIED = ("levels", "policies", "playbooks", "config", "examples")
"""The parts a team edits; `state` (the ledger, reports, dead letters) starts empty and stays out of git."""
GITIGNORE = "# Runtime state: the ledger, reports, dead letters (back it up; do not commit it).\n/var/\n"


def _plan(source: dict[str, Path], target: Path) -> list[tuple[Path, Path]]:
    """Every (source file, target file) the copy makes, Python caches left out."""
    pairs = []
    for part in COPIED:
        root = source[part]
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                pairs.append((path, target / HOME_LAYOUT[part] / path.relative_to(root)))
    return pairs


def init(
    folder: Annotated[Path, typer.Argument(help="Where to write the configuration folder (made if missing).")],
    as_json: JsonFlag = False,
) -> None:
    """Write a configuration folder with the shipped defaults: levels/, policies/, playbooks/, config/, examples/.

    Edit it, keep it in git, and point the controller at it with `--home DIR`, AUTONOMY_HOME=DIR, or by running
    commands from inside it. Its `var/` (ledger, reports) is git-ignored. Refuses to overwrite anything.
    """
    target = folder.expanduser().resolve()
    if (target / HOME_MARKER).exists():
        fail(f"{target / HOME_MARKER} exists: {target} is already a configuration folder (nothing written)", 2)
    pairs = _plan(home_layout(defaults_home()), target)
    clashes = [str(dest) for _, dest in pairs if dest.exists()]
    if clashes:
        fail(f"{len(clashes)} file(s) would be overwritten, e.g. {clashes[0]} (nothing written)", 2)
    for source, dest in pairs:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    (target / HOME_LAYOUT["state"]).mkdir(exist_ok=True)
    marker = {"version": 1, **HOME_LAYOUT}
    (target / HOME_MARKER).write_text(
        "# An autonomy configuration folder (`autonomy init`): each part's folder, relative to this file.\n"
        + yaml.safe_dump(marker, sort_keys=False)
    )
    gitignore = target / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(GITIGNORE)
    if as_json:
        parts = {name: str(target / folder) for name, folder in HOME_LAYOUT.items()}
        emit_json({"home": str(target), "files": len(pairs), "parts": parts})
        return
    console.print(f"Wrote {len(pairs)} files to {target}")
    console.print(f"Next: `cd {target} && autonomy levels show`, or `autonomy --home {target} evaluate ALERTS`.")
