"""The xdpctl command line as a user meets it: exit codes, one-line errors,
JSON that carries exact numbers.

Every command runs as its own process (the venv's ``xdpctl``) with the
test's pin and state directories; failures must leave the interface as it
was.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import traffic
from helpers_xdpctl import MIX_COUNTS, XEnv, assert_bare, cli_error, cli_json, cli_ok, expected_counts
from helpers_xdpctl import xenv  # noqa: F401  (fixture)
from xdpctl.core import counters


def test_help_renders_every_option_text(xenv: XEnv) -> None:
    with ThreadPoolExecutor(2) as pool:
        top = pool.submit(xenv.cli, "--help")
        imp = pool.submit(xenv.cli, "import", "--help")
    res = top.result()
    tail = " ".join(res.stderr.strip().splitlines()[-2:])
    assert res.returncode == 0, f"`xdpctl --help` exits {res.returncode}: {tail}"
    assert res.stderr == ""
    for text in ("attach", "detach", "status", "stats", "probe", "/sys/fs/bpf/xdpctl", "/var/lib/xdpctl"):
        assert text in res.stdout
    # Help texts are shown as written, brackets included.
    assert "the file name without extension" in cli_ok(imp.result()).stdout


def test_unknown_interface_exits_3(xenv: XEnv) -> None:
    b = xenv.b
    with ThreadPoolExecutor(2) as pool:
        in_ns = pool.submit(xenv.cli, "attach", "xcnosuch0", "--netns", b.netns)
        in_host = pool.submit(xenv.cli, "attach", "xcnosuch0")
    cli_error(in_ns.result(), 3, "no interface 'xcnosuch0'", f"network namespace '{b.netns}'")
    cli_error(in_host.result(), 3, "no interface 'xcnosuch0'")
    assert not os.path.exists(xenv.ctx.settings.hooks_dir) or os.listdir(xenv.ctx.settings.hooks_dir) == []


def test_unknown_namespace_exits_3(xenv: XEnv) -> None:
    missing = f"{xenv.b.netns}-gone"
    cli_error(
        xenv.cli("attach", xenv.b.ifname, "--netns", missing), 3, f"network namespace '{missing}' does not exist"
    )


def test_xdp_mode_on_tc_hook_exits_2(xenv: XEnv) -> None:
    b = xenv.b
    cli_error(
        xenv.cli("attach", b.ifname, "--netns", b.netns, "--hook", "tc-ingress", "--mode", "generic"),
        2,
        "--mode generic applies to the xdp hook only",
        "tc-ingress",
    )
    assert_bare(b)


def test_missing_bpf_objects_exit_78(xenv: XEnv) -> None:
    b = xenv.b
    empty = xenv.tmp / "no-objects"
    empty.mkdir()
    cli_error(
        xenv.cli("attach", b.ifname, "--netns", b.netns, env={"XDPCTL_BPF_DIR": str(empty)}),
        78,
        f"{empty}/xdp_hook.o is missing",
        "make bpf",
    )
    assert_bare(b)
    assert not os.path.exists(xenv.ref(b, "xdp").dir(xenv.ctx))


def test_attach_stats_detach_with_exact_counts(xenv: XEnv) -> None:
    a, b = xenv.a, xenv.b
    att = cli_json(xenv.cli("attach", b.ifname, "--netns", b.netns, "--mode", "generic", "--json"))
    assert {k: att[k] for k in ("netns", "ifname", "hook", "program", "mode", "replaced", "notes")} == {
        "netns": b.netns, "ifname": b.ifname, "hook": "xdp", "program": "counter", "mode": "generic",
        "replaced": False, "notes": [],
    }

    mark = traffic.marker()
    frames = traffic.frame_mix(a, b, mark, MIX_COUNTS)
    got = traffic.send_and_capture(a, b, frames, mark)
    assert dict(traffic.count_kinds(got, mark)) == MIX_COUNTS

    out = cli_json(xenv.cli("stats", b.ifname, "--netns", b.netns, "--json"))
    want = expected_counts(frames, mark, sentinels=1)
    untagged = [v for (l3, _l4), v in want.items() if l3 != "vlan"]  # tagged frames are in their class too
    assert out == {
        "hooks": [{
            "netns": b.netns, "ifname": b.ifname, "hook": "xdp",
            "total": {"packets": sum(p for p, _n in untagged), "bytes": sum(n for _p, n in untagged)},
            "protocols": [{"l3": l3, "l4": l4, "packets": p, "bytes": n} for (l3, l4), (p, n) in sorted(want.items())],
            "verdicts": {},
            "rates": None,
        }],
        "time": None,
        "seconds": None,
    }
    # The numbers are the kernel's, not a model's: same as the core reads.
    (hook,) = out["hooks"]
    assert {(r["l3"], r["l4"]): (r["packets"], r["bytes"]) for r in hook["protocols"]} == xenv.counts(b, "xdp")

    res = cli_ok(xenv.cli("detach", b.ifname, "--netns", b.netns))
    assert res.stdout == f"detached counter from {b.netns}/{b.ifname} xdp\n"
    assert_bare(b)
    # The hook's counters went with it: nothing left for stats to show.
    assert counters.read_all(xenv.ctx) == []
