"""Maglev tables (xdpctl.core.lb.maglev) and the packing of the load
balancer's maps (xdpctl.core.lb.tables)."""
from __future__ import annotations

import math
from collections import Counter

import pytest

from xdpctl import abi
from xdpctl.core import errors
from xdpctl.core.errors import CapacityError, ValidationError
from xdpctl.core.lb import maglev, tables


def _reference(backends, size):
    """The plain algorithm, one step at a time to the end."""
    turns = maglev.check(backends, size)
    walks = [maglev.walk(n, size) for n, _ in backends]
    table, nxt, left = [-1] * size, [o for o, _ in walks], size
    while True:
        for i in turns:
            c = nxt[i]
            while table[c] >= 0:
                c = (c + walks[i][1]) % size
            table[c] = i
            nxt[i] = (c + walks[i][1]) % size
            left -= 1
            if not left:
                return table


def _names(n):
    return [f"10.1.{i // 256}.{i % 256}" for i in range(n)]


@pytest.mark.parametrize("n,size", [(1, 101), (3, 101), (7, 1009), (50, 4099), (300, 65537)])
def test_build_equals_the_plain_algorithm(n, size):
    backends = [(name, 1 + i % 4) for i, name in enumerate(_names(n))]
    if 10 * sum(w for _, w in backends) > size:
        backends = [(name, 1) for name, _ in backends]
    assert maglev.build(backends, size) == _reference(backends, size)


@pytest.mark.parametrize("weights", [[1] * 10, [1, 2, 3, 4], [5, 1, 1, 0, 3], [100, 200, 300]])
def test_shares_follow_weights(weights):
    """A backend of weight w (w / gcd turns per round) holds its exact share
    size * w / total to within one round's turns: full rounds give exact
    counts, only the last, partial round differs."""
    size = 65537
    backends = list(zip(_names(len(weights)), weights))
    counts = Counter(maglev.build(backends, size))
    total, g = sum(weights), math.gcd(*weights)
    for i, w in enumerate(weights):
        assert abs(counts.get(i, 0) - size * w / total) <= w // g, (i, counts)
    assert set(counts) == {i for i, w in enumerate(weights) if w}


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_removing_one_backend_moves_about_its_share(n):
    """Removing one of N moves its own 1/N of the slots (the minimum) and
    little else: at most 1/N + 1% of the table here (Maglev's bound is not
    strict; the paper measures a few percent extra at N=1000)."""
    size = 65537
    names = _names(n)
    old = maglev.build([(x, 1) for x in names], size)
    gone = n // 2
    new_idx = maglev.build([(x, 1) for k, x in enumerate(names) if k != gone], size)
    keep = [k for k in range(n) if k != gone]
    new = [keep[i] for i in new_idx]  # back to the old indexes
    minimum = old.count(gone) / size
    share = maglev.moved(old, new)
    assert share >= minimum
    assert share <= minimum + 0.01, (share, minimum)
    # every slot the removed backend had moves; every other slot that moved is extra
    assert all(new[s] != gone for s in range(size))


def test_adding_weight_takes_slots_from_others_only():
    names = _names(20)
    old = maglev.build([(x, 1) for x in names], 65537)
    new = maglev.build([(x, 3 if k == 0 else 1) for k, x in enumerate(names)], 65537)
    assert Counter(new)[0] > 2.5 * Counter(old)[0]


def test_build_is_fast_enough_for_1000_backends():
    """Correctness of the big build (timings are in docs/lb.md, not asserted)."""
    table = maglev.build([(x, 1) for x in _names(1000)], 65537)
    counts = Counter(table)
    assert len(counts) == 1000 and min(counts.values()) >= 65 and max(counts.values()) <= 66


@pytest.mark.parametrize("size", [65536, 1, 0, -7, 2 ** 31 - 1, "65537", True, abi.LB_RING_MAX + 2])
def test_bad_table_size(size):
    with pytest.raises(ValidationError) as e:
        maglev.build([("a", 1)], size)
    assert e.value.field == "table_size" and e.value.value == errors.cut(size)


def test_table_too_small_for_the_backends():
    with pytest.raises(ValidationError) as e:
        maglev.build([(x, 1) for x in _names(11)], 101)
    assert e.value.field == "table_size" and e.value.value == "101"
    assert maglev.build([(x, 1) for x in _names(10)], 101)


@pytest.mark.parametrize("weights", [[-1, 1], [0, 0], [], [1.5, 1], [True, 1]])
def test_bad_weights(weights):
    with pytest.raises(ValidationError) as e:
        maglev.build([(f"b{i}", w) for i, w in enumerate(weights)], 101)
    assert e.value.field == "weight"


def test_weights_reduced_by_their_gcd():
    a = maglev.build([("x", 1), ("y", 2)], 1009)
    b = maglev.build([("x", 1000), ("y", 2000)], 1009)
    assert a == b


