"""The load balancer's health checks, reasons and metrics over REST: the
service's own health rounds take a backend down and back up, `xdpctl lb
... --json` prints the REST body of the new reads, bad check settings are
refused naming the field, and /metrics carries the LB families with exact
values after real frames through an attached balancer."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import Running
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from test_lb_rest import check_error, cli_json
from traffic import send_frames
from typer.testing import CliRunner

from xdpctl.cli import app as cli_app
from xdpctl.lab import TwoHostLab

VIP = "192.0.2.220"


@pytest.fixture
def vips(client: httpx.Client) -> Iterator[list[tuple[str, str, int]]]:
    """VIPs (address, proto, port) to remove after the test."""
    made: list[tuple[str, str, int]] = []
    yield made
    for addr, proto, port in made:
        client.request("DELETE", f"/v1/lb/vips/{addr}", params={"proto": proto, "port": port})


def wait_health(client: httpx.Client, addr: str, vip: str, health: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        b = next(b for b in client.get("/v1/lb/backends").json()["backends"] if b["address"] == addr
                 and b["vip"] == vip)
        if b["health"] == health or time.monotonic() > deadline:
            assert b["health"] == health, b
            return b
        time.sleep(0.05)


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def cli_run(server: Running, *args: str):
    return CliRunner().invoke(cli_app, ["--pin-dir", server.settings.pin_dir, "--state-dir",
                                        server.settings.state_dir, *args])


def test_service_checks_take_a_backend_down_and_up(client: httpx.Client, server: Running, vips) -> None:
    """No balancer attached: probes leave from the host's namespace, here to
    a loopback port that is bound but not listening (refused), then listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        r = client.post("/v1/lb/vips", json={"address": VIP, "proto": "tcp", "port": port, "table_size": 211,
                                             "check": "tcp", "interval": 0.1, "timeout": 0.1, "rise": 1,
                                             "fall": 1})
        assert r.status_code == 201, r.text
        vips.append((VIP, "tcp", port))
        assert r.json()["vip"]["check"] == {"kind": "tcp", "port": port, "interval": 0.1, "timeout": 0.1,
                                            "rise": 1, "fall": 1}
        assert client.post("/v1/lb/backends", json={"address": "127.0.0.1", "vip": VIP, "proto": "tcp",
                                                     "port": port, "mac": "02:00:00:00:04:01"}).status_code == 201
        down = wait_health(client, "127.0.0.1", VIP, "down")
        assert down["slots"] == 0 and down["state"] == "active" and "refused" in down["health_reason"]
        sock.listen(64)
        up = wait_health(client, "127.0.0.1", VIP, "up")
        assert up["slots"] == 211 and up["health_transitions"] == 2
        m = scrape(client)
        labels = frozenset({"vip": VIP, "proto": "tcp", "port": str(port), "backend": "127.0.0.1"}.items())
        assert m[("xdpctl_lb_backend_up", labels)] == 1
        assert m[("xdpctl_lb_backend_health_transitions_total", labels)] == 2
        # the CLI's reads print the REST bodies
        for path, args in (("/v1/lb/backends", ("lb", "backend", "list")), ("/v1/lb/stats", ("lb", "stats")),
                           ("/v1/lb/vips", ("lb", "vip", "list"))):
            assert cli_json(server, *args) == client.get(path).json(), path
        # one round on demand: POST /v1/lb/health and `xdpctl lb health --json` answer the same document
        rest = client.post("/v1/lb/health").json()
        cli = cli_json(server, "lb", "health")
        for doc in (rest, cli):
            mine = [p for p in doc["probes"] if p["vip"] == VIP]
            assert mine == [{"vip": VIP, "proto": "tcp", "port": port, "backend": "127.0.0.1", "check": "tcp",
                             "ok": True, "detail": f"tcp {port}: connected", "probe_netns": None, "health": "up",
                             "transition": None,
                             "mac": "02:00:00:00:04:01", "mac_state": "given"}]
        assert set(rest) == set(cli) == {"revision", "checked", "probes"}
        # checks off: health back to unknown, nothing probed
        out = cli_json(server, "lb", "vip", "set", VIP, "--proto", "tcp", "--port", str(port), "--check", "none")
        assert out["vip"]["check"]["kind"] == "none" and out["vip"]["in_table"] == 1
        b = next(b for b in client.get("/v1/lb/backends").json()["backends"] if b["vip"] == VIP)
        assert b["health"] == "unknown" and b["slots"] == 211
    finally:
        sock.close()


