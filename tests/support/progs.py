"""Run xdpctl's compiled programs with BPF_PROG_TEST_RUN, outside any hook.

A :class:`ProgramBench` loads the root and stage objects for one hook kind
(xdp or tc) under a pin directory, wires the chain and runs frames through
it: the same objects, maps and chain an attached hook uses, without an
interface.
"""

from __future__ import annotations

import os
import uuid

from xdpctl.config import Settings
from xdpctl.core import counters
from xdpctl.core.context import Context
from xdpctl.core.hooks import ROOT_PROG, STAGES, pin_path_for
from xdpctl.kernel import bpffs, maps, objects, testrun

XDP_PASS, XDP_DROP = testrun.XDP_PASS, testrun.XDP_DROP
TC_ACT_OK, TC_ACT_SHOT = testrun.TC_ACT_OK, testrun.TC_ACT_SHOT


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
