"""The IPv4 host table (xc_v4_oa, xdpctl.core.rules.hosts4) in the kernel:
the data path's answers through it are the band's, for simple entries,
entries only the band can answer (a deadline, a fallback, a full bucket),
dead rule ids and changed values; it is trusted (XC_CFG_HAVE_OA4) only
while it mirrors the active set, is switched off with a change that
rewrites a set whole and on again once the catch-up has rebuilt it, and a
table a writer did not keep is not trusted until rebuilt."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from tests.support.progs import DropListProbe, crowded_hosts, host_bucket, host_table_problems
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.rules import hosts4
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import KernelTables, kernel_health, read_pinned_config
from xdpctl.core.rules.validate import spec

F = abi.CfgFlag
DROP, ALLOW, MISS = abi.DlReason.DROP_SRC, abi.DlReason.PASS_ALLOW, abi.DlReason.PASS_NOMATCH


def bucket(addr: str) -> int:
    return host_bucket(int(ipaddress.IPv4Address(addr)))


def crowd(n: int, seed: int) -> list[str]:
    """n addresses that share one bucket."""
    return [str(ipaddress.IPv4Address(a)) for a in crowded_hosts(n, seed)]


def answers(ctx, addrs: list[str]) -> list[tuple[int, abi.DlReason, int | None]]:
    """The kernel's answers through the host table, checked against the
    band's (the same probe without it)."""
    with DropListProbe(ctx.settings, host_table=True) as oa, DropListProbe(ctx.settings) as band:
        got = [oa.source_match(a) for a in addrs]
        assert got == [band.source_match(a) for a in addrs]
    return got


@pytest.fixture
def ctx(make_ctx):
    return make_ctx(xc_rule_stats=65536)  # probes read every rule's hits per packet


def test_the_table_answers_as_the_band(ctx) -> None:
    d = DropList(ctx)
    busy = crowd(6, 1)  # one bucket of four slots asked for six hosts
    # a /32 with a deadline over a /30 of the same band: a value with a fallback
    d.add([spec(a) for a in busy] + [spec("192.0.2.0/30"), spec("198.51.100.7", ttl="1h"), spec("198.51.100.4/30"),
                                     spec("203.0.113.9", action="allow"), spec("203.0.113.0/24")])
    cfg = read_pinned_config(ctx)
    assert cfg.flags & F.HAVE_OA4 and host_table_problems(ctx) == {}
    ids = {v.prefix: v.id for v in d.rules_view().rules}
    probe = busy + ["192.0.2.2", "198.51.100.7", "203.0.113.9", "203.0.113.10", "10.255.255.254"]
    got = answers(ctx, probe)
    assert got[:6] == [(1, DROP, ids[f"{a}/32"]) for a in busy]
    assert got[6] == (1, DROP, ids["192.0.2.0/30"])
    assert got[7] == (1, DROP, ids["198.51.100.7/32"]) and got[8] == (2, ALLOW, ids["203.0.113.9/32"])
    assert got[9] == (1, DROP, ids["203.0.113.0/24"]) and got[10] == (2, MISS, None)
    with KernelTables(ctx) as kt, hosts4.opened(kt, cfg.active) as buf:
        assert struct.unpack_from("=I", buf, bucket(busy[0]) * 64 + 48)[0] == 1  # the full bucket overflowed

    # deltas: a removed host, a changed action, a host added to the full bucket
    d.remove([spec(busy[0]), spec("192.0.2.0/30")])
    d.add([spec(busy[1], action="allow"), spec(crowd(7, 1)[6])], update=True)
    assert read_pinned_config(ctx).flags & F.HAVE_OA4 and host_table_problems(ctx) == {}
    ids = {v.prefix: v.id for v in d.rules_view().rules}
    got = answers(ctx, [busy[0], busy[1], "192.0.2.2", crowd(7, 1)[6]])
    assert got == [(2, MISS, None), (2, ALLOW, ids[f"{busy[1]}/32"]), (2, MISS, None),
                   (1, DROP, ids[f"{crowd(7, 1)[6]}/32"])]


