"""A three-member etcd cluster losing one member: writes and watches go on."""

from __future__ import annotations

import signal
from collections import Counter

import traffic
from helpers_droplist import arrivals_xdp, udp_frame
from xdpctl.core.rules.validate import spec


def test_losing_one_member_of_three(etcd_cluster, fleet):
    urls = ",".join(m.url for m in etcd_cluster)
    fl = fleet(2, urls=urls)
    fl.wait_all(1)
    f = fl.fleet()
    rev = f.add([spec("203.0.113.0/24")]).revision
    fl.wait_all(rev)
    etcd_cluster[0].kill(signal.SIGKILL)  # the member every client tries first
    rev = f.add([spec("192.0.2.0/24")]).revision  # fails over to the others
    fl.wait_all(rev)
    rev = f.remove([spec("203.0.113.0/24")]).revision
    fl.wait_all(rev)
    for h in fl.hosts:
        assert h.rule_prefixes() == {"192.0.2.0/24"}
        mark = traffic.marker()
        frames = [udp_frame(h.env, "192.0.2.7", mark, "bad"), udp_frame(h.env, "203.0.113.9", mark, "good")]
        assert arrivals_xdp(h.env, frames, mark) == Counter({"good": 1})
