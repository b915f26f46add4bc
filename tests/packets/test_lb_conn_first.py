"""An established flow's conn entry is taken before any VIP lookup, and only
while its backend's slot names the entry's VIP (xc_lb_backend.vip_id):
a deleted VIP (its backend slots cleared) passes its old flows, a slot
that now belongs to another VIP does not inherit them, and a VIP whose
hash mode changed keeps its established flows."""

from __future__ import annotations

import pytest

from tests.packets.test_lb_testrun import (R, TCP_, UDP_, VIP4, LbBench, _assert_forwarded, _assert_passed, _frame,
                                           _pick)
from xdpctl import abi
from xdpctl.core.lb import tables


@pytest.fixture
def lb(ctx, kind):
    b = LbBench(ctx, kind)
    yield b
    b.close()


def test_established_flow_skips_the_vip_and_stops_with_it(lb):
    for i in (1, 2):
        lb.backend(i)
    table = lb.vip(VIP4, TCP_, 80, [1, 2])
    syn, ack = (_frame("10.0.0.5", VIP4, 3000, 80, flags=f) for f in ("S", "A"))
    be = _pick(table, "10.0.0.5", VIP4, 3000, 80, TCP_)
    _assert_forwarded(lb, lb.run(syn), syn, be)
    # the VIP's value is gone: the entry alone still carries the flow
    lb.m["xc_lb_vips"].delete(tables.vip_key(VIP4, TCP_, 80))
    _assert_forwarded(lb, lb.run(ack), ack, be)
    assert lb.stats("xc_lb_vip_cnt")[1][:2] == (2, 2 * len(syn))
    # deleting a VIP clears its backends' slots: the flow passes
    lb.m["xc_lb_backends"].update(abi.U32.pack(be), bytes(abi.LB_BACKEND.size))
    _assert_passed(lb, lb.run(ack), ack)
    # the slot reused by a backend of VIP 7: not the entry's VIP, not used
    lb.backend(be, vip_id=7)
    _assert_passed(lb, lb.run(ack), ack)
    assert lb.reasons() == {R.FWD_NEW: (1, len(syn)), R.FWD_CONN: (1, len(ack)),
                            R.PASS_NOVIP: (2, 2 * len(ack))}


def test_hash_mode_change_keeps_established_flows(lb):
    for i in (1, 2, 3, 4):
        lb.backend(i)
    table = lb.vip(VIP4, UDP_, 0, [1, 2, 3, 4])
    flows = [(f"10.0.1.{i}", 4000 + i) for i in range(1, 41)]
    on = {}
    for src, sport in flows:
        f = _frame(src, VIP4, sport, 53, UDP_)
        on[src] = _pick(table, src, VIP4, sport, 53, UDP_)
        _assert_forwarded(lb, lb.run(f), f, on[src])
    lb.vip(VIP4, UDP_, 0, [1, 2, 3, 4], flags=abi.LB_VIP_HASH_L3)
    for src, sport in flows:  # same 5-tuples: their entries
        f = _frame(src, VIP4, sport, 53, UDP_)
        _assert_forwarded(lb, lb.run(f), f, on[src])
    assert lb.reasons() == {R.FWD_NEW: (40, 40 * len(f)), R.FWD_CONN: (40, 40 * len(f))}
