"""The IPv4 host table's writer (xdpctl.core.rules.hosts4) over a table in
memory, against a model of the band it mirrors: after any run of writes
and deletes, every key of the band is live in its bucket with the band's
value or its bucket overflowed, and no live slot holds a key the band
lacks. The entry-by-entry writer (the CLI's small changes) and the
columnar one (catch-ups, rebuilds) leave the same bytes."""

from __future__ import annotations

import random
import struct

import pytest

from tests.support.progs import crowded_hosts as crowd
from tests.support.progs import host_bucket as bucket
from tests.support.progs import host_table, mirror_problems
from xdpctl import abi
from xdpctl.core.rules import hosts4

SIZE = (abi.OA4_BUCKETS + 1) * 64
A = abi.Action


def key(d: int, addr: int) -> bytes:
    return abi.pack_key4(d, addr)


def val(rule_id: int, action: int = A.DENY, plen: int = 32, expires: int = 0, fb: int = 0) -> bytes:
    return abi.RULE_VAL.pack(rule_id, action, plen, 0, expires, fb, A.DENY if fb else A.NONE, 32 if fb else 0, 0, 0)


def table(buf) -> dict:
    live, over, _mark = host_table(bytes(buf))
    return {"live": live, "over": over}


def mirrors(buf, band: dict) -> None:
    assert mirror_problems(bytes(buf), {key(*k): v for k, v in band.items()}) == []


def write(buf, band: dict, puts: list, dels: list, many: bool) -> None:
    """Apply deletes then puts to the model and, by the writer, to buf:
    entry by entry (hosts4.Words), or as columns (the buffer itself)."""
    for k in dels:
        band.pop(k, None)
    for k, v in puts:
        band[k] = v
    if not many:
        words = hosts4.Words(buf)
        for k in dels:
            hosts4.delete(words, key(*k), 1)
        for k, v in puts:
            hosts4.put(words, key(*k), v, 1)
        return
    hosts4.delete(buf, b"".join(key(*k) for k in dels), len(dels))
    hosts4.put(buf, b"".join(key(*k) for k, _ in puts), b"".join(v for _, v in puts), len(puts))


@pytest.mark.parametrize("many", [False, True], ids=["entry by entry", "columns"])
def test_writes_keep_the_table_a_mirror_of_the_band(many: bool) -> None:
    rnd = random.Random(7)
    buf, band = bytearray(SIZE), {}
    busy = crowd(7, 1)  # one bucket asked for more than its four slots
    pool = [(rnd.randrange(2), rnd.getrandbits(32)) for _ in range(300)] + [(0, a) for a in busy]
    for step in range(12):
        puts = []
        for k in rnd.sample(pool, 60):
            kind = rnd.randrange(6)
            v = (val(rnd.randrange(1, 50), A.ALLOW if kind == 0 else A.DENY, rnd.choice([25, 30, 32]))
                 if kind < 4 else val(rnd.randrange(1, 50), expires=10**12) if kind == 4
                 else val(rnd.randrange(1, 50), fb=9))
            puts.append((k, v))
        puts.append((puts[0][0], val(77)))  # a key written twice in one batch: its last value
        dels = rnd.sample(sorted(band), min(len(band), 25)) if band else []
        write(buf, band, puts, dels, many)
        mirrors(buf, band)
    t = table(buf)
    assert bucket(busy[0]) in t["over"]
    counts = struct.unpack_from("=QQQ", buf, abi.OA4_MARK * 64)
    assert counts[2] == len(t["over"]) and counts[1] > 0 and counts[0] == 0  # the mark is the caller's


def test_both_writers_leave_the_same_bytes() -> None:
    rnd = random.Random(3)
    one, cols, band1, band2 = bytearray(SIZE), bytearray(SIZE), {}, {}
    busy = crowd(6, 2)
    for step in range(6):
        puts, seen = [], set()
        for a in busy + [rnd.getrandbits(32) for _ in range(200)]:
            k = (rnd.randrange(2), a)
            if k in seen:
                continue
            seen.add(k)
            puts.append((k, val(rnd.randrange(1, 9), plen=rnd.choice([28, 32]),
                                expires=10**12 if rnd.random() < 0.1 else 0)))
        dels = rnd.sample(sorted(band1), min(len(band1), 40)) if band1 else []
        write(one, band1, puts, dels, False)
        write(cols, band2, puts, dels, True)
        assert one == cols, step


