"""The load balancer with real connections: a client, the balancer and DSR
backends on one bridge (xdpctl.lb_lab), the balancer attached with
`xdpctl attach IFACE -p lb --netns NS`, VIPs and backends set through the
core functions behind `xdpctl lb` (a CLI run costs seconds here; the REST
and CLI contract tests cover the front ends), answers naming the backend
that served them.

How far a split may stray from the weights: the balancer sends a new flow
to slot hash(5-tuple) % TABLE of the VIP's Maglev table. The client's
ephemeral ports differ per flow and the flow hash (MurmurHash3) mixes every
bit, so each flow lands on a backend independently with probability p =
its slots / TABLE, and a backend's count of n flows is Binomial(n, p). The
tests allow SIGMAS (5) standard deviations plus one (helpers_lb:
binomial_bound): for 1,000 flows and weights 1:2:3 that is +-60, +-76
and +-80 around 167, 333 and 500, ranges that do not overlap. Maglev gives
each backend exactly its weight's share of slots per full round, so p is
the weight share within turns / TABLE (asserted too). By the normal
approximation a count leaves its range by chance with probability below
6e-7; the tests make a few dozen such checks.
"""

from __future__ import annotations

from collections import Counter

import pytest

from helpers_lb import HOOKS, PORT, LbEnv, binomial_bound, wait_for
from helpers_xdpctl import cli_ok
from xdpctl.lb_lab import CLIENT4_ALT, VIP4, VIP6, UdpFlow, ask, ask_tcp, open_tcp

#: Weights of the split tests; b4 is not a backend of their VIPs.
WEIGHTS = {"b1": 1, "b2": 2, "b3": 3}

#: TCP connections per family in the split test.
TCP_FLOWS = 1000

#: UDP flows per family in the split test: each is one socket (one 5-tuple)
#: with its own datagram exchange, costlier than a connection here; 600
#: still puts the weights 1:2:3 more than 5 sigma apart (100 / 200 / 300,
#: bounds +-47, +-59, +-62).
UDP_FLOWS = 600


def _tcp_split(env: LbEnv, vip: str, n: int) -> Counter[str]:
    return Counter(ask_tcp(env.lab.client.netns, vip, PORT) for _ in range(n))


def _udp_flows(env: LbEnv, vip: str, n: int, **kw) -> list[UdpFlow]:
    return [UdpFlow(env.lab.client.netns, vip, PORT, **kw) for _ in range(n)]


@pytest.mark.parametrize("hook,mode", HOOKS, ids=["xdp-native", "xdp-generic", "tc-ingress"])
def test_tcp_split_follows_weights_and_stats_count_every_flow(lbenv: LbEnv, hook: str, mode: str | None) -> None:
    """1,000 TCP connections per family all complete, split by weight;
    `lb stats --json` counts one new flow per connection on the backend
    that answered it (one SYN each: nothing is lost on the lab)."""
    lbenv.attach(hook, mode)
    for vip in (VIP4, VIP6):
        lbenv.service(vip, "tcp", WEIGHTS)
    for vip in (VIP4, VIP6):
        got = _tcp_split(lbenv, vip, TCP_FLOWS)
        lbenv.assert_split(vip, "tcp", got, WEIGHTS)
        v, bes = lbenv.stats(vip, "tcp", cli=True)
        assert v["new_flows"] == TCP_FLOWS
        assert {name: b["new_flows"] for name, b in bes.items()} == {name: got[name] for name in WEIGHTS}
        assert v["packets"] == sum(b["packets"] for b in bes.values())
    conns = sum(s.counts()[0] for s in lbenv.servers.values())
    assert conns == 2 * TCP_FLOWS and lbenv.servers["b4"].counts() == (0, 0)


def test_udp_split_follows_weights_and_stats_are_exact(lbenv: LbEnv) -> None:
    """UDP flows per family split by weight; every datagram is counted once
    on the VIP and on the backend that answered (two per flow, the second
    through the connection table), new flows once per flow, bytes exactly
    (Ethernet + IP + UDP + one payload byte per datagram)."""
    lbenv.attach("xdp", "native")
    for vip, l3 in ((VIP4, 20), (VIP6, 40)):
        lbenv.service(vip, "udp", WEIGHTS)
        flows = _udp_flows(lbenv, vip, UDP_FLOWS)
        try:
            first = [f.ask() for f in flows]
            assert [f.ask() for f in flows] == first  # the same 5-tuple stays on its backend
        finally:
            for f in flows:
                f.close()
        got = Counter(first)
        lbenv.assert_split(vip, "udp", got, WEIGHTS)
        frame = 14 + l3 + 8 + 1
        v, bes = lbenv.stats(vip, "udp", cli=True)
        assert (v["packets"], v["new_flows"], v["bytes"]) == (2 * UDP_FLOWS, UDP_FLOWS, 2 * UDP_FLOWS * frame)
        assert {n: (b["packets"], b["new_flows"]) for n, b in bes.items()} == {
            n: (2 * got[n], got[n]) for n in WEIGHTS}


