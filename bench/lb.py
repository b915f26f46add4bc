"""Section lb: the load balancer's cost per packet and its Maglev tables.

Per packet (BPF_PROG_TEST_RUN, the hook program `xdp_hook` of one private
pin directory, 64-byte IPv4 frames, measured in alternating rounds with
bench.testrun.run_jobs): the counter stage alone, the drop list alone on a
frame its one /32 rule drops, and the lb stage alone on a new flow (a TCP
SYN: ring lookup and a connection-table insert, every run) and on an
established flow (an ACK of a flow whose entry exists: one connection-table
lookup). The VIP has 100 backends and a 65537-slot table. Beside them,
new flows from 2^20 distinct clients (bench/bpf/spray.c writes the next
source into the SYN before each run): every SYN is a real insert into a
full connection table (an eviction), cache-cold; the harness's own cost
(spray tail-calling an empty program) is subtracted.

Maglev (pure Python, this process): build time of a 65537-slot table for
10, 100 and 1000 backends of weight 1 (best of several builds), and the
share of slots that move when one of N backends is removed, next to 1/N.
"""

from __future__ import annotations

import socket
import struct
import time

from tests.support.progs import ProgramBench, temp_settings
from xdpctl.core.context import Context
from xdpctl.core.lb import maglev, tables
from xdpctl.core.lb.service import LoadBalancer
from xdpctl.core.prefixes import Prefix
from xdpctl.core.rules.service import DropList
from xdpctl.kernel import bpffs, testrun
from xdpctl.lab import inet_checksum

from . import frames
from .common import CLEANUP, log, pin_dir, temp_dir
from .testrun import Job, Probes, Spray, run_jobs

VIP = "192.0.2.10"
HOOK_MAC = "02:00:00:00:00:02"
BACKENDS = 100
TABLE = 65537
CLIENT = 0x0A000001            # 10.0.0.1
BLOCKED = 0xC6336401           # 198.51.100.1: the drop list's one rule
SIZES = (10, 100, 1000)
SPRAY_CLIENTS = 1 << 20        # distinct SYN sources: 8x the connection table


def tcp_frame(src: int, dst: int, sport: int, dport: int, flags: int, length: int = frames.FRAME_LEN) -> bytes:
    """A TCP frame of exactly ``length`` bytes to the hook's MAC."""
    plen = length - 14 - 20 - 20
    s, d = src.to_bytes(4, "big"), dst.to_bytes(4, "big")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 20 + plen, 1, 0, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + bytes(plen)
    c = inet_checksum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    return bytes.fromhex(HOOK_MAC.replace(":", "")) + frames.SRC_MAC + b"\x08\x00" + ip + tcp


SYN, ACK = 0x02, 0x10


class LbBench:
    """A private pin dir and state: the VIP and its backends through
    LoadBalancer, three programs (counter, drop list, lb)."""

    def __init__(self):
        self.state_dir = temp_dir("state-lb")
        s = temp_settings(self.state_dir)
        s.pin_dir = pin_dir("lb")
        self.ctx = Context(s)
        self.ctx.kernel_ready()
        self.benches: dict[str, ProgramBench] = {}
        self._cleanup = CLEANUP.push("close lb bench", self.close)
        lb = LoadBalancer(self.ctx)
        lb.add_vip(VIP, "tcp", 80, TABLE)
        for i in range(BACKENDS):
            lb.add_backend(f"10.1.{i // 256}.{i % 256}", VIP, "tcp", 80, mac=f"02:00:00:01:{i // 256:02x}:{i % 256:02x}")
        DropList(self.ctx).import_list("bench", [Prefix(4, BLOCKED, 32)])
        for stage in ("counter", "droplist", "lb"):
            self.benches[stage] = ProgramBench(self.ctx, "xdp", (stage,), name=f"lb-{stage}")
        with self.benches["lb"].map("xc_lb_hook") as m:
            m.update(struct.pack("=I", 0), tables.hook_value(HOOK_MAC))

    def close(self) -> None:
        for b in self.benches.values():
            b.close()
        self.benches = {}
        self.ctx.close()
        bpffs.remove_tree(self.ctx.settings.pin_dir)