def test_bad_check_settings_are_refused(client: httpx.Client, server: Running, vips) -> None:
    vip = "192.0.2.221"
    assert client.post("/v1/lb/vips", json={"address": vip, "proto": "udp", "port": 53}).status_code == 201
    vips.append((vip, "udp", 53))
    before = client.get("/v1/lb/vips").json()
    base = {"address": "192.0.2.222", "proto": "udp", "port": 53}
    for bad, field in (({"check": "icmp"}, "check"), ({"interval": 0}, "interval"), ({"interval": -1}, "interval"),
                       ({"rise": 0}, "rise"), ({"fall": 0}, "fall"), ({"check_port": 65536}, "check_port"),
                       ({"check_port": -1}, "check_port"), ({"timeout": 0}, "timeout"),
                       ({"interval": 1, "timeout": 2}, "timeout")):
        check_error(client.post("/v1/lb/vips", json={**base, "check": "udp", **bad}), 422, "validation_error",
                    field)
        check_error(client.patch(f"/v1/lb/vips/{vip}", json={"proto": "udp", "port": 53, **bad}), 422,
                    "validation_error", field)
    assert client.get("/v1/lb/vips").json() == before
    res = cli_run(server, "lb", "vip", "set", vip, "--proto", "udp", "--port", "53", "--rise", "0")
    assert res.exit_code == 2 and "--rise" in res.stderr
    assert client.get("/v1/lb/vips").json() == before


def test_metrics_count_frames_through_the_balancer(client: httpx.Client, lab: TwoHostLab, vips) -> None:
    vip = "198.18.0.30"
    r = client.post("/v1/attachments", json={"ifname": lab.b.ifname, "netns": lab.b.netns, "program": "lb",
                                             "hook": "xdp", "mode": "generic"})
    assert r.status_code == 201, r.text
    try:
        assert client.post("/v1/lb/vips", json={"address": vip, "proto": "tcp", "port": 80,
                                                 "table_size": 211}).status_code == 201
        vips.append((vip, "tcp", 80))
        assert client.post("/v1/lb/backends", json={"address": "192.0.2.9", "vip": vip, "proto": "tcp",
                                                     "port": 80, "mac": "02:00:00:00:05:09"}).status_code == 201
        frames = [bytes(Ether(src=lab.a.mac, dst=lab.b.mac) / IP(src=lab.a.ipv4, dst=vip)
                        / TCP(sport=30000 + i, dport=80, flags="S") / Raw(b"x" * 10)) for i in range(5)]
        frames += [bytes(Ether(src=lab.a.mac, dst=lab.b.mac) / IP(src=lab.a.ipv4, dst="198.18.0.31")
                         / TCP(sport=31000, dport=80, flags="S"))] * 3
        send_frames(lab.a, frames)
        where = {"netns": lab.b.netns, "ifname": lab.b.ifname, "hook": "xdp"}
        key = ("xdpctl_lb_packets_total", frozenset({**where, "reason": "fwd_new"}.items()))
        deadline = time.monotonic() + 10
        while scrape(client).get(key, 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        m = scrape(client)
        hook = {reason: m[("xdpctl_lb_packets_total", frozenset({**where, "reason": reason}.items()))]
                for reason in ("fwd_new", "fwd_conn", "pass_novip", "pass_nobackend")}
        assert hook == {"fwd_new": 5, "fwd_conn": 0, "pass_novip": 3, "pass_nobackend": 0}
        assert m[("xdpctl_lb_bytes_total", frozenset({**where, "reason": "fwd_new"}.items()))] == \
            sum(len(f) for f in frames[:5])
        vl = frozenset({"vip": vip, "proto": "tcp", "port": "80"}.items())
        bl = frozenset({"vip": vip, "proto": "tcp", "port": "80", "backend": "192.0.2.9"}.items())
        assert (m[("xdpctl_lb_vip_packets_total", vl)], m[("xdpctl_lb_vip_new_flows_total", vl)]) == (5, 5)
        assert (m[("xdpctl_lb_backend_packets_total", bl)], m[("xdpctl_lb_backend_new_flows_total", bl)],
                m[("xdpctl_lb_backend_bytes_total", bl)]) == (5, 5, sum(len(f) for f in frames[:5]))
        stats = client.get("/v1/lb/stats").json()
        mine = next(h for h in stats["hooks"] if h["netns"] == lab.b.netns)
        assert mine["reasons"]["fwd_new"] == {"packets": 5, "bytes": sum(len(f) for f in frames[:5])}
    finally:
        r = client.delete("/v1/attachments", params={"ifname": lab.b.ifname, "netns": lab.b.netns})
        assert r.status_code == 200, r.text
