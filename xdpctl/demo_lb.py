"""`make demo`, the load balancer's part (run by xdpctl.demo after the drop
list's): a client, the balancer and three DSR backends on one bridge
(xdpctl.lb_lab); a VIP over the backends by weight 1:2:3; connections
spread by weight; one backend drained while a connection to it is open: the
open connection still gets its answers from it, new ones go elsewhere."""

from __future__ import annotations

from collections import Counter

from rich.console import Console

from .core.context import Context
from .core.hooks import Hooks
from .core.lb.service import LoadBalancer
from .lb_lab import VIP4, LbLab, NameServer, ask, ask_tcp, open_tcp

PORT = 8080
WEIGHTS = {"b1": 1, "b2": 2, "b3": 3}


def _split(lab: LbLab, n: int) -> Counter[str]:
    return Counter(ask_tcp(lab.client.netns, VIP4, PORT) for _ in range(n))


def _show(console: Console, what: str, got: Counter[str]) -> None:
    parts = ", ".join(f"{name} {got[name]}" for name in WEIGHTS)
    console.print(f"{what}: {parts}")


def _set_up(console: Console, ctx: Context, lab: LbLab) -> None:
    ep, port = lab.balancer, lab.balancer_port
    hooks = Hooks(ctx)
    res = hooks.attach(ep.ifname, "lb", "xdp", "native", ep.netns)
    # native XDP_TX on veth needs a program on the peer (xdpctl.lb_lab)
    hooks.attach(port.ifname, "counter", "xdp", "native", port.netns)
    console.print(f"attached [bold]lb[/] to the balancer's {ep.ifname} (xdp, {res.mode} mode): prog id {res.prog_id}")
    lb = LoadBalancer(ctx)
    lb.add_vip(VIP4, "tcp", PORT)
    for b in lab.backends:
        lb.add_backend(b.ep.ipv4, VIP4, "tcp", PORT, WEIGHTS[b.name], b.ep.mac)
    size = lb.vips_view().vips[0].table_size
    for b in lb.backends_view().backends:
        console.print(f"backend {b.address} weight {b.weight} mac {b.mac}: {b.slots} of {size} table slots")


def _drain_story(console: Console, ctx: Context, lab: LbLab, n: int) -> bool:
    got = _split(lab, n)
    _show(console, f"{n} connections to {VIP4}:{PORT} (weights 1:2:3)", got)
    conn = open_tcp(lab.client.netns, VIP4, PORT)
    try:
        target = ask(conn)
        backend = lab.backend(target)
        LoadBalancer(ctx).set_backend(backend.ep.ipv4, VIP4, "tcp", PORT, state="draining")
        console.print(f"an open connection is on {target}; {target} drained")
        again = [ask(conn) for _ in range(3)]
        after = _split(lab, n)
        console.print(f"the open connection, asked 3 more times: answered by {', '.join(again)}")
        _show(console, f"{n} new connections", after)
    finally:
        conn.close()
    return (sum(got.values()) == n and set(got) == set(WEIGHTS) and again == [target] * 3
            and after[target] == 0 and sum(after.values()) == n)


def lb_story(console: Console, ctx: Context, n: int) -> bool:
    """The load balancer's part; True when every check held."""
    console.rule(f"4. the load balancer: {VIP4}:{PORT} over three backends, direct server return")
    lab = LbLab(3, prefix="xdmo")
    servers: list[NameServer] = []
    try:
        servers = [NameServer(b.netns, b.name, [VIP4], PORT) for b in lab.backends]
        console.print(f"lab on one bridge: client {lab.client.ipv4}, balancer {lab.balancer.ipv4}, backends "
                      f"{', '.join(b.ep.ipv4 for b in lab.backends)} (the VIP on their lo)")
        _set_up(console, ctx, lab)
        ok = _drain_story(console, ctx, lab, n)
    finally:
        for s in servers:
            s.close()
        hooks = Hooks(ctx)
        for ep in (lab.balancer, lab.balancer_port):
            try:
                hooks.detach(ep.ifname, netns=ep.netns)
            except Exception as exc:  # the lab teardown removes the interface anyway
                console.print(f"detach: {exc}")
        lab.close()
    console.print(("[green]OK[/]: connections spread by weight; the drained backend finished its open "
                   "connection and took no new one") if ok else "[red]unexpected[/]: see the counts above")
    return ok
