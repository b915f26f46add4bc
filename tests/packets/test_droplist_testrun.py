"""The drop list, run by the kernel (BPF_PROG_TEST_RUN) on scapy-built
packets, against the Python reference model (tests.support.model.verdict).

Rules go in through the real core (DropList: SQLite, incremental plans,
kernel maps), so this checks the compiler, the map writes and the C lookup
together against a plain longest-prefix oracle."""

from __future__ import annotations

import ipaddress
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tests.support import model
from tests.support.progs import ProgramBench
from xdpctl import abi
from xdpctl.core import dlcompile as dlc
from xdpctl.core.rules.clock import kernel_ns
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import read_pinned_config
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import maps

V4_POOL = ["203.0.113.0", "203.0.113.128", "198.51.100.0", "10.0.0.0", "10.1.2.0", "10.1.2.3", "0.0.0.0"]
V6_POOL = ["2001:db8::", "2001:db8:0:1::", "2001:db8:bad::", "2001:db8::1", "::"]
PORTS = [22, 53, 9999]


@pytest.fixture
def env(ctx, kind):
    with ProgramBench(ctx, kind, ("droplist",)) as b:
        yield b, DropList(ctx)


def _net(family: int, base: str, plen: int) -> str:
    n = ipaddress.ip_network(f"{base}/{plen}", strict=False)
    return str(n)


@st.composite
def rule_specs(draw):
    family = draw(st.sampled_from([4, 6]))
    if family == 4:
        plen = draw(st.sampled_from([0, 8, 12, 16, 17, 20, 24, 25, 28, 31, 32]))
        prefix = _net(4, draw(st.sampled_from(V4_POOL)), plen)
    else:
        plen = draw(st.sampled_from([0, 16, 24, 29, 32, 40, 44, 48, 52, 56, 60, 64, 96, 120, 127, 128]))
        prefix = _net(6, draw(st.sampled_from(V6_POOL)), plen)
    kind = draw(st.sampled_from(["addr", "addr", "addr", "port", "port_any"]))
    action = draw(st.sampled_from(["deny", "deny", "allow"]))
    dst = draw(st.booleans())
    if kind == "addr":
        return dict(prefix=prefix, action=action, dst=dst)
    proto = draw(st.sampled_from(["tcp", "udp"]))
    port = draw(st.sampled_from(PORTS))
    if kind == "port_any":
        return dict(prefix=None, action=action, dst=dst, proto=proto, port=port)
    return dict(prefix=prefix, action=action, dst=dst, proto=proto, port=port)


def _addr_near(draw, family: int) -> str:
    pool = V4_POOL if family == 4 else V6_POOL
    base = int(ipaddress.ip_address(draw(st.sampled_from(pool))))
    off = draw(st.sampled_from([0, 1, 2, 127, 128, 255, 256, 65535, 1 << 20]))
    top = (1 << (32 if family == 4 else 128)) - 1
    return str(ipaddress.ip_address(min(base + off, top)) if family == 4 else ipaddress.IPv6Address(min(base + off, top)))


@st.composite
def packets(draw):
    family = draw(st.sampled_from([4, 6, 64]))  # 64: IPv6 carrying IPv4-mapped addresses
    l4 = draw(st.sampled_from(["udp", "tcp"]))
    dport = draw(st.sampled_from(PORTS + [80]))
    vlan = draw(st.booleans())
    hbh = draw(st.booleans())
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan:
        e = e / Dot1Q(vlan=7)
    L4 = (UDP(sport=1000, dport=dport) if l4 == "udp" else TCP(sport=1000, dport=dport))
    if family == 4:
        pkt = e / IP(src=_addr_near(draw, 4), dst=_addr_near(draw, 4)) / L4
    elif family == 6:
        ip = IPv6(src=_addr_near(draw, 6), dst=_addr_near(draw, 6))
        pkt = e / ip / (IPv6ExtHdrHopByHop() if hbh else Raw(b"")) / L4 if hbh else e / ip / L4
    else:
        ip = IPv6(src="::ffff:" + _addr_near(draw, 4), dst="::ffff:" + _addr_near(draw, 4))
        pkt = e / ip / L4
    return bytes(pkt / Raw(b"p" * 8))


