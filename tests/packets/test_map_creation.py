"""The first change makes the shared drop-list maps in a thread while it
compiles (SharedMaps.ensure(early=True)): the change that follows is
enforced as usual, and a making that fails fails the change with the
kernel's reason and libbpf's, leaving no pin and no revision behind."""

from __future__ import annotations

import errno
import os

import pytest

from tests.support import emulation as emu
from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe, kernel_rule_set
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.errors import BpfError
from xdpctl.core.rules import ruleset, service
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import SHARED_DL_MAPS, KernelTables, kernel_health, read_pinned_config
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import libbpf as L
from xdpctl.kernel import maps
from xdpctl.kernel.maps import obj_pin

pytestmark = pytest.mark.root

HOSTS = [px.Prefix(4, 0x0A000000 + i, 32) for i in range(5000)]


def test_the_first_change_makes_the_maps_beside_its_compile(make_ctx) -> None:
    ctx = make_ctx()
    assert not os.path.exists(ctx.settings.shared_map_dir)
    with KernelTables(ctx) as kt:
        assert kt.making  # the thread is making them
        assert kt.cfg == abi.Config(0, 0, 0)
        assert kt.max_entries("xc_rule_stats") == ctx.settings.capacity["xc_rule_stats"]
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


@pytest.mark.parametrize("value_size,says", [
    (32, ("32-byte values, not mmapable", "40 bytes, mmapable")),  # before the dead ids
    (40, ("40-byte values, not mmapable", "40 bytes, mmapable")),  # before xc_cfg was a data section
])
def test_a_map_pinned_by_another_layout_is_refused_and_nothing_changes(make_ctx, value_size, says) -> None:
    """xc_cfg pinned as an older xdpctl made it (a real array map of that
    value size, not mmapable, in its place): a change is refused with the
    pin named and the way out, before anything is written; health says the
    same; after the pins are removed, restore makes them anew."""
    ctx = make_ctx()
    d = DropList(ctx)
    d.import_list("feed", HOSTS[:10])
    ctx.close()
    path = os.path.join(ctx.settings.shared_map_dir, "xc_cfg")
    os.unlink(path)
    fd = L.check(L.bpf_map_create(2, b"xc_cfg", 4, value_size, 1, None), "create an old xc_cfg")  # ARRAY
    try:
        obj_pin(fd, path)
    finally:
        L.close_fd(fd)
    with pytest.raises(BpfError) as err:
        d.add([spec("10.9.9.9")])
    msg = str(err.value)
    assert err.value.errno == errno.EINVAL and path in msg and all(s in msg for s in says), msg
    assert "restore" in err.value.hint
    assert d.revision() == 1 and [r.prefix for r in d.rules()] == []
    with pytest.raises(BpfError):
        kernel_health(ctx, 1)
    for name in os.listdir(ctx.settings.shared_map_dir):
        os.unlink(os.path.join(ctx.settings.shared_map_dir, name))
    d.sync()
    assert read_pinned_config(ctx).generation == 1
    with DropListProbe(ctx.settings) as p:
        assert p.source_match("10.0.0.7")[0] == XDP_DROP


def test_a_first_whole_image_takes_the_new_array_as_zeros(make_ctx, monkeypatch) -> None:
    """The /16 array of a set this change made is compared with zeros, not
    read back (a dump of its 131,072 slots); what it ends holding is the
    compile all the same, in both sets, and a /12 drops."""
    monkeypatch.setattr(service, "BULK_THRESHOLD", 0)  # every change a whole image
    read = []
    dump = maps.Map.dump
    monkeypatch.setattr(maps.Map, "dump", lambda self: read.append(self.name) or dump(self))
    ctx = make_ctx()
    d = DropList(ctx)
    d.add([spec("10.16.0.0/12"), spec("10.0.0.7")])
    assert not [n for n in read if n.startswith("xc_v4_l16")], read
    want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
    assert kernel_rule_set(ctx, 0) == want and kernel_rule_set(ctx, 1) == want
    with DropListProbe(ctx.settings) as p:
        assert p.source_match("10.20.1.1")[0] == XDP_DROP and p.source_match("10.32.1.1")[0] == XDP_PASS
    d.add([spec("10.64.0.0/12")])  # the next image reads the array it compares with
    assert [n for n in read if n.startswith("xc_v4_l16")], read
    want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
    assert kernel_rule_set(ctx, 0) == want and kernel_rule_set(ctx, 1) == want
