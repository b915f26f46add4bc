"""What the data path may skip in a rule set: its empty hash bands and the
addresses its presence bitmap rules out (xdpctl_abi.h, xc_bits): an
address whose bit is clear has no key in any hash band, and (IPv6) no
entry of the trie covers it.

The bitmap belongs to its set like the bands: it is written while the set
is the standby one, and the flags that let the data path trust it go into
xc_cfg in the same update that makes the set active. A bit is set for
every key of the set's hash bands (never clear with a key behind it); a
bit whose keys are gone only costs a lookup until the set is rebuilt.

Word BITS_MARK of the bitmap says which revision the bits cover: a set is
trusted only when that is the revision it held before this change, or the
bitmap was rebuilt from the set's keys during it (mark REBUILT). A writer
that changes a set without keeping its bits (an older xdpctl) changes the
revision without the mark, so its sets are not trusted until rebuilt.
"""

from __future__ import annotations

from ... import abi, native
from . import builder

V4_BANDS = ("xc_v4_l32", "xc_v4_l24")
V6_BANDS = ("xc_v6_l128", "xc_v6_l64", "xc_v6_l48", "xc_v6_l32")
BANDS = V4_BANDS + V6_BANDS  # in the order of the builder's band bits (bits.h)
REBUILT = (1 << 64) - 2  # mark: rebuilt from the set's keys, whatever revision it holds
TRIE = "xc_v6_trie"  # its entries set the bits they cover too (always from Python)
V6_BIT_PLEN = 3 + 24  # an IPv6 bit stands for a /27
_CHUNK = 1 << 18  # keys per step of image_words
ALL_ONES = (1 << 64) - 1
WORDS_ONE_BY_ONE = 4096  # add_keys: more words than this and the whole bitmap is read and merged


def bit_of(band: str, key: bytes) -> int:
    """The bitmap bit of one key of a hash band (xc_key4 / xc_key6)."""
    d = abi.U32.unpack_from(key)[0]
    if band in V4_BANDS:
        return (d << 24) | (int.from_bytes(key[4:8], "big") >> 8)
    top = int.from_bytes(key[4:8], "big")
    return abi.BITS_V4_BITS + ((d << 24) | ((top >> abi.BITS_V6_SHIFT) & 0xFFFFFF))


def trie_bits(key: bytes) -> range:
    """The bitmap bits of the /27s an xc_v6_trie entry's prefix covers
    (every one of its direction below /4: the top 3 bits are ignored)."""
    plen = abi.U32.unpack_from(key)[0] - abi.TRIE6_PREFIX_BASE
    d = abi.U32.unpack_from(key, 4)[0]
    top = int.from_bytes(key[8:12], "big")
    span = 1 << max(0, V6_BIT_PLEN - max(plen, 3))
    first = ((top >> abi.BITS_V6_SHIFT) & 0xFFFFFF) & ~(span - 1)
    base = abi.BITS_V4_BITS + (d << 24) + first
    return range(base, base + span)


def _trie_words(words: dict[int, int], keys) -> None:
    """Add the bits of xc_v6_trie keys to words (word -> mask)."""
    for key in keys:
        r = trie_bits(key)
        if len(r) >= 64:  # whole words
            for w in range(r.start >> 6, r.stop >> 6):
                words[w] = ALL_ONES
            continue
        mask = ((1 << len(r)) - 1) << (r.start & 63)
        words[r.start >> 6] = words.get(r.start >> 6, 0) | mask


def set_bits(kt, rule_set: int, plan) -> None:
    """Set the bits of the hash-band keys and trie entries a plan writes
    into one set."""
    set_key_bits(kt, rule_set, ((band, key) for band in BANDS if band in plan for key in plan[band].updates),
                 plan[TRIE].updates if TRIE in plan else ())


def set_key_bits(kt, rule_set: int, keys, trie_keys=()) -> None:
    """Set the bits of (band, key) pairs and of xc_v6_trie keys, a word at
    a time (a key written by anything but this writer needs its bit to be
    seen)."""
    words: dict[int, int] = {}
    for band, key in keys:
        b = bit_of(band, key)
        words[b >> 6] = words.get(b >> 6, 0) | (1 << (b & 63))
    _trie_words(words, trie_keys)
    _or_words(kt.table(abi.BITS_MAP, rule_set), words.items())


