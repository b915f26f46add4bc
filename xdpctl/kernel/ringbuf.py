"""BPF ring buffers (BPF_MAP_TYPE_RINGBUF) read through libbpf's
ring_buffer__new / __add / __poll: each record is handed to a Python
callable as bytes, in the order the programs submitted them."""

from __future__ import annotations

import ctypes
import errno
from typing import Callable

from ..core.errors import BpfError
from . import libbpf as L


class RingBuffers:
    """One consumer over one or more ring buffer maps (by fd; the caller
    keeps the fds open while this lives)."""

    def __init__(self, fds: list[int], on_record: Callable[[bytes], None]):
        self.on_record = on_record
        self._cb = L.RINGBUF_SAMPLE_FN(self._call)  # held: C calls it until free
        self._rb = None
        lib = L.load()
        self._rb = L.check_ptr(lib.ring_buffer__new(fds[0], self._cb, None, None), "ring_buffer__new")
        for fd in fds[1:]:
            L.check(lib.ring_buffer__add(self._rb, fd, self._cb, None), "ring_buffer__add")

    def _call(self, _ctx, data, size) -> int:
        self.on_record(ctypes.string_at(data, size))
        return 0

    def poll(self, timeout_ms: int) -> int:
        """Consume what is there, waiting up to timeout_ms for a first
        record; the number of records consumed (0 when interrupted)."""
        n = L.load().ring_buffer__poll(self._rb, timeout_ms)
        if n == -errno.EINTR:
            return 0
        if n < 0:
            raise BpfError("ring_buffer__poll", -n)
        return n

    def close(self) -> None:
        if self._rb:
            L.load().ring_buffer__free(self._rb)
            self._rb = None

    def __enter__(self) -> "RingBuffers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
