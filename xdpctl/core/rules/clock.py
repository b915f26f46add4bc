"""The clock the classifiers compare deadlines with.

The classifiers read bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC at tick
resolution, about half the cost of a precise clock read per rule hit.
Deadlines and last-hit times in the maps are on that clock; the database
keeps wall-clock times.
"""

from __future__ import annotations

import time

CLOCK_MONOTONIC_COARSE = getattr(time, "CLOCK_MONOTONIC_COARSE", 6)


def kernel_ns() -> int:
    """Now, on the clock the classifiers compare deadlines with."""
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)


Clock = tuple[float, int]  # (time.time(), kernel_ns()) read together


def clock_pair() -> Clock:
    """Now on both clocks, read once for a whole change: every deadline of
    the change is converted with this pair, so deadlines equal on the wall
    clock stay equal on the kernel's (which moves a tick at a time)."""
    return time.time(), kernel_ns()


def wall_to_kernel_ns(expires: float | None, now_wall: float | None = None, now_kns: int | None = None) -> int:
    """A wall-clock deadline on the kernel clock (0: never)."""
    if expires is None:
        return 0
    now_wall = time.time() if now_wall is None else now_wall
    now_kns = kernel_ns() if now_kns is None else now_kns
    return max(1, now_kns + int((expires - now_wall) * 1e9))


def kernel_ns_to_wall(ns: int) -> float | None:
    """A kernel-clock time as wall clock (None for 0: never)."""
    if not ns:
        return None
    return time.time() - (kernel_ns() - ns) / 1e9
