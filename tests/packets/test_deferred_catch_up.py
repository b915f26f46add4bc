"""The service answers a whole-image change once it is live and writes the
other rule set afterwards (Context.defer_catch_up, DropList.catch_up): in
between, xc_cfg names the new revision's set and marks the other one
DEFERRED (stale, untouched since), and the data path enforces the new
revision. The catch-up replays the standby set's writes; when a writer that
died in between has marked the set STALE, it compares the set with the
image entry by entry instead, so whatever that writer left in it goes; a
change by another writer in between makes it moot (that writer rewrote the
set). Every way, both sets end up holding the compile of the stored state,
and health says so."""

from __future__ import annotations

import ipaddress
import os

import pytest

from tests.support import emulation as emu
from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe, kernel_rule_set, split_dead
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.context import Context
from xdpctl.core.rules import builder, ruleset, service, tables
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import DEFERRED, STALE, KernelTables, kernel_health, read_pinned_config
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import bpffs, maps

DROP, MISS = abi.DlReason.DROP_SRC, abi.DlReason.PASS_NOMATCH
FEED = ["10.3.0.1", "10.3.0.2", "10.3.1.0/24", "2001:db8:3::1"]


@pytest.fixture
def ctx(service_ctx):
    """The service's kind of context; every change here is a whole image."""
    return service_ctx


def _compiled(ctx) -> dict:
    return emu.tables_to_state(ruleset.compile_stored(DropList(ctx).state))


def _both_hold_the_compile(ctx) -> None:
    cfg = read_pinned_config(ctx)
    assert cfg.synced == cfg.generation == DropList(ctx).revision()
    want = _compiled(ctx)
    assert kernel_rule_set(ctx, 0) == want and kernel_rule_set(ctx, 1) == want
    assert kernel_health(ctx, cfg.generation).in_sync


def _verdict(ctx, addr: str) -> tuple[int, abi.DlReason]:
    with DropListProbe(ctx.settings) as probe:
        retval, reason, _rid = probe.source_match(addr)
    return retval, reason


def _stale_after_import(ctx) -> tuple[DropList, abi.Config, abi.Config]:
    """A list imported with its catch-up deferred: (drop list, xc_cfg
    before, after)."""
    d = DropList(ctx)
    d.add([spec("192.0.2.1")])
    assert d.catch_up() is True
    before = read_pinned_config(ctx)
    rev = d.import_list("feed", [px.parse_prefix(p) for p in FEED]).revision
    after = read_pinned_config(ctx)
    assert ctx.pending_catch_up is not None
    assert (after.generation, after.active, after.synced) == (rev, 1 - before.active, DEFERRED)
    return d, before, after


def test_a_deferred_change_is_enforced_before_its_catch_up(ctx, monkeypatch) -> None:
    d, before, after = _stale_after_import(ctx)
    want = _compiled(ctx)
    assert kernel_rule_set(ctx, after.active) == want  # the new revision, whole
    assert kernel_rule_set(ctx, before.active) != want  # the other set: still the old one
    assert _verdict(ctx, "10.3.1.77") == (XDP_DROP, DROP) and _verdict(ctx, "2001:db8:3::1") == (XDP_DROP, DROP)
    assert _verdict(ctx, "10.3.2.1") == (XDP_PASS, MISS)
    h = kernel_health(ctx, after.generation)
    assert h.in_sync is False and "is catching it up" in h.detail

    def no_compare(*_a):
        raise AssertionError("an untouched set is caught up by replaying the standby set's writes")

    with monkeypatch.context() as m:
        m.setattr(tables, "diff_entries", no_compare)
        assert d.catch_up() is True and ctx.pending_catch_up is None
    _both_hold_the_compile(ctx)
    assert d.catch_up() is False  # nothing left


def test_a_catch_up_rewrites_what_a_dead_writer_left_in_the_stale_set(ctx) -> None:
    d, before, _after = _stale_after_import(ctx)
    stale = before.active
    with KernelTables(ctx) as kt:  # a writer's first step: the set it writes is marked STALE
        kt._begin_write()
    assert read_pinned_config(ctx).synced == STALE
    path = os.path.join(ctx.settings.shared_map_dir, abi.set_map("xc_v4_l32", stale))
    with maps.Map.from_pin(path) as m:  # then killed mid-write: a key no image has
        junk = abi.U32.pack(0) + bytes([203, 0, 113, 9])
        m.update(junk, next(iter(m.items()))[1])
    assert d.catch_up() is True
    _both_hold_the_compile(ctx)
    with maps.Map.from_pin(path) as m:
        assert m.lookup(junk) is None


