"""Health probes leave from the namespace where the balancer reaches the
backend: two attachments of the balancer in two namespaces (a and c), each
on its own link and subnet with one backend behind it (in b and d). Each
backend is probed, and found up, from its own link's namespace, which the
probe view names; neither is reachable from the other namespace."""

from __future__ import annotations

from tests.netns.test_lb_health_servers import PORT, SIZE, VIP, Server
from xdpctl.core.hooks import Hooks
from xdpctl.core.lb.health import HealthChecker
from xdpctl.core.lb.service import LoadBalancer
from xdpctl.kernel import neigh
from xdpctl.lab import Lab


def test_each_backend_is_probed_from_the_attachment_on_its_subnet(ctx, make_lab):
    lab = make_lab(Lab)
    a, b = lab.add_veth("a", "b", ipv6=False)
    c, d = lab.add_veth("c", "d", ipv6=False)
    assert a.ipv4.rsplit(".", 1)[0] != c.ipv4.rsplit(".", 1)[0]  # two subnets
    for ep in (a, c):
        Hooks(ctx).attach(ep.ifname, "lb", "xdp", netns=ep.netns)
    lb = LoadBalancer(ctx)
    lb.add_vip(VIP, "tcp", PORT, SIZE, check="tcp", interval=0.5, timeout=0.5)
    started = []
    try:
        for ep in (b, d):
            lb.add_backend(ep.ipv4, VIP, "tcp", PORT, mac=ep.mac)
            started.append(Server(ep.netns, ep.ipv4, PORT, "tcp"))
        res = HealthChecker(ctx).round(force=True)
    finally:
        for s in started:
            s.stop()
    assert {(p.backend, p.probe_netns, p.ok, p.health) for p in res.probes} == {
        (b.ipv4, a.netns, True, "up"), (d.ipv4, c.netns, True, "up")}
    # from the first attachment's namespace, the second backend is out of reach
    assert neigh.probe_tcp(a.netns, d.ipv4, PORT, 0.5).ok is False
