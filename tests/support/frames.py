"""Scapy-built frames: the known protocol mix the tests send."""

from __future__ import annotations

from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

SRC_MAC = "02:00:00:00:00:01"
DST_MAC = "02:00:00:00:00:02"
SRC4, DST4 = "192.0.2.1", "192.0.2.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"


def protocol_mix(src_mac: str = SRC_MAC, dst_mac: str = DST_MAC, src4: str = SRC4, dst4: str = DST4,
                 src6: str = SRC6, dst6: str = DST6, payload: bytes = b"xdpctl-mix") -> dict[str, bytes]:
    """name -> frame bytes. One frame per kind the counter distinguishes."""
    e = Ether(src=src_mac, dst=dst_mac)
    p = Raw(payload)
    frames = {
        "tcp": e / IP(src=src4, dst=dst4) / TCP(sport=40000, dport=80, flags="S") / p,
        "udp": e / IP(src=src4, dst=dst4) / UDP(sport=40000, dport=53) / p,
        "icmp": e / IP(src=src4, dst=dst4) / ICMP() / p,
        "icmpv6": e / IPv6(src=src6, dst=dst6) / ICMPv6EchoRequest() / p,
        "arp": Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=src4, pdst=dst4, hwsrc=src_mac),
        "vlan_udp": e / Dot1Q(vlan=10) / IP(src=src4, dst=dst4) / UDP(sport=40001, dport=53) / p,
        "qinq_tcp": e / Dot1AD(vlan=100) / Dot1Q(vlan=10) / IP(src=src4, dst=dst4) / TCP(dport=443) / p,
        "ipv6_ext_udp": e / IPv6(src=src6, dst=dst6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        / UDP(sport=40002, dport=5353) / p,
        "ipv4_options_tcp": e / IP(src=src4, dst=dst4, options=b"\x01\x01\x01\x00") / TCP(dport=22) / p,
        "sctp": e / IP(src=src4, dst=dst4) / SCTP(sport=5000, dport=5001) / p,
        "gre": e / IP(src=src4, dst=dst4) / GRE() / p,
        "ipv4_fragment": e / IP(src=src4, dst=dst4, frag=10, proto=17) / p,
        "ipv6_fragment": e / IPv6(src=src6, dst=dst6) / IPv6ExtHdrFragment(offset=5, nh=17) / p,
        "ipv6_routing_tcp": e / IPv6(src=src6, dst=dst6) / IPv6ExtHdrRouting(addresses=[]) / TCP(dport=80) / p,
        "other_ethertype": Ether(src=src_mac, dst=dst_mac, type=0x88B5) / p,
    }
    out = {k: bytes(v) for k, v in frames.items()}
    # An IPv4 header cut short: ethertype IPv4, IHL says 20 bytes, 12 present.
    ip_hdr = bytes(IP(src=src4, dst=dst4) / UDP())[:12]
    out["truncated_ipv4"] = bytes(Ether(src=src_mac, dst=dst_mac, type=0x0800)) + ip_hdr
    # A TCP header cut short (IPv4 header complete).
    out["truncated_tcp"] = bytes(e / IP(src=src4, dst=dst4, proto=6))[:34] + b"\x00" * 8
    return out


def udp4(src: str, dst: str, dport: int = 9999, sport: int = 40000, payload: bytes = b"x" * 18,
         src_mac: str = SRC_MAC, dst_mac: str = DST_MAC, vlan: int | None = None) -> bytes:
    e = Ether(src=src_mac, dst=dst_mac)
    if vlan is not None:
        e = e / Dot1Q(vlan=vlan)
    return bytes(e / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))
