"""CLI verbs of the load balancer: `xdpctl lb vip add|set|del|list`,
`xdpctl lb backend add|del|set|list`, `xdpctl lb stats`, `xdpctl lb health`.

With --json every verb prints its core view, the same document as the REST
answer (``xdpctl lb vip list --json`` is GET /v1/lb/vips, ``xdpctl lb
backend list --json`` GET /v1/lb/backends, ``xdpctl lb stats --json`` GET
/v1/lb/stats; a change prints what POST/DELETE/PATCH answer; ``xdpctl lb
health --json`` what POST /v1/lb/health answers).
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..core.lb.health import HealthChecker
from ..core.lb.service import LoadBalancer
from ..core.errors import ValidationError
from ..core.fleet.mode import load_balancer
from .app import app, ctx, emit_json, out, run, say

lb_app = typer.Typer(no_args_is_help=True, help="The L4 load balancer: VIPs, backends, counters.")
vip_app = typer.Typer(no_args_is_help=True, help="Virtual addresses (address, protocol, port).")
backend_app = typer.Typer(no_args_is_help=True, help="The backends of a VIP.")
lb_app.add_typer(vip_app, name="vip")
lb_app.add_typer(backend_app, name="backend")
app.add_typer(lb_app, name="lb")

AddrArg = typer.Argument(..., metavar="ADDR", help="IPv4 or IPv6 address")
ProtoOpt = typer.Option(..., "--proto", metavar="PROTO", help="tcp | udp")
PortOpt = typer.Option(..., "--port", metavar="PORT", help="port 1-65535, or 0: every port")
VipOpt = typer.Option(..., "--vip", metavar="ADDR", help="the VIP's address")
RevOpt = typer.Option(None, "--revision", metavar="N", min=0, max=2**63 - 1, help="only apply if the state is at this revision")
JsonOpt = typer.Option(False, "--json", help="print the result as JSON (the REST API's document)")
CheckOpt = typer.Option(None, "--check", metavar="KIND", help="health check: tcp (connect) | udp (any answer) | none")
CheckPortOpt = typer.Option(None, "--check-port", metavar="N", help="port probed on each backend (default: the "
                                                                     "VIP's port)")
IntervalOpt = typer.Option(None, "--interval", metavar="S", help="seconds between checks (default 5)")
TimeoutOpt = typer.Option(None, "--timeout", metavar="S", help="seconds a check waits (default 1)")
RiseOpt = typer.Option(None, "--rise", metavar="N", help="successes in a row that bring a backend up (default 2)")
FallOpt = typer.Option(None, "--fall", metavar="N", help="failures in a row that take a backend down (default 3)")
HashOpt = typer.Option(None, "--hash", metavar="MODE", help="flow hash: l4 (addresses, protocol, ports; default) | "
                                                          "l3 (addresses and protocol: every fragment of a datagram "
                                                          "and every flow of a client to one backend)")


def _change(fn, as_json: bool, verb: str) -> None:
    """Run one change and print its LbChangeView."""

    def body():
        with ctx() as c:
            res = fn(load_balancer(c))
        if as_json:
            emit_json(res.to_json())
            return
        if res.backend is not None:
            b = res.backend
            say(f"{verb} backend {b.address} of {b.vip} {b.proto}/{b.port}: weight {b.weight}, {b.state}, "
                 f"mac {b.mac or 'unknown'}")
        elif res.vip is not None:
            c = res.vip.check
            check = f"check {c.kind} port {c.port} every {c.interval:g} s" if c and c.kind != "none" else "no check"
            say(f"{verb} VIP {res.vip.address} {res.vip.proto}/{res.vip.port}, table size {res.vip.table_size}, "
                f"hash {res.vip.hash}, {check}")
        say(f"revision {res.revision}")

    run(body)


def _read(fn, as_json: bool, table) -> None:
    def body():
        with ctx() as c:
            view = fn(load_balancer(c))
        if as_json:
            emit_json(view.to_json())
        else:
            out.print(table(view))

    run(body)


# ------------------------------------------------------------------ VIPs
@vip_app.command("add")
def vip_add(addr: str = AddrArg, proto: str = ProtoOpt, port: int = PortOpt,
            table_size: Optional[int] = typer.Option(None, "--table-size", metavar="P", help="Maglev table slots (a prime; "
                                                                                  "default 65537)"),
            check: Optional[str] = CheckOpt, check_port: Optional[int] = CheckPortOpt,
            interval: Optional[float] = IntervalOpt, timeout: Optional[float] = TimeoutOpt,
            rise: Optional[int] = RiseOpt, fall: Optional[int] = FallOpt, hash_mode: Optional[str] = HashOpt,
            revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Add a VIP (no backends yet: its traffic passes)."""
    hc = dict(check=check, check_port=check_port, interval=interval, timeout=timeout, rise=rise, fall=fall)
    _change(lambda lb: lb.add_vip(addr, proto, port, table_size, expected_revision=revision, hash=hash_mode, **hc),
            as_json, "added")


