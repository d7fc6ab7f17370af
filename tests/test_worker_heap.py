"""settle_heap (workflows/worker.py): what survived a worker's start-up leaves the cyclic collector's sight, and
garbage made before it is collected first, not frozen with it."""

from __future__ import annotations

import gc
import weakref

from autonomy_controller.workflows.worker import settle_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_start_up_garbage_is_collected_and_the_rest_frozen() -> None:
    garbage = _Node()
    gone = weakref.ref(garbage)
    del garbage
    kept = _Node()
    try:
        settle_heap()
        assert gone() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() > 0
        assert not gc.is_tracked(kept) or kept not in gc.get_objects(generation=2)
    finally:
        gc.unfreeze()
