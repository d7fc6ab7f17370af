"""The worker's guard, rebuilt when the config on disk changes.

A kill switch flipped in levels/scopes.yaml, or a policy fix, must reach running incidents before their next
action, without restarting workers: every use checks a fingerprint of the config files (a stat per file,
microseconds) and rebuilds the bundle and engine when it moved. A rebuild that fails yields an
UnavailableGuard, so a broken edit stops actions instead of leaving the old policy in force unseen.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.runtime import EngineName, open_guard

Fingerprint = tuple[tuple[str, int, int], ...]


def config_fingerprint(*dirs: Path) -> Fingerprint:
    entries: list[tuple[str, int, int]] = []
    for root in dirs:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                stat = path.stat()
                entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class GuardProvider:
    def __init__(self, settings: Settings, engine: EngineName | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._stack: ExitStack | None = None
        self._guard: Guard | UnavailableGuard | None = None
        self._fingerprint: Fingerprint = ()
        self.reloads = 0

    def _dirs(self) -> tuple[Path, Path]:
        return self.settings.levels_dir, self.settings.policies_dir

    def current(self) -> Guard | UnavailableGuard:
        fingerprint = config_fingerprint(*self._dirs())
        with self._lock:
            if self._guard is None or fingerprint != self._fingerprint:
                self._reload(fingerprint)
            assert self._guard is not None
            return self._guard

    def _reload(self, fingerprint: Fingerprint) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack = ExitStack()
        self._guard = self._stack.enter_context(open_guard(self.settings, self.engine))
        self._fingerprint = fingerprint
        self.reloads += 1

    def close(self) -> None:
        with self._lock:
            if self._stack is not None:
                self._stack.close()
            self._stack, self._guard = None, None
