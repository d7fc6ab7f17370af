"""Build hook: the wheel carries the default configuration, so an installed `autonomy` works outside a checkout.

pyproject.toml holds the project's metadata; this file only adds one step to `build_py`: copy the checkout's
levels, policies, playbooks, approver keys file, example alerts and JSON Schemas into `controller/defaults/`,
with an `autonomy.yaml` describing that layout (controller/config.py reads it; `autonomy init` copies from it).
An editable install skips the copy: a checkout reads those folders in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {
    "levels": "levels",
    "policies": "policies",
    "playbooks": "workflows/playbooks",
    "config": "config",
    "examples": "examples/alerts",
    "schema": "schema",
}
"""Folder inside the wheel's defaults -> where it lives in the checkout."""


class BuildPyWithDefaults(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "controller" / "defaults"
        shutil.rmtree(target, ignore_errors=True)
        for name, source in SHIPPED.items():
            shutil.copytree(ROOT / source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        layout = "".join(f"{name}: {name}\n" for name in SHIPPED if name != "schema")
        (target / "autonomy.yaml").write_text(f"# The defaults this wheel ships (setup.py).\nversion: 1\n{layout}")


setup(cmdclass={"build_py": BuildPyWithDefaults})
