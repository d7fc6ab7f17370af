"""The configs the triage bench compares, built in one place.

- `today`: the shipped levels with the `triage:` requirement taken out of every level file and no noise
  playbook: containment runs alone on the first alert wherever the level's class mode says execute (the
  behaviour before triage governed autonomy). Built as a copy in a temporary folder; the shipped files are read,
  never changed.
- `new`: the shipped config, triage from the incident's own alerts (what the workflow passes today:
  controller/triage/ledger_view.py gives no history yet).
- `new+history`: the shipped config, triage also given the source's other incidents in the replay.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import yaml

from autonomy_controller.controller.config import Settings
from bench.triage_decide import Variant

NOISE_PLAYBOOK = "noise.yaml"


def without_triage(settings: Settings, into: Path) -> Settings:
    """A copy of the levels and playbooks under `into`, with no level's `triage:` and no noise playbook."""
    levels, playbooks = into / "levels", into / "playbooks"
    shutil.copytree(settings.levels_dir, levels)
    shutil.copytree(settings.playbooks_dir, playbooks)
    for level_file in sorted(levels.glob("L[1-5].yaml")):
        data = yaml.safe_load(level_file.read_text())
        if data.pop("triage", None) is not None:
            level_file.write_text(yaml.safe_dump(data, sort_keys=False))
    (playbooks / NOISE_PLAYBOOK).unlink(missing_ok=True)
    return replace(settings, levels_dir=levels, playbooks_dir=playbooks)


def shipped(base: Settings) -> Variant:
    return Variant("new", base, False, "shipped: triage bar, noise record-only; triage without history")


def variants(base: Settings, workdir: Path) -> list[Variant]:
    return [
        Variant("today", without_triage(base, workdir / "today"), False, "no triage bar, no noise playbook"),
        shipped(base),
        Variant("new+history", base, True, "shipped, triage given the source's other incidents in the replay"),
    ]
