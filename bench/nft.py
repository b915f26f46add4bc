"""Section 4: nftables next to xdpctl.

Load time: ``nft -f FILE`` of a netdev table holding a set with the rule
set's prefixes and one ingress chain ``ip saddr @src counter drop``; wall
time of the nft process, run in a namespace this bench creates. Each set
in nftables' natural form: exact addresses in a plain hash set, prefixes
in an interval set (``flags interval; auto-merge``: block lists overlap,
and nft refuses overlapping intervals without it). xdpctl's time for the
same set is DropList.import_list in section 1.

Per-packet cost by real traffic: a veth pair a <-> b in two namespaces.
The generator is bench/bpf/gen_redirect.c run with BPF_PROG_TEST_RUN and
BPF_F_TEST_XDP_LIVE_FRAMES from a thread inside namespace a: every frame
is XDP_REDIRECTed out of veth a and received by veth b, whose NAPI poll
runs on the same CPU right after each batch of 64. The kernel reports the
average time per generated frame, which therefore covers generating,
transmitting, receiving and classifying it. Receivers on veth b:

floor-native   bench/bpf/xdp_drop.c, native XDP: receive + drop, nothing else
xdpctl-native  xdpctl attach counter + droplist, native (driver) XDP
hash-native    bench/bpf/xdp_hash_drop.c, native XDP: one plain hash of the
               rule set's addresses looked up by source, nothing more (the
               least any exact-address drop list pays)
array-native   bench/bpf/xdp_array_drop.c, native XDP: the same addresses in
               an open-addressed table in an ARRAY map, probed by inlined
               code (what the kernel's hash lookup itself costs)
floor-generic  xdp_drop.c in generic XDP (an skb is built first)
xdpctl-generic the same in generic XDP
floor-nft      netdev ingress chain with a bare `counter drop`
nft            netdev ingress chain `ip saddr @src counter drop`

nftables' receivers are counted by the rule's own counter, read from the
kernel with a netlink rule dump (pyroute2): `nft list` would fetch every
element of a large set first.

GRO is on for veth b (needed for generic XDP and nftables to see
redirected frames at all). Packets per second = frames the receiver
counted as dropped / time the generator took; "ns above floor" = ns per
frame minus the floor of the same receive path, i.e. the classifier's own
cost per packet.
"""

from __future__ import annotations

import os
import struct
import subprocess
import time

from tests.support.progs import temp_settings
from xdpctl.core import counters
from xdpctl.core.rules import service as dl
from xdpctl.core.context import Context
from xdpctl.core.hooks import HookRef, Hooks
from xdpctl.kernel import bpffs, netlink, objects, testrun
from xdpctl.lab import TwoHostLab, run_in_netns

from . import build, frames, rulesets
from .common import CLEANUP, TAG, log, median, pin_dir, pinned_cpu, spread, temp_dir

TABLE = TAG
FLOOR_TABLE = f"{TAG}_floor"
NFPROTO_NETDEV = 5


def nft(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", "netns", "exec", netns, "nft", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)}: {p.stderr.strip()[-400:]}")
    return p


def set_flags(rs: rulesets.RuleSet) -> str:
    """The set in nftables' natural form: a plain hash set for exact
    addresses, an interval set for prefixes."""
    return "" if set(rs.plens) == {rs.host_len} else " flags interval; auto-merge;"


def write_ruleset(rs: rulesets.RuleSet, ifname: str, path: str) -> str:
    typ, match = ("ipv4_addr", "ip saddr") if rs.family == 4 else ("ipv6_addr", "ip6 saddr")
    with open(path, "w") as f:
        f.write(f"table netdev {TABLE} {{\n")
        f.write(f"  set src {{\n    type {typ};{set_flags(rs)}\n    elements = {{\n")
        f.write(",\n".join(rs.lines()))
        f.write("\n    }\n  }\n")
        f.write(f"  chain ingress {{\n    type filter hook ingress device \"{ifname}\" priority 0; policy accept;\n")
        f.write(f"    {match} @src counter drop\n  }}\n}}\n")
    return path


def load_ruleset(netns: str, path: str) -> float:
    nft(netns, "delete", "table", "netdev", TABLE, check=False)
    t = time.perf_counter()
    nft(netns, "-f", path)
    return time.perf_counter() - t


