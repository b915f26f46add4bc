"""Sections 1 and 2: drop-path cost per packet with BPF_PROG_TEST_RUN.

xdpctl: the real objects (xdp_root -> xdp_droplist through the chain, and
the drop-list program alone) over maps filled by DropList.import_list.
Baseline: bench/bpf/lpm_baseline.c, one kernel LPM trie lookup per packet,
filled with the same prefixes by batch update.

Every number is the kernel's own average over ``repeat`` runs of one
64-byte frame (BPF_PROG_TEST_RUN duration); the table shows the median of
several such runs. The same frame is run again and again, so the lookups
are cache-warm: this is the cost of the code path, not of DRAM misses
(the "spray" variant in random.py covers those).
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

from xdpctl.core import droplist as dl
from xdpctl.core.context import Context
from xdpctl.kernel import bpffs, objects, testrun
from xdpctl.testing.progs import ProgramBench, temp_settings

from . import build, frames, rulesets
from .common import CLEANUP, log, median, pin_dir, spread, temp_dir

XDP_DROP, XDP_PASS = testrun.XDP_DROP, testrun.XDP_PASS
VERDICT = {0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}


@dataclass
class Probe:
    name: str        # match | miss | prefix
    frame: bytes
    want: int        # expected XDP verdict


def probes(rs: rulesets.RuleSet) -> list[Probe]:
    out = [Probe("match", frames.udp_from(rs.family, rs.match_addr), XDP_DROP),
           Probe("miss", frames.udp_from(rs.family, rs.miss_addr), XDP_PASS)]
    if rs.prefix_addr is not None:
        out.append(Probe("prefix", frames.udp_from(rs.family, rs.prefix_addr), XDP_DROP))
    return out


def time_prog(fd: int, frame: bytes, repeat: int, runs: int) -> tuple[float, list[int], int]:
    """(median ns/pkt, every run's ns/pkt, verdict) for one program and frame."""
    testrun.run(fd, frame, max(1000, repeat // 20))  # warm the path
    samples = []
    ret = -1
    for _ in range(runs):
        r = testrun.run(fd, frame, repeat)
        samples.append(r.duration_ns)
        ret = r.retval
    return median(samples), samples, ret


# ---------------------------------------------------------------------------
# xdpctl
# ---------------------------------------------------------------------------
class XdpctlDropPath:
    """A private pin dir + state with the droplist stage behind the root,
    as ProgramBench builds it; rules loaded with DropList.import_list."""

    def __init__(self, label: str):
        self.state_dir = temp_dir(f"state-{label}")
        s = temp_settings(self.state_dir)
        s.pin_dir = pin_dir(label)
        self.ctx = Context(s)
        self.ctx.kernel_ready()
        self.bench = ProgramBench(self.ctx, "xdp", ("droplist",))
        self._closed = False
        self._cleanup = CLEANUP.push(f"close xdpctl bench {label}", self.close)

    def load(self, rs: rulesets.RuleSet) -> float:
        pf = rs.prefixes()
        t = time.perf_counter()
        dl.DropList(self.ctx).import_list("bench", pf)
        return time.perf_counter() - t

    def fds(self) -> dict[str, int]:
        return {"chain": self.bench.root_fd, "alone": self.bench.stage_fd("droplist")}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.bench.close()
        self.ctx.close()
        bpffs.remove_tree(self.ctx.settings.pin_dir)


# ---------------------------------------------------------------------------
# LPM baseline
# ---------------------------------------------------------------------------
KEY4 = struct.Struct("=I4s")
KEY6 = struct.Struct("=I16s")


def lpm_keys(rs: rulesets.RuleSet) -> bytes:
    if rs.family == 4:
        pk = KEY4.pack
        return b"".join(pk(p, n.to_bytes(4, "big")) for n, p in zip(rs.nets, rs.plens))
    pk = KEY6.pack
    return b"".join(pk(p, n.to_bytes(16, "big")) for n, p in zip(rs.nets, rs.plens))


class LpmBaseline:
    def __init__(self, rs: rulesets.RuleSet):
        cap = max(16, rs.count + 16)
        self.loaded = objects.load(build.obj("lpm_baseline"), max_entries={"lpm_v4": cap, "lpm_v6": cap})
        self._cleanup = CLEANUP.push("close LPM baseline", self.loaded.close)
        self.fd = self.loaded.prog_fd("lpm_baseline")
        self.rs = rs

    def load(self) -> float:
        keys = lpm_keys(self.rs)
        vals = struct.pack("=I", 1) * self.rs.count
        with self.loaded.map("lpm_v4" if self.rs.family == 4 else "lpm_v6") as m:
            t = time.perf_counter()
            m.update_batch(keys, vals, self.rs.count)
            return time.perf_counter() - t

    def close(self) -> None:
        self._cleanup()


# ---------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------
def run(cfg) -> dict:
    """Returns {"drop_path": rows, "lpm": rows, "raw": [...]} for report.py."""
    raw = []
    for family in cfg.families:
        for kind in cfg.kinds:
            for count in cfg.sizes:
                rs = rulesets.make(family, kind, count)
                pr = probes(rs)
                entry = {"family": family, "kind": kind, "count": count,
                         "plen_hist": rs.plen_hist if count <= 10000 else _short_hist(rs),
                         "xdpctl": {}, "lpm": {}, "errors": []}
                log(f"test-run: {rs.label} {count:,} rules: xdpctl import")
                xp = XdpctlDropPath(f"tr{family}{kind[0]}{count}")
                try:
                    entry["xdpctl_load_s"] = xp.load(rs)
                    for pname, fd in xp.fds().items():
                        for p in pr:
                            ns, samples, ret = time_prog(fd, p.frame, cfg.repeat, cfg.runs)
                            entry["xdpctl"][f"{pname}_{p.name}"] = {"ns": ns, "samples": samples,
                                                                   "spread": spread(samples)}
                            if ret != p.want:
                                entry["errors"].append(f"xdpctl {pname} {p.name}: verdict {VERDICT.get(ret, ret)}, "
                                                       f"expected {VERDICT[p.want]}")
                finally:
                    xp.close()
                log(f"test-run: {rs.label} {count:,} rules: LPM baseline")
                lb = LpmBaseline(rs)
                try:
                    entry["lpm_load_s"] = lb.load()
                    for p in pr:
                        ns, samples, ret = time_prog(lb.fd, p.frame, cfg.repeat, cfg.runs)
                        entry["lpm"][p.name] = {"ns": ns, "samples": samples, "spread": spread(samples)}
                        if ret != p.want:
                            entry["errors"].append(f"lpm {p.name}: verdict {VERDICT.get(ret, ret)}, "
                                                   f"expected {VERDICT[p.want]}")
                finally:
                    lb.close()
                for e in entry["errors"]:
                    log(f"  WRONG VERDICT: {e}")
                raw.append(entry)
    return {"raw": raw}


def _short_hist(rs: rulesets.RuleSet) -> dict:
    return {p: c for p, c in rs.plen_hist.items()}


# ---------------------------------------------------------------------------
# Cache-cold variant: a different source address on every packet
# ---------------------------------------------------------------------------
SPRAY_MAX = 1 << 20


class Spray:
    """bench/bpf/spray.c loaded with a list of source addresses; tail-calls
    whatever program target() puts behind it."""

    def __init__(self, family: int, addrs: list[int]):
        n = max(1, min(len(addrs), SPRAY_MAX))
        self.loaded = objects.load(build.obj("spray"), max_entries={"spray_addrs": n})
        self._cleanup = CLEANUP.push("close spray", self.loaded.close)
        width = 4 if family == 4 else 16
        keys = struct.pack(f"={n}I", *range(n))
        vals = b"".join(a.to_bytes(width, "big").ljust(16, b"\0") for a in addrs[:n])
        with self.loaded.map("spray_addrs") as m:
            m.update_batch(keys, vals, n)
        with self.loaded.map("spray_cfg") as m:
            m.update(struct.pack("=I", 0), struct.pack("=I", n))
        self.next = self.loaded.map("spray_next")
        self.fd = self.loaded.prog_fd("spray")
        self.n = n

    def target(self, fd: int) -> None:
        self.next.update_fd(0, fd)

    def close(self) -> None:
        self.next.close()
        self._cleanup()


class Probes:
    """bench/bpf/probe_ops.c and probe_parse.c: prices of single ingredients."""

    def __init__(self):
        self.ops = objects.load(build.obj("probe_ops"))
        self._c1 = CLEANUP.push("close probe_ops", self.ops.close)
        self.parse = objects.load(build.obj("probe_parse"))
        self._c2 = CLEANUP.push("close probe_parse", self.parse.close)

    @property
    def empty_fd(self) -> int:
        return self.ops.prog_fd("empty")

    def fds(self) -> dict[str, int]:
        d = {n: self.ops.prog_fd(n) for n in ("empty", "ktime8", "coarse8", "jiffies8", "atomic8", "add8", "lookup8")}
        d["parse"] = self.parse.prog_fd("probe_parse")
        return d

    def close(self) -> None:
        self._c1()
        self._c2()
