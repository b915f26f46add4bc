"""Run xdpctl's compiled programs with BPF_PROG_TEST_RUN, outside any hook.

A :class:`ProgramBench` loads the hook program of one hook kind (xdp or tc)
under a pin directory, switches stages on in its xc_stages map and runs
frames through it: the same object, maps and stage switch an attached hook
uses, without an interface. A :class:`DropListProbe` asks the drop-list program which rule
matches an address, over the maps of a running instance.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import uuid

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from tests.support.emulation import split_packed
from xdpctl import abi
from xdpctl.config import Settings
from xdpctl.core import counters
from xdpctl.core.context import Context
from xdpctl.core.errors import BpfError
from xdpctl.core.hooks import HOOK_PROG, PER_HOOK_MAPS, pin_path_for
from xdpctl.core.hooks.program import STAGES_MAP, object_name, owner_id
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
    """The hook program of one kind with ``stages`` (names of abi.Stage,
    lower case: counter, droplist, lb) switched on. ``max_entries`` sizes
    maps beyond the settings' capacity (e.g. the load balancer's). ``hook``:
    the hook a TC program counts its rule hits as (tc-ingress, tc-egress)."""

    def __init__(self, ctx: Context, kind: str, stages: tuple[str, ...] = ("counter",), name: str = "bench",
                 max_entries: dict[str, int] | None = None, hook: str = "tc-ingress"):
        assert kind in ("xdp", "tc")
        self.ctx = ctx
        self.kind = kind
        self.hook = abi.HOOK_KINDS["xdp" if kind == "xdp" else hook]
        ctx.kernel_ready()
        self.dir = os.path.join(ctx.settings.pin_dir, "bench", name, kind)
        bpffs.makedirs(self.dir)
        sizes = abi.with_sets({**ctx.settings.capacity, **(max_entries or {})})
        self.loaded = objects.load(objects.object_path(object_name(kind)), pin_path=pin_path_for(ctx, self.dir),
                                   max_entries=sizes)
        self.fd = self.loaded.prog_fd(HOOK_PROG)
        self.enable(*stages)

    def enable(self, *stages: str) -> None:
        """Run exactly these stages from now on (one map update)."""
        bits = 0
        for s in stages:
            bits |= abi.stage_bit(abi.Stage[s.upper()])
        with self.loaded.map(STAGES_MAP) as m:
            m.update(abi.U32.pack(0), abi.pack_stages(owner_id(self.ctx), bits, self.hook))

    def map(self, name: str) -> maps.Map:
        """One of the program's maps (the caller closes it)."""
        return self.loaded.map(name)

    def run(self, frame: bytes, repeat: int = 1, fd: int | None = None) -> testrun.RunResult:
        return testrun.run(self.fd if fd is None else fd, frame, repeat)

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
        self.loaded.close()
        bpffs.remove_tree(self.dir)

    def __enter__(self) -> "ProgramBench":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DropListProbe:
    """The drop-list program of an xdpctl instance, loaded once more to be
    asked through BPF_PROG_TEST_RUN which rule matches a source address.

    It reads the instance's pinned rule maps (so the answer is the kernel's
    lookup over what the instance wrote), but has a config, verdict
    counters and rule statistics of its own: probing changes nothing the
    instance reports. Its config keeps the instance's IPv6-trie flag and
    turns destination, port and management lookups off, so only the source
    decides, in the rule set that was active when the probe was made (with
    the dead rule ids it had then). With ``host_table`` it reads that
    set's IPv4 host table as the hook does when xc_cfg trusts it."""

    PRIVATE = frozenset({"xc_cfg", "xc_rule_stats"})

    def __init__(self, settings: Settings, host_table: bool = False):
        shared = settings.shared_map_dir

        def pin(name: str) -> str | None:
            if name in self.PRIVATE or name in PER_HOOK_MAPS:
                return None
            path = os.path.join(shared, name)
            if not os.path.exists(path):  # reuse the instance's maps, never create them
                raise FileNotFoundError(f"{path}: the instance has no drop-list map {name}")
            return path

        self.loaded = objects.load(objects.object_path("xdp_droplist"), pin_path=pin,
                                   max_entries=abi.with_sets(settings.capacity))
        self.fd = self.loaded.prog_fd("xc_droplist")
        with maps.Map.from_pin(os.path.join(shared, "xc_cfg")) as m:
            raw = m.lookup(abi.U32.pack(0))
        cfg = abi.unpack_config(raw)
        flags = cfg.flags & int(abi.CfgFlag.HAVE_V6TRIE | (abi.CfgFlag.HAVE_OA4 if host_table else 0))
        with self.loaded.map("xc_cfg") as m:  # the instance's active rule set, its dead ids
            m.update(abi.U32.pack(0), abi.pack_config(int(abi.Policy.ALLOW), flags, 0, cfg.active, None,
                                                      cfg.dead_base, cfg.dead_count))

    def source_match(self, addr: str) -> tuple[int, abi.DlReason, int | None]:
        """(retval, reason, rule id hit or None) for one ICMP packet from ``addr``."""
        ip = ipaddress.ip_address(addr)
        l3 = IP(src=addr, dst="192.0.2.2") / ICMP() if ip.version == 4 else \
            IPv6(src=addr, dst="2001:db8::2") / ICMPv6EchoRequest()
        frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3)
        with self.loaded.map("xc_dl_cnt") as cnt, self.loaded.map("xc_rule_stats") as stats:
            reasons, hits = counters.sum_percpu(cnt), self._hits(stats)
            retval = testrun.run(self.fd, frame).retval
            after = counters.sum_percpu(cnt)
            (reason,) = [k for k in after if after[k] != reasons.get(k)]
            hit = [i for i, n in self._hits(stats).items() if n != hits.get(i)]
        assert len(hit) <= 1, hit
        return retval, abi.DlReason(reason), hit[0] if hit else None

    @staticmethod
    def _hits(stats: maps.Map) -> dict[int, int]:
        """rule id -> packets over every hook kind, non-zero only (the whole
        2M-entry array read packed: no Python object per entry)."""
        keys, vals, n = stats.dump()
        rows = np.frombuffer(vals, dtype="<u8", count=n * stats.buf_size // 8).reshape(n, -1)
        packets = rows[:, 0:2 * abi.RULE_HOOKS:2].sum(axis=1)
        ids = np.frombuffer(keys, dtype="<u4", count=n)
        return {int(ids[i]): int(packets[i]) for i in np.flatnonzero(packets)}

    def close(self) -> None:
        self.loaded.close()

    def __enter__(self) -> "DropListProbe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def split_dead(tables: dict, cfg: abi.Config) -> tuple[dict, dict]:
    """A set's contents (kernel_rule_set) without the entries xc_cfg names
    dead (a replaced list's hosts left past the flip, read as absent), and
    those entries, by map (only maps that hold some)."""
    dead_ids = range(cfg.dead_base, cfg.dead_base + cfg.dead_count)
    live, dead = {}, {}
    for name, entries in tables.items():
        live[name] = {k: v for k, v in entries.items() if abi.U32.unpack(v[:4])[0] not in dead_ids}
        if len(live[name]) != len(entries):
            dead[name] = {k: v for k, v in entries.items() if k not in live[name]}
    return live, dead


def kernel_rule_set(ctx: Context, rule_set: int) -> dict:
    """The contents of one set (0: A, 1: B) of the pinned rule maps, by map
    name, in the form of emulation.tables_to_state."""
    from xdpctl.core import dlcompile as dlc

    out = {}
    for name in abi.RULE_MAPS:
        with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(name, rule_set))) as m:
            if name == dlc.L16:  # every index, values read as packed batches
                n = m.max_entries
                vals = split_packed(m.values_range(0, n), m.buf_size, n)
                out[name] = dict(zip([abi.U32.pack(i) for i in range(n)], [v[:dlc.VAL_SIZE] for v in vals]))
            else:
                keys, vals, n = m.dump()
                out[name] = dict(zip(split_packed(keys, m.key_size, n), split_packed(vals, m.buf_size, n)))
    return out


