"""Packaging: the repository's top-level code folders ship inside one package, `autonomy_controller`.

`controller/`, `workflows/` and `actions/` are generic names another distribution may also install at the top of
site-packages; inside `autonomy_controller` (this distribution's own name) they cannot collide, and the checkout
keeps its folders: `package_dir` maps the package to the repository root. The default configuration (levels,
policies with their tests, playbooks, approver keys file, example alerts, JSON Schemas, and the `autonomy.yaml`
that describes that layout, and the shipped policies compiled to WebAssembly when `make wheel` prebuilt them)
ships as the package's data, where it sits in the checkout, so an installed
`autonomy` finds it exactly as a checkout does (controller/config.py) and `autonomy init` copies it.
pyproject.toml holds the metadata.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

NAMESPACE = "autonomy_controller"
CODE = ["controller", "workflows", "actions"]
DEFAULTS = [
    "autonomy.yaml",
    "levels/*.yaml",
    "policies/*.md",
    "policies/**/*.rego",
    "policies/**/*.yaml",
    "config/*.yaml",
    "examples/alerts/*.jsonl",
    "schema/*.json",
    "workflows/playbooks/*.yaml",
]
PREBUILT = Path("build/prebuilt")
"""Where `make wheel` compiles the shipped policies to WebAssembly. Copied into the wheel only, so the checkout's
engine never mistakes a module left there for one it compiled or cached (controller/decision/engines/wasm_cache.py)."""


class BuildPy(build_py):
    """build_py, plus the prebuilt policy modules in a wheel (an editable install reads the checkout in place)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / NAMESPACE / "controller" / "engines" / "prebuilt"
        for module in sorted(PREBUILT.glob("*.wasm")):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(module, target / module.name)


setup(
    package_dir={NAMESPACE: "."},
    packages=[NAMESPACE, *(f"{NAMESPACE}.{name}" for name in find_packages(include=[f"{c}*" for c in CODE]))],
    package_data={NAMESPACE: DEFAULTS},
    include_package_data=False,
    cmdclass={"build_py": BuildPy},
)