@pytest.mark.parametrize("many", [False, True], ids=["entry by entry", "columns"])
def test_an_unchanged_value_keeps_its_slot_and_a_changed_one_moves(many: bool) -> None:
    buf = bytearray(SIZE)
    t = buf if many else hosts4.Words(buf)
    k = key(0, 0xC0000201)
    hosts4.put(t, k, val(5), 1)
    hosts4.put(t, k, val(5), 1)  # the same value again (a replay): nothing changes
    assert table(buf)["live"] == {(0, 0xC0000201): (5, A.DENY, 32)}
    assert struct.unpack_from("=Q", buf, abi.OA4_MARK * 64 + 8)[0] == 0
    hosts4.put(t, k, val(6, A.ALLOW), 1)  # a new value: a new slot, the old one dead
    assert table(buf)["live"] == {(0, 0xC0000201): (6, A.ALLOW, 32)}
    assert struct.unpack_from("=Q", buf, abi.OA4_MARK * 64 + 8)[0] == 1
    hosts4.put(t, k, val(6, expires=10**12), 1)  # a deadline: only the band can say
    t = table(buf)
    assert t["live"] == {} and bucket(0xC0000201) in t["over"]


def test_a_rebuild_places_entries_as_the_writer_would() -> None:
    """_fill (a rebuild into an empty table) leaves the bytes put() leaves
    in an empty table, full buckets and entries only the band answers
    included."""
    rnd = random.Random(5)
    busy = crowd(9, 3)
    entries = {(rnd.randrange(2), a): val(rnd.randrange(1, 99), plen=rnd.choice([26, 32]),
                                          expires=10**12 if rnd.random() < 0.05 else 0)
               for a in busy + [rnd.getrandbits(32) for _ in range(3000)]}
    ks = b"".join(key(*k) for k in entries)
    vs = b"".join(entries.values())
    by_put, by_fill = bytearray(SIZE), bytearray(SIZE)
    write(by_put, {}, list(entries.items()), [], True)
    hosts4._fill(hosts4._array(by_fill), ks, vs, len(entries))
    assert by_put == by_fill
    mirrors(by_fill, entries)


@pytest.mark.parametrize("n, buckets_over, hosts_out", [(1_000_000, 0.044, 0.033), (2_000_000, 0.335, 0.178)])
def test_how_full_the_table_gets_with_random_hosts(n: int, buckets_over: float, hosts_out: float) -> None:
    """The figures the README gives for the table's fixed 2M slots, from
    the writer itself: n random IPv4 hosts (a rebuild of a band holding
    them) overflow the share of buckets that four slots a bucket predict
    (Poisson with n / 2^19 keys a bucket), and leave that share of the
    hosts to the kernel's hash."""
    import math

    import numpy as np

    addrs = np.random.default_rng(1).choice(2**32, n, replace=False).astype(np.uint32)
    keys = np.zeros((n, 2), np.uint32)
    keys[:, 1] = addrs
    vals = np.zeros(n, np.dtype(abi.xc_rule_val))
    vals["action"], vals["plen"], vals["rule_id"] = A.DENY, 32, 1
    t = hosts4._array(bytearray(SIZE))
    hosts4._fill(t, keys.tobytes(), vals.tobytes(), n)
    over = np.count_nonzero(t["overflow"][:abi.OA4_BUCKETS]) / abi.OA4_BUCKETS
    live = np.count_nonzero((t["slot"][:abi.OA4_BUCKETS] >> np.uint64(32)) & np.uint64(3))
    lam = n / abi.OA4_BUCKETS
    poisson = 1 - sum(math.exp(-lam) * lam**k / math.factorial(k) for k in range(abi.OA4_SLOTS + 1))
    assert abs(over - poisson) < 0.002 and round(over, 3) == buckets_over
    assert round(1 - live / n, 3) == hosts_out