def host_bucket(addr: int) -> int:
    """The IPv4 host table's bucket of an address (an int, host order)."""
    from xdpctl.core.rules import hosts4

    return hosts4.bucket_of(abi.U32.unpack(addr.to_bytes(4, "big"))[0])


def crowded_hosts(n: int, seed: int) -> list[int]:
    """n global IPv4 addresses (ints) that share one bucket of the host
    table: its hash is a multiplication by an odd number, so each is a
    chosen product times the inverse."""
    import random

    rnd = random.Random(seed)
    inv = pow(abi.OA4_MUL, -1, 1 << 32)
    top = rnd.getrandbits(abi.OA4_BITS) << (32 - abi.OA4_BITS)
    out: list[int] = []
    while len(out) < n:
        loaded = ((top | rnd.getrandbits(32 - abi.OA4_BITS)) * inv) & 0xFFFFFFFF
        a = int.from_bytes(abi.U32.pack(loaded), "big")
        if ipaddress.IPv4Address(a).is_global and a not in out:
            out.append(a)
    assert len({host_bucket(a) for a in out}) == 1
    return out


def host_table(buf) -> tuple[dict, set, tuple[int, int, int]]:
    """An IPv4 host table's bytes (xc_v4_oa): {(dir, addr): (rule id,
    action, plen)} of its live slots (a key live twice fails), its
    overflowed buckets, and its mark bucket's (revision, dead slots,
    overflowed buckets)."""
    import numpy as np

    from xdpctl.core.rules import hosts4

    t = np.frombuffer(buf, np.dtype(abi.xc_oa4_bucket), abi.OA4_BUCKETS + 1)
    mark = tuple(int(x) for x in t["slot"][abi.OA4_MARK, :3])
    slots = t["slot"][:abi.OA4_BUCKETS]
    b, i = np.nonzero(((slots >> np.uint64(32)) & np.uint64(3)) == abi.OA4_LIVE)
    w = slots[b, i]
    addrs = (w & np.uint64(0xFFFFFFFF)).astype(np.uint32).astype(">u4").view(np.uint32)  # back to host order
    assert (hosts4.bucket_of((w & np.uint64(0xFFFFFFFF)).astype(np.uint32)) == b).all(), "a key in a foreign bucket"
    live = {}
    for bb, ii, ww, a in zip(b.tolist(), i.tolist(), w.tolist(), addrs.tolist()):
        k = ((ww >> 34) & 1, int(a))
        assert k not in live, f"{k} live twice"
        live[k] = (int(t["rule_id"][bb, ii]), (ww >> 40) & 0xFF, (ww >> 48) & 0xFF)
    over = set(np.flatnonzero(t["overflow"][:abi.OA4_BUCKETS]).tolist())
    return live, over, mark


