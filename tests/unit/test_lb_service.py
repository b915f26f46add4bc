"""The load balancer's control plane (xdpctl.core.lb.service) against real
pinned maps: the maps hold the Python Maglev table of each VIP, a packet
run through the hook program (BPF_PROG_TEST_RUN) reaches the backend the
Python reference predicts, bad input changes nothing, restore rebuilds.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import uuid

import pytest

from tests.packets.test_lb_testrun import _frame  # the frames of the data-plane tests
from tests.support.progs import ProgramBench
from xdpctl import abi
from xdpctl.core.errors import Conflict, NotFound, ValidationError
from xdpctl.core.hooks import HookRef, Hooks
from xdpctl.core.lb import maglev, tables
from xdpctl.core.lb.kernel import LbKernel
from xdpctl.core.lb.service import LoadBalancer
from xdpctl.kernel import maps
from xdpctl.kernel.testrun import XDP_TX

pytestmark = pytest.mark.root

SIZE = 1009
VIP4, VIP6 = "192.0.2.10", "2001:db8::10"
HOOK_MAC = "02:00:00:00:00:aa"
TC_ACT_REDIRECT = 7


def _mac(n: int) -> str:
    return f"02:00:00:00:01:{n:02x}"


@pytest.fixture
def lb(ctx):
    return LoadBalancer(ctx)


def kernel_state(ctx) -> dict:
    """Every VIP with its table read back from the ring, and the backend slots."""
    with LbKernel(ctx) as k:
        vips = {}
        for key, raw in k["xc_lb_vips"].items():
            base, size, vip_id, flags = abi.LB_VIP.unpack(raw[:abi.LB_VIP.size])
            ring = [int.from_bytes(k["xc_lb_ring"].lookup(abi.U32.pack(i))[:4], "little")
                    for i in range(base, base + size)]
            vips[key] = (vip_id, flags, ring)
        bes = {int.from_bytes(key, "little"): raw[:abi.LB_BACKEND.size] for key, raw in k["xc_lb_backends"].items()
               if any(raw[:abi.LB_BACKEND.size])}
    return {"vips": vips, "backends": bes}


def reference(lb: LoadBalancer, vip: str, proto: int = 6, port: int = 80) -> list[int]:
    """The Python Maglev table of a VIP, as backend ids."""
    row = lb.state.lb_vip(vip, proto, port)
    chosen = [b for b in lb.state.lb_backends(row.id) if b.state == "active" and b.mac and b.weight]
    table = maglev.build([(b.addr, b.weight) for b in chosen], row.table_size)
    return [chosen[i].id for i in table]


def assert_maps_match(lb: LoadBalancer) -> None:
    """The kernel holds exactly the database's VIPs, tables and backends."""
    st = kernel_state(lb.ctx)
    want_vips = {}
    for row in lb.state.lb_vips():
        chosen = any(b.state == "active" and b.mac and b.weight for b in lb.state.lb_backends(row.id))
        want_vips[tables.vip_key(row.addr, row.proto, row.port)] = (
            row.id, abi.LB_VIP_HASH_L3 if row.hash == "l3" else 0,
            reference(lb, row.addr, row.proto, row.port) if chosen else [])
    assert st["vips"] == want_vips
    want_be = {b.id: tables.backend_value(b.addr, b.mac, {"active": 1, "draining": 2, "down": 0}[b.state],
                                          vip_id=b.vip)
               for b in lb.state.lb_backends()}
    assert st["backends"] == want_be


def test_tables_in_the_maps_are_the_python_maglev_tables(lb):
    v = lb.add_vip(VIP4, "tcp", 80, table_size=SIZE)
    assert v.vip.table_size == SIZE and v.vip.backends == 0
    assert_maps_match(lb)  # a VIP without backends: an empty table
    for i, w in ((1, 1), (2, 2), (3, 1)):
        lb.add_backend(f"10.9.0.{i}", VIP4, "tcp", 80, weight=w, mac=_mac(i))
    lb.add_backend("10.9.0.4", VIP4, "tcp", 80)  # no MAC: not in the table
    assert_maps_match(lb)
    ids = set(reference(lb, VIP4))
    assert len(ids) == 3
    lb.add_vip(VIP6, "udp", 53, table_size=SIZE)
    lb.add_backend("2001:db8::1", VIP6, "udp", 53, mac=_mac(9))
    assert_maps_match(lb)
    lb.set_backend("10.9.0.2", VIP4, "tcp", 80, state="draining")
    assert_maps_match(lb)
    assert lb.state.lb_backend(1, "10.9.0.2").id not in reference(lb, VIP4)
    lb.set_backend("10.9.0.3", VIP4, "tcp", 80, weight=5)
    lb.delete_backend("10.9.0.1", VIP4, "tcp", 80)
    assert_maps_match(lb)
    # the regions in use are disjoint, the old ones released
    rows = [r for r in lb.state.lb_vips() if r.ring_size]
    spans = sorted((r.ring_base, r.ring_base + r.ring_size) for r in rows)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    lb.delete_vip(VIP6, "udp", 53)
    assert_maps_match(lb)
    slots = {b.address: b.slots for b in lb.backends_view().backends}
    assert slots["10.9.0.3"] == reference(lb, VIP4).count(lb.state.lb_backend(1, "10.9.0.3").id)