def _or_words(m, words) -> None:
    """Or (word, mask) pairs into the bitmap, reading and writing a word at
    a time (only the words that gain a bit are written)."""
    for w, mask in words:
        k = abi.U32.pack(w)
        raw = m.lookup(k)
        old = int.from_bytes(raw[:8], "little") if raw else 0
        if old | mask != old:
            m.update(k, (old | mask).to_bytes(8, "little"))


def rebuild(kt, rule_set: int, compiled) -> None:
    """Make the set's bitmap exactly the bits of the ``compiled`` image it
    now holds (hash-band keys and trie entries), then mark it REBUILT: the
    kernel clears it, then the words that have a bit, computed from the
    image's key columns (image_words), are written in one batch. A change
    that fails after this puts the set's old keys back, and with them their
    bits (repair)."""
    builder.run(kt, f"presence bitmap of set {'AB'[rule_set]}", [(builder.BUILD, rule_set, True, 0, 0, 0)])
    _write_words(kt.table(abi.BITS_MAP, rule_set), image_words(compiled, kt, rule_set))
    _mark(kt, rule_set, REBUILT)


def repair(kt, rule_set: int) -> None:
    """Make the set's bitmap exactly the bits of the keys it holds, read
    from the kernel (a failed change put back keys whose bits a rebuild
    had cleared): a walk of its non-empty hash bands in the kernel, its
    trie entries from here; then marked REBUILT."""
    walk = sum(1 << i for i, band in enumerate(BANDS) if kt.table(band, rule_set).has_entries())
    builder.run(kt, f"presence bitmap of set {'AB'[rule_set]}", [(builder.BUILD, rule_set, True, walk, 0, 0)])
    set_key_bits(kt, rule_set, (), kt.table(TRIE, rule_set).keys())
    _mark(kt, rule_set, REBUILT)


def image_words(compiled, kt, rule_set: int):
    """The bitmap words (uint64, BITS_WORDS of them) of an image's hash-band
    keys and trie entries, from the key columns: no object per key."""
    import numpy as np

    words = np.zeros(abi.BITS_WORDS, np.uint64)
    for band in BANDS:
        t = compiled[band]
        _band_bits(np, words, band, t.keys, t.count, kt.table(band, rule_set).key_size)
    trie: dict[int, int] = {}
    _trie_words(trie, _keys(compiled[TRIE], kt.table(TRIE, rule_set)))
    for w, mask in trie.items():
        words[w] |= np.uint64(mask)
    return words


def _band_bits(np, words, band: str, keys: bytes, count: int, ks: int) -> None:
    """Set the bits of a hash band's packed keys in words (uint64)."""
    rows = np.frombuffer(keys, np.uint8, count * ks).reshape(count, ks)
    for at in range(0, count, _CHUNK):  # a chunk at a time: a few MB of temporaries, not tens
        part = rows[at:at + _CHUNK]
        d = np.ascontiguousarray(part[:, :4]).view(np.uint32)[:, 0].astype(np.uint32)
        top = np.ascontiguousarray(part[:, 4:8]).view(">u4")[:, 0].astype(np.uint32)
        if band in V4_BANDS:
            bits = (d << 24) | (top >> 8)
        else:
            bits = abi.BITS_V4_BITS + ((d << 24) | ((top >> abi.BITS_V6_SHIFT) & 0xFFFFFF))
        _or_bits(np, words, bits)


def add_keys(kt, rule_set: int, bands: dict) -> None:
    """Set the bits of hash-band keys written into one set, given packed
    per band: {band: (keys, count)}. Up to WORDS_ONE_BY_ONE words are read
    and or-ed one at a time; more, and the span of words they fall in is
    read (batch lookups), or-ed, and the words that changed are written in
    one batch. Bits are only added: the set's mark stays as it was."""
    import numpy as np

    words = np.zeros(abi.BITS_WORDS, np.uint64)
    for band, (keys, count) in bands.items():
        _band_bits(np, words, band, keys, count, kt.table(band, rule_set).key_size)
    idx = np.flatnonzero(words)
    m = kt.table(abi.BITS_MAP, rule_set)
    if _in_place(np, m, idx, words, lambda cur, new: cur | new):
        return
    if len(idx) > WORDS_ONE_BY_ONE:
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        cur = np.frombuffer(m.values_range(lo, hi - lo), np.uint64)
        merged = cur | words[lo:hi]
        changed = np.flatnonzero(merged != cur)
        m.update_batch((changed + lo).astype(np.uint32).tobytes(), merged[changed].tobytes(), len(changed))
        return
    _or_words(m, zip(idx.tolist(), words[idx].tolist()))


