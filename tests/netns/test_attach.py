"""The attach model on real interfaces: chains, modes, ownership, status.

Each test works on a fresh IPv4-only lab with its own pin and state
directories (helpers_xdpctl.xenv) and leaves the interfaces bare. The CLI
is run as a separate process where the user-facing result (exit code,
message, JSON) is what is tested; the core API is used to set the scene.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import pytest

import traffic
from helpers_xdpctl import (
    XEnv,
    assert_bare,
    bpftool_net,
    cli_error,
    cli_json,
    ethtool_features,
    ip_link_json,
    ip_xdp,
    qdisc_kinds,
    sh,
    tc_filters_json,
)
from helpers_xdpctl import xenv  # noqa: F401  (fixture)
from xdpctl.core.hooks import HOOK_PROG, probe, status
from xdpctl.core.errors import Conflict, XdpctlError
from xdpctl.kernel import maps, netlink, objects

IP_XDP_GENERIC = 2  # XDP_ATTACHED_SKB as `ip -j link` reports it


@contextmanager
def _foreign(kind: str) -> Iterator[int]:
    """A program of someone else's (named like one of xdpctl's old stages)."""
    fd = objects.load_pass(kind, "xc_counter")
    try:
        yield fd
    finally:
        os.close(fd)


def _xdp_ids(ep) -> dict:
    return netlink.get_link(ep.ifname, ep.netns).xdp_ids


def _status_row(doc: dict, ep) -> dict:
    (row,) = [r for r in doc["interfaces"] if r["netns"] == ep.netns and r["ifname"] == ep.ifname]
    return row


# --------------------------------------------------------------------------
# Offload


def test_offload_on_veth_fails_cleanly(xenv: XEnv) -> None:
    b = xenv.b
    before = ip_link_json(b)
    line = cli_error(
        xenv.cli("attach", b.ifname, "--netns", b.netns, "--mode", "offload"),
        5,
        b.ifname,
        "driver veth",
        "nfp",
        "offload",
    )
    assert "--mode native or generic" in line
    # Nothing changed: no program, no filter, no pins, nothing recorded.
    assert_bare(b)
    assert ip_link_json(b) == before
    assert not os.path.exists(xenv.ref(b, "xdp").dir(xenv.ctx))
    hooks_dir = xenv.ctx.settings.hooks_dir
    assert not os.path.isdir(hooks_dir) or os.listdir(hooks_dir) == []
    assert xenv.ctx.state.attachments() == []


# --------------------------------------------------------------------------
# Several classifiers on one hook


def test_counter_and_droplist_share_one_xdp_hook(xenv: XEnv) -> None:
    a, b = xenv.a, xenv.b
    ref = xenv.ref(b, "xdp")
    counter = xenv.hooks.attach(b.ifname, "counter", "xdp", "generic", b.netns)
    droplist = xenv.hooks.attach(b.ifname, "droplist", "xdp", None, b.netns)  # joins the generic chain
    assert droplist.root_id == counter.root_id and droplist.mode == "generic"
    assert _xdp_ids(b) == {"generic": counter.root_id}

    (hook,) = _status_row(cli_json(xenv.cli("status", "--netns", b.netns, "--json")), b)["hooks"]
    assert (hook["hook"], hook["mode"], hook["id"], hook["owner"]) == ("xdp", "generic", counter.root_id, "xdpctl")
    assert [(s["slot"], s["program"], s["id"]) for s in hook["stages"]] == [
        (0, "counter", counter.prog_id),
        (1, "droplist", droplist.prog_id),
    ]

    # Both stages run, in order: the counter counts, the drop list (empty,
    # policy allow) passes everything and says so in its verdict counters.
    mark = traffic.marker()
    frames = traffic.frame_mix(a, b, mark, {"udp4": 3, "tcp4": 2})
    got = traffic.send_and_capture(a, b, frames, mark)
    assert dict(traffic.count_kinds(got, mark)) == {"udp4": 3, "tcp4": 2}
    udp_len, tcp_len = (len(bytes(traffic.build_frame(k, a, b, mark))) for k in ("udp4", "tcp4"))
    sentinel_len = 14 + len(traffic.sentinel_payload(mark))
    assert xenv.counts(b, "xdp") == {
        ("ipv4", "udp"): (3, 3 * udp_len), ("ipv4", "tcp"): (2, 2 * tcp_len), ("other", "-"): (1, sentinel_len),
    }
    dl_before = xenv.verdicts(b, "xdp")
    assert dl_before == {"pass_nomatch": (6, 3 * udp_len + 2 * tcp_len + sentinel_len)}

    # Removing the drop list leaves the counter running and counting.
    assert xenv.hooks.detach(b.ifname, "droplist", "xdp", b.netns) == [(ref, "droplist")]
    assert _xdp_ids(b) == {"generic": counter.root_id}
    st = xenv.hooks.hook_status(ref)
    assert st.attached and [(s.program, s.id) for s in st.stages] == [("counter", counter.prog_id)]
    mark2 = traffic.marker()
    frames2 = traffic.frame_mix(a, b, mark2, {"udp4": 4})
    assert len(traffic.send_and_capture(a, b, frames2, mark2)) == 4
    assert xenv.counts(b, "xdp") == {
        ("ipv4", "udp"): (7, 7 * udp_len), ("ipv4", "tcp"): (2, 2 * tcp_len), ("other", "-"): (2, 2 * sentinel_len),
    }
    assert xenv.verdicts(b, "xdp") == dl_before  # the drop list saw none of it

    # Removing the last stage removes the root and the hook's pins.
    assert xenv.hooks.detach(b.ifname, "counter", "xdp", b.netns) == [(ref, "counter")]
    assert_bare(b)
    assert not os.path.exists(ref.dir(xenv.ctx))
    assert xenv.ctx.state.attachments() == []


# --------------------------------------------------------------------------
# Programs xdpctl did not attach


def test_foreign_xdp_program_is_not_clobbered_without_force(xenv: XEnv) -> None:
    b = xenv.b
    with _foreign("xdp") as fd:
        foreign_id = maps.prog_info(fd).id
        netlink.xdp_set(b.ifname, b.netns, fd, "generic", exclusive=True)
    assert _xdp_ids(b) == {"generic": foreign_id}

    cli_error(
        xenv.cli("attach", b.ifname, "--netns", b.netns),
        4,
        f"{b.netns}/{b.ifname} xdp",
        "'xc_counter'",
        f"id {foreign_id}",
        "generic mode",
        "--force",
    )
    assert _xdp_ids(b) == {"generic": foreign_id}
    assert not os.path.exists(xenv.ref(b, "xdp").dir(xenv.ctx))

    res = cli_json(xenv.cli("attach", b.ifname, "--netns", b.netns, "--mode", "generic", "--force", "--json"))
    assert res["mode"] == "generic" and res["root_id"] != foreign_id
    assert _xdp_ids(b) == {"generic": res["root_id"]}
    (hook,) = _status_row(status(xenv.ctx, b.netns).to_json(), b)["hooks"]
    assert (hook["id"], hook["name"], hook["owner"]) == (res["root_id"], HOOK_PROG, "xdpctl")
    assert [(s["program"], s["id"]) for s in hook["stages"]] == [("counter", res["prog_id"])]


def test_foreign_tc_filter_is_not_clobbered_without_force(xenv: XEnv) -> None:
    b = xenv.b
    with _foreign("tc") as fd:
        foreign_id = maps.prog_info(fd).id
        netlink.tc_set(b.ifname, b.netns, "tc-ingress", fd, "someone-else")
    assert [f["options"]["prog"]["id"] for f in tc_filters_json(b, "ingress")] == [foreign_id]

    cli_error(
        xenv.cli("attach", b.ifname, "--netns", b.netns, "--hook", "tc-ingress"),
        4,
        f"{b.netns}/{b.ifname} tc-ingress",
        "'someone-else'",
        f"id {foreign_id}",
        "--force",
    )
    assert [f["options"]["prog"]["id"] for f in tc_filters_json(b, "ingress")] == [foreign_id]
    assert not os.path.exists(xenv.ref(b, "tc-ingress").dir(xenv.ctx))

    # --force (the same core call the CLI makes) replaces it in place.
    res = xenv.hooks.attach(b.ifname, "counter", "tc-ingress", None, b.netns, force=True)
    (flt,) = tc_filters_json(b, "ingress")
    assert flt["options"]["prog"]["id"] == res.root_id != foreign_id
    assert flt["options"]["bpf_name"] == f"{netlink.TC_NAME_PREFIX}hook"
    assert xenv.hooks.hook_status(xenv.ref(b, "tc-ingress")).attached is True


# --------------------------------------------------------------------------
# Status comes from the kernel


def test_status_reports_what_the_kernel_runs(xenv: XEnv) -> None:
    b = xenv.b
    xdp = xenv.hooks.attach(b.ifname, "counter", "xdp", "generic", b.netns)
    tc = xenv.hooks.attach(b.ifname, "counter", "tc-ingress", None, b.netns)

    (ip_mode, ip_id) = ip_xdp(b)
    (flt,) = tc_filters_json(b, "ingress")
    net = bpftool_net(b)
    assert (ip_mode, ip_id) == (IP_XDP_GENERIC, xdp.root_id)
    assert [(x["mode"], x["id"]) for x in net["xdp"]] == [("generic", xdp.root_id)]
    assert [(t["kind"], t["id"]) for t in net["tc"]] == [("clsact/ingress", tc.root_id)]
    assert flt["options"]["prog"]["id"] == tc.root_id

    row = _status_row(cli_json(xenv.cli("status", "--json")), b)
    assert row["driver"] == "veth" and row["up"] is True
    got = {h["hook"]: (h["mode"], h["id"], h["owner"], [s["id"] for s in h["stages"]]) for h in row["hooks"]}
    assert got == {
        "xdp": ("generic", ip_id, "xdpctl", [xdp.prog_id]),
        "tc-ingress": (None, flt["options"]["prog"]["id"], "xdpctl", [tc.prog_id]),
    }

    # Someone removes the XDP program behind xdpctl's back: status follows
    # the kernel, not xdpctl's pins.
    sh("ip", "-n", b.netns, "link", "set", "dev", b.ifname, "xdpgeneric", "off")
    assert ip_xdp(b) is None
    row = _status_row(cli_json(xenv.cli("status", "--json")), b)
    got = {h["hook"]: (h["id"], h["owner"]) for h in row["hooks"]}
    # the kernel runs nothing on xdp any more; xdpctl's pins say what restore would bring back
    assert got["tc-ingress"] == (flt["options"]["prog"]["id"], "xdpctl")
    assert got["xdp"][0] is None and got["xdp"][1].startswith("xdpctl (pinned, not attached")
    assert xenv.hooks.hook_status(xenv.ref(b, "xdp")).attached is False

    removed = xenv.hooks.detach(b.ifname, netns=b.netns)
    assert sorted((ref.hook, name) for ref, name in removed) == [("tc-ingress", "counter"), ("xdp", "counter")]
    assert_bare(b)


# --------------------------------------------------------------------------
# Probe


def _snapshot(xenv: XEnv) -> dict:
    return {
        ep.label: (ip_link_json(ep), qdisc_kinds(ep), ethtool_features(ep)) for ep in (xenv.a, xenv.b)
    }


def test_probe_reports_veth_capabilities_and_leaves_it_as_found(xenv: XEnv) -> None:
    b = xenv.b
    before = _snapshot(xenv)
    rep = cli_json(xenv.cli("probe", b.ifname, "--netns", b.netns, "--json"))
    assert (rep["netns"], rep["ifname"], rep["ifindex"], rep["driver"]) == (b.netns, b.ifname, b.ifindex, "veth")
    results = {(r["hook"], r["mode"]): r for r in rep["results"]}
    assert {k: r["ok"] for k, r in results.items()} == {
        ("xdp", "generic"): True,
        ("xdp", "native"): True,
        ("xdp", "offload"): False,
        ("tc-ingress", None): True,
        ("tc-egress", None): True,
    }
    offload = results[("xdp", "offload")]["detail"]
    assert "veth" in offload and "nfp" in offload
    # The probe attached and removed programs on b (native XDP on a veth
    # also touches the peer's features): both ends are exactly as before.
    assert _snapshot(xenv) == before
    assert_bare(b)
    assert "clsact" not in qdisc_kinds(xenv.a)


# --------------------------------------------------------------------------
# XDP_FLAGS_REPLACE, which the atomic root replacement relies on


def test_xdp_replace_swaps_only_the_expected_program(xenv: XEnv) -> None:
    a, b = xenv.a, xenv.b
    ref = xenv.ref(b, "xdp")
    ours = xenv.hooks.attach(b.ifname, "counter", "xdp", "generic", b.netns)
    root_fd = maps.prog_fd_by_id(ours.root_id)
    try:
        with _foreign("xdp") as new_fd, _foreign("xdp") as other_fd:
            new_id = maps.prog_info(new_fd).id
            with pytest.raises(Conflict, match="EEXIST|expected"):
                netlink.xdp_set(b.ifname, b.netns, new_fd, "generic", expected_fd=other_fd)
            with pytest.raises(Conflict):
                netlink.xdp_set(b.ifname, b.netns, new_fd, "generic", exclusive=True)
            assert _xdp_ids(b) == {"generic": ours.root_id}

            netlink.xdp_set(b.ifname, b.netns, new_fd, "generic", expected_fd=root_fd)
            assert _xdp_ids(b) == {"generic": new_id}
            assert xenv.hooks.hook_status(ref).attached is False
            # and back: xdpctl's program (with its stages) runs again
            netlink.xdp_set(b.ifname, b.netns, root_fd, "generic", expected_fd=new_fd)
    finally:
        os.close(root_fd)
    assert _xdp_ids(b) == {"generic": ours.root_id}
    assert xenv.hooks.hook_status(ref).attached is True
    mark = traffic.marker()
    frames = traffic.frame_mix(a, b, mark, {"udp4": 2})
    assert len(traffic.send_and_capture(a, b, frames, mark)) == 2
    assert xenv.counts(b, "xdp")[("ipv4", "udp")] == (2, 2 * len(bytes(frames[0])))


# --------------------------------------------------------------------------
# Leaving what is not ours alone


def test_detach_leaves_other_tc_filters_and_their_qdisc(xenv: XEnv) -> None:
    b = xenv.b
    # Someone else's clsact qdisc with a (non-BPF) u32 filter on ingress.
    sh("tc", "-n", b.netns, "qdisc", "add", "dev", b.ifname, "clsact")
    sh("tc", "-n", b.netns, "filter", "add", "dev", b.ifname, "ingress", "pref", "4",
       "u32", "match", "u32", "0", "0", "flowid", "1:1")
    theirs = tc_filters_json(b, "ingress")
    assert {(f["pref"], f["kind"]) for f in theirs} == {(4, "u32")}

    xenv.hooks.attach(b.ifname, "counter", "tc-ingress", None, b.netns)
    both = {(f["pref"], f["kind"]) for f in tc_filters_json(b, "ingress")}
    assert both == {(4, "u32"), (netlink.TC_PREF, "bpf")}
    xenv.hooks.detach(b.ifname, "counter", "tc-ingress", b.netns)

    assert "clsact" in qdisc_kinds(b), "xdpctl deleted a clsact qdisc that still held someone else's filter"
    assert tc_filters_json(b, "ingress") == theirs


# --------------------------------------------------------------------------
# Mode selection


def test_auto_mode_falls_back_to_generic_when_the_driver_refuses_native(xenv: XEnv) -> None:
    a, b = xenv.a, xenv.b
    # A veth takes a native XDP program (without multi-buffer support) only
    # while its peer's MTU fits a page; generic XDP has no such limit.
    xenv.lab.ipr("a").link("set", index=a.ifindex, mtu=9000)
    xenv.lab.ipr("b").link("set", index=b.ifindex, mtu=9000)
    results = {(r.hook, r.mode): r for r in probe(xenv.ctx, b.ifname, b.netns).results}
    assert results[("xdp", "generic")].ok is True
    assert results[("xdp", "native")].ok is False and "MTU" in results[("xdp", "native")].detail

    res = xenv.hooks.attach(b.ifname, "counter", "xdp", None, b.netns)  # auto
    assert res.mode == "generic"
    assert any("native XDP not available" in n for n in res.notes)
    assert _xdp_ids(b) == {"generic": res.root_id}


def test_force_in_auto_mode_never_leaves_the_interface_without_a_program(xenv: XEnv) -> None:
    a, b = xenv.a, xenv.b
    xenv.lab.ipr("a").link("set", index=a.ifindex, mtu=9000)  # native XDP on b now refused
    xenv.lab.ipr("b").link("set", index=b.ifindex, mtu=9000)
    with _foreign("xdp") as fd:
        foreign_id = maps.prog_info(fd).id
        netlink.xdp_set(b.ifname, b.netns, fd, "generic", exclusive=True)

    error: XdpctlError | None = None
    try:
        res = xenv.hooks.attach(b.ifname, "counter", "xdp", None, b.netns, force=True)
    except XdpctlError as exc:
        error = exc
    ids = _xdp_ids(b)
    assert ids, f"attach --force ({error or 'succeeded'}) removed program {foreign_id} and attached nothing"
    assert error is None, f"attach --force failed although generic mode works here: {error}"
    assert ids == {"generic": res.root_id} and res.mode == "generic"
