"""`lookup` against the kernel: for random rule sets (rules, lists, allow
holes, L4 rules, management prefixes, both families) and random packets,
the core's decision from the desired state (xdpctl.core.rules.lookup) is
the verdict, reason and rule hit of the real hook program run with
BPF_PROG_TEST_RUN over the maps the core wrote."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP, ICMP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.support.progs import ProgramBench
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.counters import REASON_NAMES
from xdpctl.core.rules.lookup import Addr, Lookup, lookup
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.validate import spec

V4_POOL = ["203.0.113.0", "203.0.113.128", "198.51.100.0", "10.0.0.0", "10.1.2.0", "10.1.2.3"]
V6_POOL = ["2001:db8::", "2001:db8:0:1::", "2001:db8:bad::", "2001:db8::1"]
PORTS = [22, 53]
PROTOS = {"tcp": 6, "udp": 17}


@pytest.fixture
def env(ctx, kind):
    with ProgramBench(ctx, kind, ("droplist",)) as b:
        yield b, DropList(ctx)


def _prefix(draw, family: int) -> str:
    if family == 4:
        plen = draw(st.sampled_from([0, 8, 16, 20, 24, 28, 32]))
        base = draw(st.sampled_from(V4_POOL))
    else:
        plen = draw(st.sampled_from([0, 16, 32, 44, 48, 64, 96, 128]))
        base = draw(st.sampled_from(V6_POOL))
    return str(ipaddress.ip_network(f"{base}/{plen}", strict=False))


@st.composite
def rule_sets(draw):
    """(rules as spec() keyword sets, lists as (dst, action, prefixes), policy)."""
    rules = []
    for _ in range(draw(st.integers(0, 8))):
        family = draw(st.sampled_from([4, 6]))
        kind = draw(st.sampled_from(["addr", "addr", "port", "port_any", "mgmt"]))
        r = dict(prefix=_prefix(draw, family), action=draw(st.sampled_from(["deny", "allow"])),
                 dst=draw(st.booleans()))
        if kind == "mgmt":
            r.update(action="allow", mgmt=True)
        elif kind != "addr":
            r.update(proto=draw(st.sampled_from(sorted(PROTOS))), port=draw(st.sampled_from(PORTS)))
            if kind == "port_any":
                r["prefix"] = None
        rules.append(r)
    lists = []
    for _ in range(draw(st.integers(0, 2))):
        members = {_prefix(draw, draw(st.sampled_from([4, 6]))) for _ in range(draw(st.integers(1, 6)))}
        lists.append((draw(st.booleans()), draw(st.sampled_from(["deny", "allow"])), sorted(members)))
    return rules, lists, draw(st.sampled_from(["allow", "deny"]))


def _addr(draw, family: int) -> str:
    pool = V4_POOL if family == 4 else V6_POOL
    base = int(ipaddress.ip_address(draw(st.sampled_from(pool))))
    off = draw(st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 1 << 20]))
    return str(ipaddress.ip_address(base + off))


@st.composite
def packets(draw):
    """(src, dst, proto name or None, dport) with both addresses of one family
    (64: IPv6 carrying IPv4-mapped addresses)."""
    family = draw(st.sampled_from([4, 6, 64]))
    fam = 4 if family == 64 else family
    src, dst = _addr(draw, fam), _addr(draw, fam)
    if family == 64:
        src, dst = "::ffff:" + src, "::ffff:" + dst
    return src, dst, draw(st.sampled_from(["tcp", "udp", None])), draw(st.sampled_from(PORTS + [80]))


def _frame(src: str, dst: str, proto: str | None, dport: int) -> bytes:
    six = {"nh": 1} if proto is None else {}  # next header 1 (ICMP) in IPv6: a packet without ports
    l3 = IP(src=src, dst=dst) if ":" not in src else IPv6(src=src, dst=dst, **six)
    l4 = {"tcp": TCP(sport=999, dport=dport), "udp": UDP(sport=999, dport=dport)}.get(proto)
    if l4 is None:
        l4 = ICMP() if ":" not in src else Raw(b"\x08\x00\x00\x00")
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3 / l4 / Raw(b"p" * 8))


def _install(d: DropList, rules, lists, policy) -> None:
    for r in (d.rules(with_stats=False)):
        d.remove(ids=[r.id])
    for lv in d.lists(with_stats=False):
        d.remove_list(lv.name)
    d.set_policy(policy)
    seen, zero = set(), set()
    for r in rules:
        s = spec(**r)
        z = {(s.dir, s.proto, s.port, f) for f in ((4, 6) if s.prefix is None else (s.prefix.family,))} \
            if s.proto and (s.prefix is None or s.prefix.plen == 0) else set()
        if s.key() in seen or z & zero:
            continue
        seen.add(s.key())
        zero |= z
        d.add([s])
    for i, (dst, action, members) in enumerate(lists):
        d.import_list(f"l{i}", [px.parse_prefix(m) for m in members], action=action, dst=dst)


def _ids(d: DropList) -> list[int]:
    """Every rule id in use: the rules' and the list members'."""
    ids = [r.id for r in d.rules(with_stats=False)]
    for lv in d.lists(with_stats=False):
        ids += range(lv.id_base, lv.id_base + lv.count)
    return ids


def _kernel(bench: ProgramBench, d: DropList, frame: bytes) -> tuple[bool, str, int | None]:
    """(dropped, reason name, rule id hit or None) of one run."""
    ids = _ids(d)
    before = bench.percpu_sums("xc_dl_cnt")
    with bench.map("xc_rule_stats") as m:
        hits0 = {i: abi.unpack_rule_stats(m.lookup(abi.U32.pack(i))).packets for i in ids}
        ret = bench.run(frame).retval
        hit = [i for i in ids if abi.unpack_rule_stats(m.lookup(abi.U32.pack(i))).packets != hits0[i]]
    after = bench.percpu_sums("xc_dl_cnt")
    (reason,) = [k for k in after if after[k][0] != before.get(k, (0, 0))[0]]
    assert len(hit) <= 1, hit
    assert bench.dropped(ret) or bench.passed(ret), ret
    return bench.dropped(ret), REASON_NAMES[abi.DlReason(reason)], hit[0] if hit else None


def _addr_of(text: str) -> Addr:
    return Addr.of(*px.parse_address(text))


@settings(max_examples=12, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rset=rule_sets(), pkts=st.lists(packets(), min_size=4, max_size=10))
def test_lookup_matches_kernel(env, rset, pkts):
    bench, d = env
    _install(d, *rset)
    lk = Lookup(d)
    for src, dst, proto, dport in pkts:
        reason, m, _what = lk.decide(_addr_of(src), _addr_of(dst), PROTOS.get(proto), dport if proto else None)
        got = _kernel(bench, d, _frame(src, dst, proto, dport))
        want = (reason.name.startswith("DROP"), REASON_NAMES[reason], m.view.id if m else None)
        assert got == want, (src, dst, proto, dport, m)


def test_lookup_one_side_names_rule_and_member(env):
    """The front ends' form: one address (source, or --dst), the other
    matching nothing; a list member is named with its list and prefix."""
    bench, d = env
    d.add([spec("10.0.0.0/8", comment="ten")])
    d.add([spec("10.9.0.0/16", action="allow")])
    d.add([spec(None, proto="tcp", port=22, dst=True)])
    d.import_list("bad", [px.parse_prefix(p) for p in ("10.9.8.0/24", "2001:db8::/32", "198.51.100.7/32")])
    v = lookup(d, "10.1.2.3")
    assert (v.verdict, v.reason, v.decided_by, v.rule.prefix, v.rule.comment) == \
        ("drop", "drop_src", "src", "10.0.0.0/8", "ten")
    v = lookup(d, "10.9.8.1")
    assert (v.verdict, v.reason, v.rule.list, v.rule.prefix) == ("drop", "drop_src", "bad", "10.9.8.0/24")
    assert v.rule.id == d.get_list("bad").id_base
    v = lookup(d, "10.9.7.1")
    assert (v.verdict, v.reason, v.rule.prefix, v.rule.action) == ("pass", "pass_allow", "10.9.0.0/16", "allow")
    v = lookup(d, "2001:db8::5")
    assert (v.reason, v.rule.list, v.rule.prefix, v.rule.id) == \
        ("drop_src", "bad", "2001:db8::/32", d.get_list("bad").id_base + 2)
    v = lookup(d, "192.0.2.1", dst=True, proto="tcp", port=22)
    assert (v.verdict, v.reason, v.decided_by, v.rule.proto, v.rule.port) == ("drop", "drop_port", "port_dst",
                                                                             "tcp", 22)
    v = lookup(d, "192.0.2.1")
    assert (v.verdict, v.reason, v.rule) == ("pass", "pass_nomatch", None)
    for text in ("10.9.8.1", "192.0.2.1", "2001:db8::5"):
        got = _kernel(bench, d, _frame(text, "192.0.2.99" if ":" not in text else "fd00::99", None, 0))
        v = lookup(d, text)
        assert got == (v.verdict == "drop", v.reason, v.rule.id if v.rule else None)
