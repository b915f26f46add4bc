"""Health checks and MAC resolution of the load balancer against real
servers in a namespace: the balancer is attached in namespace a, the
backends live in namespace b. A stopped server takes its backend down after
exactly ``fall`` failed rounds (kernel slot DOWN, the VIP's table without
it); started again, it is back after ``rise`` rounds. A backend without a
MAC and without a static neighbour entry gets one from the neighbour table.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from tests.unit.test_lb_service import kernel_state
from xdpctl import abi
from xdpctl.core.hooks import Hooks
from xdpctl.core.lb.health import HealthChecker
from xdpctl.core.lb.kernel import LbKernel
from xdpctl.core.lb.service import LoadBalancer
from xdpctl.lab import netns_socket

VIP = "198.18.0.10"
PORT = 8080
SIZE = 1009
EXTRA = "192.0.2.3"  # a second address of host b


class Server:
    """A TCP listener or a UDP echo server in a namespace, until stop()."""

    def __init__(self, netns: str, addr: str, port: int, kind: str):
        self.sock = netns_socket(netns, socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.thread = None
        if kind == "tcp":
            self.sock.listen(512)
        else:
            self.sock.settimeout(0.05)
            self.running = True
            self.thread = threading.Thread(target=self._echo, daemon=True)
            self.thread.start()

    def _echo(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.sock.sendto(data, peer)

    def stop(self) -> None:
        if self.thread is not None:
            self.running = False
            self.thread.join()
        self.sock.close()


@pytest.fixture
def servers():
    made: list[Server] = []

    def start(*args) -> Server:
        made.append(Server(*args))
        return made[-1]

    yield start
    for s in made:
        s.stop()


def _setup(ctx, lab, proto: str, macs: bool = True) -> LoadBalancer:
    lab.ipr("b").addr("add", index=lab.b.ifindex, address=EXTRA, prefixlen=24)
    Hooks(ctx).attach(lab.a.ifname, "lb", "xdp", netns=lab.a.netns)
    lb = LoadBalancer(ctx)
    lb.add_vip(VIP, proto, PORT, SIZE, check=proto, interval=0.5, timeout=0.5, rise=2, fall=3)
    for addr in (lab.b.ipv4, EXTRA):
        lb.add_backend(addr, VIP, proto, PORT, mac=lab.b.mac if macs else None)
    return lb


def _backend(ctx, addr: str):
    """(view row, kernel slot (addr, mac, family, state, flags))."""
    row = next(b for b in LoadBalancer(ctx).backends_view().backends if b.address == addr)
    with LbKernel(ctx) as k:
        raw = k["xc_lb_backends"].lookup(abi.U32.pack(row.id))
    return row, abi.LB_BACKEND.unpack(raw[:abi.LB_BACKEND.size])


def _ring(ctx) -> set[int]:
    """Backend ids in the VIP's table, as the kernel holds it."""
    (_, _, ring), = kernel_state(ctx)["vips"].values()
    return set(ring)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_stopped_server_goes_down_and_comes_back(ctx, make_lab, servers, proto, caplog):
    lab = make_lab(ipv6=False)
    lb = _setup(ctx, lab, proto)
    first = servers(lab.b.netns, lab.b.ipv4, PORT, proto)
    servers(lab.b.netns, EXTRA, PORT, proto)
    checker = HealthChecker(ctx)
    res = checker.round(force=True)
    assert {(p.backend, p.ok, p.health, p.transition) for p in res.probes} == {
        (lab.b.ipv4, True, "up", "unknown -> up"), (EXTRA, True, "up", "unknown -> up")}
    row, _ = _backend(ctx, lab.b.ipv4)
    other, _ = _backend(ctx, EXTRA)
    assert _ring(ctx) == {row.id, other.id}

    first.stop()
    caplog.set_level(logging.WARNING, logger="xdpctl.lb.health")
    for n in (1, 2):  # fall is 3: still up, still in the table
        checker.round(force=True)
        assert _backend(ctx, lab.b.ipv4)[0].health == "up" and _ring(ctx) == {row.id, other.id}
    res = checker.round(force=True)
    probe = next(p for p in res.probes if p.backend == lab.b.ipv4)
    assert probe.ok is False and probe.transition == "up -> down"
    assert probe.detail == f"{proto} {PORT}: refused"  # TCP RST; UDP: ICMP port unreachable
    row, slot = _backend(ctx, lab.b.ipv4)
    assert (row.state, row.health, row.health_transitions) == ("active", "down", 2)
    assert slot[3] == abi.LbState.DOWN and row.slots == 0
    assert _ring(ctx) == {other.id}
    assert any(f"backend {lab.b.ipv4}: up -> down" in r.getMessage() and VIP in r.getMessage()
               for r in caplog.records)

    servers(lab.b.netns, lab.b.ipv4, PORT, proto)
    checker.round(force=True)  # rise is 2
    assert _backend(ctx, lab.b.ipv4)[0].health == "down" and _ring(ctx) == {other.id}
    checker.round(force=True)
    row, slot = _backend(ctx, lab.b.ipv4)
    assert (row.health, row.health_transitions, slot[3]) == ("up", 3, abi.LbState.ACTIVE)
    assert _ring(ctx) == {row.id, other.id}
    stats = {b.backend: b for b in lb.stats_view().backends}
    assert stats[lab.b.ipv4].health_transitions == 3 and stats[EXTRA].health_transitions == 1


def test_operator_down_wins_over_health(ctx, make_lab, servers):
    lab = make_lab(ipv6=False)
    lb = _setup(ctx, lab, "tcp")
    servers(lab.b.netns, lab.b.ipv4, PORT, "tcp")
    servers(lab.b.netns, EXTRA, PORT, "tcp")
    lb.set_backend(lab.b.ipv4, VIP, "tcp", PORT, state="down")
    checker = HealthChecker(ctx)
    for _ in range(3):
        checker.round(force=True)
    row, slot = _backend(ctx, lab.b.ipv4)
    assert (row.state, row.health, slot[3]) == ("down", "up", abi.LbState.DOWN)
    assert row.id not in _ring(ctx)


def test_mac_resolved_from_the_neighbour_table(ctx, make_lab):
    lab = make_lab(ipv6=False, static_neighbours=False)
    lb = _setup(ctx, lab, "tcp", macs=False)
    lb.set_vip(VIP, "tcp", PORT, check="none")
    row, slot = _backend(ctx, lab.b.ipv4)
    assert (row.mac, row.mac_state, row.slots) == (None, "unresolved", 0)
    assert not slot[4] & abi.LB_BE_HAVE_MAC and _ring(ctx) == set()  # an empty table
    checker = HealthChecker(ctx)
    deadline = time.monotonic() + 10
    while _backend(ctx, lab.b.ipv4)[0].mac is None and time.monotonic() < deadline:
        checker.round(force=True)
        time.sleep(0.05)
    row, slot = _backend(ctx, lab.b.ipv4)
    assert (row.mac, row.mac_state) == (lab.b.mac, "resolved")
    assert slot[4] & abi.LB_BE_HAVE_MAC and slot[1] == bytes.fromhex(lab.b.mac.replace(":", ""))
    assert row.id in _ring(ctx) and row.slots > 0
