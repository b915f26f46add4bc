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
SMALL = 256  # writes of up to this many entries map only the pages they touch, and go entry by entry
_STATE = 32  # a slot's state bits start here
_BUCKET = 64  # bytes: 4 slot words, 4 rule ids, the overflow word, padding
_MARK = abi.OA4_MARK * _BUCKET
_KEY = struct.Struct("=II")  # xc_key4 as the data path loads it: dir, the address as a u32


def _np():
    import numpy as np

    return np


# Written once for an int and for numpy columns (uint64; uint32 for bucket_of).
def bucket_of(a):
    """The bucket of address ``a`` as the data path loads it (the u32 of
    the key's network-order bytes)."""
    return ((a * abi.OA4_MUL) & 0xFFFFFFFF) >> (32 - abi.OA4_BITS)


def live_word(a, d, action, plen):
    """The slot word of a live entry."""
    return a | (abi.OA4_LIVE | d << 2) << _STATE | action << 40 | plen << 48


def simple(action, expires_ns, fb_action):
    """Does a band value go into the table (an action, no deadline, no
    fallback)? Any other key of the band overflows its bucket."""
    return (action != abi.Action.NONE) & (expires_ns == 0) & (fb_action == abi.Action.NONE)


class Words:
    """A table's words in one buffer (a whole mapping, or memory), read and
    written one aligned access at a time (a store of a slot word is one
    store, as the data path sees it)."""

    def __init__(self, buf=None):
        self.buf = buf

    def _at(self, off: int):
        return self.buf, off

    def get64(self, off: int) -> int:
        return ctypes.c_uint64.from_buffer(*self._at(off)).value

    def get32(self, off: int) -> int:
        return ctypes.c_uint32.from_buffer(*self._at(off)).value

    def set64(self, off: int, v: int) -> None:
        ctypes.c_uint64.from_buffer(*self._at(off)).value = v

    def set32(self, off: int, v: int) -> None:
        ctypes.c_uint32.from_buffer(*self._at(off)).value = v


class Pages(Words):
    """A pinned table's words, its pages mapped as they are touched
    (Map.mapped of one page: a small change maps a few of 8,193)."""

    def __init__(self, m, stack: contextlib.ExitStack):
        super().__init__()
        self.m, self.stack = m, stack
        self.pages: dict[int, memoryview] = {}

    def _at(self, off: int):
        p, o = divmod(off, mmap.PAGESIZE)
        if p not in self.pages:
            self.pages[p] = self.stack.enter_context(self.m.mapped(p, 1))
        return self.pages[p], o


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
    """The set's table a page at a time (Pages)."""
    with contextlib.ExitStack() as stack:
        yield Pages(kt.table(abi.OA4_MAP, rule_set), stack)


def _array(buf):
    """A table's buckets as a numpy structured array (a view of buf)."""
    np = _np()
    return np.frombuffer(buf, np.dtype(abi.xc_oa4_bucket), abi.OA4_BUCKETS + 1)


def read_mark(m) -> bytes:
    """The mark bucket of a table map (a pinned one too)."""
    return m.lookup(abi.U32.pack(abi.OA4_MARK)) or bytes(_BUCKET)


def _mark_bucket(kt, rule_set: int) -> bytes:
    return read_mark(kt.table(abi.OA4_MAP, rule_set))


def mark(kt, rule_set: int) -> int:
    """The revision the set's table mirrors (UNTRUSTED: none)."""
    return int.from_bytes(_mark_bucket(kt, rule_set)[:8], "little")


def mark_wear(raw: bytes) -> tuple[int, int]:
    """(slots turned dead, buckets overflowed) since the last rebuild, from a mark bucket."""
    return int.from_bytes(raw[8:16], "little"), int.from_bytes(raw[16:24], "little")


def wear(kt, rule_set: int) -> int:
    """Slots turned dead + buckets overflowed in the set's table since its last rebuild."""
    return sum(mark_wear(_mark_bucket(kt, rule_set)))


def set_mark(kt, rule_set: int, value: int) -> None:
    with paged(kt, rule_set) as t:
        t.set64(_MARK, value)


