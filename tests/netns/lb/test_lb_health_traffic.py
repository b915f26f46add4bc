"""Health checks with real traffic through the balancer: a backend whose
check server stops leaves the Maglev table after ``fall`` failed rounds and
gets no new connection; when its check server is back it returns after
``rise`` good rounds and gets new connections again.

The check servers listen on each backend's own address (port CHECK_PORT),
apart from the service on the VIP, so a check can fail while the service
still answers: what the test sees on the VIP is the balancer's choice only.
Rounds are run one by one (``HealthChecker.round(force=True)``, what `xdpctl
lb health` runs), so the test counts rounds instead of waiting on a clock;
the interval only spaces the service's rounds."""

from __future__ import annotations

from collections import Counter

from helpers_lb import PORT, LbEnv
from xdpctl.core.lb.health import HealthChecker
from xdpctl.lb_lab import VIP4, NameServer, ask_tcp

WEIGHTS = {"b1": 1, "b2": 2, "b3": 3}
CHECK_PORT = 9090
RISE, FALL = 2, 3


def _split(env: LbEnv, n: int) -> Counter[str]:
    return Counter(ask_tcp(env.lab.client.netns, VIP4, PORT) for _ in range(n))


def _rounds(env: LbEnv, n: int) -> dict[str, str]:
    """Run n rounds; backend name -> health after the last."""
    for _ in range(n):
        view = HealthChecker(env.ctx).round(force=True)
    return {env.name_of(p.backend): p.health for p in view.probes}


def test_a_failing_backend_leaves_and_returns_by_its_health_check(lbenv: LbEnv) -> None:
    lbenv.attach("xdp", "generic")
    lbenv.service(VIP4, "tcp", WEIGHTS)
    lbenv.lb.set_vip(VIP4, "tcp", PORT, check="tcp", check_port=CHECK_PORT, interval=1, timeout=0.5, rise=RISE,
                     fall=FALL)
    checks = {n: NameServer(lbenv.lab.backend(n).netns, n, [lbenv.lab.backend(n).ep.ipv4], CHECK_PORT)
              for n in WEIGHTS}
    target = "b3"
    try:
        assert _rounds(lbenv, 1) == {n: "up" for n in WEIGHTS}
        before = _split(lbenv, 200)
        assert before[target] > 0 and sum(before.values()) == 200

        checks.pop(target).close()
        assert _rounds(lbenv, FALL - 1)[target] == "up"  # one failure short of fall
        assert _rounds(lbenv, 1)[target] == "down"
        assert lbenv.slots(VIP4, "tcp")[target] == 0
        _, bes = lbenv.stats(VIP4, "tcp")
        flows_then = bes[target]["new_flows"]
        during = _split(lbenv, 200)
        assert during[target] == 0 and sum(during.values()) == 200
        _, bes = lbenv.stats(VIP4, "tcp")
        assert bes[target]["new_flows"] == flows_then

        b = lbenv.lab.backend(target)
        checks[target] = NameServer(b.netns, target, [b.ep.ipv4], CHECK_PORT)
        assert _rounds(lbenv, RISE - 1)[target] == "down"
        assert _rounds(lbenv, 1)[target] == "up"
        assert lbenv.slots(VIP4, "tcp")[target] > 0
        after = _split(lbenv, 200)
        assert after[target] > 0 and sum(after.values()) == 200
        doc = lbenv.lb.backends_view().to_json()
        (row,) = [x for x in doc["backends"] if lbenv.name_of(x["address"]) == target]
        assert row["health"] == "up" and row["health_transitions"] == 3  # unknown -> up -> down -> up
    finally:
        for s in checks.values():
            s.close()
