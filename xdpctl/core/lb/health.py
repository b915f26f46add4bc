"""Health checks and MAC resolution of the load balancer's backends.

A round (:meth:`HealthChecker.round`):

1. MACs: for every backend whose MAC was not given, the neighbour tables of
   the namespaces where the balancer is attached (on the attached
   interfaces) are read; a backend found nowhere gets a solicitation (one
   datagram, so the kernel resolves it) and is looked up again at the end
   of the round, after the probes.
2. Probes: each backend of a VIP whose check is due (``tcp``: a connect;
   ``udp``: a datagram, any answer is a success, an ICMP unreachable or
   silence a failure) to its own address and the check port, sent from the
   namespace of the balancer's attachment whose interface has the
   backend's subnet (the backend is on its link, as DSR needs), else from
   the first attachment's; the host's when it is attached nowhere. The
   probe view names it (``probe_netns``). ``rise`` successes in a row bring a backend up,
   ``fall`` failures take it down; a new backend is ``unknown`` and takes
   flows until its check finds it down.
3. Changes: under the writer lock, each changed backend's row, its kernel
   slot and, when it becomes usable or stops being so, its VIP's table
   (LoadBalancer.apply: the same order as an operator's change). Health and
   MACs are observations, not desired state: the revision stays. Each
   health transition is logged (vip, backend, old -> new, reason) and
   counted in the backend's row.

The service runs rounds in a :class:`HealthThread`; `xdpctl lb health` runs
one round with every check due.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ...kernel import neigh, netlink
from ..context import Context
from ..errors import XdpctlError
from ..rules.store import BackendRow, VipRow
from ..views import LbHealthView, LbProbeView
from . import validate as v
from .kernel import LbKernel
from .service import LoadBalancer, mac_state

log = logging.getLogger("xdpctl.lb.health")

UDP_PAYLOAD = b"xdpctl health check\n"
RESOLVE_EVERY = 1.0  # seconds between neighbour-table reads (and solicitations)
PROBE_WORKERS = 32


@dataclass(frozen=True)
class Place:
    """A namespace where the balancer is attached, its interfaces there and
    their on-link prefixes."""

    netns: str | None
    ifindexes: frozenset[int]
    subnets: tuple = ()


def places(ctx: Context) -> list[Place]:
    """Where the balancer is attached (attachments of program lb), by netns."""
    by_ns: dict[str | None, set[int]] = {}
    for a in ctx.state.attachments():
        if a.program != "lb":
            continue
        try:
            by_ns.setdefault(a.netns, set()).add(netlink.get_link(a.ifname, a.netns).index)
        except XdpctlError:  # the interface or namespace is gone: restore reports it
            continue
    out = []
    for ns, ix in sorted(by_ns.items(), key=lambda p: p[0] or ""):
        try:
            nets = tuple(neigh.subnets(ns, ix))
        except XdpctlError:
            nets = ()
        out.append(Place(ns, frozenset(ix), nets))
    return out


def probe_netns(where: list[Place], addr: str) -> str | None:
    """The namespace to probe ``addr`` from: the first place with an
    interface on the backend's subnet, else the first place; None (the
    host's) without places."""
    a = ipaddress.ip_address(addr)
    for p in where:
        if any(a.version == n.version and a in n for n in p.subnets):
            return p.netns
    return where[0].netns if where else None


def next_health(b: BackendRow, vip: VipRow, ok: bool) -> tuple[str, int]:
    """(health, streak) after one check; the streak stops at THRESHOLD_MAX,
    so a steady backend's row stops changing."""
    if ok:
        streak = min(b.streak + 1, v.THRESHOLD_MAX) if b.streak > 0 else 1
        up = b.health == "unknown" or streak >= vip.rise
        return ("up" if up else b.health), streak
    streak = max(b.streak - 1, -v.THRESHOLD_MAX) if b.streak < 0 else -1
    return ("down" if -streak >= vip.fall else b.health), streak


def _probe(netns: str | None, b: BackendRow, vip: VipRow) -> neigh.ProbeResult:
    port = vip.check_port or vip.port
    try:
        if vip.check_kind == "tcp":
            return neigh.probe_tcp(netns, b.addr, port, vip.timeout)
        return neigh.probe_udp(netns, b.addr, port, vip.timeout, UDP_PAYLOAD)
    except OSError as exc:
        return neigh.ProbeResult(False, f"{vip.check_kind} {port}: {exc.strerror or exc}")