@vip_app.command("set")
def vip_set(addr: str = AddrArg, proto: str = ProtoOpt, port: int = PortOpt,
            check: Optional[str] = CheckOpt, check_port: Optional[int] = CheckPortOpt,
            interval: Optional[float] = IntervalOpt, timeout: Optional[float] = TimeoutOpt,
            rise: Optional[int] = RiseOpt, fall: Optional[int] = FallOpt, hash_mode: Optional[str] = HashOpt,
            revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Change a VIP's flow hash or health check (the options given; unless only --hash is given, health
    starts again from unknown)."""
    hc = dict(check=check, check_port=check_port, interval=interval, timeout=timeout, rise=rise, fall=fall)
    _change(lambda lb: lb.set_vip(addr, proto, port, expected_revision=revision, hash=hash_mode, **hc), as_json,
            "changed")


@vip_app.command("del")
def vip_del(addr: str = AddrArg, proto: str = ProtoOpt, port: int = PortOpt, revision: Optional[int] = RevOpt,
            as_json: bool = JsonOpt) -> None:
    """Remove a VIP and its backends."""
    _change(lambda lb: lb.delete_vip(addr, proto, port, expected_revision=revision), as_json, "removed")


def _vips_table(view) -> Table:
    t = Table("id", "address", "proto", "port", "table size", "hash", "backends", "in table", "check",
              title=f"revision {view.revision}")
    for v in view.vips:
        c = v.check
        check = f"{c.kind}/{c.port} {c.interval:g}s rise {c.rise} fall {c.fall}" if c and c.kind != "none" else "-"
        t.add_row(str(v.id), v.address, v.proto, str(v.port), str(v.table_size), v.hash, str(v.backends),
                  str(v.in_table), check)
    return t


@vip_app.command("list")
def vip_list(as_json: bool = JsonOpt) -> None:
    """Every VIP."""
    _read(lambda lb: lb.vips_view(), as_json, _vips_table)


# ------------------------------------------------------------------ backends
@backend_app.command("add")
def backend_add(addr: str = AddrArg, vip: str = VipOpt, proto: str = ProtoOpt, port: int = PortOpt,
                weight: int = typer.Option(1, "--weight", metavar="W", help="share of new flows (0-1000)"),
                mac: Optional[str] = typer.Option(None, "--mac", metavar="MAC", help="the backend's MAC; without one it gets "
                                                                      "no flows"),
                revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Add a backend to a VIP (active)."""
    _change(lambda lb: lb.add_backend(addr, vip, proto, port, weight, mac, expected_revision=revision),
            as_json, "added")


@backend_app.command("del")
def backend_del(addr: str = AddrArg, vip: str = VipOpt, proto: str = ProtoOpt, port: int = PortOpt,
                revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Remove a backend: its flows move to the others."""
    _change(lambda lb: lb.delete_backend(addr, vip, proto, port, expected_revision=revision), as_json, "removed")


@backend_app.command("set")
def backend_set(addr: str = AddrArg, vip: str = VipOpt, proto: str = ProtoOpt, port: int = PortOpt,
                weight: Optional[int] = typer.Option(None, "--weight", metavar="W", help="a new weight"),
                drain: bool = typer.Option(False, "--drain", help="no new flows, established ones stay"),
                down: bool = typer.Option(False, "--down", help="no flows at all"),
                up: bool = typer.Option(False, "--up", help="active again"),
                revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Change a backend's weight, or its state (exactly one of the options)."""
    states = [s for s, on in (("draining", drain), ("down", down), ("active", up)) if on]

    def change(lb: LoadBalancer):
        if len(states) + (weight is not None) != 1:
            raise ValidationError("give exactly one of --weight, --drain, --down, --up", field="state")
        return lb.set_backend(addr, vip, proto, port, weight, states[0] if states else None,
                              expected_revision=revision)

    _change(change, as_json, "changed")


def _backends_table(view) -> Table:
    t = Table("id", "address", "vip", "proto", "port", "weight", "state", "health", "mac", "slots",
              title=f"revision {view.revision}")
    for b in view.backends:
        t.add_row(str(b.id), b.address, b.vip, b.proto, str(b.port), str(b.weight), b.state,
                  f"{b.health} ({b.health_transitions} changes)", f"{b.mac or '-'} ({b.mac_state})", str(b.slots))
    return t


@backend_app.command("list")
def backend_list(as_json: bool = JsonOpt) -> None:
    """Every backend of every VIP, with its share of the VIP's table."""
    _read(lambda lb: lb.backends_view(), as_json, _backends_table)


# ------------------------------------------------------------------ counters
def _stats_table(view) -> Table:
    t = Table("what", "address", "vip", "proto/port", "packets", "bytes", "new flows",
              title=f"revision {view.revision}")
    for v in view.vips:
        t.add_row("vip", v.vip, "", f"{v.proto}/{v.port}", str(v.packets), str(v.bytes), str(v.new_flows))
    for b in view.backends:
        t.add_row("backend", b.backend, b.vip, f"{b.proto}/{b.port}", str(b.packets), str(b.bytes),
                  str(b.new_flows))
    for h in view.hooks:
        where = f"{h.netns + '/' if h.netns else ''}{h.ifname} {h.hook}"
        for reason, c in h.reasons.items():
            if c.packets:
                t.add_row("hook", where, reason, "", str(c.packets), str(c.bytes), "")
    return t


@lb_app.command("stats")
def stats(as_json: bool = JsonOpt) -> None:
    """Packets, bytes and new flows per VIP and per backend; per hook, why
    packets were balanced or passed on."""
    _read(lambda lb: lb.stats_view(), as_json, _stats_table)


def _health_table(view) -> Table:
    t = Table("vip", "backend", "check", "from", "result", "health", "mac", title=f"revision {view.revision}")
    for p in view.probes:
        result = "-" if p.ok is None else ("ok" if p.ok else "failed") + (f": {p.detail}" if p.detail else "")
        origin = "-" if p.ok is None else p.probe_netns or "host"
        t.add_row(f"{p.vip} {p.proto}/{p.port}", p.backend, p.check, origin, result,
                  p.transition or p.health, f"{p.mac or '-'} ({p.mac_state})")
    return t


@lb_app.command("health")
def health(as_json: bool = JsonOpt) -> None:
    """Check every backend once now (the VIPs' health checks) and resolve
    missing MACs; changes the table like the service's checks do."""
    _read(lambda lb: HealthChecker(lb.ctx).round(force=True), as_json, _health_table)
