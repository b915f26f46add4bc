"""Fleet mode through the ordinary front ends: the global --etcd option and
the REST service started with `serve --etcd --agent`, writing the rule set
and the load balancer; three hosts' kernels show the result (traffic for the
drop list, the pinned maps for the load balancer)."""

from __future__ import annotations

import json

from xdpctl import abi
from xdpctl.core.context import Context
from xdpctl.core.fleet.lbset import FleetLoadBalancer
from xdpctl.core.lb import maglev
from xdpctl.core.lb import validate as v
from xdpctl.core.lb.kernel import LbKernel
from xdpctl.core.lb.tables import vip_key

from .conftest import FleetLab, Host
from .test_fleet_traffic import assert_blocked, assert_open

VIP = "192.0.2.10"
BACKENDS = [("10.0.0.5", 1), ("10.0.0.6", 2), ("10.0.0.7", 3)]


def ok_json(res) -> dict:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_global_option_and_rest_reach_three_kernels(fleet):
    fl: FleetLab = fleet(3, services=1)
    fl.wait_all(1)
    node1 = fl.hosts[0]
    assert_open(fl)
    rev = ok_json(fl.global_cli("block", "203.0.113.0/24", "--json"))["revision"]
    fl.wait_all(rev)
    assert_blocked(fl)

    stale = fl.global_cli("block", "192.0.2.0/24", "--revision", str(rev - 1))  # refused, nothing changed
    assert stale.returncode == 4 and "revision conflict" in stale.stderr, stale.stderr
    r = node1.api("POST", "/v1/block", json={"prefixes": ["192.0.2.0/24"], "revision": rev - 1})
    assert r.status_code == 412 and r.json()["error"] == "revision_conflict"
    assert fl.fleet().revision() == rev

    r = node1.api("POST", "/v1/rules/delete", json={"rules": [{"prefix": "203.0.113.0/24"}], "revision": rev})
    assert r.status_code == 200, r.text
    rev = r.json()["revision"]
    assert [x["prefix"] for x in r.json()["removed"]] == ["203.0.113.0/24"]
    fl.wait_all(rev)
    assert_open(fl)
    for h in fl.hosts:
        assert h.rule_prefixes() == set(), h.node

    r = node1.api("POST", "/v1/block", json={"prefixes": ["203.0.113.0/24"]})
    assert r.status_code == 201, r.text
    fl.wait_all(r.json()["revision"])
    assert_blocked(fl)
    for args, path in ((("rules",), "/v1/rules"), (("lists",), "/v1/lists"), (("policy",), "/v1/policy")):
        assert ok_json(fl.global_cli(*args, "--json")) == node1.api("GET", path).json(), path


def lb_kernel_tables(h: Host) -> dict[bytes, list[str]]:
    """Each VIP in the host's pinned maps, its ring as backend addresses."""
    with Context(h.env.settings) as c, LbKernel(c) as k:
        addr = {b.id: b.addr for b in c.state.lb_backends()}
        out = {}
        for key, raw in k["xc_lb_vips"].items():
            base, size, _vip_id, _flags = abi.LB_VIP.unpack(raw[:abi.LB_VIP.size])
            out[key] = [addr[int.from_bytes(k["xc_lb_ring"].lookup(abi.U32.pack(i))[:4], "little")]
                        for i in range(base, base + size)]
    return out


def fleet_tables(fl: FleetLab) -> dict[bytes, list[str]]:
    """The Python Maglev table of each VIP the fleet holds, as addresses."""
    f = fl.fleet()
    _rev, want = FleetLoadBalancer(f.etcd, fl.prefix, None).desired()
    out = {}
    for name, vip in want.vips.items():
        chosen = v.in_table(want.rows(name))
        table = maglev.build([(b.addr, b.weight) for b in chosen], vip.table_size)
        out[vip_key(vip.addr, vip.proto, vip.port)] = [chosen[i].addr for i in table]
    return out


def test_lb_written_through_node_one_reaches_every_agent(fleet):
    fl: FleetLab = fleet(3, services=1)
    fl.wait_all(1)
    node1 = fl.hosts[0]
    r = node1.api("POST", "/v1/lb/vips", json={"address": VIP, "proto": "tcp", "port": 443, "table_size": 1009})
    assert r.status_code == 201, r.text
    for i, (addr, weight) in enumerate(BACKENDS):
        r = node1.api("POST", "/v1/lb/backends", json={"address": addr, "vip": VIP, "proto": "tcp", "port": 443,
                                                       "weight": weight, "mac": f"02:00:00:00:00:0{i + 5}"})
        assert r.status_code == 201, r.text
    r = node1.api("PATCH", f"/v1/lb/vips/{VIP}", json={"proto": "tcp", "port": 443, "check": "tcp", "interval": 30,
                                                       "rise": 4, "hash": "l3"})
    assert r.status_code == 200, r.text
    r = node1.api("PATCH", f"/v1/lb/backends/{BACKENDS[0][0]}",
                  json={"vip": VIP, "proto": "tcp", "port": 443, "state": "down"})
    assert r.status_code == 200, r.text
    rev = r.json()["revision"]
    fl.wait_all(rev)
    for h in fl.hosts:  # the health check and the flow hash travel with the VIP
        with Context(h.env.settings) as c, LbKernel(c) as k:
            (row,) = c.state.lb_vips()
            assert (row.check_kind, row.interval, row.rise, row.fall, row.hash) == ("tcp", 30.0, 4, 3, "l3"), h.node
            flags = abi.LB_VIP.unpack(k["xc_lb_vips"].lookup(vip_key(VIP, 6, 443))[:abi.LB_VIP.size])[3]
            assert flags == abi.LB_VIP_HASH_L3, h.node
    want = fleet_tables(fl)
    assert len(want) == 1 and set(next(iter(want.values()))) == {"10.0.0.6", "10.0.0.7"}
    for h in fl.hosts:
        assert lb_kernel_tables(h) == want, h.node
    for args, path in ((("lb", "vip", "list"), "/v1/lb/vips"), (("lb", "backend", "list"), "/v1/lb/backends")):
        assert ok_json(fl.global_cli(*args, "--json")) == node1.api("GET", path).json(), path

    r = node1.api("DELETE", f"/v1/lb/vips/{VIP}", params={"proto": "tcp", "port": 443, "revision": rev})
    assert r.status_code == 200, r.text
    fl.wait_all(r.json()["revision"])
    for h in fl.hosts:
        assert lb_kernel_tables(h) == {}, h.node
        with Context(h.env.settings) as c:
            assert c.state.lb_vips() == [] and c.state.lb_backends() == [], h.node
