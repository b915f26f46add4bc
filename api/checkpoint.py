"""The service's WAL checkpoints, off the request path.

The service's own connections commit with SQLite's automatic checkpoint off
(:class:`api.deps.ServiceContext`), so no request copies the log into the
database file and syncs both. This thread does, with a connection of its
own, looking at the log file every ``tick`` seconds:

- a PASSIVE checkpoint (it waits for no lock: changes keep committing
  while it copies) once the log has grown by ``pages`` pages, or
  ``delay`` seconds after the first write it has not checkpointed;
- a TRUNCATE checkpoint (the log file back to 0 bytes) once everything is
  checkpointed and nothing has been written for ``idle`` seconds; it gives
  up at once, for the next round, if any connection is busy;
- a last TRUNCATE when the service stops.

A checkpoint syncs the log first, so an answered change reaches the disk
within about ``delay`` seconds (docs/latency.md, Durability).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from xdpctl.core.rules.store import State

log = logging.getLogger("xdpctl.api")

_FRAME = 4096 + 24  # bytes of a log frame: a page of the default size and its header


@dataclass
class Counts:
    """What the checkpoints did (GET /metrics)."""

    runs: dict[str, int] = field(default_factory=lambda: {"passive": 0, "truncate": 0})
    blocked: int = 0
    pages: int = 0          # pages copied into the database file (about: a log that started over
                            # and outgrew the last count is counted short)
    seconds: float = 0.0    # spent checkpointing
    errors: int = 0


class Checkpointer(threading.Thread):
    def __init__(self, db_path: str, *, tick: float = 0.1, delay: float = 1.0, idle: float = 5.0,
                 pages: int = 1000) -> None:
        super().__init__(name="xdpctl-checkpoint", daemon=True)
        self.db_path = db_path
        self.wal_path = db_path + "-wal"
        self.tick, self.delay, self.idle, self.pages = tick, delay, idle, pages
        self.counts = Counts()
        self._done = threading.Event()
        self._state: State | None = None
        self._copied = 0  # pages of the log the last checkpoint found copied

    def wal_bytes(self) -> int:
        try:
            return os.stat(self.wal_path).st_size
        except FileNotFoundError:
            return 0

    def _look(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.wal_path)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def run(self) -> None:
        mark = self._look()          # the log as the last checkpoint left it
        seen, dirty_at, wrote_at = mark, None, time.monotonic()
        while not self._done.wait(self.tick):
            now, cur = time.monotonic(), self._look()
            if cur is None:
                continue
            if cur != seen:
                seen, wrote_at = cur, now
            if cur == mark:
                if cur[0] and now - wrote_at >= self.idle and self._run(truncate=True):
                    mark = seen = self._look()
                continue
            dirty_at = dirty_at or now
            grown = cur[0] - (mark[0] if mark else 0) >= self.pages * _FRAME
            if (grown or now - dirty_at >= self.delay) and self._run(truncate=False):
                mark, dirty_at = cur, None

    def _run(self, truncate: bool) -> bool:
        """One checkpoint; True when it left nothing behind."""
        t = time.perf_counter()
        try:
            if self._state is None:
                self._state = State(self.db_path)
                self._state.defer_checkpoints()
            busy, pages, done = self._state.checkpoint(truncate=truncate)
        except sqlite3.Error as exc:
            self.counts.errors += 1
            log.warning("state database checkpoint failed: %s", exc)
            return False
        c = self.counts
        c.seconds += time.perf_counter() - t
        if busy or done < pages:
            c.blocked += 1
            return False
        c.runs["truncate" if truncate else "passive"] += 1
        c.pages += done - self._copied if done >= self._copied else done  # else the log started over
        self._copied = 0 if truncate else done
        return True

    def stop(self) -> None:
        """End the thread; a last checkpoint empties the log."""
        self._done.set()
        if self.is_alive():
            self.join()
        if self._look() is not None:
            self._run(truncate=True)
        if self._state is not None:
            self._state.close()
            self._state = None
