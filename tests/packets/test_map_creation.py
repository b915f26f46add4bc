"""The first change makes the shared drop-list maps in a thread while it
compiles (SharedMaps.ensure(early=True)): the change that follows is
enforced as usual, and a making that fails fails the change with the
kernel's reason and libbpf's, leaving no pin and no revision behind."""

from __future__ import annotations

import errno
import os

import pytest

from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe
from xdpctl.core import prefixes as px
from xdpctl.core.errors import BpfError
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import SHARED_DL_MAPS, KernelTables, read_pinned_config

pytestmark = pytest.mark.root

HOSTS = [px.Prefix(4, 0x0A000000 + i, 32) for i in range(5000)]


def test_the_first_change_makes_the_maps_beside_its_compile(make_ctx) -> None:
    ctx = make_ctx()
    assert not os.path.exists(ctx.settings.shared_map_dir)
    with KernelTables(ctx) as kt:
        assert kt.making  # the thread is making them
        assert kt.cfg == (0, 0, 0, 0, 0) and kt.max_entries("xc_rule_stats") == ctx.settings.capacity["xc_rule_stats"]
        assert kt["xc_rule_stats"].max_entries == ctx.settings.capacity["xc_rule_stats"]  # waits, then opens
        assert not kt.making
    assert sorted(os.listdir(ctx.settings.shared_map_dir)) == sorted(SHARED_DL_MAPS)
    rev = DropList(ctx).import_list("feed", HOSTS).revision
    assert rev == 1
    with DropListProbe(ctx.settings) as p:
        assert p.source_match("10.0.0.7")[0] == XDP_DROP
        assert p.source_match("10.0.100.7")[0] == XDP_PASS


def test_a_failed_making_fails_the_change_and_leaves_nothing(make_ctx) -> None:
    ctx = make_ctx(xc_rule_stats=2_000_000_000)  # 112 GB of rule stats: the kernel refuses
    with pytest.raises(BpfError) as err:
        DropList(ctx).import_list("feed", HOSTS)
    assert err.value.errno == errno.ENOMEM
    assert "load xdp_droplist.o" in str(err.value) and "libbpf:" in str(err.value)  # told again, loudly
    assert DropList(ctx).revision() == 0 and DropList(ctx).lists() == []
    assert os.listdir(ctx.settings.shared_map_dir) == []


def test_a_map_that_is_pinned_keeps_its_size_while_the_missing_ones_are_made(make_ctx) -> None:
    """One pin lost (and no hook recorded): only the missing map is made;
    the rule-id space is the pinned array's, not what the settings say now."""
    ctx = make_ctx(xc_rule_stats=65536)
    DropList(ctx).import_list("feed", HOSTS[:10])
    ctx.close()
    os.unlink(os.path.join(ctx.settings.shared_map_dir, "xc_v4_l24"))
    ctx.settings.capacity["xc_rule_stats"] = 131072
    pinned = read_pinned_config(ctx)
    assert pinned.generation == 1 and pinned.active == 1  # the change went to set B
    with KernelTables(ctx) as kt:
        assert kt.making
        assert kt.cfg == pinned  # xc_cfg was pinned: read as it is (the sets and revision it names), not as new
        assert kt.max_entries("xc_v4_l24") == ctx.settings.capacity["xc_v4_l24"]  # being made: as asked
        assert kt.max_entries("xc_rule_stats") == 65536  # pinned: read from the map, open already
        assert kt.making  # nothing so far needed the maps being made
        assert kt["xc_v4_l24"].max_entries == ctx.settings.capacity["xc_v4_l24"]  # waits for the making
        assert not kt.making
