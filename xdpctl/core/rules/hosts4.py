"""The IPv4 host table of a rule set (xc_v4_oa, xdpctl_abi.h): a copy of
the set's xc_v4_l32 in an ARRAY map, which the data path probes with
inlined instructions instead of a call into the kernel's hash lookup.

A live slot holds a key of xc_v4_l32 whose value has no deadline and no
fallback (a "simple" entry), with that value's rule id, action and prefix
length. Every other key of the band (a value with a deadline or a
fallback, a key whose bucket had no empty slot) sets its bucket's
overflow, and the data path asks xc_v4_l32 for the addresses of those
buckets. So a table mirrors its band when every key of the band is either
live in its bucket with the band's value or in a bucket that overflowed,
and no live slot holds a key the band does not hold.

Slots only go empty -> live -> dead while a packet may read the table: a
new entry takes an empty slot (rule id first, then the slot word, one
aligned 8-byte store into the shared mapping), a deleted or changed one
turns dead (one store). A slot is empty again only when the table is
rebuilt, which happens while no packet reads it: while its set's
XC_CFG_HAVE_OA4 is off, or after ``maps.wait_for_programs``.

Bucket OA4_MARK holds the revision the table mirrors (slot 0; UNTRUSTED:
none), the slots turned dead (slot 1) and the buckets that overflowed
(slot 2) since its last rebuild: its wear. The data path trusts the active set's table only with
XC_CFG_HAVE_OA4, which the writer sets when the mark says the table
mirrors the revision being made active.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import struct

from ... import abi

BAND = "xc_v4_l32"
UNTRUSTED = (1 << 64) - 1  # mark: the table mirrors no revision (rebuilt before it is trusted again)
WEAR_MAX = abi.OA4_BUCKETS // 8  # slots turned dead + buckets overflowed since a rebuild, past which it is redone
SMALL = 256  # writes of up to this many entries are made entry by entry (no numpy: the CLI's single change)
_KEY_MASK = abi.OA4_KEY_MASK
_STATE_SHIFT = 32
_BUCKET = 64  # bytes
_KEY = struct.Struct("=II")  # xc_key4 as the data path loads it: dir, address as a u32
_MARK = abi.OA4_MARK * _BUCKET


def _np():
    import numpy as np

    return np


def bucket_dtype():
    np = _np()
    return np.dtype([("slot", "=u8", (abi.OA4_SLOTS,)), ("rule_id", "=u4", (abi.OA4_SLOTS,)),
                     ("overflow", "=u4"), ("pad", "=u4", (3,))])


def bucket_of(addr):
    """Bucket index of addresses as the data path loads them (u32 of the
    key's network-order bytes, numpy array)."""
    np = _np()
    return (((addr.astype(np.uint64) * np.uint64(abi.OA4_MUL)) & np.uint64(0xFFFFFFFF))
            >> np.uint64(32 - abi.OA4_BITS)).astype(np.int64)


class Flat:
    """Words of a table held in one buffer (the whole mapping, or memory in
    tests). Each load and store is one aligned access of its size."""

    def __init__(self, buf):
        self.buf = buf

    def get64(self, off: int) -> int:
        return ctypes.c_uint64.from_buffer(self.buf, off).value

    def get32(self, off: int) -> int:
        return ctypes.c_uint32.from_buffer(self.buf, off).value

    def set64(self, off: int, v: int) -> None:
        ctypes.c_uint64.from_buffer(self.buf, off).value = v

    def set32(self, off: int, v: int) -> None:
        ctypes.c_uint32.from_buffer(self.buf, off).value = v


class Paged(Flat):
    """Words of a pinned table, its pages mapped one at a time: mapping a
    whole table makes the kernel map all of its 8,193 pages (about 5 ms),
    a small change touches a few."""

    def __init__(self, m):
        self.m = m
        self.pages: dict[int, mmap.mmap] = {}

    def _at(self, off: int):
        p, o = divmod(off, mmap.PAGESIZE)
        mm = self.pages.get(p)
        if mm is None:
            mm = self.pages[p] = mmap.mmap(self.m.fd, mmap.PAGESIZE, mmap.MAP_SHARED,
                                           mmap.PROT_READ | mmap.PROT_WRITE, offset=p * mmap.PAGESIZE)
        return mm, o

    def get64(self, off: int) -> int:
        return ctypes.c_uint64.from_buffer(*self._at(off)).value

    def get32(self, off: int) -> int:
        return ctypes.c_uint32.from_buffer(*self._at(off)).value

    def set64(self, off: int, v: int) -> None:
        ctypes.c_uint64.from_buffer(*self._at(off)).value = v

    def set32(self, off: int, v: int) -> None:
        ctypes.c_uint32.from_buffer(*self._at(off)).value = v

    def close(self) -> None:
        for mm in self.pages.values():
            try:
                mm.close()
            except BufferError:  # a ctypes view still alive: unmapped when it goes
                pass
        self.pages.clear()


@contextlib.contextmanager
def opened(kt, rule_set: int):
    """The set's whole table: the map's shared mapping as a memoryview
    (stores land in the map as the data path sees them)."""
    m = kt.table(abi.OA4_MAP, rule_set)
    with m.mapped() as view:
        if view is None:
            raise RuntimeError(f"{m.name} is not mmapable")
        yield view


@contextlib.contextmanager
def paged(kt, rule_set: int):
    """The set's table a page at a time (Paged)."""
    t = Paged(kt.table(abi.OA4_MAP, rule_set))
    try:
        yield t
    finally:
        t.close()


def _array(buf):
    """A table's buckets as a numpy structured array (a view of buf)."""
    return _np().frombuffer(buf, bucket_dtype(), abi.OA4_BUCKETS + 1)


def mark(kt, rule_set: int) -> int:
    raw = kt.table(abi.OA4_MAP, rule_set).lookup(abi.U32.pack(abi.OA4_MARK))
    return int.from_bytes(raw[:8], "little") if raw else 0


def set_mark(kt, rule_set: int, value: int) -> None:
    with paged(kt, rule_set) as t:
        t.set64(_MARK, value)


def wear(kt, rule_set: int) -> int:
    """Slots turned dead + buckets overflowed in the set's table since its last rebuild."""
    raw = kt.table(abi.OA4_MAP, rule_set).lookup(abi.U32.pack(abi.OA4_MARK))
    return int.from_bytes(raw[8:16], "little") + int.from_bytes(raw[16:24], "little") if raw else 0


def _count(t, which: int, n: int) -> None:
    """Add n to the mark bucket's count ``which`` (1: dead slots, 2: overflowed buckets)."""
    off = _MARK + 8 * which
    t.set64(off, t.get64(off) + n)


def _keys(keys: bytes, n: int):
    """(dir, addr as loaded) of n packed xc_key4."""
    np = _np()
    k = np.frombuffer(keys, np.dtype([("dir", "=u4"), ("addr", "=u4")]), n)
    return k["dir"].astype(np.uint64), k["addr"]


def _vals(vals: bytes, n: int):
    np = _np()
    return np.frombuffer(vals, np.dtype([("rule_id", "=u4"), ("action", "u1"), ("plen", "u1"), ("flags", "=u2"),
                                         ("expires", "=u8"), ("fb_rule_id", "=u4"), ("fb_action", "u1"),
                                         ("fb_plen", "u1"), ("fb_flags", "=u2"), ("fb_expires", "=u8")]), n)


def _find(t, b, want):
    """Slot of each key's live entry in its bucket b (-1: none)."""
    np = _np()
    hit = (t["slot"][b] & np.uint64(_KEY_MASK)) == want[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def _live_word(addr, d):
    np = _np()
    return addr.astype(np.uint64) | ((np.uint64(abi.OA4_LIVE) | (d << np.uint64(2))) << np.uint64(_STATE_SHIFT))


def _kill(t, b, s) -> None:
    """Turn slots (b, s) dead: one store each."""
    np = _np()
    if len(b):
        cur = t["slot"][b, s]
        t["slot"][b, s] = (cur & ~np.uint64(3 << _STATE_SHIFT)) | np.uint64(abi.OA4_DEAD << _STATE_SHIFT)
        t["slot"][abi.OA4_MARK, 1] += np.uint64(len(b))


def _overflow(t, b) -> None:
    np = _np()
    b = np.unique(b)
    new = b[t["overflow"][b] == 0]
    if len(new):
        t["overflow"][new] = 1
        t["slot"][abi.OA4_MARK, 2] += np.uint64(len(new))


def put(t, keys: bytes, vals: bytes, n: int) -> None:
    """Mirror ``update_batch(keys, vals, n)`` of the band: each key's simple
    value into an empty slot of its bucket, the others as overflow; a
    key's former live slot turns dead last (a packet meanwhile sees the
    old value or the new one). ``t``: a whole table's buffer, or its words
    (Flat, Paged: entry by entry, up to SMALL entries)."""
    if n <= SMALL or isinstance(t, Flat):
        acc = t if isinstance(t, Flat) else Flat(t)
        for i in range(n):
            _put_one(acc, keys[8 * i:8 * i + 8], vals[32 * i:32 * i + 32])
        return
    _put_many(_array(t), keys, vals, n)


def _state(word: int) -> int:
    return (word >> _STATE_SHIFT) & 3


def _find_one(t, d: int, a: int) -> tuple[int, int, list[int]]:
    """(bucket offset, slot of the key's live entry or -1, the bucket's slot words)."""
    off = (((a * abi.OA4_MUL) & 0xFFFFFFFF) >> (32 - abi.OA4_BITS)) * _BUCKET
    want = a | ((abi.OA4_LIVE | d << 2) << _STATE_SHIFT)
    words = [t.get64(off + 8 * j) for j in range(abi.OA4_SLOTS)]
    return off, next((j for j in range(abi.OA4_SLOTS) if words[j] & _KEY_MASK == want), -1), words


def _put_one(t, key: bytes, val: bytes) -> None:
    d, a = _KEY.unpack(key)
    v = abi.RULE_VAL.unpack(val)
    rule_id, action, plen, expires, fb_action = v[0], v[1], v[2], v[4], v[6]
    off, old, words = _find_one(t, d, a)
    word = a | ((abi.OA4_LIVE | d << 2) << _STATE_SHIFT) | action << 40 | plen << 48
    simple = action != abi.Action.NONE and expires == 0 and fb_action == abi.Action.NONE
    if old >= 0 and simple and words[old] == word and t.get32(off + 32 + 4 * old) == rule_id:
        return
    free = next((j for j in range(abi.OA4_SLOTS) if _state(words[j]) == abi.OA4_EMPTY), -1) if simple else -1
    if free >= 0:
        t.set32(off + 32 + 4 * free, rule_id)  # the rule id before the word that makes the slot live
        t.set64(off + 8 * free, word)
    elif not t.get32(off + 48):
        t.set32(off + 48, 1)
        _count(t, 2, 1)
    if old >= 0:
        _kill_one(t, off, old, words[old])


def _kill_one(t, off: int, slot: int, word: int) -> None:
    t.set64(off + 8 * slot, (word & ~(3 << _STATE_SHIFT)) | abi.OA4_DEAD << _STATE_SHIFT)
    _count(t, 1, 1)


def _put_many(t, keys: bytes, vals: bytes, n: int) -> None:
    np = _np()
    d, addr = _keys(keys, n)
    v = _vals(vals, n)
    if n > 1:  # a key written twice: its last value (as the band keeps it)
        _, last = np.unique(((d << np.uint64(32)) | addr.astype(np.uint64))[::-1], return_index=True)
        keep = np.sort(n - 1 - last)
        d, addr, v = d[keep], addr[keep], v[keep]
    b = bucket_of(addr)
    want = _live_word(addr, d)
    old = _find(t, b, want)
    word = want | (v["action"].astype(np.uint64) << np.uint64(40)) | (v["plen"].astype(np.uint64) << np.uint64(48))
    simple = (v["action"] != abi.Action.NONE) & (v["expires"] == 0) & (v["fb_action"] == abi.Action.NONE)
    same = old >= 0
    if same.any():  # a live slot with this very value stays as it is
        i = np.flatnonzero(same)
        same[i] = (t["slot"][b[i], old[i]] == word[i]) & (t["rule_id"][b[i], old[i]] == v["rule_id"][i]) & simple[i]
    place = simple & ~same
    idx = np.flatnonzero(place)
    slot = np.full(len(idx), -1, np.int64)
    if len(idx):
        pb = b[idx]
        order = np.argsort(pb, kind="stable")
        spb = pb[order]
        rank = np.arange(len(spb)) - np.searchsorted(spb, spb, "left")
        empty = ((t["slot"][spb] >> np.uint64(_STATE_SHIFT)) & np.uint64(3)) == abi.OA4_EMPTY
        nth = np.cumsum(empty, axis=1)  # slot j is the nth[j]-th empty slot of its bucket
        got = (nth == (rank + 1)[:, None]) & empty
        ok = got.any(axis=1)
        slot[order] = np.where(ok, got.argmax(axis=1), -1)
    fit = slot >= 0
    fb, fs, fi = b[idx[fit]], slot[fit], idx[fit]
    t["rule_id"][fb, fs] = v["rule_id"][fi]  # the rule id before the word that makes the slot live
    t["slot"][fb, fs] = word[fi]
    spill = np.concatenate([b[~simple & ~same], b[idx[~fit]]])
    _overflow(t, spill)
    gone = (old >= 0) & ~same
    _kill(t, b[gone], old[gone])


def delete(t, keys: bytes, n: int) -> None:
    """Mirror ``delete_batch(keys, n)`` of the band: live slots turn dead
    (a key only in the band leaves its bucket's overflow as it is). ``t``
    as for put."""
    if n <= SMALL or isinstance(t, Flat):
        acc = t if isinstance(t, Flat) else Flat(t)
        for i in range(n):
            off, old, words = _find_one(acc, *_KEY.unpack_from(keys, 8 * i))
            if old >= 0:
                _kill_one(acc, off, old, words[old])
        return
    t = _array(t)
    d, addr = _keys(keys, n)
    b = bucket_of(addr)
    old = _find(t, b, _live_word(addr, d))
    _kill(t, b[old >= 0], old[old >= 0])


def rebuild(kt, rule_set: int, revision: int) -> None:
    """Make the set's table from its band as the kernel holds it, then
    mark it as mirroring ``revision``. Only while no packet reads the
    table (its set not active with XC_CFG_HAVE_OA4, or after
    maps.wait_for_programs)."""
    keys, vals, n = kt.table(BAND, rule_set).dump()
    with opened(kt, rule_set) as buf:
        t = _array(buf)
        t["slot"][abi.OA4_MARK, 0] = UNTRUSTED
        t[:abi.OA4_BUCKETS] = 0
        t["slot"][abi.OA4_MARK, 1:3] = 0
        if n:
            _fill(t, keys, vals, n)
        t["slot"][abi.OA4_MARK, 1:3] = 0  # wear counts from here: a full bucket of the rebuild is not wear
        t["slot"][abi.OA4_MARK, 0] = revision
        del t


def copy(kt, src: int, dst: int, revision: int) -> None:
    """Give set ``dst`` the table of set ``src`` when both sets' bands hold
    the same entries (a catch-up just made them so), marked as mirroring
    ``revision``. Only while no packet reads dst's table, as rebuild."""
    with opened(kt, src) as a, opened(kt, dst) as b:
        np = _np()
        ta, tb = np.frombuffer(a, np.uint64), np.frombuffer(b, np.uint64)
        tb[abi.OA4_MARK * 8] = UNTRUSTED
        tb[:abi.OA4_MARK * 8] = ta[:abi.OA4_MARK * 8]
        tb[abi.OA4_MARK * 8 + 1:abi.OA4_MARK * 8 + 3] = ta[abi.OA4_MARK * 8 + 1:abi.OA4_MARK * 8 + 3]
        tb[abi.OA4_MARK * 8] = revision
        del ta, tb


def _fill(t, keys: bytes, vals: bytes, n: int) -> None:
    """put() into an empty table of the entries of a band (no key twice):
    each bucket's simple entries into its slots in order, the rest as
    overflow."""
    np = _np()
    d, addr = _keys(keys, n)
    v = _vals(vals, n)
    b = bucket_of(addr)
    word = (_live_word(addr, d) | (v["action"].astype(np.uint64) << np.uint64(40))
            | (v["plen"].astype(np.uint64) << np.uint64(48)))
    simple = (v["action"] != abi.Action.NONE) & (v["expires"] == 0) & (v["fb_action"] == abi.Action.NONE)
    idx = np.flatnonzero(simple)
    order = idx[np.argsort(b[idx], kind="stable")]
    sb = b[order]
    rank = np.arange(len(sb)) - np.searchsorted(sb, sb, "left")
    fit = rank < abi.OA4_SLOTS
    at = sb[fit] * 8 + rank[fit]  # u64 index of the slot word (8 u64 per bucket), its rule id at u32 2 * at + 8 - rank
    t.view(np.uint32)[2 * at + 8 - rank[fit]] = v["rule_id"][order[fit]]
    t.view(np.uint64)[at] = word[order[fit]]
    _overflow(t, np.concatenate([b[~simple], sb[~fit]]))


class Mirrored:
    """xc_v4_l32 of one set, whose writes its host table follows (the band
    first, then the table). Anything else goes to the band."""

    def __init__(self, band, kt, rule_set: int):
        self._band = band
        self._kt = kt
        self._set = rule_set

    def __getattr__(self, name):
        return getattr(self._band, name)

    @contextlib.contextmanager
    def _table(self, n: int):
        with (paged if n <= SMALL else opened)(self._kt, self._set) as t:
            yield t

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._band.update(key, value, flags)
        with self._table(1) as t:
            put(t, key, value, 1)

    def delete(self, key: bytes) -> bool:
        gone = self._band.delete(key)
        with self._table(1) as t:
            delete(t, key, 1)
        return gone

    def update_batch(self, keys: bytes, values: bytes, count: int, flags: int = 0) -> None:
        self._band.update_batch(keys, values, count, flags)
        with self._table(count) as t:
            put(t, keys, values, count)

    def delete_batch(self, keys: bytes, count: int) -> None:
        self._band.delete_batch(keys, count)
        with self._table(count) as t:
            delete(t, keys, count)

    def replace_batch(self, dels: bytes, n_del: int, keys: bytes, values: bytes, n_upd: int) -> None:
        self._band.replace_batch(dels, n_del, keys, values, n_upd)
        with self._table(max(n_del, n_upd)) as t:
            delete(t, dels, n_del)
            put(t, keys, values, n_upd)
