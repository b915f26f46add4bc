"""A port-0 VIP with the l3 flow hash (`xdpctl lb vip add ... --port 0
--hash l3`, XC_LB_VIP_HASH_L3) on the bridge lab: every fragment of a UDP
datagram reaches the backend of the first, which reassembles and answers
it; another flow of the same client goes to that backend too."""

from __future__ import annotations

from helpers_lb import PORT, TABLE, LbEnv, wait_for
from helpers_xdpctl import cli_json
from xdpctl.lb_lab import VIP4, UdpFlow

WEIGHTS = {"b1": 1, "b2": 1, "b3": 1}


def test_l3_hash_keeps_every_fragment_on_the_first_ones_backend(lbenv: LbEnv) -> None:
    lbenv.attach("xdp", "native", ("counter", "lb"))
    doc = cli_json(lbenv.cli("lb", "vip", "add", VIP4, "--proto", "udp", "--port", "0", "--table-size",
                             str(TABLE), "--hash", "l3", "--json"))
    assert doc["vip"]["hash"] == "l3"
    for name in WEIGHTS:
        b = lbenv.lab.backend(name)
        lbenv.lb.add_backend(b.ep.ipv4, VIP4, "udp", 0, 1, b.ep.mac)
    (listed,) = lbenv.lb.vips_view().to_json()["vips"]
    assert (listed["port"], listed["hash"]) == (0, "l3")

    big, other = UdpFlow(lbenv.lab.client.netns, VIP4, PORT), UdpFlow(lbenv.lab.client.netns, VIP4, PORT)
    try:
        name = big.ask(b"f" * 3000)  # three fragments on the wire; answered once reassembled
        assert lbenv.proto_counts("xdp")[("ipv4", "fragment")][0] == 2
        assert other.ask() == name
    finally:
        big.close()
        other.close()
    wait_for(lambda: lbenv.servers[name].counts()[1] == 2, "the backend's two datagrams")
    got = {n: s.counts()[1] for n, s in lbenv.servers.items()}
    assert got == {n: 2 if n == name else 0 for n in got}
    v, bes = lbenv.stats(VIP4, "udp")
    # 3 fragments + 1 datagram; one conn entry per (client, VIP, protocol)
    assert (v["packets"], v["new_flows"]) == (4, 1)
    assert {n: (b["packets"], b["new_flows"]) for n, b in bes.items()} == {
        n: (4, 1) if n == name else (0, 0) for n in WEIGHTS}
