"""settle_heap (workflows/worker.py): what survived a worker's start-up leaves the cyclic collector's sight,
garbage made before it is collected first, not frozen with it, and the young generation is collected less often."""

from __future__ import annotations

import gc
import weakref

from autonomy_controller.workflows.worker import YOUNG_OBJECTS, settle_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_start_up_garbage_is_collected_and_the_rest_frozen() -> None:
    garbage = _Node()
    gone = weakref.ref(garbage)
    del garbage
    kept = _Node()
    thresholds = gc.get_threshold()
    try:
        settle_heap()
        assert gone() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() > 0
        assert not gc.is_tracked(kept) or kept not in gc.get_objects(generation=2)
        young, *older = gc.get_threshold()
        assert young == YOUNG_OBJECTS > thresholds[0] and older == list(thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_a_short_lived_cycle_is_still_collected() -> None:
    """A higher first threshold delays collecting cycles; it does not stop it."""
    thresholds = gc.get_threshold()
    try:
        settle_heap()
        garbage = _Node()
        gone = weakref.ref(garbage)
        del garbage
        churn = [[n] for n in range(YOUNG_OBJECTS * 2)]  # young container objects, as a worker's activities make
        del churn
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