def test_a_change_by_another_writer_makes_a_deferred_catch_up_moot(ctx) -> None:
    d, _before, after = _stale_after_import(ctx)
    other = Context(ctx.settings)  # another process's writer (the CLI): no deferral, finds the set stale
    try:
        DropList(other).add([spec("198.51.100.7")])
    finally:
        other.close()
    cfg = read_pinned_config(ctx)
    assert cfg.generation == after.generation + 1 and cfg.synced == cfg.generation
    assert d.catch_up() is False and ctx.pending_catch_up is None
    _both_hold_the_compile(ctx)
    assert _verdict(ctx, "198.51.100.7") == (XDP_DROP, DROP) and _verdict(ctx, "10.3.0.2") == (XDP_DROP, DROP)


def test_a_failed_deferred_catch_up_leaves_the_set_stale_for_the_next_change(ctx, monkeypatch) -> None:
    d, _before, after = _stale_after_import(ctx)

    def no_room(*_a, **_k):
        raise OSError(12, "Cannot allocate memory")

    with monkeypatch.context() as m:
        m.setattr(tables, "_sync_set", no_room)
        assert d.catch_up() is False
    cfg = read_pinned_config(ctx)
    assert (cfg.generation, cfg.synced) == (after.generation, STALE)
    h = kernel_health(ctx, after.generation)
    assert h.in_sync is False and "a write did not finish" in h.detail
    assert _verdict(ctx, "10.3.0.2") == (XDP_DROP, DROP)  # the active set is untouched
    d.add([spec("198.51.100.8")])  # finds the set stale: a whole image, compared with what it holds
    assert d.catch_up() is True
    _both_hold_the_compile(ctx)


@pytest.fixture
def delta_ctx(make_ctx, monkeypatch):
    """The service's kind of context where a list change beside a bigger
    list is a delta (listdelta) whose one plan is deferred like an image."""
    return _delta_ctx(make_ctx, monkeypatch)


def _delta_ctx(make_ctx, monkeypatch, **capacity) -> Context:
    monkeypatch.setattr(service, "BULK_THRESHOLD", 4)
    monkeypatch.setattr(service, "LIST_DELTA_RATIO", 1)
    monkeypatch.setattr(tables, "DEFER_PLAN_MIN", 1)
    c = make_ctx(xc_rule_stats=65536, **capacity)
    c.defer_catch_up = True
    d = DropList(c)
    d.import_list("big", [px.parse_prefix(f"10.9.0.{i}") for i in range(60)])
    assert d.catch_up() is True
    return c


def _deferred_delta(ctx, ttl: str | None = None) -> tuple[DropList, abi.Config]:
    """A list replaced beside a bigger one: a delta, its catch-up deferred.
    Its alone hosts go as columns, then its /24 as a plan; with a TTL on
    the list (old values not known to the byte), all of it as one plan."""
    d = DropList(ctx)
    d.import_list("feed", [px.parse_prefix(p) for p in ("10.3.0.9", "10.3.0.10")], ttl=ttl)
    assert d.catch_up() is True
    res = d.import_list("feed", [px.parse_prefix(p) for p in FEED + ["10.3.0.3", "10.3.0.4", "10.3.0.5"]], ttl=ttl)
    assert "as a delta (8 hosts directly)" in res.notes[0], res.notes  # 2 out, 6 in; the /24 is planned
    after = read_pinned_config(ctx)
    wrote = ctx.pending_catch_up.wrote
    assert after.synced == DEFERRED
    if ttl is None:
        assert len(wrote) == 2 and wrote[0][0] is None and isinstance(wrote[1], service.dlc.Plan)
    else:
        assert len(wrote) == 1 and isinstance(wrote[0], service.dlc.Plan)
    return d, after


