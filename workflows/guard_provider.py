"""The worker's guard, rebuilt when the config on disk changes.

A kill switch flipped in levels/scopes.yaml, or a policy fix, must reach running incidents before their next
action, without restarting workers: every use asks a ConfigWatch whether the config files moved, and the guard
(bundle and engine) is rebuilt when they did. A rebuild that fails yields an UnavailableGuard, so a broken edit
stops actions instead of leaving the old policy in force unseen.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import weakref
from contextlib import ExitStack
from pathlib import Path

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.runtime import EngineName, open_guard

Fingerprint = tuple[tuple[str, int, int], ...]


def config_fingerprint(*dirs: Path) -> Fingerprint:
    """Every file under `dirs` with its mtime and size (a stat per file: ~0.6 ms for the shipped config)."""
    entries: list[tuple[str, int, int]] = []
    for root in dirs:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                stat = path.stat()
                entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


# inotify(7): any change of an entry in a watched folder, of a file's content or metadata, or of the folder
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_WATCH_MASK = (
    0x00000002  # IN_MODIFY
    | 0x00000004  # IN_ATTRIB
    | 0x00000008  # IN_CLOSE_WRITE
    | 0x00000040  # IN_MOVED_FROM
    | 0x00000080  # IN_MOVED_TO
    | 0x00000100  # IN_CREATE
    | 0x00000200  # IN_DELETE
    | 0x00000400  # IN_DELETE_SELF
    | 0x00000800  # IN_MOVE_SELF
)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library's inotify calls, from the symbols this process already has (no library search)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1  # noqa: B018  # absent outside Linux
    except (OSError, AttributeError):
        return None
    return libc


class ConfigWatch:
    """The fingerprint of the files under some folders, recomputed only when the kernel says something there moved.

    On Linux an inotify instance watches every folder of the trees (the kernel queues an event before the write
    or rename that caused it returns, so a change made before a call is seen by that call: nothing is served
    stale). A call that finds the queue empty costs one non-blocking read (~2 us) instead of a stat per file.
    Whenever anything is queued the watches are renewed (new subfolders) and the files stat-ed again. Where no
    watch can be trusted (no inotify, the watch limit reached, a symlink whose target may live outside the
    watched folders, the event queue overflowed) every call stats every file, as before.
    """

    def __init__(self, *dirs: Path) -> None:
        self.dirs = dirs
        self.rescans = 0
        """Full fingerprints taken (for tests and benchmarks: how often the cheap path was not enough)."""
        self._lock = threading.Lock()
        self._fingerprint: Fingerprint | None = None
        self._libc = _libc()
        self._fd = -1
        if self._libc is not None:
            self._fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)  # -1 past the user's instance limit
        self._closer = weakref.finalize(self, _close_fd, self._fd)  # a watch left open holds a kernel instance

    @property
    def watching(self) -> bool:
        """Whether changes are noticed by inotify (else every call stats every file)."""
        return self._fd >= 0

    def fingerprint(self) -> Fingerprint:
        with self._lock:
            if self._fingerprint is None or not self.watching or self._drain():
                if self.watching and not self._watch_all():
                    self._stop()  # cannot watch everything: from now on, a full check per call
                self._fingerprint = config_fingerprint(*self.dirs)
                self.rescans += 1
            return self._fingerprint

    def _drain(self) -> bool:
        """Whether any event was queued since the last call (the events themselves do not matter)."""
        moved = False
        while True:
            try:
                if not os.read(self._fd, 65536):
                    return moved
            except BlockingIOError:
                return moved
            except OSError:  # an unreadable watch is no watch
                self._stop()
                return True
            moved = True

    def _watch_all(self) -> bool:
        """Watch every folder of the trees (again: a watch on a folder already watched is the same watch)."""
        assert self._libc is not None
        for root in self.dirs:
            entries = list(root.rglob("*"))
            if root.is_symlink() or any(p.is_symlink() for p in entries):
                return False  # a link may be re-pointed, or its target change, where no watch sees it
            for folder in [root, *(p for p in entries if p.is_dir())]:
                if self._libc.inotify_add_watch(self._fd, os.fsencode(folder), _WATCH_MASK) < 0:
                    return False
        return True

    def _stop(self) -> None:
        if self._fd >= 0:
            self._closer()
            self._fd = -1

    def close(self) -> None:
        with self._lock:
            self._stop()


def _close_fd(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


class GuardProvider:
    def __init__(self, settings: Settings, engine: EngineName | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._stack: ExitStack | None = None
        self._guard: Guard | UnavailableGuard | None = None
        self._fingerprint: Fingerprint = ()
        self.watch = ConfigWatch(settings.levels_dir, settings.policies_dir)
        self.reloads = 0

    def current(self) -> Guard | UnavailableGuard:
        fingerprint = self.watch.fingerprint()
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
        self.watch.close()
