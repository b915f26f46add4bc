"""What a rule set lets the data path skip: the empty-band flags and the
presence bitmap go into the kernel with the set they describe, a lookup
that trusts them gives the verdict of the full lookup, and a set whose
bitmap was not kept (a writer that does not know it) is not trusted
until it is rebuilt."""

from __future__ import annotations

import os
import random

import pytest

from tests.support.progs import DropListProbe
from xdpctl import abi
from xdpctl.core.rules import presence
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import read_pinned_config
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import maps

F = abi.CfgFlag


def _map(ctx, name: str, rule_set: int) -> maps.Map:
    return maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(name, rule_set)))


def bitmap(ctx, rule_set: int) -> tuple[set[int], int]:
    """(bits set, mark word) of one set's presence bitmap."""
    import numpy as np

    with _map(ctx, abi.BITS_MAP, rule_set) as m:
        keys, vals, n = m.dump()
    words = np.zeros(abi.BITS_WORDS + 1, np.uint64)
    words[np.frombuffer(keys, np.uint32, n)] = np.frombuffer(vals, np.uint64, n)
    mark = int(words[abi.BITS_MARK])
    bits = np.unpackbits(words[:abi.BITS_MARK].view(np.uint8), bitorder="little")
    return set(np.flatnonzero(bits).tolist()), mark


def key_bits(ctx, rule_set: int) -> set[int]:
    out = set()
    for band in presence.BANDS:
        with _map(ctx, band, rule_set) as m:
            out.update(presence.bit_of(band, k) for k in m.keys())
    with _map(ctx, presence.TRIE, rule_set) as m:
        for k in m.keys():
            out.update(presence.trie_bits(k))
    return out


def verdicts(ctx, addrs: list[str]) -> list[tuple[int, abi.DlReason, int | None]]:
    """The kernel's answers with the active set's flags as the instance has them."""
    probe = DropListProbe(ctx.settings)
    try:
        cfg = read_pinned_config(ctx)
        with probe.loaded.map("xc_cfg") as m:
            m.update(abi.U32.pack(0), abi.pack_config(int(abi.Policy.ALLOW),
                                                      cfg.flags & int(F.HAVE_V6TRIE | abi.SET_FLAGS), 0, cfg.active))
        return [probe.source_match(a) for a in addrs]
    finally:
        probe.loaded.close()


def test_flags_and_bitmap_describe_the_active_set(ctx) -> None:
    d = DropList(ctx)
    d.add([spec("10.1.2.3"), spec("2001:db8:1::/48")])
    cfg = read_pinned_config(ctx)
    assert cfg.flags & abi.SET_FLAGS == F.NO_V4L24 | F.NO_V6L128 | F.NO_V6L64 | F.NO_V6L32 | F.HAVE_BITS | F.HAVE_OA4
    for s in (0, 1):
        bits, mark = bitmap(ctx, s)
        assert mark == cfg.generation
        assert bits == key_bits(ctx, s) and len(bits) == 2  # fresh sets: no bit without a key
    ids = {v.prefix: v.id for v in d.rules_view().rules}
    drop, other = abi.DlReason.DROP_SRC, abi.DlReason.PASS_NOMATCH
    assert verdicts(ctx, ["10.1.2.3", "10.1.2.4", "10.1.3.3", "2001:db8:1:2::1", "2001:db8:2::1"]) == [
        (1, drop, ids["10.1.2.3/32"]), (2, other, None), (2, other, None),
        (1, drop, ids["2001:db8:1::/48"]), (2, other, None)]

    # a delta: the removed rule's bit may stay (one more lookup), the verdict does not
    d.remove([spec("10.1.2.3")])
    assert read_pinned_config(ctx).flags & F.NO_V4L32 and verdicts(ctx, ["10.1.2.3"]) == [(2, other, None)]
    for s in (0, 1):
        assert key_bits(ctx, s) <= bitmap(ctx, s)[0]


