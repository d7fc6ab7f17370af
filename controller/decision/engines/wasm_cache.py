"""The compiled policy.wasm for a set of Rego modules: compiled once by OPA, then read from a cache.

Why: the wasm engine is the default, and compiling needs the opa binary (0.5-1 s). The module depends only on
the Rego modules, the entry points and the OPA that compiled it, never on the data (`opa build -t wasm` without
-O leaves data out of the module; the engine loads the data onto the heap at start: the conformance tests run
one module against many data documents). So a module is cached under a hash of the modules and entry points
plus OPA's version, and an inventory edit costs no compile.

Where a module is found, in order: the cache directory (AUTONOMY_WASM_CACHE, else $XDG_CACHE_HOME or ~/.cache,
then autonomy/policy-wasm), then the modules prebuilt for the shipped policies (controller/decision/engines/prebuilt/,
present in a wheel only: `make wheel` compiles them into build/prebuilt/, which setup.py copies into the wheel). With an
opa binary the module of *its* version is used (compiled when missing); without one, any cached module of these
modules is, and none is an error naming the fix: the engine fails closed.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from autonomy_controller.controller.decision.engines.base import PolicyEngineError
from autonomy_controller.controller.decision.engines.embedded import defines_package
from autonomy_controller.controller.decision.engines.input_types import check_input_types, find_opa, schema_text
from autonomy_controller.controller.decision.policy_bundle import (
    CONFIG_ENTRYPOINT,
    CONFIG_PACKAGE,
    ENTRYPOINT,
    INPUT_SCHEMA,
    read_modules,
)

PREBUILT_DIR = Path(__file__).parent / "prebuilt"
_SUFFIX = ".wasm"


class OpaNotFoundError(PolicyEngineError):
    """No opa binary to compile with and no cached module for these modules."""


def default_cache_dir() -> Path:
    configured = os.environ.get("AUTONOMY_WASM_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autonomy" / "policy-wasm"


def _run_opa(opa: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run opa; one that cannot start or hangs is a PolicyEngineError (the guard then denies, naming it)."""
    try:
        return subprocess.run([str(opa), *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PolicyEngineError(f"wasm engine: could not run {opa} {args[0]}: {exc}") from exc


def opa_version(opa: Path) -> str:
    done = _run_opa(opa, "version")
    for line in done.stdout.splitlines():
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
    raise PolicyEngineError(f"wasm engine: `{opa} version` printed no version: {done.stderr.strip()[:200]}")


def entrypoints(modules: dict[str, str]) -> list[str]:
    """The decision, and the static data checks when the policy has them (no package autonomy.config: nothing to
    check, as on the other engines)."""
    return [ENTRYPOINT, *([CONFIG_ENTRYPOINT] if defines_package(modules, CONFIG_PACKAGE) else [])]


def modules_key(modules: dict[str, str], input_schema: Path | None = INPUT_SCHEMA) -> str:
    """A hash of what the module is compiled from: every Rego module (path and text), the entry points and the
    input schema it was type-checked against."""
    digest = hashlib.sha256(
        schema_text(input_schema) + b"\0"
    )  # a module is compiled only once it type-checks against it
    for entrypoint in entrypoints(modules):
        digest.update(entrypoint.encode() + b"\0")
    for name in sorted(modules):
        digest.update(name.encode() + b"\0" + modules[name].encode() + b"\0")
    return digest.hexdigest()[:32]


def compile_modules(opa: Path, modules: dict[str, str], input_schema: Path | None = INPUT_SCHEMA) -> bytes:
    """The policy.wasm that `opa build -t wasm` makes of the modules, with their entry points."""
    with tempfile.TemporaryDirectory(prefix="autonomy-wasm-") as tmp:
        source, out = Path(tmp) / "bundle", Path(tmp) / "wasm.tar.gz"
        for relative, text in modules.items():
            target = source / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        check_input_types(opa, source, input_schema)
        targets = [arg for entrypoint in entrypoints(modules) for arg in ("-e", entrypoint)]
        # From inside the copy: the module's messages (an object key conflict, at evaluation) and opa's errors
        # then name each file as the bundle does (guardrails/x.rego), which PolicyBundle.as_authored maps to the
        # author's file; the temporary copy's path would lead nowhere.
        done = _run_opa(opa, "build", "-t", "wasm", *targets, "-o", str(out), ".", cwd=source)
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip())[:800]
            raise PolicyEngineError(f"wasm engine: opa build failed: {said}")
        with tarfile.open(fileobj=io.BytesIO(out.read_bytes())) as archive:
            member = next((m for m in archive.getmembers() if m.name.lstrip("/") == "policy.wasm"), None)
            extracted = archive.extractfile(member) if member else None
            if extracted is None:
                raise PolicyEngineError("wasm engine: opa build wrote no policy.wasm")
            return extracted.read()


def _store(directory: Path, name: str, binary: bytes) -> None:
    """Write atomically (a reader never sees half a module); a cache that cannot be written is skipped."""
    temporary: str | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-", delete=False) as handle:
            temporary = handle.name
            handle.write(binary)
        os.chmod(temporary, 0o644)  # a module is no secret; a prebuilt one is read by whoever runs the product
        os.replace(temporary, directory / name)
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def compiled_module(
    modules: dict[str, str],
    opa_configured: Path | None,
    cache_dir: Path | None = None,
    prebuilt_dirs: tuple[Path, ...] = (PREBUILT_DIR,),
    input_schema: Path | None = INPUT_SCHEMA,
) -> tuple[bytes, str]:
    """(policy.wasm, where it came from) for these modules, type-checked against input_schema; raises
    OpaNotFoundError when there is no opa and no cached module fits."""
    cache_dir = cache_dir or default_cache_dir()
    key = modules_key(modules, input_schema)
    directories = (cache_dir, *prebuilt_dirs)
    opa = find_opa(opa_configured)
    if opa is None:
        for directory in directories:
            cached = sorted(directory.glob(f"{key}-opa*{_SUFFIX}")) if directory.is_dir() else []
            if cached:
                return cached[-1].read_bytes(), str(cached[-1])
        raise OpaNotFoundError(
            f"wasm engine: no opa binary (looked at {opa_configured} and on PATH) to compile the policy, and no "
            f"module compiled from these policies (key {key}) in {', '.join(map(str, directories))}: build opa "
            "(`make setup` puts it at .tools/opa), set AUTONOMY_OPA_BIN or put opa on PATH, or choose "
            "AUTONOMY_POLICY_ENGINE=embedded"
        )
    name = f"{key}-opa{opa_version(opa)}{_SUFFIX}"
    for directory in directories:
        if (directory / name).is_file():
            return (directory / name).read_bytes(), str(directory / name)
    binary = compile_modules(opa, modules, input_schema)
    _store(cache_dir, name, binary)
    return binary, f"compiled by {opa}"


def prebuild(policies_dir: Path, opa: Path, out_dir: Path) -> Path:
    """Compile the Rego under policies_dir (tests excluded) into out_dir, named as the cache names it."""
    modules = read_modules(policies_dir, include_tests=False)
    name = f"{modules_key(modules)}-opa{opa_version(opa)}{_SUFFIX}"
    _store(out_dir, name, compile_modules(opa, modules))
    if not (out_dir / name).is_file():
        raise PolicyEngineError(f"could not write {out_dir / name}")
    return out_dir / name


USAGE = (
    "usage: python -m autonomy_controller.controller.decision.engines.wasm_cache --prebuild [POLICIES_DIR] [OUT_DIR]"
)

if __name__ == "__main__":
    from autonomy_controller.controller.config import Settings

    if sys.argv[1:2] != ["--prebuild"]:
        sys.exit(USAGE)
    settings = Settings()
    policies = Path(sys.argv[2]) if len(sys.argv) > 2 else settings.policies_dir
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else PREBUILT_DIR
    opa_bin = find_opa(settings.opa_bin)
    if opa_bin is None:
        sys.exit(f"no opa binary at {settings.opa_bin} or on PATH")
    print(prebuild(policies, opa_bin, out))