def test_a_whole_image_turns_the_table_off_until_the_catch_up_rebuilds_it(service_ctx) -> None:
    ctx = service_ctx
    d = DropList(ctx)
    old = crowd(6, 2) + [f"10.7.{i // 250}.{i % 250 + 1}" for i in range(3000)]  # a full bucket, kept in new
    new = [f"10.8.{i // 250}.{i % 250 + 1}" for i in range(2000)] + old[:1000]
    d.import_list("feed", [px.parse_prefix(a) for a in old])
    assert d.catch_up()
    assert read_pinned_config(ctx).flags & F.HAVE_OA4 and host_table_problems(ctx) == {}
    # the list replaced: its old hosts left under dead ids past the flip
    d.import_list("feed", [px.parse_prefix(a) for a in new])
    cfg = read_pinned_config(ctx)
    assert not cfg.flags & F.HAVE_OA4 and cfg.dead_count > 0  # the new set's table mirrors nothing yet
    assert kernel_health(ctx).host_table is False
    assert [r[1] for r in answers(ctx, [old[0], old[-1], new[0]])] == [DROP, MISS, DROP]
    assert d.catch_up()
    cfg = read_pinned_config(ctx)
    assert cfg.flags & F.HAVE_OA4 and cfg.dead_count == 0 and host_table_problems(ctx) == {}
    assert kernel_health(ctx).host_table is True
    assert [r[1] for r in answers(ctx, [old[0], old[-1], new[0], "10.9.0.1"])] == [DROP, MISS, DROP, MISS]
    with KernelTables(ctx) as kt:
        for s in (0, 1):  # rebuilt (active) and copied: a bucket the rebuild found full is not wear
            assert hosts4.mark(kt, s) == cfg.generation and hosts4.wear(kt, s) == 0
        with hosts4.opened(kt, cfg.active) as buf:
            assert struct.unpack_from("=I", buf, bucket(crowd(6, 2)[0]) * 64 + 48)[0] == 1
    d.add([spec("192.0.2.77")])  # a small change keeps both tables
    d.catch_up()
    assert read_pinned_config(ctx).flags & F.HAVE_OA4 and host_table_problems(ctx) == {}


def test_a_table_that_was_not_kept_is_not_trusted_until_rebuilt(service_ctx) -> None:
    ctx = service_ctx
    d = DropList(ctx)
    d.add([spec("192.0.2.1"), spec("192.0.2.2")])
    d.catch_up()
    with KernelTables(ctx) as kt:  # as a writer that knows nothing of the tables leaves them
        for s in (0, 1):
            hosts4.set_mark(kt, s, 0)
    d.add([spec("192.0.2.3")])
    assert not read_pinned_config(ctx).flags & F.HAVE_OA4
    assert [r[1] for r in answers(ctx, ["192.0.2.1", "192.0.2.3", "192.0.2.4"])] == [DROP, DROP, MISS]
    d.catch_up()
    cfg = read_pinned_config(ctx)
    assert cfg.flags & F.HAVE_OA4 and host_table_problems(ctx) == {}
    assert [r[1] for r in answers(ctx, ["192.0.2.1", "192.0.2.3", "192.0.2.4"])] == [DROP, DROP, MISS]


def test_health_reports_the_tables_wear_since_its_rebuild(ctx) -> None:
    """kernel_health reads the active set's mark bucket: a host added to a
    full bucket overflows it, a deleted or changed host leaves a dead slot;
    both stay counted until the table is rebuilt."""
    d = DropList(ctx)
    busy = crowd(5, 3)
    d.add([spec(a) for a in busy[:4]])
    h = kernel_health(ctx)
    assert h.host_table and h.host_table_wear == (0, 0)
    d.add([spec(busy[4])])  # the bucket's four slots are taken
    assert kernel_health(ctx).host_table_wear == (0, 1)
    d.remove([spec(busy[0])])
    d.add([spec(busy[1], action="allow")], update=True)
    assert kernel_health(ctx).host_table_wear == (2, 1)
    assert host_table_problems(ctx) == {}
