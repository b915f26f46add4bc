"""The parser's whole output (struct xc_pkt, as the kernel leaves it in the
hook's per-CPU xc_pkt) against the Python reference model, frame by frame:
class, protocol, VLAN depth, addresses, ports and flags, not only the
counter slot. The parser has a one-pass path for the common frame
(untagged IPv4 without options, whatever its protocol or fragment)
beside the general one; every frame near that path's edges (IPv4 options, a
fragment, a short total length, a TCP header cut short, other protocols,
tags) must come out as the model says, whichever path took it."""

from __future__ import annotations

import dataclasses
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from tests.support import model
from tests.support.frames import protocol_mix
from xdpctl import abi

PKT = struct.Struct("=16s16sI2s2sBBBBB3x")  # struct xc_pkt (parse.h)
PORTS, SRC_MAPPED, DST_MAPPED, ND, TRUNC = 1, 2, 4, 8, 16
assert PKT.size == abi.PKT_BYTES


def _addr(raw: bytes, family: int) -> int:
    return int.from_bytes(raw[:4] if family == 4 else raw, "big")


def kernel_pkt(bench, frame: bytes, cpu: int) -> model.Pkt | None:
    """The xc_pkt the hook left on ``cpu`` after running ``frame`` there
    (None: BPF_PROG_TEST_RUN does not run such a frame on this hook)."""
    if bench.refused(frame):
        return None
    res = bench.run(frame)
    assert bench.passed(res.retval), frame.hex()
    with bench.map("xc_pkt") as m:
        raw = m.lookup_percpu(abi.U32.pack(0))[cpu]
    src, dst, length, sport, dport, l3, l4, proto, vlan, flags = PKT.unpack(raw[:PKT.size])
    l3 = abi.L3(l3)
    family = 4 if l3 == abi.L3.IPV4 else 6 if l3 == abi.L3.IPV6 else 0
    if flags & PORTS:
        assert abi.L4(l4) in (abi.L4.TCP, abi.L4.UDP, abi.L4.SCTP), frame.hex()
    else:
        assert sport == dport == b"\0\0", frame.hex()
    if family == 4:  # the rest of an IPv4 address stays clear
        assert src[4:] == dst[4:] == bytes(12), frame.hex()
    return model.Pkt(l3=l3, l4=abi.L4(l4), ip_proto=proto, vlan_depth=vlan, family=family,
                     src=_addr(src, family), dst=_addr(dst, family),
                     sport=int.from_bytes(sport, "big"), dport=int.from_bytes(dport, "big"),
                     src_v4mapped=bool(flags & SRC_MAPPED), dst_v4mapped=bool(flags & DST_MAPPED),
                     nd=bool(flags & ND), length=length)


def want_pkt(frame: bytes) -> model.Pkt:
    """The model's parse, as the kernel stores it: no address or protocol
    of a frame that is not IP, no ports without a TCP, UDP or SCTP header."""
    p = model.classify(frame, tc_vlan_stripped=False)
    if p.family == 0:
        p = dataclasses.replace(p, src=0, dst=0, ip_proto=0)
    if not p.has_ports:
        p = dataclasses.replace(p, sport=0, dport=0)
    return p


@pytest.fixture
def cpu():
    """Run on one CPU, so its slot of the per-CPU xc_pkt is the one written."""
    before = os.sched_getaffinity(0)
    c = min(before)
    os.sched_setaffinity(0, {c})
    yield c
    os.sched_setaffinity(0, before)


def _check(bench, frame: bytes, cpu: int) -> None:
    got = kernel_pkt(bench, frame, cpu)
    if got is None:
        assert model.classify(frame).l3 == abi.L3.MALFORMED, frame.hex()
        return
    assert got == want_pkt(frame), frame.hex()


def test_the_mix_parses_as_the_model_says(counter_bench, cpu) -> None:
    for name, frame in sorted(protocol_mix().items()):
        _check(counter_bench, frame, cpu)


def _ipv4(proto: str, **ip) -> bytes:
    l4 = TCP(sport=40000, dport=443) if proto == "tcp" else UDP(sport=5353, dport=53)
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="198.51.100.7",
                 dst="203.0.113.9", **ip) / l4 / b"payload")


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("ip", [{}, {"flags": "MF"}, {"frag": 1}, {"frag": 0, "flags": "DF"},
                                {"options": b"\x01\x01\x01\x00"}, {"ttl": 1}])
def test_every_cut_of_the_common_frames_parses_as_the_model_says(counter_bench, cpu, proto, ip) -> None:
    frame = _ipv4(proto, **ip)
    for cut in range(14, len(frame) + 1):
        _check(counter_bench, frame[:cut], cpu)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vihl=st.sampled_from([0x45, 0x46, 0x44, 0x55, 0x4F]), tot_len=st.integers(0, 80),
       frag=st.sampled_from([0, 0x2000, 0x4000, 0x0001, 0x1FFF, 0x6001]),
       proto=st.sampled_from([6, 17, 1, 47, 132, 0, 255]), tail=st.binary(min_size=0, max_size=40))
def test_ipv4_header_fields_parse_as_the_model_says(counter_bench, cpu, vihl, tot_len, frag, proto,
                                                      tail) -> None:
    hdr = struct.pack("!BBHHHBBH4s4s", vihl, 0, tot_len, 1, frag, 64, proto, 0,
                      bytes([198, 51, 100, 7]), bytes([203, 0, 113, 9]))
    frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + hdr + tail
    _check(counter_bench, frame, cpu)
