"""The reference model: classify() on scapy-built frames, proto_slots(),
and verdict() on hand-made cases."""
from __future__ import annotations

import pytest
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS,
                                ICMPv6ND_Redirect, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from tests.support import frames as shared_frames
from tests.support import model
from xdpctl.abi import L3, L4, PROTO_VLAN1, PROTO_VLAN2, Action, DlReason, Policy, proto_slot
from xdpctl.core.dlcompile import Rule

S4, D4 = "192.0.2.1", "198.51.100.2"
S6, D6 = "2001:db8::1", "2001:db8:1::2"
# Every Ether() gets both addresses: without dst, scapy would resolve one
# (and could send neighbour solicitations) while building the frame.
MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
E = Ether(**MACS)
PAY = Raw(b"payload!")
DENY, ALLOW = int(Action.DENY), int(Action.ALLOW)


def ip4(s: str) -> int:
    return int.from_bytes(bytes(int(x) for x in s.split(".")), "big")


def ip6(s: str) -> int:
    import socket
    return int.from_bytes(socket.inet_pton(socket.AF_INET6, s), "big")


def cls(frame, **kw):
    return model.classify(bytes(frame), **kw)


def ext(nh: int, body_len: int) -> bytes:
    """An IPv6 hop-by-hop/routing/destination-options style header of
    body_len + 2 bytes (a multiple of 8), padded with PadN."""
    total = body_len + 2
    assert total % 8 == 0
    return bytes([nh, total // 8 - 1]) + bytes([1, body_len - 2]) + bytes(body_len - 2)


def ah(nh: int, icv: int = 12) -> bytes:
    total = 12 + icv
    return bytes([nh, total // 4 - 2, 0, 0]) + b"\x00\x00\x01\x00" + b"\x00\x00\x00\x01" + bytes(icv)


def frag(nh: int, offset: int, more: bool = False) -> bytes:
    return bytes([nh, 0]) + ((offset << 3) | int(more)).to_bytes(2, "big") + b"\x12\x34\x56\x78"


def v6raw(nh: int, rest: bytes, src=S6, dst=D6) -> bytes:
    return bytes(E / IPv6(src=src, dst=dst, nh=nh) / Raw(rest))


UDP_HDR = bytes(UDP(sport=1111, dport=2222)) + b"data"


# ---------------------------------------------------------------------------
# classify
# ---------------------------------------------------------------------------
def test_tcp_v4():
    f = bytes(E / IP(src=S4, dst=D4) / TCP(sport=40000, dport=443) / PAY)
    p = model.classify(f)
    assert (p.l3, p.l4, p.ip_proto, p.family) == (L3.IPV4, L4.TCP, 6, 4)
    assert (p.src, p.dst, p.sport, p.dport) == (ip4(S4), ip4(D4), 40000, 443)
    assert (p.vlan_depth, p.length, p.nd, p.src_v4mapped) == (0, len(f), False, False)
    assert p.has_ports


@pytest.mark.parametrize("l4pkt, want, ports", [
    (UDP(sport=53, dport=5353), L4.UDP, (53, 5353)),
    (ICMP(), L4.ICMP, (0, 0)),
    (SCTP(sport=5000, dport=5001), L4.SCTP, (5000, 5001)),
    (GRE(), L4.GRE, (0, 0)),
    (Raw(b"\x00" * 20), L4.OTHER, (0, 0)),
])
def test_l4_kinds_v4(l4pkt, want, ports):
    proto = {L4.OTHER: 253}.get(want)
    ip = IP(src=S4, dst=D4, proto=proto) if proto else IP(src=S4, dst=D4)
    p = cls(E / ip / l4pkt / PAY)
    assert (p.l3, p.l4, (p.sport, p.dport)) == (L3.IPV4, want, ports)


def test_ipv4_options_skipped():
    p = cls(E / IP(src=S4, dst=D4, options=b"\x01\x01\x01\x00" * 3) / UDP(sport=7, dport=9) / PAY)
    assert (p.l4, p.sport, p.dport) == (L4.UDP, 7, 9)


def test_ipv4_fragments():
    p = cls(E / IP(src=S4, dst=D4, frag=10, proto=17) / PAY)
    assert (p.l3, p.l4, p.ip_proto, p.dport, p.src) == (L3.IPV4, L4.FRAGMENT, 17, 0, ip4(S4))
    assert not p.has_ports
    p = cls(E / IP(src=S4, dst=D4, flags="MF") / UDP(dport=53) / PAY)  # first fragment: has ports
    assert (p.l4, p.dport) == (L4.UDP, 53)


def test_ipv4_malformed():
    good = bytes(E / IP(src=S4, dst=D4) / UDP() / PAY)
    assert cls(good[:14 + 19]).l3 == L3.MALFORMED                      # 19 bytes of header
    bad_ver = bytearray(good)
    bad_ver[14] = 0x65
    assert cls(bad_ver).l3 == L3.MALFORMED
    bad_ihl = bytearray(good)
    bad_ihl[14] = 0x44
    assert cls(bad_ihl).l3 == L3.MALFORMED                             # IHL 4
    long_ihl = bytes(E / IP(src=S4, dst=D4, ihl=15))[:14 + 40]
    assert cls(long_ihl).l3 == L3.MALFORMED                            # 60-byte header, 40 present
    bad_len = bytearray(good)
    bad_len[16:18] = (19).to_bytes(2, "big")
    assert cls(bad_len).l3 == L3.MALFORMED                             # total length < IHL*4
    p = cls(bad_len)
    assert (p.l4, p.family) == (L4.NONE, 0)
    # total length larger than the frame is not checked
    big_len = bytearray(good)
    big_len[16:18] = (1500).to_bytes(2, "big")
    assert cls(big_len).l4 == L4.UDP


@pytest.mark.parametrize("proto, need", [(6, 20), (17, 8), (1, 4), (58, 4), (132, 12), (47, 4)])
def test_l4_truncated(proto, need):
    base = bytes(E / IP(src=S4, dst=D4, proto=proto))
    assert cls(base + bytes(need - 1)).l4 == L4.MALFORMED
    assert cls(base + bytes(need)).l4 != L4.MALFORMED
    p = cls(base + bytes(need - 1))
    assert (p.l3, p.ip_proto, p.has_ports) == (L3.IPV4, proto, False)


def test_icmp_across_families():
    assert cls(E / IP(src=S4, dst=D4, proto=58) / Raw(b"\x87\x00\x00\x00")).l4 == L4.ICMPV6
    assert cls(E / IP(src=S4, dst=D4, proto=58) / Raw(b"\x87\x00\x00\x00")).l3 == L3.IPV4
    assert not cls(E / IP(src=S4, dst=D4, proto=58) / Raw(b"\x87\x00\x00\x00")).nd  # ND is IPv6 only
    assert cls(E / IPv6(src=S6, dst=D6, nh=1) / ICMP()).l4 == L4.ICMP


def test_ipv6_basic_and_nd():
    p = cls(E / IPv6(src=S6, dst=D6) / ICMPv6EchoRequest())
    assert (p.l3, p.l4, p.ip_proto, p.family, p.nd) == (L3.IPV6, L4.ICMPV6, 58, 6, False)
    assert (p.src, p.dst) == (ip6(S6), ip6(D6))
    for nd in (ICMPv6ND_RS(), ICMPv6ND_RA(), ICMPv6ND_NS(tgt=D6), ICMPv6ND_NA(tgt=D6), ICMPv6ND_Redirect()):
        assert cls(E / IPv6(src=S6, dst=D6) / nd).nd, nd.name
    assert not model.classify(v6raw(58, bytes([138, 0, 0, 0]))).nd
    assert not model.classify(v6raw(58, bytes([132, 0, 0, 0]))).nd
    assert model.classify(v6raw(58, bytes([137, 0, 0, 0]))).nd
    assert model.classify(v6raw(58, bytes([135, 0, 0]))).l4 == L4.MALFORMED


def test_ipv6_ext_headers():
    p = cls(E / IPv6(src=S6, dst=D6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
            IPv6ExtHdrRouting(addresses=[]) / UDP(sport=1, dport=2) / PAY)
    assert (p.l4, p.ip_proto, p.sport, p.dport) == (L4.UDP, 17, 1, 2)
    # AH: length in 4-byte units + 2
    p = model.classify(v6raw(51, ah(17) + UDP_HDR))
    assert (p.l4, p.dport) == (L4.UDP, 2222)
    # first fragment (offset 0) carries the L4 header
    p = model.classify(v6raw(44, frag(17, 0, more=True) + UDP_HDR))
    assert (p.l4, p.dport) == (L4.UDP, 2222)
    p = cls(E / IPv6(src=S6, dst=D6) / IPv6ExtHdrFragment(offset=5, nh=6) / PAY)
    assert (p.l4, p.ip_proto, p.has_ports) == (L4.FRAGMENT, 6, False)


def test_ipv6_ext_limits():
    chain = b""
    for _ in range(7):
        chain += ext(60, 6)
    eight = ext(60, 6)  # the 8th header, pointing at UDP
    p = model.classify(v6raw(60, chain + bytes([17]) + eight[1:] + UDP_HDR))
    assert (p.l4, p.dport) == (L4.UDP, 2222)                             # 8 headers: fine
    nine = chain + ext(60, 6) + bytes([17]) + ext(60, 6)[1:] + UDP_HDR
    p = model.classify(v6raw(60, nine))
    assert (p.l4, p.ip_proto) == (L4.MALFORMED, 60)                      # a 9th: malformed
    # a truncated extension header
    p = model.classify(v6raw(0, ext(17, 14)[:10]))
    assert (p.l4, p.ip_proto) == (L4.MALFORMED, 0)
    p = model.classify(v6raw(44, frag(17, 0)[:7]))
    assert p.l4 == L4.MALFORMED
    p = model.classify(v6raw(51, ah(17)[:20]))
    assert p.l4 == L4.MALFORMED
    p = model.classify(v6raw(0, b"\x11"))                               # not even 2 bytes
    assert p.l4 == L4.MALFORMED


@pytest.mark.parametrize("nh", [59, 50, 253])
def test_ipv6_no_next_esp_unknown(nh):
    p = model.classify(v6raw(nh, bytes(16)))
    assert (p.l3, p.l4, p.ip_proto) == (L3.IPV6, L4.OTHER, nh)


def test_ipv6_malformed():
    good = bytes(E / IPv6(src=S6, dst=D6) / UDP() / PAY)
    assert cls(good[:14 + 39]).l3 == L3.MALFORMED
    bad = bytearray(good)
    bad[14] = 0x40
    assert cls(bad).l3 == L3.MALFORMED


def test_v4_mapped_addresses():
    p = cls(E / IPv6(src="::ffff:192.0.2.9", dst=D6) / UDP(dport=53))
    assert (p.src_v4mapped, p.dst_v4mapped) == (True, False)
    assert p.src == (0xFFFF << 32) | ip4("192.0.2.9")
    p = cls(E / IPv6(src=S6, dst="::ffff:10.0.0.1") / UDP(dport=53))
    assert (p.src_v4mapped, p.dst_v4mapped) == (False, True)
    assert not cls(E / IPv6(src="::10.0.0.1", dst="::1:ffff:0:0") / UDP()).src_v4mapped


def test_arp_other_short():
    p = cls(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / ARP(psrc=S4, pdst=D4, hwsrc="02:00:00:00:00:01"))
    assert (p.l3, p.l4, p.family) == (L3.ARP, L4.NONE, 0)
    assert cls(Ether(**MACS, type=0x88B5) / PAY).l3 == L3.OTHER
    assert model.classify(b"\x00" * 13).l3 == L3.MALFORMED
    assert model.classify(b"").length == 0
    assert model.classify(bytes(Ether(**MACS, type=0x0806))).l3 == L3.ARP      # ARP body is not checked


def test_vlans():
    p = cls(E / Dot1Q(vlan=10) / IP(src=S4, dst=D4) / UDP(dport=53))
    assert (p.vlan_depth, p.l3, p.l4, p.dport) == (1, L3.IPV4, L4.UDP, 53)
    p = cls(E / Dot1AD(vlan=100) / Dot1Q(vlan=10) / IP(src=S4, dst=D4) / TCP(dport=443))
    assert (p.vlan_depth, p.l4, p.dport) == (2, L4.TCP, 443)
    p = cls(Ether(**MACS, type=0x9100) / Dot1Q(vlan=5, type=0x8100) / Dot1Q(vlan=6) / IPv6(src=S6, dst=D6) / UDP())
    assert (p.vlan_depth, p.l3) == (2, L3.IPV6)
    p = cls(E / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP() / UDP())
    assert (p.vlan_depth, p.l3, p.l4) == (2, L3.OTHER, L4.NONE)         # a third tag
    p = cls(E / Dot1Q(vlan=10) / ARP(hwsrc="02:00:00:00:00:01", psrc=S4, pdst=D4))
    assert (p.vlan_depth, p.l3) == (1, L3.ARP)
    trunc = bytes(E / Dot1Q(vlan=10) / IP())[:16]
    p = model.classify(trunc)
    assert (p.l3, p.vlan_depth) == (L3.MALFORMED, 0)                     # a truncated tag
    trunc2 = bytes(E / Dot1AD(vlan=1) / Dot1Q(vlan=2) / IP())[:20]
    assert (model.classify(trunc2).l3, model.classify(trunc2).vlan_depth) == (L3.MALFORMED, 1)


def test_tc_stripped_tag():
    inner = bytes(E / IP(src=S4, dst=D4) / UDP(dport=53) / PAY)
    p = model.classify(inner, tc_vlan_stripped=True)
    assert (p.vlan_depth, p.length, p.l4) == (1, len(inner) + 4, L4.UDP)
    q = bytes(E / Dot1Q(vlan=10) / IP(src=S4, dst=D4) / UDP(dport=53))
    p = model.classify(q, tc_vlan_stripped=True)                        # QinQ on TC: outer stripped
    assert (p.vlan_depth, p.l4) == (2, L4.UDP)
    qq = bytes(E / Dot1Q(vlan=10) / Dot1Q(vlan=11) / IP() / UDP())
    assert model.classify(qq, tc_vlan_stripped=True).l3 == L3.OTHER      # three tags in all
    assert model.classify(b"\x00" * 10, tc_vlan_stripped=True).length == 14


def test_truncated_ipv4_from_shared_frames():
    fr = shared_frames.protocol_mix()
    want = {
        "tcp": (L3.IPV4, L4.TCP, 0), "udp": (L3.IPV4, L4.UDP, 0), "icmp": (L3.IPV4, L4.ICMP, 0),
        "icmpv6": (L3.IPV6, L4.ICMPV6, 0), "arp": (L3.ARP, L4.NONE, 0),
        "vlan_udp": (L3.IPV4, L4.UDP, 1), "qinq_tcp": (L3.IPV4, L4.TCP, 2),
        "ipv6_ext_udp": (L3.IPV6, L4.UDP, 0), "ipv4_options_tcp": (L3.IPV4, L4.TCP, 0),
        "sctp": (L3.IPV4, L4.SCTP, 0), "gre": (L3.IPV4, L4.GRE, 0),
        "ipv4_fragment": (L3.IPV4, L4.FRAGMENT, 0), "ipv6_fragment": (L3.IPV6, L4.FRAGMENT, 0),
        "ipv6_routing_tcp": (L3.IPV6, L4.TCP, 0), "other_ethertype": (L3.OTHER, L4.NONE, 0),
        "truncated_ipv4": (L3.MALFORMED, L4.NONE, 0), "truncated_tcp": (L3.IPV4, L4.MALFORMED, 0),
    }
    for name, frame in fr.items():
        p = model.classify(frame)
        assert (p.l3, p.l4, p.vlan_depth) == want[name], name


def test_proto_slots():
    p = cls(E / IP(src=S4, dst=D4) / TCP())
    assert model.proto_slots(p) == [proto_slot(L3.IPV4, L4.TCP)] == [1]
    p = cls(E / Dot1Q() / IPv6(src=S6, dst=D6) / UDP())
    assert model.proto_slots(p) == [proto_slot(L3.IPV6, L4.UDP), PROTO_VLAN1]
    p = cls(E / Dot1AD() / Dot1Q() / ARP(hwsrc="02:00:00:00:00:01", psrc=S4, pdst=D4))
    assert model.proto_slots(p) == [proto_slot(L3.ARP, L4.NONE), PROTO_VLAN2]
    assert model.proto_slots(model.classify(b"")) == [proto_slot(L3.MALFORMED, L4.NONE)]


# ---------------------------------------------------------------------------
# verdict
# ---------------------------------------------------------------------------
def v4pkt(src=S4, dst=D4, l4=UDP(sport=1234, dport=53)):
    return cls(E / IP(src=src, dst=dst) / l4)


def R(rid, prefix, dir=0, action=DENY, proto=None, port=None, exp=0):
    from xdpctl.core.prefixes import parse_prefix
    if prefix is None:
        return Rule(rid, 0, 0, 0, dir, action, proto, port, exp)
    p = parse_prefix(prefix)
    return Rule(rid, p.family, p.net, p.plen, dir, action, proto, port, exp)


def test_verdict_non_ip_and_malformed():
    arp = cls(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / ARP(hwsrc="02:00:00:00:00:01", psrc=S4, pdst=D4))
    rules = [R(1, "0.0.0.0/0")]
    assert model.verdict(rules, arp, Policy.ALLOW) == (False, DlReason.PASS_NOMATCH, None)
    assert model.verdict(rules, arp, Policy.DENY) == (False, DlReason.PASS_ALWAYS, None)
    bad = model.classify(b"\x00" * 10)
    assert model.verdict(rules, bad, Policy.ALLOW) == (False, DlReason.PASS_MALFORMED, None)
    assert model.verdict(rules, bad, Policy.DENY) == (True, DlReason.DROP_MALFORMED, None)


def test_verdict_longest_prefix_and_order():
    rules = [R(1, "192.0.2.0/24"), R(2, "192.0.2.1", action=ALLOW), R(3, "198.51.100.0/24", dir=1),
             R(4, None, dir=1, proto=17, port=53)]
    assert model.verdict(rules, v4pkt(), Policy.ALLOW) == (False, DlReason.PASS_ALLOW, 2)
    assert model.verdict(rules, v4pkt(src="192.0.2.7"), Policy.ALLOW) == (True, DlReason.DROP_SRC, 1)
    assert model.verdict(rules, v4pkt(src="10.0.0.1"), Policy.ALLOW) == (True, DlReason.DROP_DST, 3)
    assert model.verdict(rules, v4pkt(src="10.0.0.1", dst="10.0.0.2"), Policy.ALLOW) == \
        (True, DlReason.DROP_PORT, 4)
    tcp = v4pkt(src="10.0.0.1", dst="10.0.0.2", l4=TCP(dport=53))
    assert model.verdict(rules, tcp, Policy.ALLOW) == (False, DlReason.PASS_NOMATCH, None)
    assert model.verdict(rules, tcp, Policy.DENY) == (True, DlReason.DROP_POLICY, None)
    # an ALLOW anywhere wins over an earlier DENY
    rules.append(R(5, None, dir=0, action=ALLOW, proto=17, port=53))
    assert model.verdict(rules, v4pkt(src="192.0.2.7"), Policy.ALLOW) == (False, DlReason.PASS_ALLOW, 5)


def test_verdict_ports_need_an_l4_header():
    rules = [R(1, None, proto=17, port=53)]
    frag = cls(E / IP(src=S4, dst=D4, frag=3, proto=17) / PAY)
    assert model.verdict(rules, frag, Policy.ALLOW) == (False, DlReason.PASS_NOMATCH, None)
    trunc = model.classify(bytes(E / IP(src=S4, dst=D4, proto=17)) + b"\x00" * 4)
    assert trunc.l4 == L4.MALFORMED
    assert model.verdict(rules, trunc, Policy.ALLOW) == (False, DlReason.PASS_NOMATCH, None)
    assert model.verdict(rules, v4pkt(), Policy.ALLOW) == (True, DlReason.DROP_PORT, 1)
    # the port rule with a prefix: only that side's address
    rules = [R(2, "198.51.100.0/24", dir=1, proto=17, port=53), R(3, "192.0.2.0/25", dir=0, proto=17, port=53,
                                                                   action=ALLOW)]
    assert model.verdict(rules, v4pkt(src="192.0.2.200"), Policy.ALLOW) == (True, DlReason.DROP_PORT, 2)
    assert model.verdict(rules, v4pkt(), Policy.ALLOW) == (False, DlReason.PASS_ALLOW, 3)
    assert model.verdict(rules, v4pkt(dst="203.0.113.1", src="10.0.0.1"), Policy.ALLOW)[0] is False


def test_verdict_nd_passes_under_deny_policy():
    ns = cls(E / IPv6(src=S6, dst=D6) / ICMPv6ND_NS(tgt=D6))
    echo = cls(E / IPv6(src=S6, dst=D6) / ICMPv6EchoRequest())
    assert model.verdict([], ns, Policy.DENY) == (False, DlReason.PASS_ALWAYS, None)
    assert model.verdict([], echo, Policy.DENY) == (True, DlReason.DROP_POLICY, None)
    # but a rule still applies to ND
    assert model.verdict([R(1, "2001:db8::/32")], ns, Policy.DENY) == (True, DlReason.DROP_SRC, 1)


def test_verdict_v4_mapped_uses_ipv4_rules():
    p = cls(E / IPv6(src="::ffff:192.0.2.9", dst=D6) / UDP(dport=53))
    assert model.verdict([R(1, "192.0.2.0/24")], p, Policy.ALLOW) == (True, DlReason.DROP_SRC, 1)
    assert model.verdict([R(1, "::/0")], p, Policy.ALLOW) == (False, DlReason.PASS_NOMATCH, None)
    assert model.verdict([R(1, "192.0.2.0/24", proto=17, port=53)], p, Policy.ALLOW)[1] == DlReason.DROP_PORT


def test_verdict_expiry():
    rules = [R(1, "192.0.2.0/24"), R(2, "192.0.2.1", action=ALLOW, exp=1000)]
    assert model.verdict(rules, v4pkt(), Policy.ALLOW, now_ns=999) == (False, DlReason.PASS_ALLOW, 2)
    assert model.verdict(rules, v4pkt(), Policy.ALLOW, now_ns=1000) == (True, DlReason.DROP_SRC, 1)
