"""Protocol and verdict counters: per hook, summed over CPUs."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .. import abi
from ..kernel import maps
from .context import Context
from .hooks import HookRef, pinned_hooks

L3_NAMES = {abi.L3.IPV4: "ipv4", abi.L3.IPV6: "ipv6", abi.L3.ARP: "arp", abi.L3.OTHER: "other",
            abi.L3.MALFORMED: "malformed"}
L4_NAMES = {abi.L4.NONE: "-", abi.L4.TCP: "tcp", abi.L4.UDP: "udp", abi.L4.ICMP: "icmp",
            abi.L4.ICMPV6: "icmpv6", abi.L4.SCTP: "sctp", abi.L4.GRE: "gre", abi.L4.OTHER: "other",
            abi.L4.FRAGMENT: "fragment", abi.L4.MALFORMED: "malformed"}
EXTRA_NAMES = {abi.PROTO_VLAN1: ("vlan", "802.1q"), abi.PROTO_VLAN2: ("vlan", "qinq")}
REASON_NAMES = {r: r.name.lower() for r in abi.DlReason if r != abi.DlReason.MAX}


def slot_name(slot: int) -> tuple[str, str] | None:
    if slot in EXTRA_NAMES:
        return EXTRA_NAMES[slot]
    if slot >= abi.PROTO_EXTRA:
        return None
    l3, l4 = divmod(slot, int(abi.L4.MAX))
    return L3_NAMES[abi.L3(l3)], L4_NAMES[abi.L4(l4)]


def sum_percpu(m: maps.Map) -> dict[int, tuple[int, int]]:
    """slot -> (packets, bytes) summed over CPUs, non-zero slots only."""
    out: dict[int, tuple[int, int]] = {}
    step = m.slot_size
    for key, raw in m.items():
        idx = int.from_bytes(key, "little")
        pk = by = 0
        for c in range(m.ncpus):
            p, b = abi.COUNTER.unpack_from(raw, c * step)
            pk += p
            by += b
        if pk or by:
            out[idx] = (pk, by)
    return out


@dataclass
class HookCounters:
    hook: HookRef
    proto: dict[tuple[str, str], tuple[int, int]]
    verdicts: dict[str, tuple[int, int]]

    def total(self) -> tuple[int, int]:
        p = sum(v[0] for k, v in self.proto.items() if k[0] != "vlan")
        b = sum(v[1] for k, v in self.proto.items() if k[0] != "vlan")
        return p, b


def read(ctx: Context, hook: HookRef) -> HookCounters:
    hdir = hook.dir(ctx)
    proto: dict[tuple[str, str], tuple[int, int]] = {}
    verdicts: dict[str, tuple[int, int]] = {}
    p = os.path.join(hdir, "xc_proto")
    if os.path.exists(p):
        with maps.Map.from_pin(p) as m:
            for slot, val in sum_percpu(m).items():
                name = slot_name(slot)
                if name:
                    proto[name] = val
    p = os.path.join(hdir, "xc_dl_cnt")
    if os.path.exists(p):
        with maps.Map.from_pin(p) as m:
            for slot, val in sum_percpu(m).items():
                if slot in REASON_NAMES.keys():
                    verdicts[REASON_NAMES[abi.DlReason(slot)]] = val
    return HookCounters(hook, proto, verdicts)


def read_all(ctx: Context, netns: str | None = None, ifname: str | None = None) -> list[HookCounters]:
    out = []
    for h in pinned_hooks(ctx):
        if ifname and h.ifname != ifname:
            continue
        if netns is not None and h.netns != netns:
            continue
        out.append(read(ctx, h))
    return out


def snapshot(ctx: Context, **kw) -> tuple[float, list[HookCounters]]:
    return time.monotonic(), read_all(ctx, **kw)
