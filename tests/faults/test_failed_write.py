"""A map write that fails in the kernel part-way through a change leaves
nothing behind.

The /32 map is made small (capacity 64). A list of 40 hosts is replaced by
70 other hosts. A list this small is written as a delta, with no capacity
check ahead: the old hosts are deleted, the new ones written until the
kernel refuses the 65th, with the old hosts gone and 64 new ones written
in the standby set. The real `xdpctl import` then fails with the capacity error (exit 6); the database keeps the old
revision, the active set is exactly the old compile under the old
generation (map contents and a packet through the drop-list program), and
the standby set has been put back: it mirrors the active set again, health
is in sync, and a restore finds nothing to repair.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import emulation as emu
from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe, kernel_rule_set
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.errors import CapacityError
from xdpctl.core.rules import ruleset
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import kernel_health, read_pinned_config
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import maps

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
HOSTS, CAPACITY, N = "xc_v4_l32", 64, 40
OLD = [px.Prefix(4, 0x0A000000 + i, 32) for i in range(N)]  # 10.0.0.0 ..
NEW = [px.Prefix(4, 0x0B000000 + i, 32) for i in range(CAPACITY + 6)]  # 11.0.0.0 ..: more than fit
OLD_ADDR, NEW_ADDR = "10.0.0.7", "11.0.0.7"


@pytest.fixture
def instance(make_ctx):
    ctx = make_ctx(**{HOSTS: CAPACITY})
    return ctx.settings, ctx


def _probe(settings) -> tuple[int, int]:
    with DropListProbe(settings) as p:
        return p.source_match(OLD_ADDR)[0], p.source_match(NEW_ADDR)[0]


def test_import_failing_in_the_kernel_mid_batch_changes_nothing(instance, tmp_path):
    settings, ctx = instance
    DropList(ctx).import_list("big", OLD)
    DropList(ctx).import_list("big", OLD)  # both sets have been written once: the next standby holds OLD
    old_rev = ctx.state.revision
    old_img = emu.tables_to_state(ruleset.compile_stored(ctx.state))
    before = read_pinned_config(ctx)
    assert before.generation == before.synced == old_rev
    assert kernel_rule_set(ctx, 0) == old_img == kernel_rule_set(ctx, 1)
    standby = abi.set_map(HOSTS, 1 - before.active)
    with maps.Map.from_pin(os.path.join(settings.shared_map_dir, standby)) as m:
        assert m.max_entries == CAPACITY and len(dict(m.items())) == N

    new_file = tmp_path / "big.txt"  # this small a list is written as a delta: single writes, then undone
    new_file.write_text("".join(f"{px.format_prefix(p, bare=True)}\n" for p in NEW))
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run([sys.executable, "-m", "xdpctl.cli", "--pin-dir", settings.pin_dir, "--state-dir",
                        settings.state_dir, "import", str(new_file), "--list", "big"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert p.returncode == CapacityError.exit_code, (p.returncode, p.stderr)
    assert p.stderr.splitlines() == [f"xdpctl: error: map {standby} is full: {CAPACITY} entries "
                                     "(raise its capacity in the xdpctl config)"], p.stderr

    # the database and the active set: the old revision, exactly
    assert ctx.state.revision == old_rev
    assert [lv.count for lv in DropList(ctx).lists(with_stats=False)] == [N]
    after = read_pinned_config(ctx)
    assert after == before
    assert kernel_rule_set(ctx, before.active) == old_img
    assert _probe(settings) == (XDP_DROP, XDP_PASS)

    # the standby set was put back: in sync, nothing for a restore to do
    assert kernel_rule_set(ctx, 1 - before.active) == old_img
    h = kernel_health(ctx, old_rev)
    assert h.ok and h.in_sync and h.standby_synced and h.detail is None, h
    report = DropList(ctx).sync()
    assert (report.revision, report.drift) == (old_rev, 0)
    cfg = read_pinned_config(ctx)  # a restore rewrites and flips, at the same revision
    assert (cfg.policy, cfg.flags, cfg.generation, cfg.synced) == (before.policy, before.flags, old_rev, old_rev)
    assert _probe(settings) == (XDP_DROP, XDP_PASS)


def test_a_list_written_as_columns_failing_mid_batch_is_put_back(make_ctx):
    """A list past the small delta's size goes as columns: its old hosts
    deleted, the new ones batched. With other rules' hosts in the band the
    batch overruns it part-way (the check ahead counts the list alone): the
    change fails with the capacity error, and the undo puts the old hosts
    back with the values they had (made only now, for the undo) before
    anything is flipped."""
    ctx = make_ctx(**{HOSTS: 4096}, xc_rule_stats=65536)
    d = DropList(ctx)
    d.add([spec(f"10.9.0.{i}") for i in range(1, 101)])  # 100 hosts beside the list
    old = [px.Prefix(4, 0x0A100000 + i, 32) for i in range(2500)]  # 10.16.0.0 ..
    new = [px.Prefix(4, 0x0B100000 + i, 32) for i in range(4050)]  # 11.16.0.0 ..: fits alone, not beside
    assert "as a delta (2500 hosts directly)" in d.import_list("big", old).notes[0]
    d.import_list("big", old)  # both sets written as columns once: the next standby holds the old list
    old_rev, before = ctx.state.revision, read_pinned_config(ctx)
    old_img = emu.tables_to_state(ruleset.compile_stored(ctx.state))
    assert kernel_rule_set(ctx, 0) == old_img == kernel_rule_set(ctx, 1)

    with pytest.raises(CapacityError):
        d.import_list("big", new)
    assert ctx.state.revision == old_rev and read_pinned_config(ctx) == before
    assert kernel_rule_set(ctx, 0) == old_img == kernel_rule_set(ctx, 1)  # the standby set too: values and all
    assert kernel_health(ctx, old_rev).in_sync
    with DropListProbe(ctx.settings) as p:
        assert [p.source_match(a)[0] for a in ("10.16.0.7", "11.16.0.7", "10.9.0.7")] == [XDP_DROP, XDP_PASS, XDP_DROP]
