"""Batch reads of ARRAY ranges (xdpctl.kernel.maps.Map.lookup_range) return
exactly the entries asked for, on a real kernel map: the shared rule-hit
array that list statistics are read from. Batch writes and deletes take
their keys and values from bytes without copying them, from any other
buffer by a copy, and leave the caller's bytes as they were."""

from __future__ import annotations

import os
import random

import pytest

from xdpctl import abi
from xdpctl.core.errors import CapacityError
from xdpctl.core.rules.tables import KernelTables
from xdpctl.kernel import maps


def _stats_map(ctx) -> maps.Map:
    KernelTables(ctx).ensure().close()
    return maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, "xc_rule_stats"))


def test_lookup_range_returns_exactly_the_range(ctx) -> None:
    with _stats_map(ctx) as m:
        for i in range(295, 316):
            m.update(abi.U32.pack(i), abi.pack_rule_stats(((i, 10 * i), (0, 0), (0, 0))))
        for start, count in ((300, 11), (0, 3), (1, 1), (299, 1), (305, 20)):
            got = [(k, abi.unpack_rule_stats(v).packets) for k, v in m.lookup_range(start, count)]
            want = [(i, i if 295 <= i < 316 else 0) for i in range(start, start + count)]
            assert got == want, (start, count)


def test_list_statistics_include_the_first_member(ctx) -> None:
    """stats_for reads a dense id range in one batch (more than 256 ids):
    the first id of the range is there too, with each hook kind's counts
    and their sum."""
    with _stats_map(ctx) as m:
        ids = list(range(1000, 1300))
        for i in ids:
            m.update(abi.U32.pack(i), abi.pack_rule_stats(((1, i), (0, 0), (2, 3)), 7))
        kt = KernelTables(ctx)
        kt.maps["xc_rule_stats"] = m
        try:
            got = kt.stats_for(ids)
        finally:
            kt.maps.clear()
        assert got == {i: abi.RuleHits(3, i + 3, 7, ((1, i), (0, 0), (2, 3))) for i in ids}


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_batch_writes_take_any_buffer_and_leave_it_unchanged(ctx, kind) -> None:
    """update_batch / delete_batch on a real hash band, big enough to be
    written on several threads: the map holds exactly what was written,
    then exactly what the delete left; the inputs are unchanged."""
    kt = KernelTables(ctx).ensure()
    try:
        m = kt.table("xc_v4_l32", 0)
        n = maps.PARALLEL_MIN + 4321
        rng = random.Random(kind.__name__)
        addrs = rng.sample(range(1 << 32), n)
        keys = b"".join(abi.U32.pack(0) + a.to_bytes(4, "big") for a in addrs)
        vals = b"".join(i.to_bytes(4, "little") * (m.value_size // 4) for i in range(n))
        before = (bytes(keys), bytes(vals))
        m.update_batch(kind(keys), kind(vals), n)
        got_k, got_v, count = m.dump()
        size = m.key_size
        got = {got_k[i * size:(i + 1) * size]: got_v[i * m.value_size:(i + 1) * m.value_size] for i in range(count)}
        want = {keys[i * size:(i + 1) * size]: vals[i * m.value_size:(i + 1) * m.value_size] for i in range(n)}
        assert count == n and got == want
        gone = keys[:size * (n // 2)]
        m.delete_batch(kind(gone), n // 2)
        got_k, _v, count = m.dump()
        assert count == n - n // 2
        assert {got_k[i * size:(i + 1) * size] for i in range(count)} == set(list(want)[n // 2:])
        assert (keys, vals) == before
        m.delete_batch(keys[size * (n // 2):], n - n // 2)
        assert m.dump()[2] == 0
    finally:
        kt.close()


def _entries(m: maps.Map, addrs: list[int], tag: int) -> tuple[bytes, bytes]:
    """Packed entries of a /32 band for ``addrs`` (values name the entry
    and ``tag``)."""
    n = len(addrs)
    keys = b"".join(abi.U32.pack(0) + a.to_bytes(4, "big") for a in addrs)
    vals = b"".join((tag << 24 | i).to_bytes(4, "little") * (m.value_size // 4) for i in range(n))
    return keys, vals


def _held(m: maps.Map) -> dict[bytes, bytes]:
    k, v, n = m.dump()
    return {k[i * m.key_size:(i + 1) * m.key_size]: v[i * m.value_size:(i + 1) * m.value_size] for i in range(n)}


@pytest.mark.parametrize("prealloc", [False, True], ids=["allocated-on-insert", "preallocated"])
@pytest.mark.parametrize("shape", ["same", "more-writes", "more-deletes"])
def test_a_replace_batch_fits_a_full_band_and_leaves_exactly_the_result(make_ctx, prealloc, shape) -> None:
    """replace_batch on a real band filled to its last entry, big enough
    for several writer threads and many turns of deletes and writes: it
    never needs more room than before or after (the kernel refuses an
    entry past max_entries), and the band then holds exactly the kept
    old entries, the new ones and the rewritten ones."""
    cap = maps.PARALLEL_MIN + 4321
    ctx = make_ctx(prealloc=["xc_v4_l32"] if prealloc else [], xc_v4_l32=cap)
    kt = KernelTables(ctx).ensure()
    try:
        m = kt.table("xc_v4_l32", 0)
        assert m.preallocated == prealloc
        cap = m.max_entries
        rng = random.Random(shape)
        n_del, n_new = {"same": (cap // 2, cap // 2), "more-writes": (cap // 3, cap // 2),
                        "more-deletes": (cap // 2, cap // 3)}[shape]
        start = cap - max(0, n_new - n_del)  # what the band holds before: full before or after
        addrs = rng.sample(range(1 << 32), start + n_new)
        old_k, old_v = _entries(m, addrs[:start], 1)
        m.update_batch(old_k, old_v, start)
        ks = m.key_size
        new_k, new_v = _entries(m, addrs[start:], 2)
        # writes: the new keys, then 1,000 kept keys with new values; deletes: the first n_del old keys
        re_k = old_k[ks * n_del:ks * (n_del + 1000)]
        re_v = b"".join((3 << 24 | i).to_bytes(4, "little") * (m.value_size // 4) for i in range(1000))
        m.replace_batch(old_k[:ks * n_del], n_del, new_k + re_k, new_v + re_v, n_new + 1000)
        want = {**_held_of(old_k[ks * n_del:], old_v[m.value_size * n_del:], ks, m.value_size),
                **_held_of(new_k, new_v, ks, m.value_size), **_held_of(re_k, re_v, ks, m.value_size)}
        assert len(want) == start - n_del + n_new <= cap
        assert _held(m) == want
    finally:
        kt.close()


def test_a_replace_batch_past_capacity_is_refused_as_full(make_ctx) -> None:
    """More new entries than the deletes leave room for: CapacityError
    naming the map, after every delete (the caller's undo puts back what
    part of it was done)."""
    ctx = make_ctx(prealloc=[], xc_v4_l32=maps.PARALLEL_MIN + 4321)
    kt = KernelTables(ctx).ensure()
    try:
        m = kt.table("xc_v4_l32", 0)
        cap, rng = m.max_entries, random.Random(7)
        n_del = cap // 2
        addrs = rng.sample(range(1 << 32), cap + n_del + 10)
        old_k, old_v = _entries(m, addrs[:cap], 1)
        m.update_batch(old_k, old_v, cap)
        new_k, new_v = _entries(m, addrs[cap:], 2)
        with pytest.raises(CapacityError, match="xc_v4_l32 is full"):
            m.replace_batch(old_k[:m.key_size * n_del], n_del, new_k, new_v, n_del + 10)
        held = _held(m)
        assert len(held) == cap
        assert not set(held) & {old_k[i * m.key_size:(i + 1) * m.key_size] for i in range(n_del)}
    finally:
        kt.close()


def _held_of(keys: bytes, vals: bytes, ks: int, vs: int) -> dict[bytes, bytes]:
    return {keys[i * ks:(i + 1) * ks]: vals[i * vs:(i + 1) * vs] for i in range(len(keys) // ks)}