def _model_rule(rid: int, r: dict) -> dlc.Rule:
    """The rule the test asked for, in the model's terms, read from the test's
    own input (not from what the core stored)."""
    act = abi.Action.DENY if r["action"] == "deny" else abi.Action.ALLOW
    d = 1 if r["dst"] else 0
    proto = {"tcp": 6, "udp": 17}[r["proto"]] if r.get("proto") else None
    if r["prefix"] is None:
        return dlc.Rule(rid, 0, 0, 0, d, int(act), proto, r.get("port"))
    n = ipaddress.ip_network(r["prefix"])
    return dlc.Rule(rid, n.version, int(n.network_address), n.prefixlen, d, int(act), proto, r.get("port"))


def _distinct(rs: list[dict]) -> list[dict]:
    """The drawn rules without repeats, and without an L4 rule that would
    share a /0 entry with an earlier one (the core refuses such pairs)."""
    out, keys, zero = [], set(), set()
    for r in rs:
        m = _model_rule(1, r)
        key = (m.family, m.dir, m.plen, m.net, m.proto, m.port)
        if key in keys:
            continue
        if m.proto is not None and m.plen == 0:
            z = {(m.dir, m.proto, m.port, f) for f in ((4, 6) if m.family == 0 else (m.family,))}
            if z & zero:
                continue
            zero |= z
        keys.add(key)
        out.append(r)
    return out


def _stats_delta(bench: ProgramBench, before):
    after = bench.percpu_sums("xc_dl_cnt")
    reasons = {k: after[k][0] - before.get(k, (0, 0))[0] for k in after if after[k][0] != before.get(k, (0, 0))[0]}
    return reasons


def _rule_hits(ctx, rules) -> dict[int, int]:
    """Packets per rule id, for every id up to the largest the model knows."""
    top = max([63] + [r.id for r in rules])
    with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, "xc_rule_stats")) as m:
        out = {}
        for i in range(1, top + 1):
            raw = m.lookup(abi.U32.pack(i))
            pk = abi.unpack_rule_stats(raw).packets
            if pk:
                out[i] = pk
        return out


def _check(bench, ctx, rules, frames, policy):
    """Each frame through the kernel: verdict, reason counter and rule hit as
    the model predicts. A frame the TC test runner refuses (a cut IP header)
    must be refused; tests/netns/test_droplist_traffic.py sends such frames
    through TC for real."""
    for frame in frames:
        pkt = model.classify(frame)
        if bench.refused(frame):
            assert pkt.l3 == abi.L3.MALFORMED, frame.hex()
            bench.assert_refused(frame)
            continue
        want_drop, want_reason, want_rule = model.verdict(rules, pkt, policy, kernel_ns())
        before_r = bench.percpu_sums("xc_dl_cnt")
        hits_before = _rule_hits(ctx, rules)
        res = bench.run(frame)
        assert bench.dropped(res.retval) == want_drop, (frame.hex(), rules, want_reason)
        assert bench.passed(res.retval) != want_drop, (frame.hex(), res.retval)
        assert _stats_delta(bench, before_r) == {int(want_reason): 1}, (frame.hex(), want_reason)
        hits_after = _rule_hits(ctx, rules)
        delta = {k: v - hits_before.get(k, 0) for k, v in hits_after.items() if v != hits_before.get(k, 0)}
        assert delta == ({want_rule: 1} if want_rule else {}), (frame.hex(), want_rule)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rs=st.lists(rule_specs(), min_size=1, max_size=10), frames=st.lists(packets(), min_size=1, max_size=8),
       policy=st.sampled_from([0, 1]))