def chain_packets(netns: str, table: str, chain: str) -> int:
    """Packets the counters of a chain's rules counted, from a netlink rule
    dump: it does not fetch set elements, which `nft list` does first
    (about 100 s per call with a million-element set)."""
    from pyroute2.nftables.main import NFTables

    def dump() -> int:
        n = 0
        with NFTables(nfgen_family=NFPROTO_NETDEV) as sock:
            for rule in sock.get_rules():
                if (rule.get_attr("NFTA_RULE_TABLE"), rule.get_attr("NFTA_RULE_CHAIN")) != (table, chain):
                    continue
                for e in rule.get_attr("NFTA_RULE_EXPRESSIONS") or []:
                    if e.get_attr("NFTA_EXPR_NAME") == "counter":
                        n += int(e.get_attr("NFTA_EXPR_DATA").get_attr("NFTA_COUNTER_PACKETS"))
        return n

    return run_in_netns(netns, dump)


# ---------------------------------------------------------------------------
# Load time alone (every kind, every size)
# ---------------------------------------------------------------------------
def run_load(cfg, netns: str, ifname: str, work: str) -> list[dict]:
    rows = []
    for family in cfg.nft_families:
        for kind in cfg.kinds:
            for count in cfg.nft_sizes:
                rs = rulesets.make(family, kind, count)
                path = write_ruleset(rs, ifname, os.path.join(work, f"nft-{family}-{kind}-{count}.nft"))
                log(f"nft: load IPv{family} {kind} {count:,}")
                try:
                    s = load_ruleset(netns, path)
                    rows.append({"family": family, "kind": kind, "count": count, "nft_s": s})
                except RuntimeError as exc:
                    rows.append({"family": family, "kind": kind, "count": count, "error": str(exc)})
                    log(f"  FAILED: {exc}")
                finally:
                    os.unlink(path)
                    nft(netns, "delete", "table", "netdev", TABLE, check=False)
    return rows


