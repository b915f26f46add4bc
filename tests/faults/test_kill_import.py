"""kill -9 of a real `xdpctl import` never leaves the kernel between revisions.

A list is replaced by a larger one in a CLI subprocess (with --settle: the
command itself catches the other set up, before its database commit;
tests/faults/test_cli_catch_up.py kills the child that does it without
--settle), killed with SIGKILL
at points read from the kernel while it runs (the test polls xc_cfg and the
rule maps, no timing): before the flip (the standby set just marked stale,
then at spread points of its write: the first, a quarter, half and three
quarters of the new list's entries present) and right after the flip
(xc_cfg names the new set and generation; the catch-up of the other set is
then under way). After each kill, before any repair: the active rule set
equals exactly the compile of the old rule set or of the new one, xc_cfg's
generation names that revision, the drop-list program (BPF_PROG_TEST_RUN
over the pinned maps) drops or passes an address of each list accordingly,
the database is still at the old revision, and kernel_health reports what
is left to repair. Then a restore brings both sets to the database's
revision.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from tests.support import emulation as emu
from tests.support.progs import (XDP_DROP, XDP_PASS, DropListProbe, host_table_problems, kernel_rule_set,
                                 split_dead, temp_settings)
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.context import Context
from xdpctl.core.rules import ruleset
from xdpctl.core.rules.members import Members
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import STALE, kernel_health, read_pinned_config
from xdpctl.kernel import bpffs, maps

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
OLD_N, NEW_N = 20_000, 40_000
OLD_ADDR, NEW_ADDR = "10.0.0.7", "11.0.0.7"  # in the old list only, in the new list only
OLD_FIRST, NEW_FIRST = 0x0A000000, 0x0B000000
HOSTS = "xc_v4_l32"  # where the lists' /32 members live
WATCH_LIMIT = 300.0  # bounds each wait for a kill point (not a deadline of the product)


def _hosts(first: int, n: int) -> list[px.Prefix]:
    return [px.Prefix(4, first + i, 32) for i in range(n)]


OLD = _hosts(OLD_FIRST, OLD_N)  # 10.0.0.0 ..
NEW = _hosts(NEW_FIRST, NEW_N)  # 11.0.0.0 ..


def _new_image(ctx: Context, prefixes: list[px.Prefix]) -> dict:
    """The compile of the stored rule set with list "big" replaced by
    ``prefixes`` at the ids an import would give them now (the first free
    run beside the stored list)."""
    state = ctx.state
    base = state.allocate_ids(len(prefixes), abi.MAP_SPECS["xc_rule_stats"].max_entries)
    pending = Members.of(prefixes).columns(base, 0, int(abi.Action.DENY), 0)
    rules = ruleset.all_rules(state, time.time(), 0, pending=("big", pending))
    return emu.tables_to_state(ruleset.compile_rules(rules, []))


def _import(settings, path: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "xdpctl.cli", "--pin-dir", settings.pin_dir, "--state-dir",
                             settings.state_dir, "--settle", "import", path, "--list", "big"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=env)


def _probe(settings) -> tuple[int, int]:
    with DropListProbe(settings, host_table=True) as p:  # as the hook reads the active set
        return p.source_match(OLD_ADDR)[0], p.source_match(NEW_ADDR)[0]


class Watch:
    """Reads, from the test process, what a running writer has done so far:
    xc_cfg and whether a host of the new list is in a set's /32 map."""

    def __init__(self, ctx: Context):
        d = ctx.settings.shared_map_dir
        self.cfg_map = maps.Map.from_pin(os.path.join(d, "xc_cfg"))
        self.hosts = [maps.Map.from_pin(os.path.join(d, abi.set_map(HOSTS, s))) for s in (0, 1)]

    def cfg(self) -> abi.Config:
        return abi.unpack_config(self.cfg_map.lookup(abi.U32.pack(0)))

    def holds_new(self, rule_set: int, index: int) -> bool:
        return self.hosts[rule_set].lookup(abi.pack_key4(0, NEW_FIRST + index)) is not None

    def close(self) -> None:
        for m in (self.cfg_map, *self.hosts):
            m.close()


Point = Callable[[Watch, abi.Config], bool]  # (watch, xc_cfg as the kill round found it) -> kill now?


def _stale(w: Watch, found: abi.Config) -> bool:
    return w.cfg().synced == STALE


def _standby_holds(fraction: float) -> Point:
    index = int(NEW_N * fraction)
    return lambda w, found: w.holds_new(1 - found.active, index)


def _flipped(w: Watch, found: abi.Config) -> bool:
    return w.cfg().generation != found.generation


POINTS: list[tuple[str, Point]] = [
    ("standby marked stale", _stale),
    ("standby holds the first new entry", _standby_holds(0.0)),
    ("standby holds a quarter", _standby_holds(0.25)),
    ("standby holds half", _standby_holds(0.5)),
    ("standby holds three quarters", _standby_holds(0.75)),
] + [("flipped", _flipped)] * 5