def _or_bits(np, words, bits) -> None:
    """Set bits (uint32 bit numbers) in words: by the C helper (a million
    bits: 65-90 ms -> a few), else sorted, the bits of one word or-ed
    together (reduceat) and each word written once (a third of what
    np.bitwise_or.at costs for a million bits)."""
    if not len(bits):
        return
    if native.lib() is not None:
        native.or_bits(words, bits)
        return
    bits = np.sort(bits)
    idx = bits >> 6
    starts = np.flatnonzero(np.concatenate(([True], idx[1:] != idx[:-1])))
    masks = np.left_shift(np.uint64(1), (bits & 63).astype(np.uint64))
    words[idx[starts]] |= np.bitwise_or.reduceat(masks, starts)


def _write_words(m, words) -> None:
    """Write the words that have a bit into a cleared bitmap (one batch)."""
    import numpy as np

    idx = np.flatnonzero(words).astype(np.uint32)
    if not _in_place(np, m, idx, words, lambda _cur, new: new):
        m.update_batch(idx.tobytes(), words[idx].tobytes(), len(idx))


def _in_place(np, m, idx, words, merge) -> bool:
    """Store merge(current, words) at the words ``idx`` straight into a
    bitmap made mmapable (one aligned 8-byte store per word; no read or
    write syscall). False when the map is not (made by an xdpctl before
    the flag): the caller writes by syscall."""
    with m.mapped() as view:
        if view is None:
            return False
        cur = np.frombuffer(view, np.uint64, abi.BITS_WORDS)
        cur[idx] = merge(cur[idx], words[idx])
        del cur
    return True


def copy(kt, src: int, dst: int) -> None:
    """Give set ``dst`` the bitmap of set ``src`` when both hold the same
    keys (the twin just took the same writes): the bits cover its keys as
    they cover the source's; marked REBUILT like a rebuild, once every
    word is copied (in the kernel: a pass over both bitmaps)."""
    if src != 1 - dst:
        raise ValueError(f"set {dst} takes a bitmap only from its twin, not from set {src}")
    builder.run(kt, f"presence bitmap of set {'AB'[dst]}", [(builder.COPY, dst, 0, 0, 0, 0)])
    _mark(kt, dst, REBUILT)


def _keys(table, m):
    n = m.key_size
    return (table.keys[i * n:(i + 1) * n] for i in range(table.count))


def empty_bands(kt, rule_set: int, known: int | None = None, touched: set[str] | None = None,
                filled: set[str] = frozenset()) -> int:
    """The NO_* flags of the set's empty hash bands. A band outside
    ``touched`` takes its flag from ``known`` (the flags of a set with the
    same contents before this change: xc_cfg's, written by the last
    settle); a band in ``filled`` holds a key this change put there; every
    other band is asked (get_next_key walks the buckets of a hash map up
    to its first key: about 0.5 ms for an empty band at default capacities,
    up to 2 ms for a band of a few keys, so a small change asks only the
    bands it deleted from). ``known`` None: ask every band."""
    flags = 0
    for band, flag in abi.BAND_EMPTY_FLAG.items():
        if known is not None and touched is not None and band not in touched:
            flags |= known & int(flag)
        elif band in filled:
            continue
        elif not kt.table(band, rule_set).has_entries():
            flags |= int(flag)
    return flags


def settle(kt, rule_set: int, held: int, revision: int, empty: int | None = None) -> int:
    """The set is about to be declared at ``revision`` (it held ``held``
    before this change): record the revision its bitmap covers, and return
    the flags the data path needs for it (empty bands, trusted bitmap).
    ``empty``: its empty-band flags when known (empty_bands), else asked."""
    flags = empty_bands(kt, rule_set) if empty is None else empty
    raw = kt.table(abi.BITS_MAP, rule_set).lookup(abi.U32.pack(abi.BITS_MARK))
    mark = int.from_bytes(raw[:8], "little") if raw else 0
    ok = mark in (REBUILT, held)  # held 0: a set never written, empty like its bitmap
    _mark(kt, rule_set, revision if ok else 0)
    return flags | (int(abi.CfgFlag.HAVE_BITS) if ok else 0)


def _mark(kt, rule_set: int, value: int) -> None:
    kt.table(abi.BITS_MAP, rule_set).update(abi.U32.pack(abi.BITS_MARK), value.to_bytes(8, "little"))
