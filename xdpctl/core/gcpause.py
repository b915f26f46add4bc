"""Pause Python's cyclic garbage collector around a burst of allocations.

Parsing or compiling a million-prefix list makes millions of small objects
without cycles; the collector's full passes over them cost seconds and find
nothing. The collector is process-wide, though: pausing it in one thread
pauses it for every thread (the REST service's request handlers, its expiry
task). So it is paused only while the calling thread is the only Python
thread of the process (a CLI run) beside Background threads (making maps,
writing batches: kernel work that makes few objects, such as the maps a
first change makes while it compiles); with other threads alive it keeps
running and the burst simply costs more.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

from . import background


@contextmanager
def collector_paused() -> Iterator[bool]:
    """Yields whether the collector was paused."""
    if not gc.isenabled() or threading.active_count() - background.running() != 1:
        yield False
        return
    gc.disable()
    try:
        yield True
    finally:
        gc.enable()