# ---- entry by entry (Words) ------------------------------------------------
def _count(t: Words, which: int, n: int) -> None:
    """Add n to the mark bucket's count ``which`` (1: dead slots, 2: overflowed buckets)."""
    off = _MARK + 8 * which
    t.set64(off, t.get64(off) + n)


def _find_one(t: Words, d: int, a: int) -> tuple[int, int, list[int]]:
    """(bucket offset, slot of the key's live entry or -1, the bucket's slot words)."""
    off = bucket_of(a) * _BUCKET
    want = live_word(a, d, 0, 0)
    words = [t.get64(off + 8 * j) for j in range(abi.OA4_SLOTS)]
    return off, next((j for j in range(abi.OA4_SLOTS) if words[j] & abi.OA4_KEY_MASK == want), -1), words


def _kill_one(t: Words, off: int, slot: int, word: int) -> None:
    t.set64(off + 8 * slot, (word & ~(3 << _STATE)) | abi.OA4_DEAD << _STATE)
    _count(t, 1, 1)


def _put_one(t: Words, key: bytes, val: bytes) -> None:
    d, a = _KEY.unpack(key)
    v = abi.unpack_rule_val(val)
    off, old, words = _find_one(t, d, a)
    word = live_word(a, d, v.action, v.plen)
    fits = simple(v.action, v.expires_ns, v.fb_action)
    if old >= 0 and fits and words[old] == word and t.get32(off + 32 + 4 * old) == v.rule_id:
        return
    free = next((j for j in range(abi.OA4_SLOTS) if not (words[j] >> _STATE) & 3), -1) if fits else -1
    if free >= 0:
        t.set32(off + 32 + 4 * free, v.rule_id)  # the rule id before the word that makes the slot live
        t.set64(off + 8 * free, word)
    elif not t.get32(off + 48):
        t.set32(off + 48, 1)
        _count(t, 2, 1)
    if old >= 0:
        _kill_one(t, off, old, words[old])


# ---- as columns (numpy, over a whole table) ---------------------------------
def _keys(keys: bytes, n: int):
    """(bucket, address as loaded, direction) columns of n packed xc_key4."""
    np = _np()
    k = np.frombuffer(keys, np.uint32, 2 * n).reshape(n, 2).astype(np.uint64)
    return bucket_of(k[:, 1]).astype(np.int64), k[:, 1], k[:, 0]


def _entries(keys: bytes, vals: bytes, n: int):
    """(bucket, live slot word, rule id, simple) columns of n band entries."""
    np = _np()
    b, a, d = _keys(keys, n)
    v = np.frombuffer(vals, np.dtype(abi.xc_rule_val), n)
    words = live_word(a, d, v["action"].astype(np.uint64), v["plen"].astype(np.uint64))
    return b, words, v["rule_id"], simple(v["action"], v["expires_ns"], v["fb_action"])


def _store(t, b, s, words, ids) -> None:
    """Make slots (b, s) live: every rule id first, then the slot words."""
    np = _np()
    t.view(np.uint32)[b * 16 + 8 + s] = ids
    t.view(np.uint64)[b * 8 + s] = words


def _kill(t, b, s) -> None:
    """Turn slots (b, s) dead: one store each."""
    np = _np()
    if len(b):
        t["slot"][b, s] = (t["slot"][b, s] & ~np.uint64(3 << _STATE)) | np.uint64(abi.OA4_DEAD << _STATE)
        t["slot"][abi.OA4_MARK, 1] += np.uint64(len(b))


def _overflow(t, b) -> None:
    np = _np()
    b = np.unique(b)
    new = b[t["overflow"][b] == 0]
    if len(new):
        t["overflow"][new] = 1
        t["slot"][abi.OA4_MARK, 2] += np.uint64(len(new))


