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

from xdpctl import abi
from tests.support import model
from xdpctl.core import dlcompile as dlc
from xdpctl.core.droplist import DropList, kernel_ns, spec
from xdpctl.kernel import maps
from tests.support.progs import ProgramBench

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


def _model_rules(d: DropList):
    return [dlc.Rule(*t) for t in d._all_rules(*_now())]


def _now():
    import time

    return time.time(), kernel_ns()


def _stats_delta(bench: ProgramBench, d: DropList, before):
    after = bench.percpu_sums("xc_dl_cnt")
    reasons = {k: after[k][0] - before.get(k, (0, 0))[0] for k in after if after[k][0] != before.get(k, (0, 0))[0]}
    return reasons


def _rule_hits(ctx) -> dict[int, int]:
    with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, "xc_rule_stats")) as m:
        out = {}
        for i in range(1, 64):
            raw = m.lookup(abi.U32.pack(i))
            pk = abi.RULE_STATS.unpack(raw[:24])[0]
            if pk:
                out[i] = pk
        return out


def _check(bench, d, ctx, frames, policy):
    rules = _model_rules(d)
    for frame in frames:
        pkt = model.classify(frame)
        if bench.kind == "tc" and pkt.l3 == abi.L3.MALFORMED and frame[12:14] in (b"\x08\x00", b"\x86\xdd"):
            continue  # the kernel's SCHED_CLS test runner refuses a cut IP header (EINVAL); see tests/netns
        want_drop, want_reason, want_rule = model.verdict(rules, pkt, policy, kernel_ns())
        before_r = bench.percpu_sums("xc_dl_cnt")
        hits_before = _rule_hits(ctx)
        res = bench.run(frame)
        assert bench.dropped(res.retval) == want_drop, (frame.hex(), rules, want_reason)
        assert _stats_delta(bench, d, before_r) == {int(want_reason): 1}, (frame.hex(), want_reason)
        hits_after = _rule_hits(ctx)
        delta = {k: v - hits_before.get(k, 0) for k, v in hits_after.items() if v != hits_before.get(k, 0)}
        assert delta == ({want_rule: 1} if want_rule else {}), (frame.hex(), want_rule)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rs=st.lists(rule_specs(), min_size=1, max_size=10), frames=st.lists(packets(), min_size=1, max_size=8),
       policy=st.sampled_from([0, 1]))
def test_verdicts_match_model(env, ctx, rs, frames, policy):
    bench, d = env
    _reset(d)
    specs, seen = [], set()
    for r in rs:
        s = spec(**r)
        if s.key() not in seen:
            seen.add(s.key())
            specs.append(s)
    specs = _drop_overlaps(specs)
    d.set_policy("deny" if policy else "allow")
    res = d.add(specs)  # incremental path
    _check(bench, d, ctx, frames, policy)
    # remove every other rule (incremental fallbacks), check again
    d.remove(ids=[r.id for r in res.added[::2]])
    _check(bench, d, ctx, frames, policy)
    # a full rebuild produces the same tables as the incremental path
    rep = d.sync()
    assert rep.drift == 0, rep.per_map


def _drop_overlaps(specs):
    """Keep the first of L4 rules that would share a /0 entry (the core refuses such pairs)."""
    out, taken = [], set()
    for s in specs:
        if s.proto is not None and (s.prefix is None or s.prefix.plen == 0):
            fams = {(4,), (6,)} if s.prefix is None else {(s.prefix.family,)}
            keys = {(s.dir, s.proto, s.port, f) for (f,) in fams}
            if keys & taken:
                continue
            taken |= keys
        out.append(s)
    return out


def _reset(d: DropList) -> None:
    """Start each example from an empty rule set (a failed example may leave rules)."""
    rest = [r.id for r in d.rules(with_stats=False)]
    if rest:
        d.remove(ids=rest)
    d.set_policy("allow")


def test_malformed_and_non_ip(env, ctx):
    bench, d = env
    d.add([spec("0.0.0.0/0")])
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", type=0x0806) / Raw(b"\x00" * 28))
    trunc = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2"))[:14 + 12]
    for policy in (0, 1):
        d.set_policy("deny" if policy else "allow")
        _check(bench, d, ctx, [arp, trunc], policy)


def test_expired_entry_is_absent_in_kernel(env, ctx):
    """An entry whose deadline passed does not match, before any reaper runs."""
    bench, d = env
    d.add([spec("203.0.113.0/24")])
    frame = bytes(Ether() / IP(src="203.0.113.9", dst="192.0.2.2") / UDP(dport=9) / Raw(b"x"))
    assert bench.dropped(bench.run(frame).retval)
    # rewrite the kernel entry with a deadline in the past
    with maps.Map.from_pin(os.path.join(ctx.settings.shared_map_dir, "xc_v4_l24")) as m:
        k = abi.pack_key4(0, int(ipaddress.ip_address("203.0.113.0")))
        v = abi.unpack_rule_val(m.lookup(k))
        m.update(k, abi.pack_rule_val(v.rule_id, v.action, v.plen, kernel_ns() - 1))
    assert bench.passed(bench.run(frame).retval)