@pytest.mark.parametrize("ttl", [None, "1h"])
def test_a_deferred_list_delta_is_replayed(delta_ctx, monkeypatch, ttl) -> None:
    """Without a TTL the old version's two hosts stay in the set made
    active, under the dead ids xc_cfg names with the flip (read as absent),
    until the catch-up deletes them; with one (columns not used) the plan
    deleted them before the flip."""
    d, after = _deferred_delta(delta_ctx, ttl)
    live, dead = split_dead(kernel_rule_set(delta_ctx, after.active), after)
    assert emu.without_deadlines(live) == emu.without_deadlines(_compiled(delta_ctx))
    if ttl is None:  # the old version's two ids; the new version's seven come after them
        new_base, _n = d.state.list_span("feed")
        assert after.dead_count == 2 and after.dead_base + 2 <= new_base
        assert sorted(dead) == ["xc_v4_l32"] and sorted(dead["xc_v4_l32"]) == \
            sorted(abi.KEY4.pack(0, ipaddress.ip_address(a).packed) for a in ("10.3.0.9", "10.3.0.10"))
    else:
        assert dead == {} and after.dead_count == 0
    assert _verdict(delta_ctx, "10.3.0.4") == (XDP_DROP, DROP) and _verdict(delta_ctx, "10.3.1.9") == (XDP_DROP, DROP)
    assert _verdict(delta_ctx, "10.3.0.9") == (XDP_PASS, MISS)  # the old version's host: gone, wherever its entry is

    def no_compare(*_a):
        raise AssertionError("an untouched set replays the plan, it is not compared")

    with monkeypatch.context() as m:
        m.setattr(tables, "diff_entries", no_compare)
        assert d.catch_up() is True
    cfg = read_pinned_config(delta_ctx)
    assert cfg.synced == cfg.generation and kernel_health(delta_ctx, cfg.generation).in_sync
    assert cfg.dead_count == 0 and _verdict(delta_ctx, "10.3.0.9") == (XDP_PASS, MISS)
    want = emu.without_deadlines(_compiled(delta_ctx))
    assert [emu.without_deadlines(kernel_rule_set(delta_ctx, s)) for s in (0, 1)] == [want, want]


@pytest.mark.parametrize("ttl", [None, "1h"])
def test_a_deferred_list_delta_leaves_a_stale_set_to_the_next_change(delta_ctx, ttl) -> None:
    """A plan replays onto an untouched set only: once a writer that died
    marked the set STALE (it may hold anything), the catch-up writes
    nothing and the next change rewrites that set whole."""
    d, after = _deferred_delta(delta_ctx, ttl)
    with KernelTables(delta_ctx) as kt:
        kt._begin_write()
    assert d.catch_up() is False
    cfg = read_pinned_config(delta_ctx)
    assert (cfg.generation, cfg.synced) == (after.generation, STALE)
    assert _verdict(delta_ctx, "10.3.0.4") == (XDP_DROP, DROP)  # the active set is untouched
    d.add([spec("198.51.100.9")])
    assert d.catch_up() is True
    cfg = read_pinned_config(delta_ctx)
    assert cfg.synced == cfg.generation and kernel_health(delta_ctx, cfg.generation).in_sync
    want = emu.without_deadlines(_compiled(delta_ctx))
    assert [emu.without_deadlines(kernel_rule_set(delta_ctx, s)) for s in (0, 1)] == [want, want]


@pytest.mark.parametrize("gone", ["before the open", "between the listing and the opens"])
def test_a_catch_up_whose_pins_go_under_it_creates_nothing(ctx, monkeypatch, gone) -> None:
    """An operator removes the pin directory while a catch-up starts (the
    CLI's child, the service's thread): the catch-up finds the pins gone,
    at whichever step, and writes and creates nothing, no pin directory
    with a partial set of new empty maps."""
    _stale_after_import(ctx)
    job, ctx.pending_catch_up = ctx.pending_catch_up, None
    shared = ctx.settings.shared_map_dir
    child = Context(ctx.settings)  # the child's own context: nothing opened yet
    real = Context.pins_in

    def racing(self, directory):
        pins = real(self, directory)  # what the catch-up read; then the operator's rm -rf
        ctx.close()
        bpffs.remove_tree(ctx.settings.pin_dir)
        return pins if gone == "between the listing and the opens" else real(self, directory)

    monkeypatch.setattr(Context, "pins_in", racing)
    try:
        assert tables.run_catch_up(child, job) is False
    finally:
        child.close()
    assert not os.path.exists(shared) and not os.path.exists(ctx.settings.pin_dir)


