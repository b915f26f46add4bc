"""kill -9 of a real `xdpctl import` never leaves the kernel between revisions.

A 200k-prefix list is replaced by a larger one in a CLI subprocess, killed
at points spread over a measured full run. After each kill, before any
repair, the active rule set equals exactly the compile of the old rule set
or of the new one (and xc_cfg's generation names that revision), and the
drop-list program (BPF_PROG_TEST_RUN over the pinned maps) drops or passes
an address of each list accordingly. Then a restore brings both sets to the
database's revision.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import emulation as emu
from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe, temp_settings
from xdpctl import abi
from xdpctl.core import dlcompile as dlc
from xdpctl.core import prefixes as px
from xdpctl.core.context import Context
from xdpctl.core.rules import ruleset
from xdpctl.core.rules.members import Members
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import kernel_health, read_pinned_config
from xdpctl.kernel import bpffs, maps

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
OLD_N, NEW_N = 200_000, 400_000
KILLS = 10
OLD_ADDR, NEW_ADDR = "10.0.0.7", "11.0.0.7"  # in the old list only, in the new list only


def _hosts(first: int, n: int) -> list[px.Prefix]:
    return [px.Prefix(4, first + i, 32) for i in range(n)]


OLD = _hosts(0x0A000000, OLD_N)  # 10.0.0.0 ..
NEW = _hosts(0x0B000000, NEW_N)  # 11.0.0.0 ..


def _new_image(ctx: Context, prefixes: list[px.Prefix]) -> dict:
    """The compile of the stored rule set with list "big" replaced by
    ``prefixes`` at the ids an import would give them now (the first free
    run beside the stored list)."""
    state = ctx.state
    base = state.allocate_ids(len(prefixes), abi.MAP_SPECS["xc_rule_stats"].max_entries)
    pending = Members.of(prefixes).columns(base, 0, int(abi.Action.DENY), 0)
    rules = ruleset.all_rules(state, time.time(), 0, pending=("big", pending))
    return emu.tables_to_state(ruleset.compile_rules(rules, []))


def _kernel_set(ctx: Context, rule_set: int) -> dict:
    out = {}
    for name in abi.RULE_MAPS:
        with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, abi.set_map(name, rule_set))) as m:
            if name == dlc.L16:
                out[name] = {abi.U32.pack(i): v[:dlc.VAL_SIZE] for i, v in m.lookup_range(0, m.max_entries)}
            else:
                out[name] = dict(m.items())
    return out


def _import(settings, path: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "xdpctl.cli", "--pin-dir", settings.pin_dir, "--state-dir",
                             settings.state_dir, "import", path, "--list", "big"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=env)


def _probe(settings) -> tuple[int, int]:
    with DropListProbe(settings) as p:
        return p.source_match(OLD_ADDR)[0], p.source_match(NEW_ADDR)[0]


@pytest.fixture
def instance(tmp_path):
    settings = temp_settings(str(tmp_path / "state"))
    ctx = Context(settings)
    ctx.kernel_ready()
    yield settings, ctx
    ctx.close()
    bpffs.remove_tree(settings.pin_dir)


def test_kill_import_leaves_one_revision_active(instance, tmp_path):
    settings, ctx = instance
    new_file = tmp_path / "big.txt"
    new_file.write_text("".join(f"{px.format_prefix(p, bare=True)}\n" for p in NEW))

    def reset() -> tuple[int, dict, dict]:
        DropList(ctx).import_list("big", OLD)
        rev = ctx.state.revision
        return rev, emu.tables_to_state(ruleset.compile_stored(ctx.state)), _new_image(ctx, NEW)

    # a full run, measured
    reset()
    t0 = time.monotonic()
    p = _import(settings, str(new_file))
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    full = time.monotonic() - t0

    for i in range(1, KILLS + 1):
        old_rev, old_img, new_img = reset()
        p = _import(settings, str(new_file))
        time.sleep(full * i / KILLS)  # a kill point, not a deadline: any outcome is checked
        p.kill()
        p.wait(timeout=60)

        cfg = read_pinned_config(ctx)
        active = _kernel_set(ctx, cfg.active)
        if active == old_img:
            which, want_gen, want = "old", old_rev, (XDP_DROP, XDP_PASS)
        else:
            assert active == new_img, f"kill {i}: the active set is neither revision's compile"
            which, want_gen, want = "new", old_rev + 1, (XDP_PASS, XDP_DROP)
        assert cfg.generation == want_gen, (i, which, cfg)
        assert _probe(settings) == want, (i, which)

        DropList(ctx).sync()
        db_rev = ctx.state.revision
        h = kernel_health(ctx, db_rev)
        assert h.in_sync and h.ok, h
        cfg = read_pinned_config(ctx)
        assert cfg.generation == cfg.synced == db_rev
        db_img = old_img if db_rev == old_rev else new_img
        assert db_rev in (old_rev, old_rev + 1)
        assert _kernel_set(ctx, 0) == db_img and _kernel_set(ctx, 1) == db_img
