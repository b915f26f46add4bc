"""Zeroing rule statistics touches exactly the ids asked for, whether a
short list (written from here) or a long range (zeroed in the kernel);
replacing a list zeroes its old ids' hits and nothing else."""

from __future__ import annotations

import pytest

from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.rules import tables
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import KernelTables
from xdpctl.core.rules.validate import spec


def fill(kt: KernelTables, lo: int, n: int) -> None:
    """Give ids lo .. lo + n - 1 hits that differ per id."""
    ks = b"".join(abi.U32.pack(i) for i in range(lo, lo + n))
    vs = b"".join(abi.RULE_STATS.pack(i, 2 * i, 3, 4, 5, 6, 7 * i) for i in range(lo, lo + n))
    kt["xc_rule_stats"].update_batch(ks, vs, n)


def stats(kt: KernelTables, lo: int, n: int) -> list[tuple]:
    return [abi.RULE_STATS.unpack(v[:abi.RULE_STATS.size]) for _i, v in kt["xc_rule_stats"].lookup_range(lo, n)]


@pytest.mark.parametrize("n", [5, tables.ZERO_IN_KERNEL + 13], ids=["few", "range-in-kernel"])
def test_zero_stats_zeroes_exactly_the_range(ctx, n: int) -> None:
    lo = 1000
    with KernelTables(ctx) as kt:
        fill(kt, lo - 2, n + 4)
        before = stats(kt, lo - 2, n + 4)
        kt.zero_stats(range(lo, lo + n))
        after = stats(kt, lo - 2, n + 4)
    assert after[:2] == before[:2] and after[-2:] == before[-2:]
    assert after[2:-2] == [(0,) * 7] * n


def test_replacing_a_list_zeroes_the_hits_of_its_old_ids(ctx) -> None:
    d = DropList(ctx)
    n = tables.ZERO_IN_KERNEL + 100
    d.add([spec("192.0.2.1")])
    d.import_list("big", [px.parse_prefix(f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}") for i in range(n)])
    spans = {v.name: (v.id_base, v.count) for v in d.lists(with_stats=False)}
    single = {v.prefix: v.id for v in d.rules_view(with_stats=False).rules}["192.0.2.1/32"]
    lo = spans["big"][0]
    with KernelTables(ctx) as kt:
        fill(kt, lo, n)
        fill(kt, single, 1)
        kept = stats(kt, single, 1)
    d.import_list("big", [px.parse_prefix("10.200.0.1")])
    with KernelTables(ctx) as kt:
        assert stats(kt, lo, n) == [(0,) * 7] * n
        assert stats(kt, single, 1) == kept
