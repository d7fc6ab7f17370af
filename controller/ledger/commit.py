"""Group commit: the ledger writes of many threads of one process, in one transaction and one fsync.

Every append still returns only after the transaction holding its records has committed (with
`synchronous = FULL` on SQLite, after the fsync), so a step that acts on a record it appended acts on a durable
record, exactly as before. What changes is who commits: appends that arrive while a transaction is being
written wait for it, then go together in the next one, written by one of them (the leader) in arrival order.
Under load that turns N fsyncs into one, and no in-process writer sleeps in SQLite's busy handler waiting for
another in-process writer's lock (it backs off up to 100 ms a try). Writers in other processes still meet at
the database's own lock (BEGIN IMMEDIATE, FOR UPDATE on PostgreSQL), as before.

Each request runs under a SAVEPOINT inside the shared transaction, so one request's error (an idempotency
conflict, a constraint a trigger enforces) undoes only its own writes and is raised to its own caller; an error
of the commit itself is raised to every caller of the batch (none of it is durable).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

from autonomy_controller.controller.ledger.driver import DriverCursor
from autonomy_controller.controller.ledger.engine import write_transaction

T = TypeVar("T")
MAX_BATCH = 256
"""Requests per transaction at most: bounds how long the first of a batch waits for the last."""


class _Request(Generic[T]):
    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        self.wakeup = threading.Event()
        self.lead = False
        self.finished = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set by the batch that ran `work`


class GroupCommit:
    """One per database in a process (see `committer`): queues write work and commits it in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Request[object]] = []
        self._leading = False
        self.transactions = 0
        """Transactions committed (for benchmarks: requests / transactions is the batching achieved)."""
        self.requests = 0

    def queued(self) -> int:
        """Requests waiting for the next transaction."""
        with self._lock:
            return len(self._queue)

    def run(self, engine: Engine, work: Callable[[Connection], T]) -> T:
        """Run `work` inside a write transaction and return its result once that transaction has committed."""
        request: _Request[T] = _Request(work)
        with self._lock:
            self._queue.append(request)  # type: ignore[arg-type]
            if not self._leading:
                self._leading = request.lead = True
        if not request.lead:
            request.wakeup.wait()  # finished by a leader's batch, or promoted to lead the next one
        if not request.finished:
            self._lead(engine)
        return request.outcome()

    def _lead(self, engine: Engine) -> None:
        with self._lock:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            self._write(engine, batch)
        finally:
            with self._lock:  # hand over to the first waiter, who commits what queued up meanwhile
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wakeup.set()
                else:
                    self._leading = False

    def _write(self, engine: Engine, batch: list[_Request[object]]) -> None:
        try:
            with write_transaction(engine) as conn:
                if len(batch) == 1:
                    only = batch[0]
                    only.value = only.work(conn)
                else:
                    cursor = DriverCursor(conn)
                    for request in batch:
                        try:
                            with cursor.savepoint():
                                request.value = request.work(conn)
                        except Exception as exc:  # raised to its own caller; the others go on
                            request.error = exc
        except BaseException as exc:  # the transaction did not commit: nothing of the batch is durable
            for request in batch:
                request.value, request.error = None, request.error or exc
        else:
            self.transactions += 1
            self.requests += len(batch)
        finally:
            for request in batch:
                request.finished = True
                request.wakeup.set()


_COMMITTERS: weakref.WeakValueDictionary[str, GroupCommit] = weakref.WeakValueDictionary()
_COMMITTERS_LOCK = threading.Lock()


def committer(engine: Engine) -> GroupCommit:
    """The process's group commit for the database `engine` reaches: every Ledger on that URL shares it (while
    one holds it: each Ledger keeps a reference)."""
    key = engine.url.render_as_string(hide_password=False)
    with _COMMITTERS_LOCK:
        found = _COMMITTERS.get(key)
        if found is None:
            found = _COMMITTERS[key] = GroupCommit()
        return found
