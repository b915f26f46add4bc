"""Fleet mode end to end: three hosts, each an agent with its own pins,
state and lab, following one rule set in a real etcd; spoofed traffic
proves enforcement at every host."""

from __future__ import annotations

import json
import signal
from collections import Counter

import traffic
from helpers_droplist import arrivals_xdp, udp_frame, wait_until
from xdpctl.core.rules.validate import spec

from .conftest import BOUND, FleetLab, Host

BAD = "203.0.113.9"  # spoofed source inside the blocked prefix
GOOD = "198.51.100.9"  # spoofed source that no rule matches


def arrivals(h: Host) -> Counter[str]:
    mark = traffic.marker()
    frames = [udp_frame(h.env, BAD, mark, "bad"), udp_frame(h.env, GOOD, mark, "good")]
    return arrivals_xdp(h.env, frames, mark)


def assert_blocked(fl: FleetLab) -> None:
    for h in fl.hosts:
        assert arrivals(h) == Counter({"good": 1}), h.node


def assert_open(fl: FleetLab) -> None:
    for h in fl.hosts:
        assert arrivals(h) == Counter({"good": 1, "bad": 1}), h.node


def ready(fl: FleetLab) -> None:
    fl.wait_all(1)


def cli_revision(fl: FleetLab, *args: str) -> int:
    res = fl.cli(*args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["revision"]


def test_block_and_unblock_reach_all_three(fleet):
    fl = fleet(3)
    ready(fl)
    base = {h.node: h.local_revision() for h in fl.hosts}
    assert_open(fl)
    rev = cli_revision(fl, "block", "203.0.113.0/24")
    fl.wait_all(rev)
    assert_blocked(fl)
    rev = cli_revision(fl, "unblock", "203.0.113.0/24")
    fl.wait_all(rev)
    assert_open(fl)
    for h in fl.hosts:  # one local change per cluster change
        assert h.local_revision() == base[h.node] + 2, h.node


def test_etcd_killed_agents_keep_enforcing_and_converge(fleet):
    fl = fleet(3)
    ready(fl)
    base = {h.node: h.local_revision() for h in fl.hosts}
    rev = cli_revision(fl, "block", "203.0.113.0/24")
    fl.wait_all(rev)
    fl.etcd.kill(signal.SIGKILL)
    assert_blocked(fl)  # the kernels keep the last applied set
    res = fl.cli("block", "192.0.2.0/24")
    assert res.returncode == 15 and "etcd is unreachable" in res.stderr, res.stderr
    assert all(h.alive() for h in fl.hosts)
    fl.etcd.start()
    fl.etcd.wait_ready()
    rev = cli_revision(fl, "unblock", "203.0.113.0/24")
    fl.wait_all(rev)
    assert_open(fl)
    rev = cli_revision(fl, "block", "203.0.113.0/24", "192.0.2.0/24")
    fl.wait_all(rev)
    assert_blocked(fl)
    for h in fl.hosts:  # nothing lost, nothing applied twice
        assert h.rule_prefixes() == {"203.0.113.0/24", "192.0.2.0/24"}
        assert h.local_revision() == base[h.node] + 3


def _status(fl: FleetLab) -> dict:
    res = fl.cli("status", "--json")
    assert res.returncode == 0, res.stderr
    return {n["name"]: n for n in json.loads(res.stdout)["nodes"]}


def test_stopped_agent_is_gone_then_catches_up_on_100_changes(fleet):
    fl = fleet(3)
    ready(fl)
    late = fl.hosts[2]
    wait_until(lambda: len(_status(fl)) == 3, "three nodes registered", timeout=BOUND)
    late.stop_agent(signal.SIGKILL)  # its lease runs out: the node is gone
    wait_until(lambda: _status(fl)["h2"]["state"] == "gone", "h2 shown gone", timeout=BOUND)
    before = late.local_revision()
    f = fl.fleet()
    rev = 0
    for i in range(100):  # 60 blocks, then 40 of them lifted
        s = spec(f"10.9.{i}.0/24") if i < 60 else spec(f"10.9.{i - 60}.0/24")
        rev = (f.add([s]) if i < 60 else f.remove([s])).revision
    fl.hosts[0].wait_applied(rev)
    fl.hosts[1].wait_applied(rev)
    st = _status(fl)
    assert st["h2"]["state"] == "gone" and st["h2"]["lag"] >= 100
    late.start_agent()
    late.wait_applied(rev)
    want = {f"10.9.{i}.0/24" for i in range(40, 60)}
    for h in fl.hosts:
        assert h.rule_prefixes() == want, h.node
    assert late.local_revision() == before + 100  # every revision once, in order
    wait_until(lambda: all(n["state"] == "in-sync" for n in _status(fl).values()), "all nodes in sync",
               timeout=BOUND)
