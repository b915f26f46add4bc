"""Packet samples from the data path (`xdpctl dump`, docs/operator-tools.md).

A listener writes its pid and its filter (reasons, 1 in N, a per-second cap
per CPU) into the xc_smp_cfg of each hook it listens on; the hook programs
then copy the drop list's verdict, reason, rule and the first bytes of each
qualifying frame into the hook's ring buffer (bpf/include/sample.h). The
listener clears the pid when it stops. A listener killed outright leaves its
pid behind: the next listener finds that process gone and takes the hook
over; until then the stage fills the ring buffer and drops its samples.
One listener per hook: a live one is a conflict. :func:`sampling` reports
every set flag and whether its listener lives (`xdpctl status`),
:func:`clear_stale` clears the flags of listeners that are gone (`xdpctl
dump --clear`).
"""

from __future__ import annotations

import ipaddress
import os
import struct
import time
from dataclasses import dataclass
from typing import BinaryIO

from .. import abi
from ..kernel import maps
from ..kernel.ringbuf import RingBuffers
from .procs import pid_alive
from .context import Context
from .counters import REASON_NAMES
from .errors import Conflict, NotFound, choice
from .hooks.base import HookRef, pinned_hooks
from .views import SamplingClearView, SamplingView

CFG, RB = "xc_smp_cfg", "xc_smp_rb"
ZERO = abi.U32.pack(0)
DEFAULT_CAP = 1000  # samples per second on each CPU
HOOK_IDS = abi.HOOK_KINDS
HOOK_NAMES = {int(v): k for k, v in HOOK_IDS.items()}
REASONS = {name: r for r, name in REASON_NAMES.items()}
DROPS = frozenset(r for r in REASONS.values() if r.name.startswith("DROP"))


def reasons_mask(reason: str | None, every: bool) -> int:
    """The xc_sample_cfg.reasons bits: one reason, every reason (every
    packet the drop list sees), or (default) every drop."""
    if reason is not None:
        return 1 << int(REASONS[choice(reason, REASONS, field="reason", what="reason")])
    chosen = REASONS.values() if every else DROPS
    return sum(1 << int(r) for r in chosen)


@dataclass(frozen=True)
class Sample:
    ts: float          # wall clock
    hook: str
    ifindex: int
    verdict: str       # drop | pass
    reason: str
    rule_id: int | None
    length: int
    data: bytes        # the first bytes of the frame

    @classmethod
    def of(cls, raw: bytes, mono_to_wall: float) -> "Sample":
        ts, ifindex, length, rule, cap_len, hook, verdict, reason, data = abi.SAMPLE.unpack(raw[:abi.SAMPLE.size])
        return cls(ts / 1e9 + mono_to_wall, HOOK_NAMES.get(hook, str(hook)), ifindex,
                   "drop" if verdict else "pass", REASON_NAMES.get(abi.DlReason(reason), str(reason))
                   if reason < abi.DL_MAX else str(reason), rule or None, length, data[:cap_len])

    def line(self) -> str:
        """time hook verdict reason rule src -> dst proto/ports length."""
        t = time.strftime("%H:%M:%S", time.localtime(self.ts)) + f".{int(self.ts * 1e6) % 1000000:06d}"
        rule = f"rule {self.rule_id}" if self.rule_id else "no rule"
        return (f"{t} {self.hook} if{self.ifindex} {self.verdict} {self.reason} {rule} "
                f"{frame_summary(self.data)} len {self.length}")


def frame_summary(data: bytes) -> str:
    """'src -> dst proto sport -> dport' of an Ethernet frame's start (up to
    two VLAN tags, IPv4 or IPv6 without extension headers), else the
    ethertype."""
    off, etype = 14, int.from_bytes(data[12:14], "big") if len(data) >= 14 else 0
    while etype in (0x8100, 0x88A8, 0x9100) and len(data) >= off + 4:
        etype, off = int.from_bytes(data[off + 2:off + 4], "big"), off + 4
    if etype == 0x0800 and len(data) >= off + 20:
        ihl = (data[off] & 0x0F) * 4
        src, dst = ipaddress.ip_address(data[off + 12:off + 16]), ipaddress.ip_address(data[off + 16:off + 20])
        proto, l4 = data[off + 9], off + ihl
    elif etype == 0x86DD and len(data) >= off + 40:
        src, dst = ipaddress.ip_address(data[off + 8:off + 24]), ipaddress.ip_address(data[off + 24:off + 40])
        proto, l4 = data[off + 6], off + 40
    else:
        return f"ethertype 0x{etype:04x}"
    name = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}.get(proto, f"proto {proto}")
    if proto in (6, 17, 132) and len(data) >= l4 + 4:
        sport, dport = struct.unpack_from("!HH", data, l4)
        return f"{src}:{sport} -> {dst}:{dport} {name}"
    return f"{src} -> {dst} {name}"


