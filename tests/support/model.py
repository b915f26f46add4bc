"""Reference model of the classifiers for packet tests.

Written from docs/internals.md ("The parser", "The drop list verdict"),
independently of the C and of the drop-list compiler: the verdict uses plain
longest-prefix matching over the rule list, not the band tables.

    classify(frame, tc_vlan_stripped=False) -> Pkt
    proto_slots(pkt) -> list[int]            xc_proto slots one frame increments
    verdict(rules, pkt, policy, now_ns) -> (drop, reason, rule_id | None)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from xdpctl.abi import (L3, L4, PROTO_VLAN1, PROTO_VLAN2, Action, DlReason,
                        Policy, proto_slot)

ETH_HLEN = 14
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
VLAN_MAX = 2
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
IPV6_EXT = (0, 43, 44, 60, 51)   # hop-by-hop, routing, fragment, dest. options, AH
IPV6_EXT_MAX = 8
# protocol -> (class, bytes that must be in the frame)
L4_HDR = {6: (L4.TCP, 20), 17: (L4.UDP, 8), 1: (L4.ICMP, 4), 58: (L4.ICMPV6, 4),
          132: (L4.SCTP, 12), 47: (L4.GRE, 4)}
PORT_PROTOS = (6, 17, 132)
ND_TYPES = range(133, 138)


@dataclass(frozen=True)
class Pkt:
    l3: L3
    l4: L4
    ip_proto: int = 0          # IPv4 protocol / IPv6 last next-header seen
    vlan_depth: int = 0        # tags, including one the kernel stripped (TC)
    family: int = 0            # 4, 6, or 0 when not IP
    src: int = 0
    dst: int = 0
    sport: int = 0
    dport: int = 0
    src_v4mapped: bool = False
    dst_v4mapped: bool = False
    nd: bool = False           # ICMPv6 neighbour discovery (types 133-137)
    length: int = 0            # bytes counted for this frame

    @property
    def has_ports(self) -> bool:
        return self.l4 in (L4.TCP, L4.UDP, L4.SCTP)


def _u16(b: bytes, off: int) -> int:
    return (b[off] << 8) | b[off + 1]


def _mapped(a: int) -> bool:
    return (a >> 32) == 0xFFFF


def classify(frame: bytes, tc_vlan_stripped: bool = False) -> Pkt:
    """Parse a frame as bpf/include/parse.h does. On TC, tc_vlan_stripped
    says the kernel holds one VLAN tag outside the frame (skb->vlan_present):
    it counts as the first tag and 4 bytes of length."""
    frame = bytes(frame)
    end = len(frame)
    length = end + (4 if tc_vlan_stripped else 0)
    depth = 1 if tc_vlan_stripped else 0

    def out(l3, l4=L4.NONE, **kw):
        return Pkt(l3, l4, vlan_depth=depth, length=length, **kw)

    if end < ETH_HLEN:
        return out(L3.MALFORMED)
    etype = _u16(frame, 12)
    off = ETH_HLEN
    while etype in VLAN_TPIDS and depth < VLAN_MAX:
        if off + 4 > end:
            return out(L3.MALFORMED)
        etype = _u16(frame, off + 2)
        off += 4
        depth += 1
    if etype in VLAN_TPIDS:
        return out(L3.OTHER)          # a third tag
    if etype == ETH_P_ARP:
        return out(L3.ARP)
    if etype == ETH_P_IP:
        return _ipv4(frame, off, out)
    if etype == ETH_P_IPV6:
        return _ipv6(frame, off, out)
    return out(L3.OTHER)


def _l4(frame: bytes, off: int, proto: int, out, l3: L3, **ip) -> Pkt:
    cls, need = L4_HDR.get(proto, (L4.OTHER, 0))
    if cls == L4.OTHER:
        return out(l3, L4.OTHER, ip_proto=proto, **ip)
    if off + need > len(frame):
        return out(l3, L4.MALFORMED, ip_proto=proto, **ip)
    sport = dport = 0
    if proto in PORT_PROTOS:
        sport, dport = _u16(frame, off), _u16(frame, off + 2)
    nd = l3 == L3.IPV6 and cls == L4.ICMPV6 and frame[off] in ND_TYPES
    return out(l3, cls, ip_proto=proto, sport=sport, dport=dport, nd=nd, **ip)


def _ipv4(frame: bytes, off: int, out) -> Pkt:
    end = len(frame)
    if off + 20 > end:
        return out(L3.MALFORMED)
    vihl = frame[off]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or off + ihl > end or _u16(frame, off + 2) < ihl:
        return out(L3.MALFORMED)
    proto = frame[off + 9]
    ip = dict(family=4,
              src=int.from_bytes(frame[off + 12:off + 16], "big"),
              dst=int.from_bytes(frame[off + 16:off + 20], "big"))
    if _u16(frame, off + 6) & 0x1FFF:
        return out(L3.IPV4, L4.FRAGMENT, ip_proto=proto, **ip)
    return _l4(frame, off + ihl, proto, out, L3.IPV4, **ip)


def _ipv6(frame: bytes, off: int, out) -> Pkt:
    end = len(frame)
    if off + 40 > end or frame[off] >> 4 != 6:
        return out(L3.MALFORMED)
    src = int.from_bytes(frame[off + 8:off + 24], "big")
    dst = int.from_bytes(frame[off + 24:off + 40], "big")
    ip = dict(family=6, src=src, dst=dst, src_v4mapped=_mapped(src), dst_v4mapped=_mapped(dst))
    nh = frame[off + 6]
    off += 40
    seen = 0
    while nh in IPV6_EXT:
        if seen == IPV6_EXT_MAX:
            return out(L3.IPV6, L4.MALFORMED, ip_proto=nh, **ip)
        if nh == 44:
            hlen = 8
        elif off + 2 > end:
            return out(L3.IPV6, L4.MALFORMED, ip_proto=nh, **ip)
        elif nh == 51:
            hlen = (frame[off + 1] + 2) * 4
        else:
            hlen = (frame[off + 1] + 1) * 8
        if off + hlen > end:
            return out(L3.IPV6, L4.MALFORMED, ip_proto=nh, **ip)
        if nh == 44 and _u16(frame, off + 2) >> 3:
            return out(L3.IPV6, L4.FRAGMENT, ip_proto=frame[off], **ip)
        nh = frame[off]
        off += hlen
        seen += 1
    return _l4(frame, off, nh, out, L3.IPV6, **ip)


def proto_slots(pkt: Pkt) -> list[int]:
    """The xc_proto slots one frame increments (packets += 1, bytes +=
    pkt.length each)."""
    slots = [proto_slot(pkt.l3, pkt.l4)]
    if pkt.vlan_depth == 1:
        slots.append(PROTO_VLAN1)
    elif pkt.vlan_depth == 2:
        slots.append(PROTO_VLAN2)
    return slots


# ---------------------------------------------------------------------------
# Verdict
# ---------------------------------------------------------------------------
def _lookup_addr(family: int, addr: int) -> tuple[int, int]:
    if family == 6 and _mapped(addr):
        return 4, addr & 0xFFFFFFFF
    return family, addr


def _covers(rule, family: int, addr: int) -> bool:
    bits = 32 if family == 4 else 128
    return rule.family == family and (addr >> (bits - rule.plen)) == (rule.net >> (bits - rule.plen))


def _alive(rule, now_ns: int) -> bool:
    return rule.expires_ns == 0 or rule.expires_ns > now_ns


def _longest(cands):
    best = None
    for r in cands:
        if best is None or r.plen > best.plen:
            best = r
    return best


def _addr_match(rules, dir: int, family: int, addr: int, now_ns: int):
    return _longest(r for r in rules
                    if r.proto is None and r.dir == dir and _alive(r, now_ns)
                    and _covers(r, family, addr))


def _port_match(rules, dir: int, pkt: Pkt, family: int, addr: int, now_ns: int):
    return _longest(r for r in rules
                    if r.proto is not None and r.dir == dir and _alive(r, now_ns)
                    and r.proto == pkt.ip_proto and r.port == pkt.dport
                    and (r.family == 0 or _covers(r, family, addr)))


def verdict(rules: Iterable, pkt: Pkt, policy: int = Policy.ALLOW, now_ns: int = 0):
    """(drop, reason, rule_id or None) of the drop list for one packet.

    rules: objects with the fields of xdpctl.core.dlcompile.Rule (id,
    family, net, plen, dir, action, proto, port, expires_ns); a rule whose
    expires_ns is set and <= now_ns does not exist. A rule with a true
    ``mgmt`` attribute (a management prefix, an allow rule) passes a packet
    from (or, dir 1, to) its prefix before any other rule or the policy."""
    rules = list(rules)
    deny_policy = policy == Policy.DENY
    if pkt.l3 in (L3.ARP, L3.OTHER):
        return False, (DlReason.PASS_ALWAYS if deny_policy else DlReason.PASS_NOMATCH), None
    if pkt.l3 == L3.MALFORMED:
        return (True, DlReason.DROP_MALFORMED, None) if deny_policy else \
               (False, DlReason.PASS_MALFORMED, None)
    sfam, saddr = _lookup_addr(pkt.family, pkt.src)
    dfam, daddr = _lookup_addr(pkt.family, pkt.dst)
    mgmt = [r for r in rules if getattr(r, "mgmt", False)]
    for r in (_addr_match(mgmt, 0, sfam, saddr, now_ns), _addr_match(mgmt, 1, dfam, daddr, now_ns)):
        if r is not None:  # a management prefix passes whatever else matches
            return False, DlReason.PASS_ALLOW, r.id
    s = _addr_match(rules, 0, sfam, saddr, now_ns)
    d = _addr_match(rules, 1, dfam, daddr, now_ns)
    ps = pd = None
    if pkt.has_ports:
        ps = _port_match(rules, 0, pkt, sfam, saddr, now_ns)
        pd = _port_match(rules, 1, pkt, dfam, daddr, now_ns)
    found = ((s, DlReason.DROP_SRC), (d, DlReason.DROP_DST),
             (ps, DlReason.DROP_PORT), (pd, DlReason.DROP_PORT))
    for r, _ in found:
        if r is not None and r.action == Action.ALLOW:
            return False, DlReason.PASS_ALLOW, r.id
    for r, reason in found:
        if r is not None and r.action == Action.DENY:
            return True, reason, r.id
    if not deny_policy:
        return False, DlReason.PASS_NOMATCH, None
    if pkt.nd:
        return False, DlReason.PASS_ALWAYS, None
    return True, DlReason.DROP_POLICY, None
