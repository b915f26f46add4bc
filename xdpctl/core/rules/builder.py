"""xdp_bits.o over the pinned drop-list maps (bpf/include/bits.h): one
BPF_PROG_TEST_RUN per request, for the work that is cheaper in the kernel
than through map syscalls: building or copying a set's presence bitmap,
zeroing a range of rule statistics."""

from __future__ import annotations

import errno
import struct

from ...kernel import objects, testrun
from ..errors import BpfError

OBJECT, PROGRAM = "xdp_bits", "xc_bits_build"
BUILD, COPY, ZERO = 0, 1, 2      # XC_BITS_OP_*
LOOP_MAX = 1 << 23               # bpf_loop's most iterations per call
_FRAME = struct.Struct("=BBBBII")  # set, clear, bands, operation, start, count


def run(kt, what: str, requests) -> None:
    """Run the builder once per (operation, set, clear, bands, start,
    count) of ``requests``, loaded once over the maps ``kt`` has open
    (by fd, not by pin: pins removed meanwhile, say under a catch-up,
    are not made again); ``what`` names the work in an error."""
    with objects.load(objects.object_path(OBJECT), reuse={n: kt.maps[n].fd for n in kt.NAMES}) as obj:
        fd = obj.prog_fd(PROGRAM)
        for op, rule_set, clear, bands, start, count in requests:
            frame = _FRAME.pack(rule_set, int(clear), bands, op, start, count).ljust(64, b"\0")
            r = testrun.run(fd, frame)
            if r.retval != testrun.XDP_PASS:
                raise BpfError(f"the drop-list builder ({what}) answered {r.retval}", errno.EIO)


def zero_stats(kt, start: int, count: int) -> None:
    """Zero the xc_rule_stats entries of ids start .. start + count - 1."""
    run(kt, f"zero the hits of rules {start}..{start + count - 1}",
        [(ZERO, 0, 0, 0, s, min(LOOP_MAX, start + count - s)) for s in range(start, start + count, LOOP_MAX)])
