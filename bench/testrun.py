"""Sections 1 and 2: drop-path cost per packet with BPF_PROG_TEST_RUN.

xdpctl: the real hook program (xdp_hook.o with the drop-list stage on)
over maps filled by DropList.import_list.
Baseline: bench/bpf/lpm_baseline.c, one kernel LPM trie lookup per packet,
filled with the same prefixes by batch update.

Every number is the kernel's own average over ``repeat`` runs of one
64-byte frame (BPF_PROG_TEST_RUN duration); the table shows the median of
several such runs. The same frame is run again and again, so the lookups
are cache-warm: this is the cost of the code path, not of DRAM misses
(the cache-cold "spray" variant at the end of this file covers those).
"""

from __future__ import annotations

import gc
import os
import random
import struct
import time
from dataclasses import dataclass

from tests.support.progs import ProgramBench, temp_settings
from xdpctl.core.rules import service as dl
from xdpctl.core.context import Context
from xdpctl import abi
from xdpctl.kernel import bpffs, maps, objects, testrun

from . import build, frames, rulesets
from .common import CLEANUP, log, median, pin_dir, spread, temp_dir

XDP_DROP, XDP_PASS = testrun.XDP_DROP, testrun.XDP_PASS
SPRAY_MAX = 1 << 20  # distinct sources per cache-cold run
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
    """A private pin dir + state with the hook program running the drop
    list, as ProgramBench builds it; rules loaded with DropList.import_list."""

    def __init__(self, label: str, capacity: dict | None = None):
        self.state_dir = temp_dir(f"state-{label}")
        s = temp_settings(self.state_dir, **(capacity or {}))
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
        return {"chain": self.bench.fd}

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
def spray_addrs(rs: rulesets.RuleSet, which: str, n_max: int = SPRAY_MAX) -> list[int]:
    """Sources for the cache-cold runs: every host rule of the set (up to
    n_max, shuffled) for "match"; random addresses of the reserved miss
    range for "miss"; for "wide" (exact sets only), n_max random addresses
    of the whole unicast space the rules are drawn from, none of them a
    rule: a flood from random sources."""
    rng = random.Random(f"spray-{rs.family}-{rs.kind}-{rs.count}-{which}")
    if which == "match":
        hosts = [n for n, p in zip(rs.nets, rs.plens) if p == rs.host_len]
        rng.shuffle(hosts)
        return hosts[:n_max]
    if which == "wide":
        assert rs.kind == "exact", "a wide spray misses only where every rule is a host"
        rules, out = set(rs.nets), []
        while len(out) < n_max:
            a = rulesets.random_host(rng, rs.family)
            if a not in rules:
                out.append(a)
        return out
    n = min(n_max, 1 << 16)
    if rs.family == 4:
        return [rulesets.V4_MISS_NET | x for x in rng.sample(range(1 << (32 - rulesets.V4_MISS_PLEN)), n)]
    return [rulesets.V6_MISS_NET | rng.getrandbits(128 - rulesets.V6_MISS_PLEN) for _ in range(n)]