def test_revision_bumped_on_every_change(lb):
    r0 = lb.state.revision
    r1 = lb.add_vip(VIP4, "tcp", 80, table_size=SIZE).revision
    r2 = lb.add_backend("10.9.0.1", VIP4, "tcp", 80, mac=_mac(1)).revision
    r3 = lb.set_backend("10.9.0.1", VIP4, "tcp", 80, weight=3).revision
    r4 = lb.delete_backend("10.9.0.1", VIP4, "tcp", 80).revision
    r5 = lb.delete_vip(VIP4, "tcp", 80).revision
    assert [r1, r2, r3, r4, r5] == list(range(r0 + 1, r0 + 6))
    assert lb.vips_view().revision == r5


@pytest.mark.parametrize("call,err,field", [
    (lambda lb: lb.add_vip(VIP4, "tcp", 80), Conflict, "address"),
    (lambda lb: lb.add_vip("not-an-ip", "tcp", 80), ValidationError, "address"),
    (lambda lb: lb.add_vip(VIP4, "icmp", 80), ValidationError, "proto"),
    (lambda lb: lb.add_vip(VIP4, "tcp", 70000), ValidationError, "port"),
    (lambda lb: lb.add_vip(VIP4, "udp", 80, table_size=1000), ValidationError, "table_size"),
    (lambda lb: lb.add_backend("10.9.0.9", "192.0.2.99", "tcp", 80), NotFound, "vip"),
    (lambda lb: lb.add_backend("10.9.0.9", VIP4, "udp", 80), NotFound, "vip"),
    (lambda lb: lb.add_backend("2001:db8::9", VIP4, "tcp", 80), ValidationError, "address"),
    (lambda lb: lb.add_backend("10.9.0.1", VIP4, "tcp", 80), Conflict, "address"),
    (lambda lb: lb.add_backend("10.9.0.9", VIP4, "tcp", 80, mac="zz"), ValidationError, "mac"),
    (lambda lb: lb.add_backend("10.9.0.9", VIP4, "tcp", 80, weight=-1), ValidationError, "weight"),
    (lambda lb: lb.set_backend("10.9.0.1", VIP4, "tcp", 80, weight=0), ValidationError, "weight"),
    (lambda lb: lb.set_backend("10.9.0.1", VIP4, "tcp", 80, state="gone"), ValidationError, "state"),
    (lambda lb: lb.delete_backend("10.9.0.9", VIP4, "tcp", 80), NotFound, "address"),
    (lambda lb: lb.delete_vip(VIP4, "udp", 80), NotFound, "address"),
    (lambda lb: lb.add_vip(VIP4, "udp", 0, hash="l7"), ValidationError, "hash"),
    (lambda lb: lb.set_vip(VIP4, "tcp", 80, hash="L3"), ValidationError, "hash"),
    # 11 slots are too few for 2 backends (at least 10 rounds)
    (lambda lb: lb.add_backend("10.9.0.9", "192.0.2.11", "tcp", 80, mac=_mac(9)), ValidationError, "table_size"),
])
def test_bad_input_changes_nothing(lb, call, err, field):
    lb.add_vip(VIP4, "tcp", 80, table_size=SIZE)
    lb.add_backend("10.9.0.1", VIP4, "tcp", 80, mac=_mac(1))
    lb.add_vip("192.0.2.11", "tcp", 80, table_size=11)
    lb.add_backend("10.9.0.8", "192.0.2.11", "tcp", 80, mac=_mac(8))
    before = (lb.vips_view(), lb.backends_view(), kernel_state(lb.ctx))
    with pytest.raises(err) as ei:
        call(lb)
    assert ei.value.field == field
    assert (lb.vips_view(), lb.backends_view(), kernel_state(lb.ctx)) == before


def test_sync_rebuilds_the_maps(lb):
    lb.add_vip(VIP4, "tcp", 80, table_size=SIZE)
    for i in (1, 2, 3):
        lb.add_backend(f"10.9.0.{i}", VIP4, "tcp", 80, mac=_mac(i))
    want = kernel_state(lb.ctx)
    with LbKernel(lb.ctx) as k:  # lose the VIP, a backend, and write a stray VIP
        k.delete_vip(VIP4, 6, 80)
        k.write_backend(2, None, None, 0)
        k.switch("192.0.2.77", 6, 80, 99, 0, 0)
        ring = k["xc_lb_ring"]
        ring.update_batch(tables.ring_keys(0, SIZE), bytes(4 * SIZE), SIZE)
    assert lb.sync() == 1
    assert kernel_state(lb.ctx) == want
    assert_maps_match(lb)