# ---------------------------------------------------------------------------
# Traffic
# ---------------------------------------------------------------------------
class Traffic:
    def __init__(self, cfg):
        self.cfg = cfg
        self.lab = TwoHostLab(prefix="xcb", ipv6=False)
        CLEANUP.push("close traffic lab", self.lab.close)
        self.a, self.b = self.lab.a, self.lab.b
        self.lab.set_gro(self.b, True)
        self.gen = objects.load(build.obj("gen_redirect"))
        CLEANUP.push("close generator", self.gen.close)
        with self.gen.map("gen_cfg") as m:
            m.update(struct.pack("=I", 0), struct.pack("=I", self.a.ifindex))
        self.gen_fd = self.gen.prog_fd("gen_redirect")
        self.drop = objects.load(build.obj("xdp_drop"))
        CLEANUP.push("close xdp_drop", self.drop.close)
        self.drop_cnt = self.drop.map("drop_cnt")
        CLEANUP.push("close drop_cnt", self.drop_cnt.close)
        self.refs = (Reference("hash", _fill_hash), Reference("array", _fill_array))  # loaded with each rule set
        st = temp_dir("traffic-state")
        s = temp_settings(st)
        s.pin_dir = pin_dir("traffic")
        self.ctx = Context(s)
        self.ctx.kernel_ready()
        CLEANUP.push("close traffic ctx", self._close_ctx)
        self.hook = HookRef(self.b.netns, self.b.ifname, "xdp")

    def _close_ctx(self) -> None:
        try:
            netlink.xdp_set(self.b.ifname, self.b.netns, -1, "native")
        except Exception:
            pass
        self.ctx.close()
        bpffs.remove_tree(self.ctx.settings.pin_dir)

    def load_refs(self, rs: rulesets.RuleSet) -> None:
        """Both exact-address references, fresh, holding the rule set's addresses."""
        for r in self.refs:
            r.load(rs)

    # -- generator
    def send(self, frame: bytes, n: int) -> float:
        cpu = self.cfg.cpu

        def go() -> int:
            with pinned_cpu(cpu):
                return testrun.live_frames(self.gen_fd, frame, n)

        return run_in_netns(self.a.netns, go)

    def once(self, frame: bytes, read) -> tuple[float, int, int]:
        """One run of traffic_frames frames: (ns per frame, frames the
        receiver counted, frames veth b counted as received)."""
        n = self.cfg.traffic_frames
        c0, r0 = read(), self._rx_packets()
        ns = self.send(frame, n)
        time.sleep(0.02)
        return ns, read() - c0, self._rx_packets() - r0

    def rounds(self, receivers: list["Receiver"], frame: bytes) -> dict:
        """Every receiver once per round, rounds = traffic_runs: a noisy
        moment hits all of them alike."""
        n = self.cfg.traffic_frames
        got: dict[str, list[tuple[float, int, int]]] = {r.name: [] for r in receivers}
        for rnd in range(self.cfg.traffic_runs):
            for r in receivers:
                r.setup()
                try:
                    if rnd == 0:
                        self.send(frame, max(10000, n // 20))  # warm up
                    got[r.name].append(self.once(frame, r.read))
                finally:
                    r.teardown()
        out = {}
        for r in receivers:
            nss = [ns for ns, _, _ in got[r.name]]
            rates = [c / (ns * n / 1e9) if ns else 0.0 for ns, c, _ in got[r.name]]
            out[r.name] = {"ns_per_frame": median(nss), "pps": median(rates), "samples_ns": nss,
                           "spread": spread(nss), "dropped_fraction": min(c / n for _, c, _ in got[r.name]),
                           "counted": [c for _, c, _ in got[r.name]], "veth_rx": [x for _, _, x in got[r.name]],
                           **r.info}
        return out

    # -- receivers
    def _drop_count(self) -> int:
        return _percpu_total(self.drop_cnt)

    def _xdpctl_drops(self) -> int:
        v = counters.read(self.ctx, self.hook).verdicts
        return v.get("drop_src", (0, 0))[0]

    def receivers(self) -> list["Receiver"]:
        b, ns = self.b, self.b.netns
        out = []
        for mode in ("native", "generic"):
            fd = self.drop.prog_fd("xdp_drop")
            out.append(Receiver(
                f"floor-{mode}",
                lambda fd=fd, mode=mode: netlink.xdp_set(b.ifname, ns, fd, mode),
                lambda mode=mode: netlink.xdp_set(b.ifname, ns, -1, mode),
                self._drop_count))
            rx = Receiver(f"xdpctl-{mode}", None, None, self._xdpctl_drops)

            def attach(mode=mode, rx=rx):
                for stage in ("counter", "droplist"):  # as deployed: counts and filters
                    res = Hooks(self.ctx).attach(b.ifname, stage, hook="xdp", mode=mode, netns=ns)
                rx.info["attached_mode"] = res.mode
                rx.info["stages"] = "counter+droplist"

            rx.setup = attach
            rx.teardown = lambda: Hooks(self.ctx).detach(b.ifname, None, hook="xdp", netns=ns)
            out.append(rx)
        out += [r.receiver(b.ifname, ns) for r in self.refs]
        floor = (f"table netdev {FLOOR_TABLE} {{\n  chain ingress {{\n    type filter hook ingress device "
                 f"\"{b.ifname}\" priority -10; policy accept;\n    counter drop\n  }}\n}}\n")

        def nft_floor_up():
            p = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=floor, text=True,
                               capture_output=True)
            if p.returncode != 0:
                raise RuntimeError(f"nft floor table: {p.stderr.strip()}")

        out.append(Receiver("floor-nft", nft_floor_up,
                            lambda: nft(ns, "delete", "table", "netdev", FLOOR_TABLE, check=False),
                            lambda: chain_packets(ns, FLOOR_TABLE, "ingress")))
        rx = Receiver("nft", lambda: None, lambda: None, lambda: chain_packets(ns, TABLE, "ingress"))
        rx.info["counter"] = "the rule's counter"
        out.append(rx)
        return out

    def _rx_packets(self) -> int:
        msg = self.lab.ipr("b").get_links(self.b.ifindex)[0]
        st = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
        return int(st["rx_packets"])

    def import_rules(self, rs: rulesets.RuleSet) -> float:
        pf = rs.prefixes()
        t = time.perf_counter()
        dl.DropList(self.ctx).import_list("bench", pf)
        return time.perf_counter() - t

    def close(self) -> None:
        nft(self.b.netns, "delete", "table", "netdev", TABLE, check=False)


class Reference:
    """An exact-address reference (bench/bpf/xdp_<name>_drop.c: header
    checks, one lookup, a per-CPU drop count), loaded fresh with each rule
    set; ``fill(loaded, rs)`` writes its addresses and returns what the
    report shows beside its figures."""

    def __init__(self, name: str, fill):
        self.name, self.fill = name, fill
        self.obj = f"xdp_{name}_drop"
        self.loaded = None
        self.info: dict = {}
        CLEANUP.push(f"close {self.obj}", self.close)

    def load(self, rs: rulesets.RuleSet) -> None:
        self.close()
        self.loaded = objects.load(build.obj(self.obj))
        self.info = self.fill(self.loaded, rs)

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None

    def drops(self) -> int:
        with self.loaded.map(f"{self.name}_drop_cnt") as m:
            return _percpu_total(m)

    def receiver(self, ifname: str, ns: str) -> "Receiver":
        rx = Receiver(f"{self.name}-native",
                      lambda: netlink.xdp_set(ifname, ns, self.loaded.prog_fd(self.obj), "native"),
                      lambda: netlink.xdp_set(ifname, ns, -1, "native"), self.drops)
        rx.info.update(self.info)
        return rx


def _fill_hash(loaded, rs: rulesets.RuleSet) -> dict:
    with loaded.map("hash_src") as m:
        m.update_batch(b"".join(n.to_bytes(4, "big") for n in rs.nets), bytes(4) * rs.count, rs.count)
    return {}


def _fill_array(loaded, rs: rulesets.RuleSet) -> dict:
    """The table of array_table; how many addresses did not fit their bucket."""
    import numpy as np

    table, overflow = array_table(rs.nets, rs.match_addr)
    with loaded.map("array_src") as m:
        n = 1 << ARRAY_BITS
        m.update_batch(np.arange(n, dtype=np.uint32).tobytes(), table, n)
    return {"overflow": overflow}


ARRAY_BITS = 18  # bench/bpf/xdp_array_drop.c: 2^18 buckets of 8 slots
ARRAY_MUL = 0x9E3779B1


def array_table(nets, first: int) -> tuple[bytes, int]:
    """xdp_array_drop's table (2^ARRAY_BITS buckets: 8 addresses, then 8
    used flags, u32 each) holding the addresses `nets`, `first` placed
    before the others of its bucket; and how many addresses found their
    bucket full."""
    import numpy as np

    a = np.asarray(nets, dtype=np.uint64).astype(np.uint32)
    a = np.concatenate([np.array([first], np.uint32), a[a != first]])
    wire = a.astype(">u4").view(np.uint32)  # the u32 the program loads from the header
    h = ((wire.astype(np.uint64) * ARRAY_MUL) & 0xFFFFFFFF) >> (32 - ARRAY_BITS)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    rank = np.arange(len(hs)) - np.searchsorted(hs, hs, "left")
    keep = rank < 8
    t = np.zeros((1 << ARRAY_BITS, 16), np.uint32)
    t[hs[keep], rank[keep]] = wire[order][keep]
    t[hs[keep], 8 + rank[keep]] = 1
    return t.tobytes(), int((~keep).sum())


def _percpu_total(m) -> int:
    """The u64 in slot 0 of a per-CPU array (a floor's or the reference's
    drop count), summed over the CPUs."""
    return sum(struct.unpack("=Q", v[:8])[0] for v in m.lookup_percpu(struct.pack("=I", 0)) or [])


class Receiver:
    def __init__(self, name: str, setup, teardown, read):
        self.name = name
        self.setup = setup
        self.teardown = teardown
        self.read = read
        self.info: dict = {}


def run(cfg) -> dict:
    out = {"load": [], "traffic": []}
    work = temp_dir("nft")
    tr = Traffic(cfg)
    # load times, in the receiving namespace (same nft, same kernel)
    out["load"] = run_load(cfg, tr.b.netns, tr.b.ifname, work)
    for count in cfg.traffic_sizes:
        rs = rulesets.make(4, "exact", count)
        frame = frames.udp_from(4, rs.match_addr)
        row = {"count": count}
        try:
            log(f"traffic: {count:,} rules: xdpctl import + nft load")
            row["xdpctl_import_s"] = tr.import_rules(rs)
            tr.load_refs(rs)
            path = write_ruleset(rs, tr.b.ifname, os.path.join(work, "t.nft"))
            row["nft_load_s"] = load_ruleset(tr.b.netns, path)
            os.unlink(path)
            log(f"traffic: {count:,} rules: measuring")
            row.update(tr.rounds(tr.receivers(), frame))
        except Exception as exc:  # keep the sizes that worked
            row["error"] = f"{type(exc).__name__}: {exc}"
            log(f"  traffic with {count:,} rules failed: {row['error']}")
        finally:
            tr.close()
        out["traffic"].append(row)
    return out
