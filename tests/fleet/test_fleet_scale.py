"""A large list through the fleet, and the figures docs/fleet.md quotes.

The figures are printed (run with -s to see them), never asserted."""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter

import traffic
from helpers_droplist import arrivals_xdp, udp_frame
from xdpctl.core import prefixes as px
from xdpctl.core.fleet.layout import Manifest
from xdpctl.core.rules.validate import spec

from .conftest import BOUND, FleetLab

LARGE = int(os.environ.get("FLEET_TEST_LIST_SIZE", "250000"))


def members(n: int) -> list[px.Prefix]:
    """n distinct /32s from 100.64.0.0/10 on, the last one 100.64.0.0 + n - 1."""
    base = int.from_bytes(bytes([100, 64, 0, 0]), "big")
    return [px.Prefix(4, base + i, 32) for i in range(n)]


def test_large_list_converges_and_drops(fleet):
    fl: FleetLab = fleet(1)
    fl.wait_all(1)
    h = fl.hosts[0]
    t0 = time.monotonic()
    f = fl.fleet()
    res = f.import_list("big", members(LARGE))
    t_ack = time.monotonic()
    assert Manifest.decode(f.etcd.get(f.layout.manifest("big")).value).chunks > 1  # over one etcd value
    h.wait_applied(res.revision, bound=BOUND * 10)
    t_done = time.monotonic()
    print(f"\nfleet list of {LARGE} prefixes: written in {t_ack - t0:.2f}s, "
          f"enforced {t_done - t_ack:.2f}s after the acknowledgement")
    lists = {lv.name: lv.count for lv in h.env.dl.lists(with_stats=False)}
    assert lists == {"big": LARGE}
    last = px.format_address(4, int.from_bytes(bytes([100, 64, 0, 0]), "big") + LARGE - 1)
    mark = traffic.marker()
    frames = [udp_frame(h.env, last, mark, "member"), udp_frame(h.env, "198.51.100.9", mark, "other")]
    assert arrivals_xdp(h.env, frames, mark) == Counter({"other": 1})


def test_acknowledged_write_to_enforcement_on_three(fleet):
    fl: FleetLab = fleet(3)
    fl.wait_all(1)
    f = fl.fleet()
    lat = []
    for i in range(50):
        t0 = time.monotonic()
        rev = f.add([spec(f"10.77.{i}.0/24")]).revision
        for h in fl.hosts:
            h.wait_applied(rev)
        lat.append(time.monotonic() - t0)
    q = statistics.quantiles(lat, n=100)
    print(f"\nwrite -> applied on all 3 agents, 50 changes: p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms")
    for h in fl.hosts:
        assert h.rule_prefixes() == {f"10.77.{i}.0/24" for i in range(50)}
