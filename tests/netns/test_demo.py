"""`make demo` is one of the two commands of the README: run the demo module
as the Makefile does and check the story it tells, and that it leaves no
namespace, pin directory or program behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def _netns() -> set[str]:
    """The demo's namespaces (its labs' prefix is xdmo); other test runs on
    the machine make and remove their own meanwhile."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip().startswith("xdmo-")}


def _demo_pins() -> set[str]:
    return {d for d in os.listdir("/sys/fs/bpf") if d.startswith("xdpctl-demo-")}


def test_make_demo_blocks_the_flood_over_rest_and_cleans_up() -> None:
    before_ns, before_pins = _netns(), _demo_pins()
    res = subprocess.run([sys.executable, "-m", "xdpctl.demo", "--legit", "100", "--attack", "500"],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, COLUMNS="160"))
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    assert "Traceback" not in out + res.stderr
    # before: the flood reaches the service; after the block over REST: none of it does
    rounds = re.findall(r"service received: legit (\d+), attack (\d+)", out)
    assert rounds == [("100", "500"), ("100", "0")], rounds
    assert re.search(r"POST /v1/block -> 201: rule \d+ deny 203\.0\.113\.0/24", out), out
    assert "-> 422" in out and "host bits set" in out
    assert re.search(r"rule \d+ deny 203\.0\.113\.0/24: 500 packets", out), out
    assert "OK: the block over REST dropped every spoofed datagram" in out
    # the load balancer: a split by weight 1:2:3, a drained backend keeps its open connection, takes no new one
    split = re.search(r"300 connections to 198\.51\.100\.80:8080 \(weights 1:2:3\): b1 (\d+), b2 (\d+), b3 (\d+)", out)
    assert split and sum(map(int, split.groups())) == 300 and all(int(n) > 0 for n in split.groups()), out
    drained = re.search(r"an open connection is on (b\d); \1 drained", out)
    assert drained, out
    target = drained.group(1)
    assert f"asked 3 more times: answered by {target}, {target}, {target}" in out
    after = re.search(r"300 new connections: b1 (\d+), b2 (\d+), b3 (\d+)", out)
    assert after and sum(map(int, after.groups())) == 300 and int(after.group(int(target[1]))) == 0, out
    assert "OK: connections spread by weight; the drained backend finished its open connection" in out
    assert _netns() - before_ns == set()
    assert _demo_pins() == before_pins
