"""A full write gives the twin set the standby set's presence bitmap
word for word (copied in the kernel, either direction), and the data path
reading the twin still finds every rule and nothing else."""

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
    assert junk not in bits_of(b) and key_bits(ctx, 1) == key_bits(ctx, 0) <= bits_of(b)

    ids = {v.prefix: v.id for v in d.rules_view(list_name="twin").rules}
    probe = ["10.7.9.9", "2001:db8:9::5", "10.7.0.1", "2001:db8:7::1", "203.0.113.77"]
    want = [(1, DROP, ids["10.7.9.9/32"]), (1, DROP, ids["2001:db8:9::/48"])] + [(2, MISS, None)] * 3
    assert verdicts_in(ctx, 1, probe) == want  # the twin, read as the data path reads it after the next flip
