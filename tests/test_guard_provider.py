"""The worker's guard follows the config on disk (workflows/guard_provider.py), and only re-reads it when it moved.

A kill switch must be in force at the next use after the edit, however it was saved (in place, by rename, in a
new folder, through a symlink); a use with nothing changed must not stat every file (bench.loop measured that
at ~0.6 ms, five times an incident).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.workflows.guard_provider import ConfigWatch, GuardProvider


def _kill_switch(guard: object) -> bool:
    assert isinstance(guard, Guard), guard
    return guard.bundle.levels.scopes.kill_switch


def _flipped(scopes: Path) -> str:
    text = scopes.read_text()
    assert "kill_switch: false" in text
    return text.replace("kill_switch: false", "kill_switch: true", 1)


@pytest.fixture
def provider(config_copy: Settings) -> Iterator[GuardProvider]:
    provider = GuardProvider(config_copy)
    yield provider
    provider.close()


def test_an_unchanged_config_is_read_once(provider: GuardProvider) -> None:
    first = provider.current()
    for _ in range(200):
        assert provider.current() is first
    assert provider.watch.watching  # Linux: inotify
    assert provider.watch.rescans == 1 and provider.reloads == 1


def test_a_kill_switch_saved_in_place_is_in_force_at_the_next_use(
    provider: GuardProvider, config_copy: Settings
) -> None:
    assert not _kill_switch(provider.current())
    scopes = config_copy.levels_dir / "scopes.yaml"
    with scopes.open("r+") as handle:  # an in-place write: the folder's own mtime does not move
        text = _flipped(scopes)
        handle.write(text)
        handle.truncate()
    assert _kill_switch(provider.current())
    assert provider.reloads == 2


def test_a_kill_switch_saved_by_rename_is_in_force_at_the_next_use(
    provider: GuardProvider, config_copy: Settings
) -> None:
    assert not _kill_switch(provider.current())
    scopes = config_copy.levels_dir / "scopes.yaml"
    staged = scopes.with_name(".scopes.yaml.new")
    staged.write_text(_flipped(scopes))
    os.replace(staged, scopes)  # what editors and config managers do
    assert _kill_switch(provider.current())


def test_a_file_in_a_new_folder_is_seen(provider: GuardProvider, config_copy: Settings) -> None:
    first = provider.current()
    folder = config_copy.policies_dir / "team_extra"
    folder.mkdir()
    assert provider.current() is first  # an empty folder changes no file: the tree is read again, nothing rebuilt
    assert provider.watch.rescans == 2
    (folder / "notes.txt").write_text("written into a folder made after the watch started\n")
    assert provider.current() is not first
    assert any(path.endswith("notes.txt") for path, *_ in provider.watch.fingerprint())


def test_a_symlinked_config_file_is_checked_on_every_use(
    provider: GuardProvider, config_copy: Settings, tmp_path: Path
) -> None:
    """A link's target may live outside the watched folders, where no watch sees it change: full checks then."""
    scopes = config_copy.levels_dir / "scopes.yaml"
    outside = tmp_path / "elsewhere" / "scopes.yaml"
    outside.parent.mkdir()
    outside.write_text(scopes.read_text())
    scopes.unlink()
    scopes.symlink_to(outside)
    assert not _kill_switch(provider.current())
    assert not provider.watch.watching
    outside.write_text(_flipped(outside))
    assert _kill_switch(provider.current())


def test_a_watch_without_inotify_checks_every_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where inotify is missing (another OS) the watch is the full check it replaces, never a stale answer."""
    monkeypatch.setattr("autonomy_controller.workflows.guard_provider._libc", lambda: None)
    (tmp_path / "a.yaml").write_text("1")
    watch = ConfigWatch(tmp_path)
    before = watch.fingerprint()
    assert not watch.watching
    (tmp_path / "a.yaml").write_text("22")
    assert watch.fingerprint() != before
    assert watch.rescans == 2
