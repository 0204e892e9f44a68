"""The collector's view during a run: what was alive before is frozen for the run's length and given back
after; a process that froze its heap for good keeps it frozen."""

from __future__ import annotations

import gc

from accord.worker.heap import freeze_startup_heap, frozen_heap


def _in_oldest_generation(obj: object) -> bool:
    return any(other is obj for other in gc.get_objects(generation=2))


def test_objects_alive_before_the_run_are_not_walked_during_it_and_are_after() -> None:
    assert gc.get_freeze_count() == 0
    before = [object()]                       # a tracked container, alive before the run
    gc.collect()
    assert _in_oldest_generation(before)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        assert not _in_oldest_generation(before)     # in the permanent generation: no collection walks it
        during = [object()]
        gc.collect()
        assert _in_oldest_generation(during)         # what the run keeps is collected as usual
    assert gc.get_freeze_count() == 0
    assert _in_oldest_generation(before)


def test_a_heap_frozen_for_good_stays_frozen() -> None:
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
