"""The per-table lock file around every read-decide-write of a table's elements.

nft has no compare-and-swap for elements, so reading a set, deciding on what was read (whose element, how long
it lasts) and writing runs under one lock file per table: see `serialized` for why and how.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from autonomy_controller.actions.adapters.base import AdapterError, TransientAdapterError

LOCK_DIRS = (Path("/run/lock"), Path(tempfile.gettempdir()))
"""Where the per-table lock files live: /run/lock (a tmpfs: no stale lock survives a reboot), else the temp dir."""
LOCK_POLL_SECONDS = 0.02


@contextlib.contextmanager
def serialized(name: str, wait_seconds: float) -> Iterator[None]:
    """Hold an exclusive advisory lock named `name` (flock on a file in LOCK_DIRS) for the `with` body.

    nft has no compare-and-swap: a batch cannot say "delete this element only if its comment is still X". An
    adapter that reads the set, decides on what it read (whose element, how long it lasts) and then writes
    must therefore not interleave with another worker doing the same, or a takeover could delete a third
    owner's newer element, and an owner-aware revert could delete the element another incident just took
    over. Every worker on this machine (threads and processes alike: flock conflicts between separate
    opens) takes this lock around read-decide-write. Actors outside it (the kernel's own expiry, an operator
    typing nft) are caught by the batch failing instead (a delete of a missing element fails it whole).

    A holder that dies releases the lock with its file descriptor. Waiting longer than `wait_seconds` is a
    TransientAdapterError: the activity's retry policy tries again later."""
    directory = next((d for d in LOCK_DIRS if d.is_dir() and os.access(d, os.W_OK)), None)
    if directory is None:
        raise AdapterError(f"no writable directory for the nftables lock file (tried {', '.join(map(str, LOCK_DIRS))})")
    path = directory / f"autonomy-nft.{name}.lock"
    try:  # O_NOFOLLOW: the directory is world-writable; a planted symlink must not redirect root's open
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AdapterError(f"cannot open the nftables lock file {path}: {exc}") from exc
    try:
        if os.fstat(fd).st_uid != os.geteuid():  # someone else's file could be held by them forever
            raise AdapterError(f"the nftables lock file {path} belongs to another user: remove it")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TransientAdapterError(
                        f"another worker held {path} for over {wait_seconds} s: try again"
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the flock