def test_flow_hash_known_values():
    """Fixed values: the C side (bpf/include/lb.h) is checked against this
    function by tests/packets/test_lb_testrun.py."""
    v4 = bytes([10, 0, 0, 1]) + bytes(12)
    vip = bytes([192, 0, 2, 10]) + bytes(12)
    h = maglev.flow_hash(v4, vip, 40000, 80, 6)
    assert h == maglev.flow_hash(v4, vip, 40000, 80, 6)
    assert 0 <= h < 2 ** 32
    hs = {maglev.flow_hash(v4, vip, p, 80, 6) for p in range(1000)}
    assert len(hs) == 1000
    # spreads over a prime table evenly enough
    c = Counter(maglev.flow_hash(v4, vip, p, 80, 6) % 7 for p in range(7000))
    assert min(c.values()) > 850


def test_is_prime():
    assert [n for n in range(30) if maglev.is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert maglev.is_prime(abi.LB_RING_DEFAULT) and maglev.is_prime(abi.LB_RING_MAX)


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------
def test_pack_vip_and_backend():
    k = abi.xc_lb_vip_key.from_buffer_copy(tables.vip_key("192.0.2.10", 6, 443))
    assert bytes(k.addr) == bytes([192, 0, 2, 10]) + bytes(12)
    assert (k.port, k.proto, k.family) == (int.from_bytes((443).to_bytes(2, "big"), "little"), 6, 4)
    k6 = abi.xc_lb_vip_key.from_buffer_copy(tables.vip_key("2001:db8::10", 17, 0))
    assert bytes(k6.addr)[:4] == bytes.fromhex("20010db8") and k6.family == 6 and k6.port == 0
    v = abi.xc_lb_vip.from_buffer_copy(tables.vip_value(5, 101, 3, abi.LB_VIP_HASH_L3))
    assert (v.ring_base, v.ring_size, v.vip_id, v.flags) == (5, 101, 3, 1)
    b = abi.xc_lb_backend.from_buffer_copy(tables.backend_value("10.0.0.2", "02:00:00:00:00:02",
                                                                abi.LbState.DRAINING))
    assert bytes(b.mac) == bytes.fromhex("020000000002") and b.state == 2 and b.family == 4
    assert b.flags == abi.LB_BE_HAVE_MAC
    nomac = abi.xc_lb_backend.from_buffer_copy(tables.backend_value("2001:db8::2", None))
    assert nomac.flags == 0 and nomac.state == abi.LbState.ACTIVE and nomac.family == 6
    h = abi.xc_lb_hook.from_buffer_copy(tables.hook_value("02:00:00:00:00:01"))
    assert bytes(h.mac) == bytes.fromhex("020000000001") and h.flags == abi.LB_HOOK_ON


def test_pack_conn_key_and_ring():
    c = abi.xc_lb_conn_key.from_buffer_copy(tables.conn_key("10.0.0.1", "192.0.2.10", 1234, 80, 6))
    assert bytes(c.src)[:4] == bytes([10, 0, 0, 1]) and bytes(c.dst)[:4] == bytes([192, 0, 2, 10])
    assert (c.proto, c.family) == (6, 4)
    assert tables.conn_key("10.0.0.1", "192.0.2.10", 1234, 80, 6)[32:34] == (1234).to_bytes(2, "big")
    assert tables.unpack_conn(abi.LB_CONN.pack(7, 2)) == (7, 2)
    img = tables.ring_image([0, 1, 1, 0], [10, 20])
    assert img == abi.U32.pack(10) + abi.U32.pack(20) * 2 + abi.U32.pack(10)
    assert tables.ring_keys(5, 2) == abi.U32.pack(5) + abi.U32.pack(6)


@pytest.mark.parametrize("bad", [("vip_key", ("not-an-ip", 6, 80)),
                                 ("backend_value", ("10.0.0.1", "02:00:00")),
                                 ("hook_value", ("zz:00:00:00:00:00",))])
def test_pack_bad_input(bad):
    fn, args = bad
    with pytest.raises(ValidationError):
        getattr(tables, fn)(*args)


def test_regions_first_fit_and_merge():
    r = tables.Regions(300)
    a = r.alloc(101)
    b = r.alloc(101)
    assert (a, b) == (0, 101)
    with pytest.raises(CapacityError):
        r.alloc(101)
    r.release(a)
    assert r.alloc(97) == 0  # the old region is reused once released
    r.release(0)
    r.release(b)
    assert r.free == [(0, 300)]


def test_a_vips_table_does_not_depend_on_the_order_backends_were_added() -> None:
    """Two hosts that added the same backends in different orders (different
    row ids) send every slot to the same address."""
    import random

    from xdpctl.core.lb import validate
    from xdpctl.core.rules.store import BackendRow

    addrs = [(f"10.1.{i // 250}.{i % 250 + 1}", 1 + i % 3) for i in range(40)]
    by_address = []
    for seed in (1, 2):
        order = addrs[:]
        random.Random(seed).shuffle(order)
        rows = [BackendRow(id=n + 1, vip=1, family=4, addr=a, weight=w, state="active",
                           mac="02:00:00:00:00:01", created=0.0) for n, (a, w) in enumerate(order)]
        ids, table = validate.build(rows, 4099)
        addr_of = {r.id: r.addr for r in rows}
        by_address.append([addr_of[ids[i]] for i in table])
    assert by_address[0] == by_address[1]