def nonip_frame() -> bytes:
    """An ARP request: not IP, so the drop list looks nothing up."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, frames.SRC_MAC, bytes(4), bytes(6), bytes(4))
    return (b"\xff" * 6 + frames.SRC_MAC + b"\x08\x06" + arp).ljust(60, b"\0")


@dataclass
class Job:
    store: dict
    key: str
    fd: int
    frame: bytes
    want: int | None
    repeat: int
    what: str
    before: object = None    # called before each run (e.g. point the spray at a target)


def run_jobs(jobs: list[Job], runs: int, errors: list[str]) -> None:
    """Run every job `runs` times, round-robin: job 1, job 2, ..., job 1, ...
    so a noisy moment hits every peer alike instead of one of them."""
    samples: dict[int, list[int]] = {i: [] for i in range(len(jobs))}
    rets: dict[int, int] = {}
    for i, j in enumerate(jobs):  # warm every path once
        if j.before:
            j.before()
        testrun.run(j.fd, j.frame, max(1000, j.repeat // 20))
    for _ in range(runs):
        for i, j in enumerate(jobs):
            if j.before:
                j.before()
            r = testrun.run(j.fd, j.frame, j.repeat)
            samples[i].append(r.duration_ns)
            rets[i] = r.retval
    for i, j in enumerate(jobs):
        j.store[j.key] = {"ns": median(samples[i]), "samples": samples[i], "spread": spread(samples[i])}
        if j.want is not None and rets[i] != j.want:
            errors.append(f"{j.what} {j.key}: verdict {VERDICT.get(rets[i], rets[i])}, expected {VERDICT[j.want]}")


def run(cfg) -> dict:
    raw = []
    probes_out: dict = {}
    pb = Probes()
    try:
        log("test-run: probes (single ingredients)")
        jobs = [Job(probes_out, f"{name}_v{family}", fd,
                    frames.udp_from(family, rulesets.V4_LO if family == 4 else rulesets.V6_LO), None, cfg.repeat, "probe")
                for name, fd in pb.fds().items() for family in cfg.families]
        run_jobs(jobs, cfg.runs, [])
        for family in cfg.families:
            for kind in cfg.kinds:
                for count in cfg.sizes:
                    raw.append(_guard(_config, cfg, pb, family, kind, count))
        sizing = [_guard(_sizing, cfg, pb, family, count) for family in cfg.families for count in cfg.sizing_sizes]
    finally:
        pb.close()
    memory = [_guard(_memory, cfg, None, 4, count) for count in cfg.memory_sizes]
    return {"raw": raw, "probes": probes_out, "sizing": sizing, "memory": memory}


# ---------------------------------------------------------------------------
# Memory: what the shared maps take, as the kernel accounts it (memlock)
# ---------------------------------------------------------------------------
def map_memory(shared_dir: str) -> dict[str, int]:
    """Bytes per pinned map, from the kernel's accounting (fdinfo memlock)."""
    out = {}
    for name in sorted(os.listdir(shared_dir)):
        with maps.Map.from_pin(os.path.join(shared_dir, name)) as m:
            with open(f"/proc/self/fdinfo/{m.fd}") as f:
                for line in f:
                    if line.startswith("memlock:"):
                        out[name] = int(line.split()[1])
    return out


def _memory(cfg, _pb, family: int, count: int) -> dict:
    """Import ``count`` exact rules into maps sized to hold them (default
    capacities, raised where they are too small) and read what every
    shared map takes."""
    rs = rulesets.make(family, "exact", count)
    cap = {}
    if count >= abi.MAP_SPECS["xc_rule_stats"].max_entries:
        cap = {"xc_rule_stats": count + 1024, "xc_v4_l32" if family == 4 else "xc_v6_l128": 2 * count}
    log(f"memory: IPv{family} exact {count:,}")
    xp = XdpctlDropPath(f"mem{family}{count}", cap or None)
    try:
        load_s = xp.load(rs)
        per_map = map_memory(xp.ctx.settings.shared_map_dir)
    finally:
        xp.close()
    return {"family": family, "kind": "exact", "count": count, "load_s": load_s, "capacity": cap,
            "per_map": per_map, "total": sum(per_map.values()), "errors": []}


def _guard(fn, cfg, pb, family, *args) -> dict:
    """One configuration; a failure is recorded and the others go on."""
    try:
        return fn(cfg, pb, family, *args)
    except Exception as exc:
        log(f"  FAILED: {type(exc).__name__}: {exc}")
        kind = args[0] if len(args) > 1 else "exact"
        return {"family": family, "kind": kind, "count": args[-1], "failed": f"{type(exc).__name__}: {exc}",
                "xdpctl": {}, "lpm": {}, "spray": {}, "default": {}, "sized": {}, "capacity": {}, "errors": []}


# ---------------------------------------------------------------------------
# Map sizing experiment: the same rules with every drop-list map sized to
# what the rule set needs instead of the default capacities
# ---------------------------------------------------------------------------
def needed_capacity(rs: rulesets.RuleSet) -> dict[str, int]:
    """Capacities (max_entries) that hold rs at a load factor of at most
    one half: the next power of two at or above 2 x the entries the
    compiler produces, at least 64."""
    from xdpctl.core import dlcompile as dlc

    rules = [dlc.Rule(i + 1, rs.family, n, p) for i, (n, p) in enumerate(zip(rs.nets, rs.plens))]
    comp = dlc.compile_full(rules)

    def fit(n: int) -> int:
        return max(64, 1 << max(0, 2 * n - 1).bit_length())

    cap = {m: fit(t.count) for m, t in comp.items() if m != dlc.L16}
    cap["xc_rule_stats"] = fit(rs.count + 2)
    return cap


