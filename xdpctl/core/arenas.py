"""Keep the C allocator from spreading freed memory over many arenas.

glibc gives each new thread that calls malloc an arena of its own, up to
eight per CPU. The REST service runs requests on a pool of threads and a
big change on more (the kernel write beside the database side, the
catch-up): a megabyte-sized buffer freed in one arena is not reused by an
allocation in another, so the process's resident memory ratchets up with
each big change. Python threads hold the GIL while they allocate anyway,
so two arenas cost no contention worth measuring. Measured by hand, a
1M-prefix `PUT /v1/lists` beside 100k rules, repeated: the service's peak
went from 525-595 MB to about 425 MB, the times unchanged
(docs/internals.md, "Memory of the service").

The limit must be set before the process starts other threads: the CLI's
entry point and the service's app factory do it first thing. An operator's
own MALLOC_ARENA_MAX (or glibc tunable) stands.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8   # mallopt parameter (malloc.h)
ARENAS = 2


def limit() -> bool:
    """Cap the C allocator's arenas at ARENAS. True when set; False when
    the environment sets it already or the C library is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX") or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    return mallopt(M_ARENA_MAX, ARENAS) == 1