def test_a_set_whose_bits_were_not_kept_is_not_trusted_until_rebuilt(ctx) -> None:
    d = DropList(ctx)
    d.add([spec("192.0.2.1")])
    for s in (0, 1):  # as a writer that changes the sets without the bitmap leaves it
        with _map(ctx, abi.BITS_MAP, s) as m:
            m.update(abi.U32.pack(abi.BITS_MARK), bytes(8))
    d.add([spec("192.0.2.2")])  # a delta: the sets' bits cannot be vouched for
    assert not read_pinned_config(ctx).flags & F.HAVE_BITS
    assert [r[0] for r in verdicts(ctx, ["192.0.2.1", "192.0.2.2", "192.0.2.3"])] == [1, 1, 2]
    d.sync()  # a full write rebuilds both bitmaps
    cfg = read_pinned_config(ctx)
    assert cfg.flags & F.HAVE_BITS and all(bitmap(ctx, s)[1] == cfg.generation for s in (0, 1))
    assert [r[0] for r in verdicts(ctx, ["192.0.2.1", "192.0.2.2", "192.0.2.3"])] == [1, 1, 2]


def test_empty_band_flags_follow_deltas_without_asking_untouched_bands(ctx) -> None:
    """A small change asks only the bands it deletes from; after a run of deltas
    that fill and empty bands, xc_cfg's empty-band flags equal what every
    band of both sets really holds."""
    from xdpctl.core.rules.tables import KernelTables

    d = DropList(ctx)
    steps = [("add", "10.9.0.1"), ("add", "2001:db8:9::/48"), ("add", "10.9.1.0/24"), ("remove", "10.9.0.1"),
             ("add", "2001:db8:9::1"), ("remove", "2001:db8:9::/48"), ("remove", "10.9.1.0/24")]
    bands = int(abi.SET_FLAGS & ~abi.TRUST_FLAGS)
    for op, prefix in steps:
        getattr(d, op)([spec(prefix)])
        cfg = read_pinned_config(ctx)
        with KernelTables(ctx) as kt:
            for s in (0, 1):
                assert presence.empty_bands(kt, s) == cfg.flags & bands, (op, prefix, s)


def test_trie_entries_set_the_bits_they_cover(ctx) -> None:
    """An IPv6 address whose bit is clear is not looked up at all, trie
    included: every trie entry (a length no band has) sets the bits of the
    /27s it covers, from a full write and from a delta alike."""
    d = DropList(ctx)
    d.add([spec("2001:db8:1::1"), spec("2001:db8:a0::/44"), spec("2400::/12")])  # /44 and /12: trie entries
    cfg = read_pinned_config(ctx)
    assert cfg.flags & F.HAVE_BITS and cfg.flags & F.HAVE_V6TRIE
    for s in (0, 1):
        bits, mark = bitmap(ctx, s)
        assert mark == cfg.generation and bits == key_bits(ctx, s)
        assert len(bits) == 1 + (1 << 15)  # the /27 of 2001:db8:: (the /128 and the /44), the /12's 2^15
    ids = {v.prefix: v.id for v in d.rules_view().rules}
    drop, other = abi.DlReason.DROP_SRC, abi.DlReason.PASS_NOMATCH
    assert verdicts(ctx, ["2001:db8:1::1", "2001:db8:a5::1", "240f:ffff::1", "2001:db8:b0::1", "2500::1"]) == [
        (1, drop, ids["2001:db8:1::1/128"]), (1, drop, ids["2001:db8:a0::/44"]), (1, drop, ids["2400::/12"]),
        (2, other, None), (2, other, None)]

    # a delta adds a trie entry in a /27 no key covered: its bit comes with it
    d.add([spec("2a00:4000::/36")])
    assert read_pinned_config(ctx).flags & F.HAVE_BITS
    ids = {v.prefix: v.id for v in d.rules_view().rules}
    for s in (0, 1):
        assert key_bits(ctx, s) <= bitmap(ctx, s)[0]
    assert verdicts(ctx, ["2a00:4000:abc::1", "2500::1"]) == [(1, drop, ids["2a00:4000::/36"]), (2, other, None)]