def _kill_at(p: subprocess.Popen, w: Watch, found: abi.Config, point: Point, what: str) -> None:
    """SIGKILL ``p`` as soon as ``point`` holds; fail if it exits first."""
    limit = time.monotonic() + WATCH_LIMIT
    while not point(w, found):
        assert p.poll() is None, f"{what}: the import ended ({p.returncode}) before the kill point"
        assert time.monotonic() < limit, f"{what}: no kill point within {WATCH_LIMIT:g}s"
    p.kill()
    p.wait(timeout=60)
    assert p.returncode == -9, (what, p.returncode)


@pytest.fixture
def instance(tmp_path):
    settings = temp_settings(str(tmp_path / "state"))
    ctx = Context(settings)
    ctx.kernel_ready()
    yield settings, ctx
    ctx.close()
    bpffs.remove_tree(settings.pin_dir)


def test_kill_import_on_both_sides_of_the_flip(instance, tmp_path):
    settings, ctx = instance
    new_file = tmp_path / "big.txt"
    new_file.write_text("".join(f"{px.format_prefix(p, bare=True)}\n" for p in NEW))

    def reset() -> tuple[int, dict, dict]:
        DropList(ctx).import_list("big", OLD)
        rev = ctx.state.revision
        return rev, emu.tables_to_state(ruleset.compile_stored(ctx.state)), _new_image(ctx, NEW)

    # the watched keys are the new list's hosts in the /32 map
    _rev, old_img, new_img = reset()
    assert all(abi.pack_key4(0, NEW_FIRST + int(NEW_N * f)) in new_img[HOSTS] for f in (0, .25, .5, .75))
    assert abi.pack_key4(0, NEW_FIRST) not in old_img[HOSTS]

    landed: Counter[str] = Counter()
    w = Watch(ctx)
    try:
        for i, (what, point) in enumerate(POINTS, 1):
            old_rev, old_img, new_img = reset()
            found = read_pinned_config(ctx)
            assert found.generation == found.synced == old_rev
            _kill_at(_import(settings, str(new_file)), w, found, point, f"kill {i} ({what})")
            landed[_check_after_kill(ctx, settings, f"kill {i} ({what})", old_rev, old_img, new_img)] += 1
            _check_restore(ctx, old_rev, old_img)
    finally:
        w.close()
    assert landed["before"] >= 4 and landed["after"] >= 4, landed


def _check_after_kill(ctx: Context, settings, what: str, old_rev: int, old_img: dict, new_img: dict) -> str:
    """Everything the kill left, before any repair; "before" or "after" the flip."""
    cfg = read_pinned_config(ctx)
    active = kernel_rule_set(ctx, cfg.active)
    if active == old_img:
        side, want_gen, want = "before", old_rev, (XDP_DROP, XDP_PASS)
        assert cfg.dead_count == 0, (what, cfg)
    else:  # the old list's hosts may stay beside it, under the dead ids the flip named: read as absent
        live, dead = split_dead(active, cfg)
        assert live == new_img, f"{what}: the active set is neither revision's compile"
        assert set(dead) <= {HOSTS} and set(dead.get(HOSTS, ())) <= set(old_img[HOSTS]), what
        side, want_gen, want = "after", old_rev + 1, (XDP_PASS, XDP_DROP)
    assert cfg.generation == want_gen, (what, side, cfg)
    assert _probe(settings) == want, (what, side)
    assert host_table_problems(ctx) == {}, what  # a host table still trusted mirrors its band
    # the writer died inside its transaction: the database keeps the old revision
    assert ctx.state.revision == old_rev, what
    # it had begun writing the standby set (or caught it up): marked stale either way
    assert cfg.synced == STALE, (what, side, cfg)
    h = kernel_health(ctx, old_rev)
    assert (h.kernel_revision, h.db_revision, h.standby_synced, h.in_sync, h.ok) == \
        (want_gen, old_rev, False, False, False), (what, h)
    if side == "before":
        assert "standby rule set" in h.detail and "{action:restore}" in h.detail, h.detail
    else:
        assert f"kernel is at revision {old_rev + 1}, the database at {old_rev}" in h.detail, h.detail
    return side


def _check_restore(ctx: Context, old_rev: int, old_img: dict) -> None:
    """A restore (a full sync from the database) repairs both sets."""
    DropList(ctx).sync()
    h = kernel_health(ctx, ctx.state.revision)
    assert h.in_sync and h.ok, h
    cfg = read_pinned_config(ctx)
    assert cfg.generation == cfg.synced == ctx.state.revision == old_rev
    assert kernel_rule_set(ctx, 0) == old_img and kernel_rule_set(ctx, 1) == old_img
    assert cfg.flags & abi.CfgFlag.HAVE_OA4 and host_table_problems(ctx) == {}
    assert _probe(ctx.settings) == (XDP_DROP, XDP_PASS)
