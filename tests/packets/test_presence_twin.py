"""A full write gives the twin set the standby set's presence bitmap
word for word (copied in the kernel, either direction), and the data path
reading the twin still finds every rule and nothing else. A full write
rebuilds the bitmap exactly (the bits of keys it deleted go), and a full
write that fails after that puts the old keys' bits back with the keys."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.support.progs import DropListProbe
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.rules import presence, service
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import read_pinned_config
from xdpctl.kernel import maps

F = abi.CfgFlag
DROP, MISS = abi.DlReason.DROP_SRC, abi.DlReason.PASS_NOMATCH


@pytest.fixture
def ctx(make_ctx):
    """The suite's context with a small rule-stats array: the probe reads
    its own whole array around every packet."""
    return make_ctx(xc_rule_stats=65536)


def _bits_map(ctx, rule_set: int) -> maps.Map:
    return maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(abi.BITS_MAP, rule_set)))


def words(ctx, rule_set: int) -> bytes:
    """Every word of one set's bitmap, the mark word last."""
    with _bits_map(ctx, rule_set) as m:
        keys, vals, n = m.dump()
    assert n == abi.BITS_WORDS + 1
    return vals[:n * 8]


def set_bit(ctx, rule_set: int, bit: int) -> None:
    with _bits_map(ctx, rule_set) as m:
        k = abi.U32.pack(bit >> 6)
        old = int.from_bytes(m.lookup(k)[:8], "little")
        m.update(k, (old | 1 << (bit & 63)).to_bytes(8, "little"))


def key_bits(ctx, rule_set: int) -> set[int]:
    out = set()
    for band in presence.BANDS:
        with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(band, rule_set))) as m:
            out.update(presence.bit_of(band, k) for k in m.keys())
    with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(presence.TRIE, rule_set))) as m:
        for k in m.keys():
            out.update(presence.trie_bits(k))
    return out


def bits_of(raw: bytes) -> set[int]:
    """The bits set in a bitmap's words (the mark word left out)."""
    w = np.frombuffer(raw, "<u8", abi.BITS_WORDS)
    return {int(i) * 64 + b for i in np.flatnonzero(w) for b in range(64) if int(w[i]) >> b & 1}


def mark_of(raw: bytes) -> int:
    return int.from_bytes(raw[abi.BITS_MARK * 8:abi.BITS_MARK * 8 + 8], "little")


def verdicts_in(ctx, rule_set: int, addrs: list[str]) -> list[tuple[int, abi.DlReason, int | None]]:
    """The kernel's answers reading ``rule_set`` with the flags xc_cfg has."""
    with DropListProbe(ctx.settings) as probe:
        cfg = read_pinned_config(ctx)
        with probe.loaded.map("xc_cfg") as m:
            m.update(abi.U32.pack(0), abi.pack_config(int(abi.Policy.ALLOW),
                                                      cfg.flags & int(F.HAVE_V6TRIE | abi.SET_FLAGS), 0, rule_set))
        return [probe.source_match(a) for a in addrs]


def _import(d: DropList, prefixes: list[str]):
    return d.import_list("twin", [px.parse_prefix(p) for p in prefixes])