def per_packet(cfg) -> dict:
    b = LbBench()
    try:
        vip = int.from_bytes(socket.inet_aton(VIP), "big")
        new = tcp_frame(CLIENT, vip, 40000, 80, SYN)
        est = tcp_frame(CLIENT + 1, vip, 40001, 80, ACK)
        r = testrun.run(b.benches["lb"].fd, tcp_frame(CLIENT + 1, vip, 40001, 80, SYN))  # the flow's entry
        assert r.retval == testrun.XDP_TX, r.retval
        out: dict = {}
        jobs = [Job(out, "counter", b.benches["counter"].fd, frames.udp_from(4, CLIENT), testrun.XDP_PASS,
                    cfg.repeat, "lb bench"),
                Job(out, "droplist_match", b.benches["droplist"].fd, frames.udp_from(4, BLOCKED), testrun.XDP_DROP,
                    cfg.repeat, "lb bench"),
                Job(out, "lb_established", b.benches["lb"].fd, est, testrun.XDP_TX, cfg.repeat, "lb bench"),
                Job(out, "lb_new", b.benches["lb"].fd, new, testrun.XDP_TX, cfg.repeat, "lb bench")]
        sp, pb = Spray(4, [0x0B000000 + i for i in range(SPRAY_CLIENTS)]), Probes()
        jobs += [Job(out, "spray_floor", sp.fd, new, None, cfg.repeat // 5, "lb bench",
                     before=lambda: sp.target(pb.empty_fd)),
                 Job(out, "lb_new_spray", sp.fd, new, testrun.XDP_TX, cfg.repeat // 5, "lb bench",
                     before=lambda: sp.target(b.benches["lb"].fd))]
        errors: list[str] = []
        try:
            run_jobs(jobs, cfg.runs, errors)
        finally:
            sp.close()
        out["errors"] = errors
        out["lb_new_distinct"] = {"ns": out["lb_new_spray"]["ns"] - out["spray_floor"]["ns"]}
        m = out["droplist_match"]["ns"]
        out["ratios"] = {"established_vs_droplist": out["lb_established"]["ns"] / m,
                         "new_vs_droplist": out["lb_new"]["ns"] / m}
        return out
    finally:
        b.close()


def _names(n: int) -> list[str]:
    return [f"10.2.{i // 256}.{i % 256}" for i in range(n)]


def maglev_figures(cfg) -> dict:
    builds = 3 if cfg.quick else 7
    out: dict = {"table": TABLE, "builds": builds, "rows": []}
    for n in SIZES:
        names = _names(n)
        times = []
        for _ in range(builds):
            t = time.perf_counter()
            old = maglev.build([(x, 1) for x in names], TABLE)
            times.append(time.perf_counter() - t)
        gone = n // 2
        keep = [k for k in range(n) if k != gone]
        new = [keep[i] for i in maglev.build([(x, 1) for k, x in enumerate(names) if k != gone], TABLE)]
        out["rows"].append({"backends": n, "build_ms": min(times) * 1000, "build_ms_all": [t * 1000 for t in times],
                            "moved": maglev.moved(old, new), "share": old.count(gone) / TABLE})
    return out


def run(cfg) -> dict:
    log("lb: per-packet cost (BPF_PROG_TEST_RUN)")
    res = {"per_packet": per_packet(cfg)}
    log("lb: Maglev build times and disruption")
    res["maglev"] = maglev_figures(cfg)
    return res


def render(res: dict) -> list[str]:
    """The report's lines for this section."""
    pp, mg = res.get("per_packet", {}), res.get("maglev", {})
    out = ["## 6. Load balancer", "",
           f"BPF_PROG_TEST_RUN of the hook program with one stage on, 64-byte IPv4 frames, {BACKENDS} backends, "
           f"a {TABLE}-slot table; same rounds for every row. new flow = a TCP SYN (ring + connection-table "
           "insert on every run); established = an ACK of a flow with an entry.", "",
           "| path | ns/pkt | vs drop-list match |", "|---|---:|---:|"]
    base = pp.get("droplist_match", {}).get("ns")
    for key, label in (("counter", "counter"), ("droplist_match", "drop list, /32 match"),
                       ("lb_established", "lb, established flow"), ("lb_new", "lb, new flow (SYN)")):
        ns = pp.get(key, {}).get("ns")
        if ns is not None:
            out.append(f"| {label} | {ns:.0f} | {ns / base:.2f}x |" if base else f"| {label} | {ns:.0f} | - |")
    distinct = pp.get("lb_new_distinct", {}).get("ns")
    if distinct is not None:
        out += ["", f"New flows from {SPRAY_CLIENTS:,} distinct clients (each SYN a real insert into the full "
                f"connection table, evicting; cache-cold; harness subtracted): {distinct:.0f} ns/pkt."]
    out += ["", f"Maglev, {mg.get('table')} slots, weight 1 (pure Python, best of {mg.get('builds')} builds); "
            "moved = share of slots whose backend changes when one backend is removed:", "",
            "| backends | build | moved | 1/N |", "|---:|---:|---:|---:|"]
    for r in mg.get("rows", []):
        out.append(f"| {r['backends']} | {r['build_ms']:.1f} ms | {r['moved']:.4f} | {1 / r['backends']:.4f} |")
    return out + [""]
