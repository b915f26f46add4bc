"""BPF_PROG_TEST_RUN: run a loaded program on a frame, in the kernel.

Used by packet tests (verdicts against a reference model) and by the
benchmarks (ns per packet, averaged by the kernel over ``repeat`` runs).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from . import libbpf as L

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
TC_ACT_OK, TC_ACT_SHOT = 0, 2
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1


@dataclass(frozen=True)
class RunResult:
    retval: int
    duration_ns: int  # average per run, as the kernel measured it
    data_out: bytes


def run(prog_fd: int, frame: bytes, repeat: int = 1, out_size: int | None = None,
        ctx_in: bytes | None = None) -> RunResult:
    data = ctypes.create_string_buffer(bytes(frame), len(frame))
    size_out = out_size if out_size is not None else len(frame) + 256
    outbuf = ctypes.create_string_buffer(size_out)
    opts = L.TestRunOpts()
    opts.sz = ctypes.sizeof(L.TestRunOpts)
    opts.data_in = ctypes.addressof(data)
    opts.data_size_in = len(frame)
    opts.data_out = ctypes.addressof(outbuf)
    opts.data_size_out = size_out
    opts.repeat = max(1, repeat)
    cbuf = None
    if ctx_in is not None:
        cbuf = ctypes.create_string_buffer(ctx_in, len(ctx_in))
        opts.ctx_in = ctypes.addressof(cbuf)
        opts.ctx_size_in = len(ctx_in)
    L.check(L.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN")
    return RunResult(opts.retval, opts.duration, outbuf.raw[: opts.data_size_out])


def live_frames(prog_fd: int, frame: bytes, repeat: int, ifindex: int = 1, batch_size: int = 64) -> int:
    """Inject ``repeat`` copies of a frame as live XDP frames (a traffic
    generator without a NIC); returns the average ns per frame."""
    data = ctypes.create_string_buffer(bytes(frame), len(frame))
    # struct xdp_md as ctx: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    ctx = (ctypes.c_uint32 * 6)(0, len(frame), 0, ifindex, 0, 0)
    opts = L.TestRunOpts()
    opts.sz = ctypes.sizeof(L.TestRunOpts)
    opts.data_in = ctypes.addressof(data)
    opts.data_size_in = len(frame)
    opts.ctx_in = ctypes.addressof(ctx)
    opts.ctx_size_in = ctypes.sizeof(ctx)
    opts.repeat = repeat
    opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES
    opts.batch_size = batch_size
    L.check(L.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN (live frames)")
    return opts.duration
