"""A small list is written as a delta, whatever else is loaded.

Importing, replacing or removing a list of up to BULK_THRESHOLD members
(with the kernel at the stored revision) plans each member's keys with the
SQL index instead of compiling every rule and list: the kernel must end up
exactly where a full compile puts it. The oracle is the full compile:
after every change both rule sets must hold, entry for entry,
the compiled image of the stored state (deadlines aside: each compile
turns a TTL's wall time into kernel time anew). Rules, a big list and
the small lists share prefixes, so members hidden by a rule or by an
earlier list (by name), and members that take over from a later list, all
occur; a TTL list adds fallbacks.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import emulation as emu
from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe, kernel_rule_set
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.rules import clock, index, ruleset
from xdpctl.core.rules import service as svc
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import KernelTables
from xdpctl.core.rules.validate import spec

POOL4 = [f"10.1.{a}.{b}/32" for a in range(4) for b in range(0, 256, 37)] + \
        [f"10.1.{a}.0/24" for a in range(4)] + ["10.1.0.0/16", "10.0.0.0/8", "10.1.2.0/23", "10.1.0.128/25"]
POOL6 = [f"2001:db8:{a}::{b}/128" for a in range(3) for b in range(1, 6)] + \
        [f"2001:db8:{a}::/64" for a in range(3)] + ["2001:db8::/48", "2001:db8::/32", "2001:db8::/40",
                                                      "2001:db8:1::/60"]
POOL = POOL4 + POOL6


@pytest.fixture
def full_syncs(monkeypatch):
    """How many whole-image writes the core made."""
    calls = []
    real = KernelTables.sync_to

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(KernelTables, "sync_to", counted)
    return calls


def _pfx(items):
    return [px.parse_prefix(p) for p in items]


def _assert_in_sync(d: DropList, after: object = None) -> None:
    """Both rule sets hold what a full compile of the stored state gives."""
    want = emu.without_deadlines(emu.tables_to_state(ruleset.compile_stored(d.state)))
    for rule_set in (0, 1):
        assert emu.without_deadlines(kernel_rule_set(d.ctx, rule_set)) == want, (after, rule_set)


op = st.tuples(st.sampled_from(["import", "import", "remove"]), st.sampled_from(["a", "k", "z"]),
               st.lists(st.sampled_from(POOL), max_size=12, unique=True), st.sampled_from(["deny", "allow"]),
               st.sampled_from([None, "1h"]), st.booleans())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.lists(st.sampled_from(POOL), max_size=10, unique=True), seed=st.integers(0, 2**16),
       ops=st.lists(op, min_size=1, max_size=6))
def test_small_list_changes_equal_a_full_compile(ctx, full_syncs, rules, seed, ops) -> None:
    rng = random.Random(seed)
    # a list bigger than the small delta's limit, named between the small ones
    d = _start(ctx, rules, rng, rng.sample(POOL, 20) + [f"10.3.{i >> 8}.{i & 255}/32"
                                                         for i in range(svc.BULK_THRESHOLD)])
    before = len(full_syncs)
    _run_ops(d, rules, ops)
    assert len(full_syncs) == before  # no change of the ops wrote the whole image


def _start(ctx, rules: list, rng: random.Random, big: list) -> DropList:
    """A drop list holding only ``rules`` (random actions) and list "m"."""
    d = DropList(ctx)
    for name in [lst.name for lst in d.lists(with_stats=False)]:
        d.remove_list(name)
    if d.rules(with_stats=False):
        d.remove(ids=[r.id for r in d.rules(with_stats=False)])
    if rules:
        d.add([spec(p, action=rng.choice(["deny", "allow"])) for p in rules])
    d.import_list("m", _pfx(big))
    _assert_in_sync(d)
    return d


def _run_ops(d: DropList, rules: list, ops: list) -> None:
    """Each op, then both sets against the full compile."""
    for kind, name, members, action, ttl, dst in ops:
        if kind == "remove":
            if any(lst.name == name for lst in d.lists(with_stats=False)):
                d.remove_list(name)
        else:
            d.import_list(name, _pfx(members), action=action, ttl=ttl, dst=dst)
        _assert_in_sync(d, (rules, kind, name, members, action, ttl, dst))


def test_a_big_list_of_networks_still_goes_as_a_whole_image(ctx, full_syncs, list_deltas) -> None:
    """More than BULK_THRESHOLD members that are not hosts (each planned
    one by one otherwise): a whole image, to create and to remove."""
    d = DropList(ctx)
    d.import_list("small", _pfx(POOL[:5]))
    assert full_syncs == []
    d.import_list("big", _pfx([f"10.{4 + (i >> 8)}.{i & 255}.0/24" for i in range(svc.BULK_THRESHOLD + 1)]))
    assert len(full_syncs) == 1
    d.remove_list("big")
    assert len(full_syncs) == 2 and list_deltas == []
    _assert_in_sync(d)


def test_a_big_list_takes_a_match_from_a_later_list(ctx) -> None:
    """The whole-image path orders lists by name too, the list being
    imported in its name's place: a big list named before a small one wins
    their shared prefix at once, as the stored state says."""
    d = DropList(ctx)
    d.import_list("z", _pfx(["10.1.0.0/32"]), action="allow")
    d.import_list("b", _pfx(["10.1.0.0/32"] + [f"10.4.{i >> 8}.{i & 255}/32" for i in range(svc.BULK_THRESHOLD)]))
    _assert_in_sync(d)
    with KernelTables(ctx) as kt:
        m = kt.table("xc_v4_l32", kt.found.active)
        v = abi.RULE_VAL.unpack(m.lookup(abi.U32.pack(0) + bytes([10, 1, 0, 0])))
    assert v[:2] == (d.get_list("b").id_base, abi.Action.DENY)


def test_a_small_replace_needs_room_for_its_result_only(make_ctx) -> None:
    """A delta deletes before it writes: a list replaced by as many other
    hosts fits a band that could not hold both, and the kernel drops the
    new hosts only."""
    ctx = make_ctx(xc_v4_l32=64)
    d = DropList(ctx)
    old = [f"10.5.0.{i}/32" for i in range(1, 41)]
    new = [f"10.6.0.{i}/32" for i in range(1, 41)]
    d.import_list("a", _pfx(old))
    d.import_list("a", _pfx(new))  # 40 + 40 > 64; 40 fit
    _assert_in_sync(d)
    with DropListProbe(ctx.settings) as p:
        assert [p.source_match(a)[0] for a in ("10.5.0.7", "10.6.0.7", "10.7.0.7")] == \
            [XDP_PASS, XDP_DROP, XDP_PASS]


def test_members_that_expire_together_get_no_fallback(ctx, monkeypatch) -> None:
    """A /32 inside a /25 of the same TTL list (or of one `add` with a TTL)
    expires with it, so the full compile gives the /32's keys no fallback.
    A change reads the wall clock and the kernel's coarse clock (tick
    resolution) more than once: a delta that converted the members' wall
    deadline with one read and the index's with another gave the /25 a
    deadline up to a tick later than the /32's, hence a fallback, now and
    then. Here the kernel clock runs 50 ms (more than a tick) ahead at
    each read, so every second read shows that; the kernel must still hold
    the full compile, fallbacks included."""
    ticks, real = itertools.count(), clock.kernel_ns

    def skewed() -> int:
        return real() + 50_000_000 * next(ticks)

    monkeypatch.setattr(clock, "kernel_ns", skewed)  # every read in the core, wherever it happens
    monkeypatch.setattr(index, "kernel_ns", skewed)
    d = DropList(ctx)
    d.import_list("a", _pfx(["10.1.0.128/25", "10.1.0.148/32"]), ttl="1h")
    d.add([spec("10.2.0.0/25", ttl="1h"), spec("10.2.0.5/32", ttl="1h")])
    _assert_in_sync(d)
    with KernelTables(ctx) as kt:
        m = kt.table("xc_v4_l32", kt.found.active)
        for addr in ([10, 1, 0, 148], [10, 2, 0, 5]):
            v = abi.RULE_VAL.unpack(m.lookup(abi.U32.pack(0) + bytes(addr)))
            assert v[2] == 32 and v[5:8] == (0, 0, 0), (addr, v)  # the /32, no fallback


@pytest.fixture
def list_deltas(monkeypatch):
    """The list changes written as a delta beyond BULK_THRESHOLD
    (listdelta.split answered), and how many of their members were alone."""
    from xdpctl.core.rules import listdelta

    taken = []
    real = listdelta.split

    def counted(*a, **k):
        sp = real(*a, **k)
        if sp is not None:
            taken.append(sp.alone)
        return sp

    monkeypatch.setattr(listdelta, "split", counted)
    return taken


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.lists(st.sampled_from(POOL), max_size=10, unique=True), seed=st.integers(0, 2**16),
       ops=st.lists(op, min_size=1, max_size=6))
def test_big_list_changes_equal_a_full_compile(ctx, monkeypatch, list_deltas, rules, seed, ops) -> None:
    """Past BULK_THRESHOLD (here 4), a list change beside much more than it
    changes is split: hosts nothing else touches are written directly, the
    other members are planned one by one. Same oracle as the small changes:
    both sets hold the full compile of the stored state after every change,
    with rules, an earlier and a later list sharing prefixes with the list,
    hosts inside its own shorter members, TTLs and both directions."""
    monkeypatch.setattr(svc, "BULK_THRESHOLD", 4)
    monkeypatch.setattr(svc, "LIST_DELTA_RATIO", 1)
    rng = random.Random(seed)
    d = _start(ctx, rules, rng, rng.sample(POOL, 12) + [f"10.3.0.{i}/32" for i in range(40)])
    _run_ops(d, rules, ops)


def test_list_deltas_are_taken_and_hold_alone_hosts(ctx, monkeypatch, list_deltas) -> None:
    """The property above takes the split path, with alone hosts, for a
    fixed mix too (a guard that it does not quietly fall back)."""
    monkeypatch.setattr(svc, "BULK_THRESHOLD", 6)  # the replace plans 5 members one by one
    monkeypatch.setattr(svc, "LIST_DELTA_RATIO", 1)
    d = DropList(ctx)
    d.add([spec("10.1.0.0/32"), spec("10.1.0.128/25", action="allow")])
    d.import_list("m", _pfx([f"10.3.0.{i}/32" for i in range(40)] + ["10.1.1.0/32"]))
    d.import_list("k", _pfx(["10.1.0.0/32", "10.1.0.148/32", "10.1.1.0/32", "10.1.2.0/24", "2001:db8::1/128"]
                            + [f"10.4.0.{i}/32" for i in range(6)]))
    _assert_in_sync(d)
    d.import_list("k", _pfx(["10.1.0.185/32", "2001:db8::2/128"] + [f"10.4.0.{i}/32" for i in range(3, 12)]))
    _assert_in_sync(d)
    d.remove_list("k")
    _assert_in_sync(d)
    # m created: its 41 hosts (nothing else touches them); k created: 6 10.4 hosts + the IPv6 host;
    # replaced: those 7 out, 9 + 1 in; removed: those 10
    assert list_deltas == [41, 7, 17, 10]


def test_a_big_list_beside_a_bigger_one_is_a_delta(ctx, full_syncs, list_deltas) -> None:
    """At the real thresholds: a 2,500-host list created, replaced and
    removed beside 20,000 other members writes no whole image, and the
    kernel holds the full compile each time; a dropped host passes once its
    list no longer has it."""
    d = DropList(ctx)
    d.import_list("big", _pfx([f"10.20.{i >> 8}.{i & 255}/32" for i in range(20_000)]))
    first = [f"10.30.{i >> 8}.{i & 255}/32" for i in range(2_500)]
    second = [f"10.30.{i >> 8}.{i & 255}/32" for i in range(1_000, 3_600)]
    d.import_list("feed", _pfx(first))
    _assert_in_sync(d)
    with DropListProbe(ctx.settings) as p:
        assert [p.source_match(a)[0] for a in ("10.30.0.5", "10.30.13.0", "10.20.3.3")] == \
            [XDP_DROP, XDP_PASS, XDP_DROP]
    d.import_list("feed", _pfx(second))
    _assert_in_sync(d)
    with DropListProbe(ctx.settings) as p:
        assert [p.source_match(a)[0] for a in ("10.30.0.5", "10.30.13.0", "10.30.5.0", "10.20.3.3")] == \
            [XDP_PASS, XDP_DROP, XDP_DROP, XDP_DROP]
    d.remove_list("feed")
    _assert_in_sync(d)
    with DropListProbe(ctx.settings) as p:
        assert [p.source_match(a)[0] for a in ("10.30.13.0", "10.20.3.3")] == [XDP_PASS, XDP_DROP]
    assert full_syncs == []  # not even for "big", made beside nothing
    assert list_deltas == [20_000, 2_500, 5_100, 2_600]