def test_a_full_write_copies_the_bitmap_to_the_twin_word_for_word(ctx, monkeypatch) -> None:
    monkeypatch.setattr(service, "BULK_THRESHOLD", 0)  # these small imports go as whole images, not deltas
    d = DropList(ctx)
    _import(d, ["10.7.0.1", "10.7.0.2", "2001:db8:7::1", "2001:db8:8::/48"])
    cfg = read_pinned_config(ctx)
    assert cfg.active == 1 and cfg.flags & F.HAVE_BITS  # set B written, its bitmap copied into set A
    a = words(ctx, 0)
    assert a == words(ctx, 1) and mark_of(a) == cfg.generation
    assert bits_of(a) == key_bits(ctx, 0) == key_bits(ctx, 1) and len(bits_of(a)) == 2  # a bit per /24, per IPv6 /27

    # a bit only set B has: the next change writes set A, then copies A's bitmap into B
    junk = presence.bit_of("xc_v4_l32", bytes(4) + bytes([203, 0, 113, 77]))
    set_bit(ctx, 1, junk)
    _import(d, ["10.7.0.2", "10.7.9.9", "2001:db8:9::/48"])
    cfg = read_pinned_config(ctx)
    assert cfg.active == 0 and cfg.flags & F.HAVE_BITS
    b = words(ctx, 1)
    assert b == words(ctx, 0) and mark_of(b) == cfg.generation
    assert junk not in bits_of(b) and key_bits(ctx, 1) == key_bits(ctx, 0) == bits_of(b)

    ids = {v.prefix: v.id for v in d.rules_view(list_name="twin").rules}
    probe = ["10.7.9.9", "2001:db8:9::5", "10.7.0.1", "2001:db8:7::1", "203.0.113.77"]
    want = [(1, DROP, ids["10.7.9.9/32"]), (1, DROP, ids["2001:db8:9::/48"])] + [(2, MISS, None)] * 3
    assert verdicts_in(ctx, 1, probe) == want  # the twin, read as the data path reads it after the next flip


OLD = ["10.1.0.1", "10.1.1.1", "2001:db8:1::1", "2400::/12"]  # the /12: a trie entry, 2^15 bits
NEW = ["10.2.0.1", "10.2.1.1", "2001:db8:2::1"]


@pytest.fixture
def full_writes(monkeypatch):
    """Every change a whole image (no delta): its bitmap is rebuilt."""
    monkeypatch.setattr(service, "BULK_THRESHOLD", 0)


def test_a_replace_clears_the_bits_of_the_keys_it_deleted(ctx, full_writes) -> None:
    d = DropList(ctx)
    _import(d, OLD)
    _import(d, NEW)
    cfg = read_pinned_config(ctx)
    for s in (0, 1):
        raw = words(ctx, s)
        assert bits_of(raw) == key_bits(ctx, s) and len(bits_of(raw)) == 3 and mark_of(raw) == cfg.generation
    ids = {v.prefix: v.id for v in d.rules_view(list_name="twin").rules}
    assert verdicts_in(ctx, cfg.active, ["10.2.1.1", "2001:db8:2::1", "10.1.1.1", "2400:1::1"]) == [
        (1, DROP, ids["10.2.1.1/32"]), (1, DROP, ids["2001:db8:2::1/128"]), (2, MISS, None), (2, MISS, None)]


def test_a_full_write_failing_after_its_rebuild_gives_the_old_keys_their_bits_back(ctx, full_writes, monkeypatch) -> None:
    from xdpctl.core.rules.store import State

    d = DropList(ctx)
    _import(d, OLD)
    before = read_pinned_config(ctx)
    standby = 1 - before.active
    old_bits = key_bits(ctx, standby)
    assert bits_of(words(ctx, standby)) == old_bits and len(old_bits) == 3 + (1 << 15)

    def no_room(self, row, keys):  # the database side fails once the kernel side (bitmap included) is done
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m, pytest.raises(OSError, match="No space left"):
        m.setattr(State, "replace_list", no_room)
        _import(d, NEW)
    cfg = read_pinned_config(ctx)
    assert cfg == before  # the active set, the revision and the standby's "in sync" as found
    raw = words(ctx, standby)
    assert key_bits(ctx, standby) == old_bits == bits_of(raw) and mark_of(raw) == presence.REBUILT
    ids = {v.prefix: v.id for v in d.rules_view(list_name="twin").rules}
    # the set the next change writes and makes active, read as the data path will
    assert verdicts_in(ctx, standby, ["10.1.1.1", "2001:db8:1::1", "2400:1::1", "10.2.1.1"]) == [
        (1, DROP, ids["10.1.1.1/32"]), (1, DROP, ids["2001:db8:1::1/128"]), (1, DROP, ids["2400::/12"]),
        (2, MISS, None)]