def mirror_problems(buf, band: dict[bytes, bytes]) -> list[str]:
    """How an IPv4 host table fails to mirror its band (packed xc_key4 ->
    packed xc_rule_val): a key neither live with the band's value nor in
    an overflowed bucket, a live slot the band lacks."""
    from xdpctl.core.rules import hosts4

    live, over, _mark = host_table(buf)
    out = []
    keys = set()
    for k, v in band.items():
        d, a = abi.U32.unpack(k[:4])[0], int.from_bytes(k[4:8], "big")
        keys.add((d, a))
        r = abi.unpack_rule_val(v)
        got = live.get((d, a))
        if got is not None:
            if not hosts4.simple(r.action, r.expires_ns, r.fb_action) or got != (r.rule_id, r.action, r.plen):
                out.append(f"{(d, a)}: live as {got}, band {r}")
            continue
        b = host_bucket(a)
        if b not in over:
            out.append(f"{(d, a)}: not live, bucket {b} not overflowed")
    out += [f"{k}: live, not in the band" for k in set(live) - keys]
    return out


def host_table_problems(ctx: Context) -> dict[int, list[str]]:
    """For each set whose IPv4 host table claims to mirror its band (the
    active set with HAVE_OA4; the standby set when its mark is the
    revision xc_cfg says it holds), how it fails to; {} when all hold."""
    from xdpctl.core.rules import hosts4
    from xdpctl.core.rules.tables import DEFERRED, STALE, read_pinned_config

    cfg = read_pinned_config(ctx)
    out = {}
    for s in (0, 1):
        with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(abi.OA4_MAP, s))) as m:
            with m.mapped() as view:
                buf = bytes(view)
        mark = int.from_bytes(buf[abi.OA4_MARK * 64:abi.OA4_MARK * 64 + 8], "little")
        claims = (cfg.flags & abi.CfgFlag.HAVE_OA4) if s == cfg.active else (
            cfg.synced not in (STALE, DEFERRED) and mark == cfg.synced != hosts4.UNTRUSTED)
        if not claims:
            continue
        with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(hosts4.BAND, s))) as m:
            keys, vals, n = m.dump()
        band = dict(zip(split_packed(keys, m.key_size, n), split_packed(vals, m.buf_size, n)))
        problems = mirror_problems(buf, band)
        if problems:
            out[s] = problems[:10]
    return out
