"""One document per resource: `xdpctl X --json` prints exactly the body of
the matching REST call, for attach, detach, status, stats and probe.

A real server (its own pin and state directories, no background expiry, so
nothing changes the revision behind the test) and the CLI as a separate
process pointed at the same directories, over a namespace lab with stages
attached. Counters are read with no traffic flowing, so both sides see the
same numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import traffic
from api_helpers import Running

from xdpctl.lab import TwoHostLab

REPO = Path(__file__).resolve().parents[2]
XDPCTL = Path(sys.executable).with_name("xdpctl")
CLI_TIMEOUT = 60  # an upper bound of one CLI run, never an assertion about speed


@pytest.fixture(scope="module")
def srv(start_server) -> Running:
    return start_server(expire_interval=0)


@pytest.fixture(scope="module")
def rest(srv: Running) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def cli(srv: Running, *args: str) -> subprocess.CompletedProcess:
    if not XDPCTL.exists():
        raise AssertionError(f"{XDPCTL} is missing: install the package into the venv (make deps)")
    cmd = [str(XDPCTL), "--pin-dir", srv.settings.pin_dir, "--state-dir", srv.settings.state_dir, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=CLI_TIMEOUT)


def cli_doc(srv: Running, *args: str):
    res = cli(srv, *args)
    assert res.returncode == 0, f"{res.args}: exit {res.returncode}: {res.stderr.strip()}"
    return json.loads(res.stdout)


def body(r: httpx.Response, status: int = 200):
    assert r.status_code == status, r.text
    return r.json()


def cli_exit_3(srv: Running, *args: str) -> str:
    res = cli(srv, *args)
    assert res.returncode == 3, f"{res.args}: exit {res.returncode}, want 3: {res.stderr.strip()}"
    assert res.stdout == ""
    (line,) = res.stderr.splitlines()
    assert line.startswith("xdpctl: error: "), line
    return line


@pytest.fixture
def lab(rest: httpx.Client) -> Iterator[TwoHostLab]:
    """A two-host lab; whatever is still attached in it is detached over
    REST afterwards, pass or fail."""
    two = TwoHostLab(ipv6=False)
    try:
        yield two
    finally:
        try:
            for ep in (two.a, two.b):
                r = rest.delete("/v1/attachments", params={"ifname": ep.ifname, "netns": ep.netns})
                assert r.status_code in (200, 404), r.text
        finally:
            two.close()


def test_attach_detach_status_stats_probe_documents_are_the_rest_bodies(
        srv: Running, rest: httpx.Client, lab: TwoHostLab) -> None:
    a, b = lab.a, lab.b
    where = {"ifname": b.ifname, "netns": b.netns}

    # attach: REST adds the drop list, the CLI the counter to the same chain
    # (the CLI runs with the default map sizes, which only the drop list's
    # shared maps would notice)
    droplist = body(rest.post("/v1/attachments", json={**where, "program": "droplist", "mode": "generic"}), 201)
    counter = cli_doc(srv, "attach", b.ifname, "--netns", b.netns, "--program", "counter", "--json")
    assert counter["prog_id"] == droplist["prog_id"] == droplist["root_id"]  # one program runs both stages
    assert counter == {**droplist, "program": "counter", "prog_id": counter["prog_id"],
                       "revision": droplist["revision"] + 1}
    tc = cli_doc(srv, "attach", a.ifname, "--netns", a.netns, "--hook", "tc-egress", "--json")
    assert tc["mode"] is None and tc["revision"] == counter["revision"] + 1

    # some counted frames, then none while both sides read
    mark = traffic.marker()
    frames = traffic.frame_mix(a, b, mark, {"udp4": 3, "tcp4": 2, "arp": 1})
    assert dict(traffic.count_kinds(traffic.send_and_capture(a, b, frames, mark), mark)) == {
        "udp4": 3, "tcp4": 2, "arp": 1}

    # status: the default walk, one namespace, every interface
    assert cli_doc(srv, "status", "--json") == body(rest.get("/v1/status"))
    st = cli_doc(srv, "status", "--netns", b.netns, "--json")
    assert st == body(rest.get("/v1/status", params={"netns": b.netns}))
    (iface,) = st["interfaces"]
    (hook,) = iface["hooks"]
    assert (hook["id"], hook["owner"], hook["mode"]) == (droplist["root_id"], "xdpctl", "generic")
    assert [(s["program"], s["id"]) for s in hook["stages"]] == [
        ("counter", counter["prog_id"]), ("droplist", droplist["prog_id"])]
    assert all(x["attached"] for x in st["recorded"]) and len(st["recorded"]) == 3
    assert cli_doc(srv, "status", "--netns", a.netns, "--all", "--json") == body(
        rest.get("/v1/status", params={"netns": a.netns, "all": True}))

    # stats: every hook, one namespace, one interface
    every = cli_doc(srv, "stats", "--json")
    assert every == body(rest.get("/v1/stats"))
    assert {(h["netns"], h["hook"]) for h in every["hooks"]} == {(b.netns, "xdp"), (a.netns, "tc-egress")}
    one = cli_doc(srv, "stats", b.ifname, "--netns", b.netns, "--json")
    assert one == body(rest.get("/v1/stats", params=where))
    (hs,) = one["hooks"]
    assert hs["total"]["packets"] >= 7 and hs["verdicts"]["pass_nomatch"]["packets"] >= 7
    assert cli_doc(srv, "stats", "--netns", a.netns, "--json") == body(rest.get("/v1/stats",
                                                                               params={"netns": a.netns}))

    # probe: a hook in use (b) and a bare one (a's XDP); both left as found
    for ep in (b, a):
        doc = cli_doc(srv, "probe", ep.ifname, "--netns", ep.netns, "--json")
        assert doc == body(rest.post("/v1/probe", json={"ifname": ep.ifname, "netns": ep.netns}))
        assert (doc["ifname"], doc["driver"], len(doc["results"])) == (ep.ifname, "veth", 5)
    assert cli_doc(srv, "status", "--json") == body(rest.get("/v1/status"))

    # detach: the CLI takes the drop list, REST the rest
    gone = cli_doc(srv, "detach", b.ifname, "--netns", b.netns, "--program", "droplist", "--json")
    assert gone == {"removed": [{**where, "hook": "xdp", "program": "droplist"}], "revision": tc["revision"] + 1}
    rest_gone = body(rest.delete("/v1/attachments", params=where))
    assert rest_gone == {"removed": [{**where, "hook": "xdp", "program": "counter"}], "revision": gone["revision"] + 1}


def test_stats_watch_json_prints_one_document_per_line(srv: Running, rest: httpx.Client, lab: TwoHostLab) -> None:
    b = lab.b
    body(rest.post("/v1/attachments", json={"ifname": b.ifname, "netns": b.netns, "program": "counter"}), 201)
    res = cli(srv, "stats", b.ifname, "--netns", b.netns, "--watch", "--json", "--count", "2", "--interval", "0.2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and res.stdout.endswith("\n")
    for line in lines:
        doc = json.loads(line)
        assert line == json.dumps(doc, separators=(",", ":"))  # compact: one document, one line
        assert doc["seconds"] > 0 and doc["time"] is not None
        (hs,) = doc["hooks"]
        assert (hs["netns"], hs["ifname"], hs["hook"]) == (b.netns, b.ifname, "xdp")
        assert hs["rates"] is not None and set(hs["rates"]) == {"total", "protocols"}


def test_stats_reset_prints_the_document_rest_reads_after_it(srv: Running, rest: httpx.Client,
                                                               lab: TwoHostLab) -> None:
    b = lab.b
    where = {"ifname": b.ifname, "netns": b.netns}
    body(rest.post("/v1/attachments", json={**where, "program": "counter"}), 201)
    doc = cli_doc(srv, "stats", b.ifname, "--netns", b.netns, "--reset", "--json")
    (hs,) = doc["hooks"]
    assert hs["total"] == {"packets": 0, "bytes": 0} and hs["protocols"] == []
    assert doc == body(rest.get("/v1/stats", params=where))
    res = cli(srv, "stats", b.ifname, "--netns", b.netns, "--reset", "--hook", "xdp-egress")
    assert res.returncode == 2 and "unknown hook 'xdp-egress'" in res.stderr, res.stderr


def test_missing_namespace_or_interface_is_not_found(srv: Running, rest: httpx.Client, lab: TwoHostLab) -> None:
    missing_ns = f"{lab.b.netns}-gone"
    for args, params in (
        (("--netns", missing_ns), {"netns": missing_ns}),
        (("xcnosuch0",), {"ifname": "xcnosuch0"}),
        (("xcnosuch0", "--netns", lab.b.netns), {"ifname": "xcnosuch0", "netns": lab.b.netns}),
    ):
        cli_exit_3(srv, "stats", *args)
        cli_exit_3(srv, "stats", *args, "--watch", "--json", "--count", "1", "--interval", "0.1")
        r = rest.get("/v1/stats", params=params)
        assert r.status_code == 404 and r.json()["error"] in ("namespace_not_found", "interface_not_found"), r.text
    assert "does not exist" in cli_exit_3(srv, "status", "--netns", missing_ns)
    r = rest.get("/v1/status", params={"netns": missing_ns})
    assert r.status_code == 404 and r.json()["error"] == "namespace_not_found", r.text


def test_a_vanished_namespace_is_unreachable_on_both_sides(srv: Running, rest: httpx.Client) -> None:
    two = TwoHostLab(ipv6=False)
    b = two.b
    where = {"ifname": b.ifname, "netns": b.netns}
    try:
        body(rest.post("/v1/attachments", json={**where, "program": "counter"}), 201)
        two.close()  # the namespace goes; xdpctl's pins and the record stay

        st = body(rest.get("/v1/status"))
        assert cli_doc(srv, "status", "--json") == st
        assert b.netns in st["unreachable"] and b.netns not in {i["netns"] for i in st["interfaces"]}
        (rec,) = [x for x in st["recorded"] if x["netns"] == b.netns]
        assert (rec["program"], rec["attached"]) == ("counter", False)
        one = body(rest.get("/v1/status", params={"netns": b.netns}))
        assert one["unreachable"] == [b.netns] and one == cli_doc(srv, "status", "--netns", b.netns, "--json")

        table = cli(srv, "status")
        assert table.returncode == 0, table.stderr
        row = [line for line in table.stdout.splitlines() if b.ifname in line and "recorded" in line]
        assert row and "not attached" in row[0] and "counter" in row[0], table.stdout
        assert f"namespace {b.netns} is gone" in table.stdout and "xdpctl restore" in table.stdout
    finally:
        two.close()
        r = rest.delete("/v1/attachments", params=where)
        assert r.status_code in (200, 404), r.text
    assert b.netns not in body(rest.get("/v1/status"))["unreachable"]