def test_verdicts_match_model(env, ctx, rs, frames, policy):
    bench, d = env
    _reset(d)
    asked = _distinct(rs)
    d.set_policy("deny" if policy else "allow")
    res = d.add([spec(**r) for r in asked])  # incremental path
    assert len(res.added) == len(asked)
    # the model gets the rules this test asked for, under the ids the core gave them
    rules = [_model_rule(v.id, r) for v, r in zip(res.added, asked)]
    _check(bench, ctx, rules, frames, policy)
    # remove every other rule (incremental fallbacks), check again
    gone = {r.id for r in rules[::2]}
    d.remove(ids=sorted(gone))
    _check(bench, ctx, [r for r in rules if r.id not in gone], frames, policy)
    # a full rebuild produces the same tables as the incremental path
    rep = d.sync()
    assert rep.drift == 0, rep.per_map


def _reset(d: DropList) -> None:
    """Start each example from an empty rule set (a failed example may leave rules)."""
    rest = [r.id for r in d.rules(with_stats=False)]
    if rest:
        d.remove(ids=rest)
    d.set_policy("allow")


def _malformed_frames() -> dict[str, bytes]:
    """IP frames the parser must call malformed (L3_MALFORMED), some of
    which the TC test runner refuses (see ProgramBench.refused)."""
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    ip4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=9) / Raw(b"x" * 8))
    ip6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=9) / Raw(b"x" * 8))
    eth4, eth6 = bytes(e / Raw(b""))[:12] + b"\x08\x00", bytes(e / Raw(b""))[:12] + b"\x86\xdd"
    return {
        "ipv4_cut_12": eth4 + ip4[:12],                        # refused by the TC runner
        "ipv4_version_5": eth4 + bytes([0x55]) + ip4[1:],
        "ipv4_ihl_4": eth4 + bytes([0x44]) + ip4[1:],
        "ipv4_options_past_end": eth4 + bytes([0x4F]) + ip4[1:20],
        "ipv4_total_len_short": eth4 + ip4[:2] + (19).to_bytes(2, "big") + ip4[4:],
        "ipv6_cut_30": eth6 + ip6[:30],                        # refused by the TC runner
        "ipv6_version_4": eth6 + bytes([0x40]) + ip6[1:],
        "vlan_ipv4_cut_12": bytes(e / Dot1Q(vlan=5, type=0x0800))[:18] + ip4[:12],
    }


def test_malformed_and_non_ip(env, ctx):
    """Non-IP passes whatever the policy; malformed IP passes under allow
    and drops under deny, no rule hit, on XDP and TC."""
    bench, d = env
    res = d.add([spec("0.0.0.0/0")])
    rules = [dlc.Rule(res.added[0].id, 4, 0, 0)]
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", type=0x0806) / Raw(b"\x00" * 28))
    bad = _malformed_frames()
    assert all(model.classify(f).l3 == abi.L3.MALFORMED for f in bad.values()), \
        {k: model.classify(f) for k, f in bad.items()}
    refused = {k for k, f in bad.items() if bench.refused(f)}
    assert refused == ({"ipv4_cut_12", "ipv6_cut_30"} if bench.kind == "tc" else set())
    for policy in (0, 1):
        d.set_policy("deny" if policy else "allow")
        _check(bench, ctx, rules, [arp, *bad.values()], policy)


def test_expired_entry_is_absent_in_kernel(env, ctx):
    """An entry whose deadline passed does not match, before any reaper runs."""
    bench, d = env
    d.add([spec("203.0.113.0/24")])
    frame = bytes(Ether() / IP(src="203.0.113.9", dst="192.0.2.2") / UDP(dport=9) / Raw(b"x"))
    assert bench.dropped(bench.run(frame).retval)
    # rewrite the kernel entry with a deadline in the past
    l24 = abi.set_map("xc_v4_l24", read_pinned_config(ctx).active)
    with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, l24)) as m:
        k = abi.pack_key4(0, int(ipaddress.ip_address("203.0.113.0")))
        v = abi.unpack_rule_val(m.lookup(k))
        m.update(k, abi.pack_rule_val(v.rule_id, v.action, v.plen, kernel_ns() - 1))
    assert bench.passed(bench.run(frame).retval)