def test_trie_bits_of_short_prefixes() -> None:
    def key(prefix: str) -> bytes:
        p = spec(prefix).prefix
        return abi.U32.pack(abi.TRIE6_PREFIX_BASE + p.plen) + abi.U32.pack(1) + p.net.to_bytes(16, "big")

    v6 = abi.BITS_V4_BITS + (1 << 24)  # direction 1
    assert presence.trie_bits(key("2001:db8::/32")) == range(v6 + 0x86D, v6 + 0x86D + 1)
    assert presence.trie_bits(key("2400::/12")) == range(v6 + 0x200000, v6 + 0x200000 + (1 << 15))
    assert presence.trie_bits(key("::/2")) == presence.trie_bits(key("2000::/3")) == range(v6, v6 + (1 << 24))


def _bitmaps_made_without_mmap(ctx) -> None:
    """Pin both sets' bitmaps as an xdpctl older than BPF_F_MMAPABLE made
    them: the shared maps made later take them over (a pinned map keeps its
    flags), and the writer has to write their words by syscall."""
    from xdpctl.kernel import libbpf as L

    os.makedirs(ctx.settings.shared_map_dir, exist_ok=True)
    spec_ = abi.MAP_SPECS[abi.BITS_MAP]
    for s in (0, 1):
        fd = L.check(L.bpf_map_create(maps.BPF_MAP_TYPE_ARRAY, b"xc_bits", spec_.key_size, spec_.value_size,
                                      spec_.max_entries, None), "create")
        try:
            maps.obj_pin(fd, os.path.join(ctx.settings.shared_map_dir, abi.set_map(abi.BITS_MAP, s)))
        finally:
            os.close(fd)


@pytest.mark.parametrize("mmapable", [True, False], ids=["mmapped", "by-syscall"])
def test_a_big_list_sets_the_bits_of_its_keys_in_both_sets(make_ctx, mmapable) -> None:
    """A list's hosts written as columns set their bits in the set written
    and in its twin, straight through a mapping of the bitmap, or, in
    bitmaps made before they could be mapped, by batched syscalls; then a
    whole image rebuilds both from their keys the same either way."""
    ctx = make_ctx(xc_rule_stats=65536)  # the probe reads every rule's hits per packet
    if not mmapable:
        _bitmaps_made_without_mmap(ctx)
    rng = random.Random(8)
    hosts = sorted({f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                    for _ in range(6000)})  # ~6000 words: more than add_keys writes one by one
    d = DropList(ctx)
    d.import_list("feed", [spec(h).prefix for h in hosts])
    for s in (0, 1):
        with _map(ctx, abi.BITS_MAP, s) as m:
            assert bool(m.flags & abi.BPF_F_MMAPABLE) is mmapable
    for step in ("columns", "image"):
        cfg = read_pinned_config(ctx)
        assert cfg.flags & F.HAVE_BITS, step
        for s in (0, 1):
            bits, mark = bitmap(ctx, s)
            assert bits == key_bits(ctx, s) and len(bits) > presence.WORDS_ONE_BY_ONE, (step, s)
            assert mark in (cfg.generation, presence.REBUILT), (step, s)
        (feed,) = d.lists_view(with_stats=False).lists
        members = range(feed.id_base, feed.id_base + feed.count)
        got = verdicts(ctx, [hosts[0], hosts[-1], "223.255.255.255"])
        assert [g[:2] for g in got] == [(1, abi.DlReason.DROP_SRC)] * 2 + [(2, abi.DlReason.PASS_NOMATCH)], step
        assert got[0][2] in members and got[1][2] in members and got[2][2] is None, step
        d.sync()