def _find(t, b, words):
    """Slot of each key's live entry in its bucket b (-1: none)."""
    np = _np()
    hit = (t["slot"][b] & np.uint64(abi.OA4_KEY_MASK)) == (words & np.uint64(abi.OA4_KEY_MASK))[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def _rank(b):
    """An order of entries by bucket (stable), and each one's place among
    its bucket's in that order."""
    np = _np()
    order = np.argsort(b, kind="stable")
    sb = b[order]
    return order, np.arange(len(sb)) - np.searchsorted(sb, sb, "left")


def _put_many(t, keys: bytes, vals: bytes, n: int) -> None:
    np = _np()
    b, words, ids, fits = _entries(keys, vals, n)
    if n > 1:  # a key written twice: its last value (as the band keeps it)
        _, last = np.unique((words & np.uint64(abi.OA4_KEY_MASK))[::-1], return_index=True)
        keep = np.sort(n - 1 - last)
        b, words, ids, fits = b[keep], words[keep], ids[keep], fits[keep]
    old = _find(t, b, words)
    same = old >= 0
    if same.any():  # a live slot with this very value stays as it is
        i = np.flatnonzero(same)
        same[i] = (t["slot"][b[i], old[i]] == words[i]) & (t["rule_id"][b[i], old[i]] == ids[i]) & fits[i]
    idx = np.flatnonzero(fits & ~same)
    slot = np.full(len(idx), -1, np.int64)
    if len(idx):
        order, rank = _rank(b[idx])
        spb = b[idx][order]
        empty = ((t["slot"][spb] >> np.uint64(_STATE)) & np.uint64(3)) == abi.OA4_EMPTY
        nth = np.cumsum(empty, axis=1)  # slot j is the nth[j]-th empty slot of its bucket
        got = (nth == (rank + 1)[:, None]) & empty
        slot[order] = np.where(got.any(axis=1), got.argmax(axis=1), -1)
    ok = slot >= 0
    _store(t, b[idx[ok]], slot[ok], words[idx[ok]], ids[idx[ok]])
    _overflow(t, np.concatenate([b[~fits & ~same], b[idx[~ok]]]))
    gone = (old >= 0) & ~same
    _kill(t, b[gone], old[gone])


def _fill(t, keys: bytes, vals: bytes, n: int) -> None:
    """put() into an empty table of the entries of a band (no key twice):
    each bucket's simple entries into its slots in order, the rest as
    overflow."""
    np = _np()
    b, words, ids, fits = _entries(keys, vals, n)
    idx = np.flatnonzero(fits)
    order, rank = _rank(b[idx])
    at = idx[order]
    ok = rank < abi.OA4_SLOTS
    _store(t, b[at[ok]], rank[ok], words[at[ok]], ids[at[ok]])
    _overflow(t, np.concatenate([b[~fits], b[at[~ok]]]))


def put(t, keys: bytes, vals: bytes, n: int) -> None:
    """Mirror ``update_batch(keys, vals, n)`` of the band: each key's simple
    value into an empty slot of its bucket, the others as overflow; a
    key's former live slot turns dead last (a packet meanwhile sees the
    old value or the new one). ``t``: Words (entry by entry), or a whole
    table's buffer (as columns)."""
    if isinstance(t, Words):
        for i in range(n):
            _put_one(t, keys[8 * i:8 * i + 8], vals[32 * i:32 * i + 32])
    elif n:
        _put_many(_array(t), keys, vals, n)


def delete(t, keys: bytes, n: int) -> None:
    """Mirror ``delete_batch(keys, n)`` of the band: live slots turn dead
    (a key only in the band leaves its bucket's overflow as it is). ``t``
    as for put."""
    if isinstance(t, Words):
        for i in range(n):
            off, old, words = _find_one(t, *_KEY.unpack_from(keys, 8 * i))
            if old >= 0:
                _kill_one(t, off, old, words[old])
    elif n:
        arr = _array(t)
        b, a, d = _keys(keys, n)
        old = _find(arr, b, live_word(a, d, 0, 0))
        _kill(arr, b[old >= 0], old[old >= 0])


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
        ta, tb = _array(a), _array(b)
        tb["slot"][abi.OA4_MARK, 0] = UNTRUSTED
        tb[:abi.OA4_BUCKETS] = ta[:abi.OA4_BUCKETS]
        tb["slot"][abi.OA4_MARK, 1:3] = ta["slot"][abi.OA4_MARK, 1:3]
        tb["slot"][abi.OA4_MARK, 0] = revision
        del ta, tb


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
