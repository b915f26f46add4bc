"""Section 6: TCP connections per second through the load balancer.

The lab of the load balancer's traffic tests (xdpctl.lb_lab: a client, the
balancer and three DSR backends on one bridge, veth everywhere). One
connection = connect to the VIP, send one message, read the backend's
name, close; connections run one after another from one thread, and the
backends' name servers run in this process too, all on the bench CPU.

Peers, measured in alternating rounds in the same run:

- ``routing``: no program; the balancer namespace forwards the VIPs to one
  backend as a plain router (ip_forward on, a route per VIP), which answers
  the client directly like a DSR backend;
- ``lb xdp-native`` / ``lb tc-ingress`` (and ``lb xdp-generic`` in the full
  run): the balancer stage on that hook, forwarding off, the VIP spread
  over three backends of weight 1. Native XDP also gets xdpctl's counter on
  the bridge's end of the balancer's veth (XDP_TX needs a program on the
  peer; xdpctl.lb_lab).

Reported: connections per second per run, their median, and the median's
ratio to the routing peer's.
"""

from __future__ import annotations

import time

from xdpctl.config import Settings
from xdpctl.core.context import Context
from xdpctl.core.hooks import Hooks
from xdpctl.core.lb.service import LoadBalancer
from xdpctl.lb_lab import VIP4, LbLab, NameServer, ask_tcp

from .common import CLEANUP, log, median, pin_dir, spread, temp_dir

PORT = 8080

#: The client's sysctls: many short connections to one VIP and port leave
#: their ports in TIME_WAIT; reuse them, from the widest range.
CLIENT_SYSCTLS = {"net/ipv4/ip_local_port_range": "1024 65535", "net/ipv4/tcp_tw_reuse": "1"}


def _peer(lab: LbLab, ctx: Context, name: str):
    """Set the lab up for peer ``name``; return its undo."""
    hooks = Hooks(ctx)
    if name == "routing":
        lab.route_via(lab.backends[0])
        return lambda: lab.route_via(None)
    hook, mode = {"lb xdp-native": ("xdp", "native"), "lb xdp-generic": ("xdp", "generic"),
                  "lb tc-ingress": ("tc-ingress", None)}[name]
    ep, port = lab.balancer, lab.balancer_port
    hooks.attach(ep.ifname, "lb", hook, mode, ep.netns)
    if mode == "native":
        hooks.attach(port.ifname, "counter", "xdp", "native", port.netns)

    def undo() -> None:
        hooks.detach(ep.ifname, netns=ep.netns)
        if mode == "native":
            hooks.detach(port.ifname, netns=port.netns)

    return undo


def _round(lab: LbLab, n: int) -> tuple[float, dict[str, int]]:
    """n connections; (connections per second, answers by backend)."""
    got: dict[str, int] = {}
    t = time.perf_counter()
    for _ in range(n):
        name = ask_tcp(lab.client.netns, VIP4, PORT)
        got[name] = got.get(name, 0) + 1
    return n / (time.perf_counter() - t), got


def _service(ctx: Context, lab: LbLab) -> None:
    lb = LoadBalancer(ctx)
    lb.add_vip(VIP4, "tcp", PORT, 4099)
    for b in lab.backends:
        lb.add_backend(b.ep.ipv4, VIP4, "tcp", PORT, 1, b.ep.mac)


def run(cfg) -> dict:
    peers = ("routing", *(f"lb {h}" for h in cfg.lb_hooks))
    out: dict = {"conns": cfg.lb_conns, "runs": cfg.lb_runs, "peers": {p: [] for p in peers}, "errors": []}
    settings = Settings(pin_dir=pin_dir("lb"), state_dir=temp_dir("lb"))
    ctx = Context(settings)
    CLEANUP.push("close the lb context", ctx.close)
    lab = LbLab(3, prefix="xcb")
    CLEANUP.push("remove the lb lab", lab.close)
    for key, value in CLIENT_SYSCTLS.items():
        lab.sysctl("c", key, value)
    servers = [NameServer(b.netns, b.name, [VIP4], PORT) for b in lab.backends]
    for s in servers:
        CLEANUP.push(f"stop name server {s.name}", s.close)
    _service(ctx, lab)
    for r in range(cfg.lb_runs):
        for p in peers:
            undo = _peer(lab, ctx, p)
            try:
                cps, got = _round(lab, cfg.lb_conns)
            finally:
                undo()
            if p != "routing" and len(got) != len(lab.backends):
                out["errors"].append(f"{p}: answers from {sorted(got)} only")
            out["peers"][p].append(cps)
            log(f"lb lab: round {r + 1} {p}: {cps:,.0f} conn/s")
    base = median(out["peers"]["routing"])
    out["summary"] = {p: {"median": median(v), "spread": spread(v), "ratio": median(v) / base}
                      for p, v in out["peers"].items()}
    return out
