"""The garbage collector's pauses, kept off the sending schedule.

A full (oldest-generation) collection walks every tracked object of the process: the imported libraries
(SQLAlchemy, pydantic, the SDKs, numpy ...) and whatever the process built before the run. In a process
that sends at a provider's limit that walk is a pause of the event loop: 300–390 ms every 9–10 s on a
2-core AMD EPYC during an embedded run at 6,000/min, each pause a gap of 25–45 calls at the server that
the pacing never makes up (the run reached 0.951–0.961 of the limit).

``frozen_heap`` moves the objects alive when it is entered into the collector's permanent generation for
its length (``gc.freeze``): they are not walked again, so a full collection walks only what the run itself
keeps. Leaving it gives them back (``gc.unfreeze``), so a long-lived process (the API server) collects
them as before between runs; in a process that froze its heap already it changes nothing. A Celery worker
process freezes once, after its start-up (``freeze_startup_heap``): what it imported and built then lives as
long as the process.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    if gc.get_freeze_count():    # the process froze its heap for good: leave it so
        yield
        return
    gc.collect()                 # garbage of before is freed, not frozen
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()
