"""Enforcement never depends on pins: the kernel keeps an attached program
and its maps; pins only give xdpctl access to them.

Pins removed while traffic runs: a blocked source stays dropped; a write
that could not reach the maps the program reads fails and says so;
restore (without --force) pins the running program's maps again, keeps the
program, and later writes take effect. detach works without pins. restore
does not churn and tells which attachments it could not restore.
"""

from __future__ import annotations

import json
import os
import subprocess

import traffic
from helpers_xdpctl import XEnv, cli_error, cli_json, cli_ok
from helpers_xdpctl import xenv  # noqa: F401  (fixture)
from xdpctl.core.hooks import on_hook
from xdpctl.core.rules.tables import kernel_health
from xdpctl.kernel import bpffs, maps, netlink

N = 20


def _received(xenv: XEnv) -> int:
    """UDP frames from a that got past b's XDP hook, of N sent."""
    mark = traffic.marker()
    frames = traffic.frame_mix(xenv.a, xenv.b, mark, {"udp4": N})
    got = traffic.send_and_capture(xenv.a, xenv.b, frames, mark)
    return dict(traffic.count_kinds(got, mark)).get("udp4", 0)


def _xdp_id(xenv: XEnv) -> int | None:
    return netlink.get_link(xenv.b.ifname, xenv.b.netns).xdp_ids.get("generic")


def _blocked_setup(xenv: XEnv) -> int:
    b = xenv.b
    cli_ok(xenv.cli("attach", b.ifname, "--netns", b.netns, "-p", "droplist", "--mode", "generic"))
    cli_ok(xenv.cli("block", xenv.a.ipv4))
    assert _received(xenv) == 0
    pid = _xdp_id(xenv)
    assert pid is not None
    return pid


def _assert_pins_are_the_programs_maps(xenv: XEnv, prog_id: int) -> None:
    ref = xenv.ref(xenv.b, "xdp")
    hp = on_hook(xenv.ctx, ref).ours
    assert hp is not None and hp.id == prog_id
    shared = xenv.ctx.settings.shared_map_dir
    for name in ("xc_cfg", "xc_v4_l32", "xc_rule_stats"):
        assert maps.pinned_id(os.path.join(shared, name)) == hp.maps[name], name
    for name in ("xc_stages", "xc_dl_cnt"):
        assert maps.pinned_id(ref.pin(xenv.ctx, name)) == hp.maps[name], name


def _write_refused(xenv: XEnv) -> None:
    """A block while the pinned maps are gone fails; nothing is recorded."""
    rev = cli_json(xenv.cli("revision", "--json"))
    cli_error(xenv.cli("block", "198.51.100.9"), 14, "kernel objects lost", "xdpctl restore")
    assert cli_json(xenv.cli("revision", "--json")) == rev
    assert "198.51.100.9" not in xenv.cli("rules").stdout


def _restore_and_write(xenv: XEnv, prog_id: int) -> None:
    cli_ok(xenv.cli("restore"))
    assert _xdp_id(xenv) == prog_id  # the running program is kept
    _assert_pins_are_the_programs_maps(xenv, prog_id)
    assert _received(xenv) == 0
    cli_ok(xenv.cli("unblock", xenv.a.ipv4))  # reaches the maps the program reads
    assert _received(xenv) == N
    cli_ok(xenv.cli("block", xenv.a.ipv4))
    assert _received(xenv) == 0


def test_pin_dir_removed_filtering_goes_on_and_restore_repins(xenv: XEnv) -> None:
    pid = _blocked_setup(xenv)
    bpffs.remove_tree(xenv.ctx.settings.pin_dir)
    assert _received(xenv) == 0  # still dropped, every one of them
    assert _xdp_id(xenv) == pid
    _write_refused(xenv)
    assert _received(xenv) == 0
    _restore_and_write(xenv, pid)


def test_shared_maps_removed_restore_reuses_the_running_maps(xenv: XEnv) -> None:
    pid = _blocked_setup(xenv)
    bpffs.remove_tree(xenv.ctx.settings.shared_map_dir)
    assert _received(xenv) == 0
    _write_refused(xenv)
    _restore_and_write(xenv, pid)


def test_detach_without_pins_takes_the_program_off(xenv: XEnv) -> None:
    b = xenv.b
    _blocked_setup(xenv)
    bpffs.remove_tree(xenv.ctx.settings.pin_dir)
    res = cli_json(xenv.cli("detach", b.ifname, "--netns", b.netns, "--json"))
    assert [r["program"] for r in res["removed"]] == ["droplist"]
    assert _xdp_id(xenv) is None
    assert netlink.get_link(b.ifname, b.netns).xdp_ids == {}
    assert _received(xenv) == N


def test_restore_keeps_programs_and_names_what_it_cannot_restore(xenv: XEnv) -> None:
    b = xenv.b
    cli_ok(xenv.cli("attach", b.ifname, "--netns", b.netns, "-p", "counter", "--mode", "generic"))
    cli_ok(xenv.cli("attach", b.ifname, "--netns", b.netns, "-p", "droplist", "--hook", "tc-ingress"))
    ids = (_xdp_id(xenv), netlink.tc_ours(b.ifname, b.netns, "tc-ingress").prog_id)
    for _ in range(2):
        cli_ok(xenv.cli("restore"))
        assert (_xdp_id(xenv), netlink.tc_ours(b.ifname, b.netns, "tc-ingress").prog_id) == ids

    gone = "xcgone0"
    subprocess.run(["ip", "-n", b.netns, "link", "add", gone, "type", "veth", "peer", "name", "xcgone1"],
                   check=True)
    subprocess.run(["ip", "-n", b.netns, "link", "set", gone, "up"], check=True)
    cli_ok(xenv.cli("attach", gone, "--netns", b.netns, "-p", "counter", "--mode", "generic"))
    subprocess.run(["ip", "-n", b.netns, "link", "del", gone], check=True)
    bpffs.remove_tree(xenv.ctx.settings.pin_dir)
    res = xenv.cli("restore", "--json")
    assert res.returncode == 13, res.stderr
    rep = json.loads(res.stdout)
    assert len(rep["errors"]) == 1 and gone in rep["errors"][0], rep["errors"]
    assert (_xdp_id(xenv), netlink.tc_ours(b.ifname, b.netns, "tc-ingress").prog_id) == ids
    assert os.path.exists(xenv.ref(b, "xdp").pin(xenv.ctx, "xc_proto"))
    cli_ok(xenv.cli("detach", gone, "--netns", b.netns))



def test_attach_and_detach_keep_the_kernel_at_the_database_revision(xenv: XEnv) -> None:
    """Attach and detach move the revision; the kernel's rule set is labelled
    with it too, so health stays ok (not "the kernel is at revision N-1")."""
    b = xenv.b
    steps = (["attach", b.ifname, "--netns", b.netns, "--mode", "generic", "--json"],
             ["attach", b.ifname, "--netns", b.netns, "-p", "droplist", "--json"],
             ["block", "198.51.100.0/24", "--json"],
             ["detach", b.ifname, "--netns", b.netns, "-p", "counter", "--json"],
             ["detach", b.ifname, "--netns", b.netns, "--json"])
    revisions = []
    for args in steps:
        cli_json(xenv.cli(*args))
        rev = xenv.ctx.state.revision
        h = kernel_health(xenv.ctx, rev)
        assert h.ok and h.in_sync and h.kernel_revision == rev, (args, h)
        revisions.append(rev)
    assert revisions == sorted(set(revisions)), revisions
