"""The xdpctl command line as a user meets it: exit codes, one-line errors,
JSON that carries exact numbers.

Every command runs as its own process (the venv's ``xdpctl``) with the
test's pin and state directories; failures must leave the interface as it
was.
"""

from __future__ import annotations

import json
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


def _verbs(xenv: XEnv, *group: str) -> list[str]:
    text = cli_ok(xenv.cli(*group, "--help")).stdout
    return [ln.split()[0] for ln in text.split("Commands:", 1)[1].splitlines() if ln.strip()]


def test_every_verb_help_names_values_by_words(xenv: XEnv) -> None:
    fleet = ("fleet", "--etcd", "http://127.0.0.1:2379")
    runs = [((), ("--help",))] + [((), (v, "--help")) for v in _verbs(xenv)]
    runs += [(fleet, (v, "--help")) for v in _verbs(xenv, *fleet)]
    assert len(runs) > 20
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda r: xenv.cli(*r[0], *r[1]), runs))
    for (group, args), res in zip(runs, results):
        text = cli_ok(res).stdout
        for typed in ("<str>", "<int", "<list", "<float>", "<bool>", "<path>"):
            assert typed not in text, f"xdpctl {' '.join(group + args)} shows {typed}:\n{text}"
    attach = cli_ok(xenv.cli("attach", "--help")).stdout
    for words in ("IFACE", "--netns NS", "--hook HOOK", "--mode MODE", "--program PROGRAM"):
        assert words in attach


def test_status_says_nothing_attached_then_shows_the_tag(xenv: XEnv) -> None:
    b = xenv.b
    res = cli_ok(xenv.cli("status", "--netns", b.netns))
    assert res.stdout == "nothing attached; `xdpctl attach` IFACE attaches a classifier\n"
    assert cli_json(xenv.cli("status", "--netns", b.netns, "--json"))["interfaces"] == []
    cli_ok(xenv.cli("attach", b.ifname, "--netns", b.netns, "--mode", "generic"))
    (iface,) = cli_json(xenv.cli("status", "--netns", b.netns, "--json"))["interfaces"]
    (hook,) = iface["hooks"]
    assert hook["tag"] and hook["owner"] == "xdpctl"
    table = cli_ok(xenv.cli("status", "--netns", b.netns)).stdout
    assert "tag" in table and hook["tag"] in table and "nothing attached" not in table


def test_detach_with_nothing_attached_says_so(xenv: XEnv) -> None:
    b = xenv.b
    cli_error(xenv.cli("detach", b.ifname, "--netns", b.netns), 3,
              f"xdpctl has nothing attached on {b.ifname} in netns {b.netns}")
    cli_error(xenv.cli("detach", b.ifname, "--netns", b.netns, "--program", "droplist"), 3,
              f"droplist is not attached to {b.ifname} in netns {b.netns}")


def test_stats_watch_into_a_pipe_prints_every_frame(xenv: XEnv) -> None:
    b = xenv.b
    cli_ok(xenv.cli("attach", b.ifname, "--netns", b.netns, "--mode", "generic"))
    res = cli_ok(xenv.cli("stats", "--netns", b.netns, "--watch", "--interval", "0.2", "--count", "3"))
    assert res.stdout.count("xdpctl stats (summed over CPUs)") == 3
    assert "\x1b[" not in res.stdout  # no cursor movement: a log of tables
    assert "packet rate" in res.stdout and "bit rate" in res.stdout
    lines = cli_ok(xenv.cli("stats", "--netns", b.netns, "--watch", "--interval", "0.2", "--count", "2",
                            "--json")).stdout.splitlines()
    assert len(lines) == 2 and all(isinstance(h["rates"]["total"]["bits_per_s"], (int, float))
                                   for ln in lines for h in json.loads(ln)["hooks"] if h["rates"])