class HealthChecker:
    """Rounds over every VIP; remembers when each VIP's check is due and
    when MACs were last looked up."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.due: dict[int, float] = {}  # vip id -> monotonic time of its next check
        self.next_resolve = 0.0

    def _macs(self, where: list[Place], rows: list[BackendRow], solicit: bool) -> dict[int, str]:
        """Backend id -> MAC found in the neighbour tables, for backends
        whose MAC was not given; solicit the missing ones."""
        want = [b for b in rows if not b.mac_given]
        if not want or not where:
            return {}
        seen: dict[str, str] = {}
        for p in reversed(where):  # the first place wins
            try:
                seen.update(neigh.table(p.netns, set(p.ifindexes)))
            except XdpctlError as exc:
                log.warning("neighbour table of %s: %s", p.netns or "the host", exc)
        found = {b.id: seen[b.addr] for b in want if b.addr in seen}
        if solicit:
            for b in want:
                if b.id not in found:
                    for p in where:
                        neigh.solicit(p.netns, b.addr)
        return found

    def round(self, force: bool = False) -> LbHealthView:
        """One round; ``force``: every VIP's check is due now."""
        now = time.monotonic()
        st = self.ctx.state
        rows = st.lb_backends()
        if not rows:  # nothing to check or resolve (the service's rounds every 0.1 s cost two reads)
            return LbHealthView(revision=st.revision, checked=time.time(), probes=[])
        vips = {r.id: r for r in st.lb_vips()}
        where = places(self.ctx)
        resolve = force or now >= self.next_resolve
        macs = self._macs(where, rows, solicit=True) if resolve else {}
        if resolve:
            self.next_resolve = now + RESOLVE_EVERY
        due = [b for b in rows if vips[b.vip].check_kind != "none"
               and (force or self.due.get(b.vip, 0.0) <= now)]
        for vid in {b.vip for b in due}:
            self.due[vid] = now + vips[vid].interval
        origin = {b.id: probe_netns(where, b.addr) for b in due}
        results: dict[int, neigh.ProbeResult] = {}
        if due:
            with ThreadPoolExecutor(min(PROBE_WORKERS, len(due)), thread_name_prefix="xdpctl-probe") as pool:
                futs = {b.id: pool.submit(_probe, origin[b.id], b, vips[b.vip]) for b in due}
                results = {i: f.result() for i, f in futs.items()}
        if resolve:
            missing = [b for b in rows if b.id not in macs]
            macs.update(self._macs(where, missing, solicit=False))
        return self._apply(vips, macs, results, origin)

    def _apply(self, vips: dict[int, VipRow], macs: dict[int, str],
               results: dict[int, neigh.ProbeResult], origin: dict[int, str | None]) -> LbHealthView:
        """Write what changed (under the writer lock, re-read there); the
        round's view."""
        st = self.ctx.state
        rows = st.lb_backends()
        if any(self._next(b, vips[b.vip], macs.get(b.id), results.get(b.id), quiet=True) != b
               for b in rows if b.vip in vips):
            with self.ctx.writer() as st:
                probed, vips = vips, {r.id: r for r in st.lb_vips()}
                rows = st.lb_backends()
                # a check changed meanwhile (lb vip set): this round's results are not its
                results = {b.id: results[b.id] for b in rows if b.id in results and b.vip in probed
                           and b.vip in vips and v.Check.of_row(probed[b.vip]) == v.Check.of_row(vips[b.vip])}
                changed = [(b, self._next(b, vips[b.vip], macs.get(b.id), results.get(b.id))) for b in rows]
                self._write(st, vips, [(old, new) for old, new in changed if new != old])
        else:
            changed = [(b, b) for b in rows if b.vip in vips]
        probes = [self._view(vips[new.vip], old, new, results.get(new.id), origin.get(new.id))
                  for old, new in changed]
        return LbHealthView(revision=st.revision, checked=time.time(), probes=probes)

    def _write(self, st, vips: dict[int, VipRow], todo: list[tuple[BackendRow, BackendRow]]) -> None:
        lb = LoadBalancer(self.ctx)
        with LbKernel(self.ctx) as k:
            for old, new in todo:
                if new.mac != old.mac:
                    st.lb_set_mac(new.id, new.mac)
                st.lb_set_health(new.id, new.health, new.streak, new.transitions, new.reason)
                lb.apply(st, k, vips[new.vip], old, new)

    @staticmethod
    def _next(b: BackendRow, vip: VipRow, mac: str | None, res: neigh.ProbeResult | None,
              quiet: bool = False) -> BackendRow:
        """The backend's row after this round (logs a health transition
        unless ``quiet``)."""
        new = b._replace(mac=mac) if mac and not b.mac_given else b
        if res is None:
            return new
        health, streak = next_health(b, vip, res.ok)
        new = new._replace(streak=streak)
        if health == b.health:
            return new
        n = -streak if streak < 0 else streak
        reason = f"{n} {'successful' if res.ok else 'failed'} checks: {res.detail}"
        label = f"{vip.addr} {v.PROTO_NAMES[vip.proto]}/{vip.port}"
        if not quiet:
            log.warning("lb health: vip %s backend %s: %s -> %s (%s)", label, b.addr, b.health, health, reason)
        return new._replace(health=health, transitions=b.transitions + 1, reason=reason)

    @staticmethod
    def _view(vip: VipRow, old: BackendRow, new: BackendRow, res: neigh.ProbeResult | None,
              netns: str | None) -> LbProbeView:
        return LbProbeView(vip=vip.addr, proto=v.PROTO_NAMES[vip.proto], port=vip.port, backend=new.addr,
                           check=vip.check_kind, ok=None if res is None else res.ok, probe_netns=netns,
                           detail=None if res is None else res.detail, health=new.health,
                           transition=f"{old.health} -> {new.health}" if new.health != old.health else None,
                           mac=new.mac, mac_state=mac_state(new))


class HealthThread(threading.Thread):
    """Rounds every ``tick`` seconds on a context of its own until :meth:`stop`."""

    def __init__(self, ctx: Context, tick: float = 0.1):
        super().__init__(name="xdpctl-lb-health", daemon=True)
        self.checker = HealthChecker(ctx)
        self.tick = tick
        self.last_error: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.tick):
            try:
                self.checker.round()
                self.last_error = None
            except Exception as exc:  # keep checking; the next round may succeed
                if str(exc) != self.last_error:
                    log.warning("lb health round failed: %s", exc)
                self.last_error = str(exc)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.checker.ctx.close()
