"""Run xdpctl's compiled programs with BPF_PROG_TEST_RUN, outside any hook.

A :class:`ProgramBench` loads the root and stage objects for one hook kind
(xdp or tc) under a pin directory, wires the chain and runs frames through
it: the same objects, maps and chain an attached hook uses, without an
interface.
"""

from __future__ import annotations

import errno
import os
import uuid

import pytest

from xdpctl.config import Settings
from xdpctl.core import counters
from xdpctl.core.context import Context
from xdpctl.core.errors import BpfError
from xdpctl.core.hooks import ROOT_PROG, STAGES, pin_path_for
from xdpctl.kernel import bpffs, maps, objects, testrun

XDP_PASS, XDP_DROP = testrun.XDP_PASS, testrun.XDP_DROP
TC_ACT_OK, TC_ACT_SHOT = testrun.TC_ACT_OK, testrun.TC_ACT_SHOT
ETH_HLEN, ETH_P_IP, ETH_P_IPV6 = 14, 0x0800, 0x86DD


def temp_settings(state_dir: str, tag: str | None = None, **capacity) -> Settings:
    tag = tag or uuid.uuid4().hex[:10]
    s = Settings(pin_dir=f"/sys/fs/bpf/xdpctl-test-{tag}", state_dir=state_dir)
    s.capacity.update(capacity)
    return s


class ProgramBench:
    def __init__(self, ctx: Context, kind: str, stages: tuple[str, ...] = ("counter",), name: str = "bench"):
        assert kind in ("xdp", "tc")
        self.ctx = ctx
        self.kind = kind
        ctx.kernel_ready()
        self.dir = os.path.join(ctx.settings.pin_dir, "bench", name, kind)
        bpffs.makedirs(self.dir)
        pin = pin_path_for(ctx, self.dir)
        self.loaded: dict[str, objects.Loaded] = {}
        self.loaded["root"] = objects.load(objects.object_path(f"{kind}_root"), pin_path=pin)
        self.chain = maps.Map.from_pin(os.path.join(self.dir, "xc_chain"))
        for s in stages:
            st = STAGES[s]
            ld = objects.load(objects.object_path(st.object_name("xdp" if kind == "xdp" else "tc-ingress")),
                              pin_path=pin, max_entries=dict(ctx.settings.capacity))
            self.loaded[s] = ld
            self.chain.update_fd(st.slot, ld.prog_fd(st.prog))
        self.root_fd = self.loaded["root"].prog_fd(ROOT_PROG)

    def stage_fd(self, stage: str) -> int:
        return self.loaded[stage].prog_fd(STAGES[stage].prog)

    def run(self, frame: bytes, repeat: int = 1, fd: int | None = None) -> testrun.RunResult:
        return testrun.run(self.root_fd if fd is None else fd, frame, repeat)

    def refused(self, frame: bytes) -> bool:
        """True for a frame that BPF_PROG_TEST_RUN does not run through this
        bench's programs: shorter than an Ethernet header, or, for TC
        (SCHED_CLS, which gets an skb), with an IPv4 or IPv6 ethertype and
        less than a whole IPv4 (20 bytes) or IPv6 (40 bytes) header after
        it. The kernel answers EINVAL before the program runs. Real traffic
        carries such frames: tests/netns sends them through TC."""
        if len(frame) < ETH_HLEN:
            return True
        if self.kind != "tc":
            return False
        need = {ETH_P_IP: 20, ETH_P_IPV6: 40}.get(int.from_bytes(frame[12:14], "big"), 0)
        return len(frame) < ETH_HLEN + need

    def assert_refused(self, frame: bytes) -> None:
        """Check that the kernel refuses a frame refused() names (EINVAL): a
        kernel that starts running such frames makes the caller's test fail
        instead of leaving them unchecked."""
        assert self.refused(frame), frame.hex()
        with pytest.raises(BpfError) as ei:
            self.run(frame)
        assert ei.value.errno == errno.EINVAL, (ei.value, frame.hex())

    def passed(self, retval: int) -> bool:
        return retval == (XDP_PASS if self.kind == "xdp" else TC_ACT_OK)

    def dropped(self, retval: int) -> bool:
        return retval == (XDP_DROP if self.kind == "xdp" else TC_ACT_SHOT)

    def percpu_sums(self, map_name: str) -> dict[int, tuple[int, int]]:
        with maps.Map.from_pin(os.path.join(self.dir, map_name)) as m:
            return counters.sum_percpu(m)

    def reset(self, map_name: str) -> None:
        with maps.Map.from_pin(os.path.join(self.dir, map_name)) as m:
            m.clear()

    def close(self) -> None:
        self.chain.close()
        for ld in self.loaded.values():
            ld.close()
        bpffs.remove_tree(self.dir)

    def __enter__(self) -> "ProgramBench":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
