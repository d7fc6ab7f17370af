"""Shared fixtures: the shipped config and bundle, both real engines, and a real OPA server per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from autonomy_controller.controller.config import SHARED_DIR_ENV, Settings, shared_dir
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine
from autonomy_controller.controller.decision.engines.opa_server import OpaServer, OpaServerEngine
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.levels import LevelConfig, load_level_config
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle, load_bundle
from autonomy_controller.controller.decision.runtime import EngineName, open_guard

SHARED = shared_dir()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, saying why, when the real samples and corpora many tests read are missing (not 141 errors)."""
    missing = [part for part in ("samples", "corpora") if not (SHARED / part).is_dir()]
    if missing:
        pytest.exit(
            f"{', '.join(missing)} not found in {SHARED}: the tests read real sensor samples and corpora kept beside "
            f"the repository; clone it next to shared/, or set {SHARED_DIR_ENV} to that folder",
            returncode=4,
        )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def opa_bin(settings: Settings) -> Path:
    if not settings.opa_bin.exists():
        pytest.fail(f"opa binary missing at {settings.opa_bin}: `make setup` builds it (CI does)")
    return settings.opa_bin


@pytest.fixture(scope="session")
def level_config(settings: Settings) -> LevelConfig:
    return load_level_config(settings.levels_dir)


@pytest.fixture(scope="session")
def bundle(settings: Settings, level_config: LevelConfig) -> PolicyBundle:
    return load_bundle(settings.policies_dir, level_config)


@pytest.fixture(scope="session")
def embedded_guard(bundle: PolicyBundle) -> Guard:
    return Guard(bundle, EmbeddedEngine(bundle))


@pytest.fixture(scope="session")
def opa_server(opa_bin: Path, bundle: PolicyBundle) -> Iterator[OpaServer]:
    with OpaServer(opa_bin, bundle) as server:
        yield server


@pytest.fixture(scope="session")
def opa_guard(bundle: PolicyBundle, opa_server: OpaServer) -> Guard:
    return Guard(bundle, OpaServerEngine(opa_server.url))


@pytest.fixture(scope="module")
def guards(embedded_guard: Guard, opa_guard: Guard, settings: Settings) -> Iterator[dict[str, Guard]]:
    """The shipped policy on every engine, by name (wasm, embedded, opa): for tests that hold each to one answer."""
    with open_guard(settings, EngineName.WASM) as wasm:
        assert isinstance(wasm, Guard)
        yield {"wasm": wasm, "embedded": embedded_guard, "opa": opa_guard}


@pytest.fixture
def config_copy(tmp_path: Path, settings: Settings) -> Settings:
    """A private copy of levels/, policies/ and config/ that a test may break without touching the repo."""
    levels, policies, config = tmp_path / "levels", tmp_path / "policies", tmp_path / "config"
    shutil.copytree(settings.levels_dir, levels)
    shutil.copytree(settings.policies_dir, policies)
    shutil.copytree(settings.config_dir, config)
    return Settings(levels_dir=levels, policies_dir=policies, config_dir=config, state_dir=tmp_path / "var")


@pytest.fixture(autouse=True)
def no_live_claude(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ANTHROPIC_API_KEY must never make a test call the real API: tests that want Claude set
    it themselves, pointing at a local stand-in."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