def test_pins_removed_while_a_catch_up_writes_are_not_made_again(ctx, monkeypatch) -> None:
    """The pins go while a catch-up is under way (it has the maps open):
    its presence-bitmap builder loads over the open maps by fd, so nothing
    is made again in bpffs (it used to reload the builder by pin path, and
    libbpf made the directory and a whole new set of empty maps)."""
    _stale_after_import(ctx)
    job, ctx.pending_catch_up = ctx.pending_catch_up, None
    child = Context(ctx.settings)
    real = builder.run
    gone = []

    def pins_removed_first(kt, what, requests):
        if not gone:
            ctx.close()
            bpffs.remove_tree(ctx.settings.pin_dir)  # the operator's rm -rf, mid catch-up
            gone.append(what)
        return real(kt, what, requests)

    monkeypatch.setattr(builder, "run", pins_removed_first)
    try:
        assert tables.run_catch_up(child, job) is True  # written into the open (now unpinned) maps
    finally:
        child.close()
    assert gone and not os.path.exists(ctx.settings.pin_dir)


# ---- a replaced list's hosts left past the flip (xc_config dead ids)

def _feed(ctx, *prefixes: str) -> tuple[DropList, abi.Config]:
    """List feed written (or removed, with no prefixes) as a delta whose
    catch-up is pending: (drop list, xc_cfg after the flip)."""
    d = DropList(ctx)
    if prefixes:
        d.import_list("feed", [px.parse_prefix(p) for p in prefixes])
    else:
        d.remove_list("feed")
    cfg = read_pinned_config(ctx)
    assert cfg.synced == DEFERRED and ctx.pending_catch_up is not None
    return d, cfg


def _left(ctx, cfg: abi.Config) -> dict:
    """The active set's dead entries, after checking that the rest is
    exactly the compile of the database."""
    live, dead = split_dead(kernel_rule_set(ctx, cfg.active), cfg)
    assert live == _compiled(ctx)
    return dead


def _keys(*addrs: str) -> list[bytes]:
    out = []
    for a in addrs:
        ip = ipaddress.ip_address(a)
        out.append(abi.KEY4.pack(0, ip.packed) if ip.version == 4 else abi.U32.pack(0) + ip.packed)
    return sorted(out)


@pytest.mark.parametrize("family", [4, 6])
def test_a_removed_list_leaves_its_hosts_dead_until_the_catch_up(delta_ctx, family) -> None:
    """Six hosts: more than a small change's four (a plan deletes those)."""
    hosts = tuple(f"10.3.0.{i}" if family == 4 else f"2001:db8:5::{i}" for i in range(1, 7))
    band = "xc_v4_l32" if family == 4 else "xc_v6_l128"
    d, _cfg = _feed(delta_ctx, *hosts)
    assert d.catch_up() is True
    span = d.state.list_span("feed")
    assert _verdict(delta_ctx, hosts[0]) == (XDP_DROP, DROP)
    d, after = _feed(delta_ctx)
    assert (after.dead_base, after.dead_count) == span
    dead = _left(delta_ctx, after)
    assert sorted(dead) == [band] and sorted(dead[band]) == _keys(*hosts)
    assert [_verdict(delta_ctx, h) for h in hosts] == [(XDP_PASS, MISS)] * 6
    assert _verdict(delta_ctx, "10.9.0.7") == (XDP_DROP, DROP)  # the other list's hosts: live
    assert d.catch_up() is True
    _both_hold_the_compile(delta_ctx)
    assert read_pinned_config(delta_ctx).dead_count == 0
    assert [_verdict(delta_ctx, h) for h in hosts] == [(XDP_PASS, MISS)] * 6