def _sizing(cfg, pb: Probes, family: int, count: int) -> dict:
    rs = rulesets.make(family, "exact", count)
    out = {"family": family, "kind": "exact", "count": count, "capacity": needed_capacity(rs), "default": {},
           "sized": {}, "errors": []}
    log(f"test-run: map sizing, IPv{family} exact {count:,}")
    paths, sprays = {}, {}
    try:
        paths["default"] = XdpctlDropPath(f"sz{family}d{count}")
        paths["sized"] = XdpctlDropPath(f"sz{family}s{count}", out["capacity"])
        for xp in paths.values():
            xp.load(rs)
        pr = probes(rs)
        jobs = []
        for which in ("match", "miss"):
            sp = sprays[which] = Spray(family, spray_addrs(rs, which))
            want = XDP_DROP if which == "match" else XDP_PASS
            jobs.append(Job(out, f"floor_{which}", sp.fd, pr[0].frame, XDP_DROP, cfg.spray_repeat, "sizing",
                            before=lambda sp=sp: sp.target(pb.empty_fd)))
            for label, xp in paths.items():
                fd = xp.fds()["chain"]
                jobs.append(Job(out[label], f"cold_{which}", sp.fd, pr[0].frame, want, cfg.spray_repeat, "sizing",
                                before=lambda sp=sp, fd=fd: sp.target(fd)))
        for label, xp in paths.items():
            for p in pr:
                jobs.append(Job(out[label], f"warm_{p.name}", xp.fds()["chain"], p.frame, p.want, cfg.repeat,
                                "sizing"))
        run_jobs(jobs, cfg.spray_runs, out["errors"])
    finally:
        for sp in sprays.values():
            sp.close()
        for xp in paths.values():
            xp.close()
    return out


def _config(cfg, pb: Probes, family: int, kind: str, count: int) -> dict:
    rs = rulesets.make(family, kind, count)
    pr = probes(rs)
    entry = {"family": family, "kind": kind, "count": count, "plen_hist": rs.plen_hist,
             "xdpctl": {}, "lpm": {}, "spray": {}, "errors": []}
    log(f"test-run: {rs.label} {count:,} rules: xdpctl import")
    xp = XdpctlDropPath(f"tr{family}{kind[0]}{count}")
    lb = None
    sprays: dict[str, Spray] = {}
    try:
        gc.collect()
        gc.freeze()  # keep the bench's own objects out of the product's collections
        try:
            entry["xdpctl_load_s"] = xp.load(rs)
        finally:
            gc.unfreeze()
        lb = LpmBaseline(rs)
        entry["lpm_load_s"] = lb.load()
        log(f"test-run: {rs.label} {count:,} rules: measuring xdpctl and LPM baseline")
        jobs = []
        for pname, fd in xp.fds().items():
            for p in pr:
                jobs.append(Job(entry["xdpctl"], f"{pname}_{p.name}", fd, p.frame, p.want, cfg.repeat, "xdpctl"))
            if count == min(cfg.sizes):
                jobs.append(Job(entry["xdpctl"], f"{pname}_nonip", fd, nonip_frame(), XDP_PASS, cfg.repeat, "xdpctl"))
        for p in pr:
            jobs.append(Job(entry["lpm"], p.name, lb.fd, p.frame, p.want, cfg.repeat, "lpm"))
        run_jobs(jobs, cfg.runs, entry["errors"])
        if cfg.spray:
            log(f"test-run: {rs.label} {count:,} rules: cache-cold (spray)")
            frame = pr[0].frame
            jobs = []
            for which in ("match", "miss") + (("wide",) if kind == "exact" else ()):
                sp = sprays[which] = Spray(family, spray_addrs(rs, which))
                entry["spray"][f"{which}_n"] = sp.n
                for tname, tfd, want in (("floor", pb.empty_fd, XDP_DROP),
                                         ("xdpctl", xp.fds()["chain"], XDP_DROP if which == "match" else XDP_PASS),
                                         ("lpm", lb.fd, XDP_DROP if which == "match" else XDP_PASS)):
                    jobs.append(Job(entry["spray"], f"{tname}_{which}", sp.fd, frame, want, cfg.spray_repeat, "spray",
                                    before=lambda sp=sp, tfd=tfd: sp.target(tfd)))
            run_jobs(jobs, cfg.spray_runs, entry["errors"])
    finally:
        for sp in sprays.values():
            sp.close()
        if lb is not None:
            lb.close()
        xp.close()
    for e in entry["errors"]:
        log(f"  WRONG VERDICT: {e}")
    return entry


# ---------------------------------------------------------------------------
# Cache-cold variant: a different source address on every packet
# ---------------------------------------------------------------------------


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
