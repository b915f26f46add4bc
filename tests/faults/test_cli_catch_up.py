"""A real `xdpctl import` returns once its change is enforced; a child
process it leaves catches the other rule set up (rules.handoff).

When the command has returned, before the child is done: the database
holds the new revision, xc_cfg names it with the set just written active,
the drop-list program (BPF_PROG_TEST_RUN over the pinned maps) drops an
address of the new list and passes one of the old. Once the writer lock is
free again (the child held it), both sets are exactly the compile of the
database and no xdpctl process is left. With --settle the command itself
leaves both sets in sync. kill -9 of the child mid catch-up (it is stopped
with SIGSTOP first, then the kernel is read, so the round knows where it
stopped it) leaves the new revision enforced, the other set marked as
pending (DEFERRED) and health saying so; the next change rewrites that set
in full and ends with both in sync.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import emulation as emu
from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe, kernel_rule_set, split_dead, temp_settings
from xdpctl.core import prefixes as px
from xdpctl.core.context import Context
from xdpctl.core.rules import ruleset
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import DEFERRED, kernel_health, read_pinned_config
from xdpctl.kernel import bpffs

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
OLD_FIRST, NEW_FIRST = 0x0A000000, 0x0B000000
OLD_ADDR, NEW_ADDR, EXTRA = "10.0.0.7", "11.0.0.7", "12.0.0.1"
ROUNDS = 4  # kill rounds; each stops the child wherever it is and counts where that was


def _hosts(first: int, n: int) -> list[px.Prefix]:
    return [px.Prefix(4, first + i, 32) for i in range(n)]


def _write(path: Path, first: int, n: int) -> str:
    path.write_text("".join(f"{px.format_prefix(p, bare=True)}\n" for p in _hosts(first, n)))
    return str(path)


def _xdpctl(settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "xdpctl.cli", "--pin-dir", settings.pin_dir, "--state-dir",
                           settings.state_dir, *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)


def _children(settings) -> list[int]:
    """xdpctl processes of this instance still running (the catch-up child
    is a fork of the command: it has the command's argv)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"xdpctl.cli" in argv and settings.state_dir.encode() in argv and int(pid) != os.getpid():
            out.append(int(pid))
    return out


def _wait_settled(settings) -> None:
    """Take and release the writer lock: the child holds it while it writes."""
    with bpffs.DirLock(settings.pin_dir):
        pass


def _probe(settings) -> tuple[int, int, int]:
    with DropListProbe(settings) as p:
        return p.source_match(OLD_ADDR)[0], p.source_match(NEW_ADDR)[0], p.source_match(EXTRA)[0]


def _spans(ctx: Context) -> set[tuple[int, int]]:
    """(first rule id, count) of every stored list."""
    return {ctx.state.list_span(name) for name, *_rest in ctx.state.list_heads()}


def _active_at_the_database(ctx: Context, cfg, old_spans: set) -> dict:
    """The set ``cfg`` (read before) names active holds the compile of the
    database; beside it, until the child has deleted them, only hosts of a
    replaced list's old version, under the dead ids ``cfg`` names (read as
    absent). Returns those entries."""
    want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
    live, dead = split_dead(kernel_rule_set(ctx, cfg.active), cfg)
    assert live == want
    assert set(dead) <= {"xc_v4_l32"}
    assert cfg.dead_count == 0 or (cfg.dead_base, cfg.dead_count) in old_spans, (cfg, old_spans)
    return dead


def _both_sets_at_the_database(ctx: Context) -> None:
    cfg = read_pinned_config(ctx)
    assert cfg.generation == cfg.synced == ctx.state.revision and cfg.dead_count == 0
    want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
    assert kernel_rule_set(ctx, 0) == want and kernel_rule_set(ctx, 1) == want
    h = kernel_health(ctx, ctx.state.revision)
    assert h.ok and h.in_sync and h.detail is None, h


@pytest.fixture
def instance(tmp_path):
    settings = temp_settings(str(tmp_path / "state"))
    ctx = Context(settings)
    ctx.kernel_ready()
    try:
        yield settings, ctx
    finally:
        for pid in _children(settings):
            os.kill(pid, signal.SIGKILL)
        ctx.close()
        bpffs.remove_tree(settings.pin_dir)


def test_an_import_is_enforced_when_it_returns_and_its_child_catches_up(instance, tmp_path) -> None:
    settings, ctx = instance
    DropList(ctx).import_list("big", _hosts(OLD_FIRST, 20_000))
    old_rev, old_spans = ctx.state.revision, _spans(ctx)
    r = _xdpctl(settings, "import", _write(tmp_path / "big.txt", NEW_FIRST, 40_000), "--list", "big")
    assert r.returncode == 0, r.stderr
    assert f"replaced list big, revision {old_rev + 1}" in r.stdout
    # answered: the change is the database's and the kernel's, whatever the child has done yet
    assert ctx.state.revision == old_rev + 1
    cfg = read_pinned_config(ctx)
    assert cfg.generation == old_rev + 1 and cfg.synced in (DEFERRED, old_rev + 1)
    _active_at_the_database(ctx, cfg, old_spans)
    assert _probe(settings) == (XDP_PASS, XDP_DROP, XDP_PASS)
    _wait_settled(settings)
    _both_sets_at_the_database(ctx)
    assert _children(settings) == []
    assert _probe(settings) == (XDP_PASS, XDP_DROP, XDP_PASS)


def test_settle_returns_with_both_sets_in_sync(instance, tmp_path) -> None:
    settings, ctx = instance
    DropList(ctx).import_list("big", _hosts(OLD_FIRST, 20_000))
    r = _xdpctl(settings, "--settle", "import", _write(tmp_path / "big.txt", NEW_FIRST, 40_000), "--list", "big")
    assert r.returncode == 0, r.stderr
    assert _children(settings) == []  # nothing left running
    _both_sets_at_the_database(ctx)
    assert _probe(settings) == (XDP_PASS, XDP_DROP, XDP_PASS)


def test_kill_the_catch_up_child_then_the_next_change_repairs_the_set(tmp_path) -> None:
    new_file = _write(tmp_path / "new.txt", NEW_FIRST, 300_000)

    def setup(ctx: Context) -> None:
        DropList(ctx).import_list("big", _hosts(OLD_FIRST, 300_000))

    _kill_rounds(tmp_path, setup, ["import", new_file, "--list", "big"])


def _kill_rounds(tmp_path, setup, args: list[str], says: str | None = None) -> None:
    """ROUNDS times, on a fresh instance: ``setup``, then `xdpctl ARGS`
    (its output holding ``says``), its child stopped and killed wherever it
    is. The answered revision must be enforced, exactly; a set the child did
    not finish stays DEFERRED, health says so, and the next change (a
    block) rewrites it: both sets end at the database. At least two rounds
    must land mid catch-up. The old version's hosts the command left in the
    active set (dead ids) are read as absent throughout, and are gone at the
    end whether the child deleted them or not."""
    landed = {"mid catch-up": 0, "done": 0, "dead entries left": 0}
    for i in range(ROUNDS):
        settings = temp_settings(str(tmp_path / f"state{i}"))
        ctx = Context(settings)
        try:
            setup(ctx)
            old_rev, old_spans = ctx.state.revision, _spans(ctx)
            r = _xdpctl(settings, *args)
            assert r.returncode == 0, r.stderr
            assert says is None or says in r.stdout, r.stdout
            pids = _children(settings)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            cfg = read_pinned_config(ctx)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            for pid in pids:
                _reap(pid)
            assert cfg.generation == ctx.state.revision == old_rev + 1, (i, cfg)
            if cfg.synced == cfg.generation:
                landed["done"] += 1
                continue
            landed["mid catch-up"] += 1
            assert len(pids) == 1 and cfg.synced == DEFERRED, (i, pids, cfg)
            # before any repair: the answered revision is enforced, exactly the compile of the database
            want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
            landed["dead entries left"] += bool(_active_at_the_database(ctx, cfg, old_spans))
            assert kernel_rule_set(ctx, 1 - cfg.active) != want
            assert _probe(settings) == (XDP_PASS, XDP_DROP, XDP_PASS)
            h = kernel_health(ctx, ctx.state.revision)
            assert h.in_sync is False and not h.ok and "is catching it up" in h.detail, h
            # the next change: the set left behind is rewritten in full; both end in sync
            r = _xdpctl(settings, "block", EXTRA)
            assert r.returncode == 0, r.stderr
            _wait_settled(settings)
            _both_sets_at_the_database(ctx)
            assert _probe(settings) == (XDP_PASS, XDP_DROP, XDP_DROP)
        finally:
            for pid in _children(settings):
                os.kill(pid, signal.SIGKILL)
            ctx.close()
            bpffs.remove_tree(settings.pin_dir)
    assert landed["mid catch-up"] >= 2 and landed["dead entries left"] >= 1, landed


def _reap(pid: int) -> None:
    """Wait until a killed process (not this one's child) is gone."""
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return  # a zombie of another parent: the kill has landed
        except FileNotFoundError:
            return
        os.sched_yield()


def test_a_big_list_delta_leaves_its_catch_up_too_and_a_killed_child_to_the_next_change(tmp_path) -> None:
    """A list refreshed beside another is written as a delta (listdelta:
    its hosts as columns), not a whole image; its catch-up (a replay of
    those writes) is left to the child as well, and killing it mid-way is
    repaired the same way. The list is big enough for the replay to be
    caught under way."""
    feed_file = _write(tmp_path / "feed.txt", NEW_FIRST, 150_000)

    def setup(ctx: Context) -> None:
        DropList(ctx).import_list("big", _hosts(0x0D000000, 50_000))  # not EXTRA (12.0.0.1)
        DropList(ctx).import_list("feed", _hosts(OLD_FIRST, 150_000))

    _kill_rounds(tmp_path, setup, ["import", feed_file, "--list", "feed", "--json"],
                 says="as a delta (300000 hosts directly)")  # 150,000 out, 150,000 in