def test_keys_a_new_member_takes_over_are_not_left_dead(delta_ctx) -> None:
    """The old version's hosts .9 and .10 leave; the new version's /30
    (planned after the hosts' columns) writes those very keys again: they
    are live under the /30, and the catch-up must not delete them."""
    d, _cfg = _feed(delta_ctx, "10.3.0.9", "10.3.0.10")
    assert d.catch_up() is True
    d, after = _feed(delta_ctx, "10.3.0.8/30", "10.3.0.20")
    base, count = d.state.list_span("feed")
    assert after.dead_count == 0 and _left(delta_ctx, after) == {}
    with DropListProbe(delta_ctx.settings) as probe:
        for host in ("10.3.0.9", "10.3.0.10", "10.3.0.11"):
            retval, reason, rid = probe.source_match(host)
            assert (retval, reason) == (XDP_DROP, DROP) and base <= rid < base + count, (host, rid)
    assert d.catch_up() is True
    _both_hold_the_compile(delta_ctx)
    assert _verdict(delta_ctx, "10.3.0.9") == (XDP_DROP, DROP)


def test_some_keys_taken_over_and_the_rest_left_dead(delta_ctx) -> None:
    gone = ("10.3.0.33", "10.3.0.34", "10.3.0.35")
    d, _cfg = _feed(delta_ctx, "10.3.0.9", "10.3.0.10", *gone)
    assert d.catch_up() is True
    span = d.state.list_span("feed")
    d, after = _feed(delta_ctx, "10.3.0.8/30")
    assert (after.dead_base, after.dead_count) == span
    dead = _left(delta_ctx, after)
    assert sorted(dead) == ["xc_v4_l32"] and sorted(dead["xc_v4_l32"]) == _keys(*gone)
    assert _verdict(delta_ctx, "10.3.0.33") == (XDP_PASS, MISS) and _verdict(delta_ctx, "10.3.0.9") == (XDP_DROP, DROP)
    assert d.catch_up() is True
    _both_hold_the_compile(delta_ctx)


def test_a_change_that_writes_nothing_keeps_the_dead_ids(delta_ctx) -> None:
    """The process that held the catch-up died (its job is gone): a change
    that writes no rule table (a revision bump) keeps the dead ids with the
    set they describe; the next change that writes rewrites the sets whole."""
    old = tuple(f"10.3.0.{i}" for i in range(9, 14))
    d, _cfg = _feed(delta_ctx, *old)
    assert d.catch_up() is True
    d, after = _feed(delta_ctx, "10.3.0.20")
    delta_ctx.pending_catch_up = None  # died with it
    d.bump_revision()
    cfg = read_pinned_config(delta_ctx)
    assert (cfg.generation, cfg.active, cfg.dead_base, cfg.dead_count) == \
        (after.generation + 1, after.active, after.dead_base, after.dead_count) and cfg.dead_count == 5
    assert sorted(_left(delta_ctx, cfg)["xc_v4_l32"]) == _keys(*old)
    assert _verdict(delta_ctx, "10.3.0.9") == (XDP_PASS, MISS) and _verdict(delta_ctx, "10.3.0.20") == (XDP_DROP, DROP)
    d.add([spec("198.51.100.9")])
    assert d.catch_up() is True
    _both_hold_the_compile(delta_ctx)
    assert read_pinned_config(delta_ctx).dead_count == 0 and _verdict(delta_ctx, "10.3.0.9") == (XDP_PASS, MISS)


def test_a_band_that_cannot_hold_both_versions_takes_the_deletes_first(make_ctx, monkeypatch, caplog) -> None:
    """64 slots in the /32 band: 60 hosts of list big, 2 of feed's old
    version; its new version's 3 hosts do not fit beside the old ones, so
    the old ones are deleted before the flip after all (nothing left dead)
    and the change goes through."""
    ctx = _delta_ctx(make_ctx, monkeypatch, xc_v4_l32=64)
    d, _cfg = _feed(ctx, "10.3.0.9", "10.3.0.10")
    assert d.catch_up() is True
    with caplog.at_level("INFO", logger="xdpctl"):
        d, after = _feed(ctx, "10.3.0.20", "10.3.0.21", "10.3.0.22")
    assert "xc_v4_l32 cannot hold both versions of the list" in caplog.text  # the kernel refused the 65th
    assert after.dead_count == 0 and _left(ctx, after) == {}
    assert _verdict(ctx, "10.3.0.9") == (XDP_PASS, MISS) and _verdict(ctx, "10.3.0.22") == (XDP_DROP, DROP)
    assert d.catch_up() is True
    _both_hold_the_compile(ctx)