def test_removing_a_backend_moves_only_its_flows(lbenv: LbEnv) -> None:
    """Of 4 equal backends, b2 is deleted. Re-sent UDP flows (same 5-tuple)
    and open TCP connections that were not on b2 stay on their backend,
    every one of them; the flows of b2 move, so the share moved is b2's
    share: 1/N = 1/4 within the binomial bound."""
    names = ("b1", "b2", "b3", "b4")
    lbenv.attach("xdp", "native")
    lbenv.service(VIP4, "udp", dict.fromkeys(names, 1))
    lbenv.service(VIP4, "tcp", dict.fromkeys(names, 1))
    n = 400
    flows = _udp_flows(lbenv, VIP4, n)
    conns = [open_tcp(lbenv.lab.client.netns, VIP4, PORT) for _ in range(40)]
    try:
        before = [f.ask() for f in flows]
        on = [ask(c) for c in conns]
        for proto in ("udp", "tcp"):
            lbenv.del_backend(VIP4, proto, "b2")
        after = [f.ask() for f in flows]
        kept = [c for c, name in zip(conns, on) if name != "b2"]
        assert [ask(c) for c in kept] == [name for name in on if name != "b2"]
    finally:
        for f in flows:
            f.close()
        for c in conns:
            c.close()
    assert all(a == b for a, b in zip(after, before) if b != "b2")
    assert "b2" not in after
    moved = sum(a != b for a, b in zip(after, before))
    assert moved == before.count("b2")
    assert abs(moved - n / len(names)) <= binomial_bound(n, 1 / len(names)), moved


def test_drained_backend_keeps_open_connections_and_gets_no_new_flow(lbenv: LbEnv) -> None:
    """Long-lived connections to a backend keep sending and receiving after
    it is drained; of 300 new connections none lands on it, and its
    new-flow counter does not move."""
    lbenv.attach("xdp", "native")
    lbenv.service(VIP4, "tcp", WEIGHTS)
    conns = [open_tcp(lbenv.lab.client.netns, VIP4, PORT) for _ in range(30)]
    try:
        on = [ask(c) for c in conns]
        target = "b3"  # weight 3: about half of the 30 connections
        assert target in on
        lbenv.set_backend(VIP4, "tcp", target, "draining")
        _, bes = lbenv.stats(VIP4, "tcp")
        flows_then = bes[target]["new_flows"]
        for _ in range(3):
            assert [ask(c) for c in conns] == on
        fresh = _tcp_split(lbenv, VIP4, 300)
        assert fresh[target] == 0 and sum(fresh.values()) == 300
        assert [ask(c) for c in conns] == on
    finally:
        for c in conns:
            c.close()
    _, bes = lbenv.stats(VIP4, "tcp")
    assert bes[target]["new_flows"] == flows_then


@pytest.mark.parametrize("hook,mode", HOOKS, ids=["xdp-native", "xdp-generic", "tc-ingress"])
def test_blocked_client_never_reaches_a_backend(lbenv: LbEnv, hook: str, mode: str | None) -> None:
    """Counter, drop list and balancer on one hook: datagrams from a blocked
    source are dropped before the balancer (no backend sees one, the drop
    counter counts exactly what was sent, the balancer counts none of
    them), while the other client address is balanced as usual."""
    lbenv.attach(hook, mode, ("counter", "droplist", "lb"))
    lbenv.service(VIP4, "udp", WEIGHTS)
    cli_ok(lbenv.cli("block", f"{CLIENT4_ALT}/32"))
    sent = 60
    blocked = _udp_flows(lbenv, VIP4, 6, source=CLIENT4_ALT)
    allowed = _udp_flows(lbenv, VIP4, 20)
    try:
        for i in range(sent):
            blocked[i % len(blocked)].sock.send(b"x")
        answers = [f.ask() for f in allowed]
    finally:
        for f in blocked + allowed:
            f.close()
    wait_for(lambda: lbenv.verdicts(hook).get("drop_src", (0, 0))[0] >= sent, "the drop counter")
    assert lbenv.verdicts(hook)["drop_src"] == (sent, sent * (14 + 20 + 8 + 1))
    seen = Counter()
    for s in lbenv.servers.values():
        seen.update(addr for addr, _port in s.udp)
    assert seen.get(CLIENT4_ALT, 0) == 0
    assert sum(seen.values()) == len(allowed)
    v, _ = lbenv.stats(VIP4, "udp")
    assert (v["packets"], v["new_flows"]) == (len(allowed), len(allowed))
    assert set(answers) <= set(WEIGHTS)


def test_fragments_of_a_vip_datagram(lbenv: LbEnv) -> None:
    """A 3,000-byte UDP datagram to an IPv4 VIP leaves the client as three
    fragments. The first carries the ports: it is balanced like any packet
    of the flow. The others have no ports; the VIP is port-specific, so they
    are not balanced (PASS_NOVIP), reach the balancer's own stack and die
    there (it forwards nothing): the backend never reassembles the
    datagram and never answers it. A small datagram on the same flow is
    answered. Sites with fragmented traffic need a port-0 VIP with
    XC_LB_VIP_HASH_L3 (docs/lb.md)."""
    lbenv.attach("xdp", "native", ("counter", "lb"))
    lbenv.service(VIP4, "udp", WEIGHTS)
    flow = UdpFlow(lbenv.lab.client.netns, VIP4, PORT)
    try:
        flow.sock.send(b"f" * 3000)
        wait_for(lambda: lbenv.proto_counts("xdp").get(("ipv4", "fragment"), (0, 0))[0] >= 2, "the fragments")
        v, bes = lbenv.stats(VIP4, "udp")
        assert (v["packets"], v["new_flows"], v["bytes"]) == (1, 1, 14 + 1500)
        (name,) = [n for n, b in bes.items() if b["packets"]]
        assert flow.ask() == name
    finally:
        flow.close()
    assert lbenv.proto_counts("xdp")[("ipv4", "fragment")][0] == 2
    assert sum(s.counts()[1] for s in lbenv.servers.values()) == 1  # the small one only
    v, _ = lbenv.stats(VIP4, "udp")
    assert (v["packets"], v["new_flows"]) == (2, 1)