def test_hash_mode_is_stored_written_and_restored(lb):
    """--hash l3 sets XC_LB_VIP_HASH_L3 in the VIP's value; a hash-only
    change keeps the table and its backends' health; restore writes the
    flag again."""
    lb.add_vip(VIP4, "udp", 0, table_size=SIZE, hash="l3")
    lb.add_vip(VIP4, "tcp", 80, table_size=SIZE)
    for i in (1, 2):
        lb.add_backend(f"10.9.0.{i}", VIP4, "tcp", 80, mac=_mac(i))
    lb.state.lb_set_health(1, "up", 1, 1, None)
    assert [x.hash for x in lb.vips_view().vips] == ["l3", "l4"]
    assert_maps_match(lb)
    table = kernel_state(lb.ctx)["vips"][tables.vip_key(VIP4, 6, 80)][2]
    res = lb.set_vip(VIP4, "tcp", 80, hash="l3")
    assert res.vip.hash == "l3" and lb.state.lb_vip(VIP4, 6, 80).hash == "l3"
    assert kernel_state(lb.ctx)["vips"][tables.vip_key(VIP4, 6, 80)] == (2, abi.LB_VIP_HASH_L3, table)
    assert lb.state.lb_backend(2, "10.9.0.1").health == "up"
    with LbKernel(lb.ctx) as k:
        k.switch(VIP4, 6, 80, 2, 0, 0)
    lb.sync()
    assert_maps_match(lb)


@pytest.mark.parametrize("kind", ["xdp", "tc"])
def test_packets_reach_the_reference_backend(lb, ctx, kind):
    """After `lb backend add` through the service, the hook program sends
    each new flow to table[flow_hash % size] of the Python build."""
    lb.add_vip(VIP4, "tcp", 443, table_size=SIZE)
    for i in range(1, 6):
        lb.add_backend(f"10.9.0.{i}", VIP4, "tcp", 443, weight=1 + i % 2, mac=_mac(i))
    table = reference(lb, VIP4, 6, 443)
    macs = {b.id: b.mac for b in lb.state.lb_backends()}
    with ProgramBench(ctx, kind, ("lb",), name="lbsvc") as bench:
        with bench.map("xc_lb_hook") as m:
            m.update(abi.U32.pack(0), tables.hook_value(HOOK_MAC))
        seen = set()
        for n in range(200):
            src = str(ipaddress.IPv4Address(0x0A640000 + n * 7919))
            f = _frame(src, VIP4, 20000 + n, 443, flags="S")
            res = bench.run(f)
            assert res.retval == (XDP_TX if kind == "xdp" else TC_ACT_REDIRECT)
            s = ipaddress.ip_address(src).packed.ljust(16, b"\0")
            d = ipaddress.ip_address(VIP4).packed.ljust(16, b"\0")
            be = table[maglev.flow_hash(s, d, 20000 + n, 443, 6) % SIZE]
            assert res.data_out[:6] == bytes.fromhex(macs[be].replace(":", ""))
            seen.add(be)
        assert seen == set(macs)
        stats = lb.stats_view()
        assert stats.vips[0].packets == 200 and stats.vips[0].new_flows == 200
        assert sum(b.packets for b in stats.backends) == 200


def test_lb_refuses_tc_egress(ctx):
    with pytest.raises(ValidationError) as ei:
        Hooks(ctx).attach("lo", "lb", "tc-egress")
    assert ei.value.field == "hook"
    assert ctx.state.attachments() == []


@pytest.fixture
def netns():
    name = f"xdpctl-lbt-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "d0", "address", HOOK_MAC, "type", "veth",
                        "peer", "name", "d1"], check=True)
        for dev in ("d0", "d1"):
            subprocess.run(["ip", "-n", name, "link", "set", dev, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.mark.parametrize("hook,mode", [("xdp", "generic"), ("tc-ingress", None)])
def test_attach_lb_writes_the_interface_mac(ctx, netns, hook, mode):
    h = Hooks(ctx)
    h.attach("d0", "lb", hook, mode, netns=netns)
    ref = HookRef(netns, "d0", hook)
    with maps.Map.from_pin(os.path.join(ref.dir(ctx), "xc_lb_hook")) as m:
        assert m.lookup(abi.U32.pack(0))[:abi.LB_HOOK.size] == tables.hook_value(HOOK_MAC)
    assert [(a.hook, a.program) for a in ctx.state.attachments()] == [(hook, "lb")]
    h.detach("d0", "lb", hook, netns=netns)
