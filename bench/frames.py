"""64-byte UDP frames (Ethernet + IP + UDP + payload, FCS not included),
built by hand so the bench does not need scapy."""

from __future__ import annotations

import struct

from xdpctl.lab import inet_checksum

FRAME_LEN = 64
SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def udp(family: int, src: int, dst: int, sport: int = 40000, dport: int = 9,
        dst_mac: bytes = DST_MAC, src_mac: bytes = SRC_MAC, length: int = FRAME_LEN) -> bytes:
    """A UDP frame of exactly ``length`` bytes from src to dst (ints)."""
    if family == 4:
        plen = length - 14 - 20 - 8
        ulen = 8 + plen
        s, d = src.to_bytes(4, "big"), dst.to_bytes(4, "big")
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0, 64, 17, 0, s, d)
        ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
        payload = bytes(plen)
        pseudo = s + d + struct.pack("!BBH", 0, 17, ulen)
        u = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
        c = inet_checksum(pseudo + u) or 0xFFFF
        u = u[:6] + struct.pack("!H", c) + u[8:]
        return dst_mac + src_mac + b"\x08\x00" + ip + u
    plen = length - 14 - 40 - 8
    ulen = 8 + plen
    s, d = src.to_bytes(16, "big"), dst.to_bytes(16, "big")
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, ulen, 17, 64, s, d)
    payload = bytes(plen)
    pseudo = s + d + struct.pack("!I3xB", ulen, 17)
    u = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = inet_checksum(pseudo + u) or 0xFFFF
    u = u[:6] + struct.pack("!H", c) + u[8:]
    return dst_mac + src_mac + b"\x86\xdd" + ip6 + u


# Destinations of test frames (the rule sets only match sources).
DST4 = 0xC0000202                      # 192.0.2.2
DST6 = (0x20010DB8 << 96) | 2          # 2001:db8::2


def udp_from(family: int, src: int, **kw) -> bytes:
    return udp(family, src, DST4 if family == 4 else DST6, **kw)
