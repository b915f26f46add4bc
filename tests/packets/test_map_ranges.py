"""Batch reads of ARRAY ranges (xdpctl.kernel.maps.Map.lookup_range) return
exactly the entries asked for, on a real kernel map: the shared rule-hit
array that list statistics are read from."""

from __future__ import annotations

import os

from xdpctl import abi
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