class PcapWriter:
    """The classic pcap format (what tcpdump -r reads), Ethernet frames cut
    at the sample's bytes, their full length recorded."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        fh.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, abi.SAMPLE_BYTES, 1))

    def write(self, s: Sample) -> None:
        sec = int(s.ts)
        self.fh.write(struct.pack("=IIII", sec, int((s.ts - sec) * 1e6), len(s.data), s.length) + s.data)
        self.fh.flush()


def hooks_to_sample(ctx: Context, ifname: str | None, netns: str | None) -> list[HookRef]:
    """The hooks of xdpctl (on ``ifname`` in ``netns``, or all) whose
    program has the sample stage."""
    refs = [h for h in pinned_hooks(ctx) if (ifname is None or h.ifname == ifname)
            and (netns is None or h.netns == netns) and os.path.exists(h.pin(ctx, CFG))]
    if not refs:
        where = f"{netns}/" if netns else ""
        raise NotFound(f"no hook of xdpctl with the sample stage{' on ' + where + ifname if ifname else ''}",
                       field="ifname", value=ifname, hint="attach the drop list first ({action:attach})")
    return refs


LIVE_NOTE = "a listener samples this hook"
STALE_NOTE = ("the listener is gone but the flag is set: the hook still spends the sampling cost on every "
              "qualifying packet until the next dump takes it over or the flag is cleared "
              "(xdpctl dump --clear, DELETE /v1/sampling)")


def _flag(ctx: Context, h: HookRef) -> SamplingView | None:
    """The hook's sampling flag, None when it is off or not pinned."""
    try:
        with maps.Map.from_pin(h.pin(ctx, CFG)) as m:
            raw = m.lookup(ZERO)
    except OSError:
        return None
    pid, rate, cap = abi.SAMPLE_CFG.unpack(raw)[:3] if raw else (0, 0, 0)
    if not pid:
        return None
    alive = pid_alive(pid)
    return SamplingView(netns=h.netns, ifname=h.ifname, hook=h.hook, pid=pid, listener_alive=alive,
                        rate=max(1, rate), cap=cap, note=LIVE_NOTE if alive else STALE_NOTE)


def sampling(ctx: Context, netns: str | None = None) -> list[SamplingView]:
    """Every hook (of ``netns``, or all) whose sampling flag is set."""
    refs = [h for h in pinned_hooks(ctx) if netns is None or h.netns == netns]
    return [f for f in map(lambda h: _flag(ctx, h), refs) if f is not None]


def clear_stale(ctx: Context, ifname: str | None = None, netns: str | None = None) -> SamplingClearView:
    """Clear the sampling flags whose listener is gone, on ``ifname`` or on
    every hook; a hook a live listener samples is left to it. A flag is
    cleared only if it still names the dead pid when written."""
    cleared = []
    for h in hooks_to_sample(ctx, ifname, netns):
        f = _flag(ctx, h)
        if f is None or f.listener_alive:
            continue
        with maps.Map.from_pin(h.pin(ctx, CFG)) as m:
            raw = m.lookup(ZERO)
            if raw and abi.SAMPLE_CFG.unpack(raw)[0] == f.pid:
                m.update(ZERO, bytes(abi.SAMPLE_CFG.size))
                cleared.append(f)
    return SamplingClearView(cleared=cleared)


class Listener:
    """Samples from some hooks while it is open: sets each hook's flag on
    entry, clears it on exit."""

    def __init__(self, ctx: Context, hooks: list[HookRef], reasons: int, rate: int = 1, cap: int = DEFAULT_CAP):
        self.ctx, self.hooks = ctx, hooks
        self.cfg = (reasons, max(1, rate), cap)
        self.rings: list[maps.Map] = []
        self.flags: list[maps.Map] = []  # the xc_smp_cfg of each hook this listener claimed
        self.got: list[Sample] = []
        self.rb: RingBuffers | None = None
        self.mono_to_wall = time.time() - time.monotonic_ns() / 1e9

    def _claim(self, h: HookRef) -> None:
        m = maps.Map.from_pin(h.pin(self.ctx, CFG))
        pid = abi.SAMPLE_CFG.unpack(m.lookup(ZERO))[0]
        if pid and pid != os.getpid() and pid_alive(pid):
            m.close()
            raise Conflict(f"another listener (pid {pid}) samples {h.label()}", field="ifname", value=h.ifname,
                           hint="stop it first; one listener per hook")
        reasons, rate, cap = self.cfg
        self.flags.append(m)
        m.update(ZERO, abi.SAMPLE_CFG.pack(os.getpid(), rate, cap, reasons, int(HOOK_IDS[h.hook])))

    def __enter__(self) -> "Listener":
        try:
            self.rings = [maps.Map.from_pin(h.pin(self.ctx, RB)) for h in self.hooks]
            self.rb = RingBuffers([m.fd for m in self.rings], self._record)
            for h in self.hooks:
                self._claim(h)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _record(self, raw: bytes) -> None:
        self.got.append(Sample.of(raw, self.mono_to_wall))

    def poll(self, timeout_ms: int = 100) -> list[Sample]:
        """The samples that arrived, waiting up to timeout_ms for one."""
        self.rb.poll(timeout_ms)
        out, self.got = self.got, []
        return out

    def __exit__(self, *exc) -> None:
        for m in self.flags:  # off again, unless another listener took over meanwhile
            raw = m.lookup(ZERO)
            if raw and abi.SAMPLE_CFG.unpack(raw)[0] == os.getpid():
                m.update(ZERO, bytes(abi.SAMPLE_CFG.size))
        if self.rb is not None:
            self.rb.close()
            self.rb = None
        for m in self.flags + self.rings:
            m.close()
        self.flags, self.rings = [], []
