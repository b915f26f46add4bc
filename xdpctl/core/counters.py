"""Protocol and verdict counters: per hook, summed over CPUs; the stats
view of every front end, and rates between two samples (watch mode)."""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from .. import abi
from ..kernel import maps, netlink
from .context import Context
from .errors import choice
from .hooks import HOOKS, HookRef, pinned_hooks
from .views import (CountView, HookRatesView, HookStatsView, ProtoCountView, ProtoRateView, RateView,
                    StatsView)

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


# ---------------------------------------------------------------- the stats view
def stats(ctx: Context, netns: str | None = None, ifname: str | None = None) -> StatsView:
    """Counters of every hook xdpctl manages, or of one namespace or
    interface. A namespace or interface that does not exist (and has no
    hooks of xdpctl's pinned) is NotFound."""
    return StatsView(hooks=[hook_stats(hc) for hc in _read_checked(ctx, netns, ifname)])


def watch(ctx: Context, netns: str | None = None, ifname: str | None = None,
          interval: float = 1.0) -> Iterator[StatsView]:
    """Every ``interval`` seconds a stats view with the rates since the
    previous sample, without end (the caller stops iterating)."""
    t0, prev = time.monotonic(), _read_checked(ctx, netns, ifname)
    while True:
        time.sleep(interval)
        t1, cur = time.monotonic(), _read_checked(ctx, netns, ifname)
        before = {hc.hook: hc for hc in prev}
        yield StatsView(hooks=[hook_stats(hc, before.get(hc.hook), t1 - t0) for hc in cur],
                        time=time.time(), seconds=t1 - t0)
        t0, prev = t1, cur


# ---------------------------------------------------------------- reset
HOOK_COUNTER_MAPS = ("xc_proto", "xc_dl_cnt", "xc_lb_cnt")
ZERO_CHUNK = 1 << 16  # rule-hit slots zeroed per batch update


def reset(ctx: Context, netns: str | None = None, ifname: str | None = None, hook: str | None = None,
          rules: bool = False) -> StatsView:
    """Zero the counters of every hook selected (protocol classes, drop-list
    verdicts, load-balancer reasons) and, with ``rules``, every rule's hit
    counter; the stats of those hooks just after.

    Each counter slot is zeroed on all CPUs in one map update, slot after
    slot. A packet counted while that happens may be counted before the
    zero (lost) or after it; one counted on another CPU at the very moment
    of its slot's update may write back that CPU's value from before the
    reset plus one. Under traffic a reset is exact to within the packets in
    flight while it runs; nothing else is touched."""
    if hook is not None:
        choice(hook, HOOKS, field="hook", what="hook")
    hooks = [hc.hook for hc in _read_checked(ctx, netns, ifname) if hook is None or hc.hook.hook == hook]
    for ref in hooks:
        for name in HOOK_COUNTER_MAPS:
            path = os.path.join(ref.dir(ctx), name)
            if os.path.exists(path):
                with maps.Map.from_pin(path) as m:
                    m.clear()
    if rules:
        _zero_rule_hits(ctx)
    return StatsView(hooks=[hook_stats(read(ctx, ref)) for ref in hooks])


def _zero_rule_hits(ctx: Context) -> None:
    """Every slot of the shared rule-hit counters to zero (batch updates)."""
    path = os.path.join(ctx.settings.shared_map_dir, "xc_rule_stats")
    if not os.path.exists(path):
        return
    with maps.Map.from_pin(path) as m:
        for lo in range(0, m.max_entries, ZERO_CHUNK):
            n = min(ZERO_CHUNK, m.max_entries - lo)
            m.update_batch(array("I", range(lo, lo + n)).tobytes(), bytes(m.value_size * n), n)


def _read_checked(ctx: Context, netns: str | None, ifname: str | None) -> list[HookCounters]:
    ctx.kernel_ready()
    hcs = read_all(ctx, netns=netns, ifname=ifname)
    if not hcs and (netns is not None or ifname is not None):
        netlink.check_netns(netns)  # NotFound: say which of the two is missing
        if ifname is not None:
            netlink.get_link(ifname, netns)
    return hcs


def hook_stats(hc: HookCounters, prev: HookCounters | None = None, seconds: float | None = None) -> HookStatsView:
    """One hook's counters as a view; with a previous sample, rates too."""
    pk, by = hc.total()
    ref = hc.hook
    rates = None
    if seconds:
        rates = _rates(hc, prev or HookCounters(ref, {}, {}), seconds)
    return HookStatsView(
        netns=ref.netns, ifname=ref.ifname, hook=ref.hook, total=CountView(packets=pk, bytes=by),
        protocols=[ProtoCountView(l3=l3, l4=l4, packets=p, bytes=b) for (l3, l4), (p, b) in sorted(hc.proto.items())],
        verdicts={k: CountView(packets=p, bytes=b) for k, (p, b) in sorted(hc.verdicts.items())},
        rates=rates,
    )


def _rate(now: tuple[int, int], before: tuple[int, int], seconds: float) -> tuple[float, float]:
    return (now[0] - before[0]) / seconds, (now[1] - before[1]) * 8 / seconds


def _rates(hc: HookCounters, prev: HookCounters, seconds: float) -> HookRatesView:
    pps, bps = _rate(hc.total(), prev.total(), seconds)
    protos = []
    for (l3, l4), v in sorted(hc.proto.items()):
        p, b = _rate(v, prev.proto.get((l3, l4), (0, 0)), seconds)
        protos.append(ProtoRateView(l3=l3, l4=l4, packets_per_s=p, bits_per_s=b))
    return HookRatesView(total=RateView(packets_per_s=pps, bits_per_s=bps), protocols=protos)
