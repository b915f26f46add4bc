"""Hash bands written by several threads at once, preallocated
(settings.prealloc) or allocated on insert (the default): the /32 band of
both sets holds exactly what the change writes, and a packet meets it.

The lists have 140,000 hosts: more than one writer thread's share
(xdpctl.kernel.maps.PARALLEL_MIN), so every write below is split across
threads, in either kind of band. A replace deletes every old host (in a
preallocated band a catch-up that frees elements, so it first waits for
running programs). The band holds 300,000: a replace deletes the old hosts
before it writes the new ones, so a list of 170,000 replaces the 140,000
although both together would not fit. A list of 310,000 does not fit at
all: with the capacity pre-check taken away the kernel refuses it
part-way, on several threads at once, and nothing changes.
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
from xdpctl.config import Settings
from xdpctl.core import prefixes as px
from xdpctl.core.errors import CapacityError, ValidationError
from xdpctl.core.rules import ruleset, tables
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import kernel_health, read_pinned_config
from xdpctl.kernel import maps

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
HOSTS, CAPACITY, N = "xc_v4_l32", 300_000, 140_000
OLD = [px.Prefix(4, 0x0A000000 + 3 * i, 32) for i in range(N)]  # 10.0.0.0, 10.0.0.3, ..
NEW = [px.Prefix(4, 0x0B000000 + 3 * i, 32) for i in range(N)]  # 11.0.0.0, 11.0.0.3, ..
BIGGER = [px.Prefix(4, 0x0C000000 + i, 32) for i in range(170_000)]  # fits alone, not beside NEW
TOO_MANY = [px.Prefix(4, 0x0D000000 + i, 32) for i in range(CAPACITY + 10_000)]
OLD_ADDR, NEW_ADDR, NEITHER = "10.0.1.44", "11.0.1.44", "10.0.1.45"  # 0x12c = 300 = 3 * 100
BIGGER_ADDR = "12.0.1.44"


@pytest.fixture(params=["preallocated", "allocated-on-insert"])
def instance(make_ctx, request):
    ctx = make_ctx(prealloc=[HOSTS] if request.param == "preallocated" else [], **{HOSTS: CAPACITY})
    return ctx.settings, ctx


def _flags(settings, name: str) -> int:
    with maps.Map.from_pin(os.path.join(settings.shared_map_dir, name)) as m:
        assert m.max_entries == (CAPACITY if name.startswith(HOSTS) else abi.MAP_SPECS[name].max_entries)
        return m.flags


def _probe(settings) -> tuple[int, int, int, int]:
    with DropListProbe(settings) as p:
        return tuple(p.source_match(a)[0] for a in (OLD_ADDR, NEW_ADDR, NEITHER, BIGGER_ADDR))


def _both_sets_hold_the_database(ctx, n: int = N) -> None:
    img = emu.tables_to_state(ruleset.compile_stored(ctx.state))
    assert len(img[HOSTS]) == n
    assert kernel_rule_set(ctx, 0) == img == kernel_rule_set(ctx, 1)
    cfg = read_pinned_config(ctx)
    assert cfg.generation == cfg.synced == ctx.state.revision
    assert kernel_health(ctx, ctx.state.revision).in_sync


def test_band_written_by_threads_holds_exactly_what_is_written(instance, monkeypatch):
    settings, ctx = instance
    DropList(ctx).import_list("big", OLD)
    want = 0 if settings.prealloc else abi.BPF_F_NO_PREALLOC
    for name in (HOSTS, abi.set_map(HOSTS, 1)):
        assert _flags(settings, name) & abi.BPF_F_NO_PREALLOC == want, name
    for name in ("xc_v4_l24", "xc_v6_l128"):  # not named: made as the objects declare them
        assert _flags(settings, name) == abi.MAP_SPECS[name].flags == abi.BPF_F_NO_PREALLOC
    _both_sets_hold_the_database(ctx)
    assert _probe(settings) == (XDP_DROP, XDP_PASS, XDP_PASS, XDP_PASS)

    DropList(ctx).import_list("big", NEW)  # every old host deleted, every new one inserted, in both sets
    _both_sets_hold_the_database(ctx)
    assert _probe(settings) == (XDP_PASS, XDP_DROP, XDP_PASS, XDP_PASS)

    DropList(ctx).import_list("big", BIGGER)  # 140,000 + 170,000 > 300,000: fits since the old go first
    _both_sets_hold_the_database(ctx, len(BIGGER))
    assert _probe(settings) == (XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP)
    DropList(ctx).import_list("big", NEW)
    _both_sets_hold_the_database(ctx)

    rev, before = ctx.state.revision, read_pinned_config(ctx)
    with pytest.raises(CapacityError, match=f"would need {len(TOO_MANY)} entries but holds {CAPACITY}"):
        DropList(ctx).import_list("big", TOO_MANY)
    monkeypatch.setattr(tables, "_check_capacity", lambda *a: None)  # the kernel must refuse it itself
    with pytest.raises(CapacityError, match=f"is full: {CAPACITY} entries"):
        DropList(ctx).import_list("big", TOO_MANY)
    assert ctx.state.revision == rev and read_pinned_config(ctx) == before
    assert [lv.count for lv in DropList(ctx).lists(with_stats=False)] == [N]
    _both_sets_hold_the_database(ctx)
    assert _probe(settings) == (XDP_PASS, XDP_DROP, XDP_PASS, XDP_PASS)


def test_only_hash_bands_may_be_preallocated(tmp_path):
    assert Settings(prealloc="xc_v4_l32,xc_v6_l128").prealloc == ["xc_v4_l32", "xc_v6_l128"]
    assert Settings(prealloc="all").prealloc == list(abi.PREALLOCATABLE)
    with pytest.raises(ValidationError, match="setting prealloc: cannot be preallocated: xc_v6_trie"):
        Settings(prealloc=["xc_v6_trie"])
    pins = f"/sys/fs/bpf/xdpctl-test-{tmp_path.name[-12:]}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")},
           "XDPCTL_PREALLOC": "xc_v4_l32,xc_v6_trie", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "xdpctl.cli", "--pin-dir", pins, "--state-dir", str(tmp_path),
                        "block", "192.0.2.1"], capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert (p.returncode, p.stderr.strip()) == (2, "xdpctl: error: setting XDPCTL_PREALLOC: cannot be "
                                                   "preallocated: xc_v6_trie (hash bands: " +
                                                   ", ".join(abi.PREALLOCATABLE) + ", or all)")
    assert not os.path.exists(pins)  # nothing was made
