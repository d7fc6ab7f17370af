"""Finding the configuration folder (controller/config.py): environment, current folder and its parents, the
shipped defaults; a named home that is not one, or an autonomy.yaml with a typo, is an error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from autonomy_controller.controller.config import (
    HOME_MARKER,
    REPO_ROOT,
    ConfigError,
    Settings,
    defaults_home,
    find_home,
    home_layout,
)


def _home(folder: Path, marker: str = "version: 1\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HOME_MARKER).write_text(marker)
    return folder


@pytest.fixture(autouse=True)
def _no_home_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTONOMY_HOME", "AUTONOMY_LEVELS_DIR", "AUTONOMY_POLICIES_DIR", "AUTONOMY_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_a_checkout_is_its_own_default_home() -> None:
    assert defaults_home() == REPO_ROOT
    assert find_home(REPO_ROOT / "tests") == REPO_ROOT


def test_nearest_folder_with_the_marker_wins(tmp_path: Path) -> None:
    outer = _home(tmp_path / "outer")
    inner = _home(outer / "team" / "inner")
    assert find_home(inner / "levels") == inner
    assert find_home(outer / "team") == outer
    assert find_home(tmp_path) == defaults_home()


def test_environment_beats_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = _home(tmp_path / "named")
    here = _home(tmp_path / "here")
    monkeypatch.setenv("AUTONOMY_HOME", str(named))
    assert find_home(here) == named


def test_a_named_home_without_the_marker_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTONOMY_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"no autonomy\.yaml"):
        find_home()


def test_layout_reads_relative_parts_and_refuses_typos(tmp_path: Path) -> None:
    home = _home(tmp_path / "a", "levels: autonomy/levels\n")
    parts = home_layout(home)
    assert parts["levels"] == home / "autonomy" / "levels"
    assert parts["policies"] == home / "policies" and parts["state"] == home / "var"
    typo = _home(tmp_path / "b", "polices: p\n")
    with pytest.raises(ConfigError, match=r"unknown part.*polices"):
        home_layout(typo)
    bad = _home(tmp_path / "c", "- levels\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        home_layout(bad)


def test_settings_follow_the_home_and_per_part_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _home(tmp_path / "team")
    monkeypatch.setenv("AUTONOMY_HOME", str(home))
    monkeypatch.setenv("AUTONOMY_POLICIES_DIR", str(tmp_path / "elsewhere"))
    settings = Settings()
    assert settings.levels_dir == home / "levels"
    assert settings.playbooks_dir == home / "playbooks"
    assert settings.ledger_url == f"sqlite:///{home / 'var' / 'ledger.db'}"
    assert settings.policies_dir == (tmp_path / "elsewhere").resolve()


def test_the_cli_names_a_broken_home_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from autonomy_controller.controller.cli import app

    home = _home(tmp_path / "typo", "polices: p\n")
    monkeypatch.chdir(home)
    result = CliRunner().invoke(app, ["levels", "show"])
    assert result.exit_code == 2
    assert "polices" in result.output and str(home / "autonomy.yaml") in result.output
