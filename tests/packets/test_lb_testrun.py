"""The load balancer stage, run by the kernel (BPF_PROG_TEST_RUN) through the
root and the chain, on scapy-built packets, against the Python reference
(xdpctl.core.lb.maglev: Maglev table + flow hash).

XDP: a balanced frame comes back with XDP_TX. TC: with TC_ACT_REDIRECT (the
test runner reports the action; it does not send the frame anywhere), and
the frame as the program left it. Both: the output frame is checked byte
for byte (only the two MAC addresses change)."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, fragment
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from xdpctl import abi
from xdpctl.core.lb import maglev, tables
from xdpctl.kernel import testrun
from tests.support.progs import ProgramBench

TC_ACT_REDIRECT = 7
RING = 8 * 1009
SIZE = 1009
HOOK_MAC = "02:00:00:00:00:aa"
CLIENT_MAC = "02:00:00:00:00:cc"
VIP4, VIP6 = "192.0.2.10", "2001:db8::10"
TCP_, UDP_ = 6, 17
R = abi.LbReason


def _mac(be_id: int) -> str:
    return f"02:00:00:00:01:{be_id:02x}"


class LbBench:
    """A ProgramBench with only the lb stage switched on, and the control
    plane's writes done by hand with xdpctl.core.lb.tables."""

    def __init__(self, ctx, kind: str):
        self.kind = kind
        self.bench = ProgramBench(ctx, kind, ("lb",), name="lb",
                                  max_entries={"xc_lb_ring": RING, "xc_lb_conn": 4096})
        self.m = {n: self.bench.map(n) for n in self.bench.loaded.maps if n.startswith("xc_lb")}
        self.regions = tables.Regions(RING)
        self.vips: dict[bytes, tuple[int, list[int]]] = {}  # key -> (ring base, ids)
        self.m["xc_lb_hook"].update(abi.U32.pack(0), tables.hook_value(HOOK_MAC))

    def close(self):
        for m in self.m.values():
            m.close()
        self.bench.close()

    def backend(self, be_id, state=abi.LbState.ACTIVE, mac=True, vip_id=1):
        self.m["xc_lb_backends"].update(
            abi.U32.pack(be_id),
            tables.backend_value(f"10.9.0.{be_id}", _mac(be_id) if mac else None, state, vip_id=vip_id))

    def vip(self, addr, proto, port, ids, vip_id=1, flags=0, weights=None) -> list[int]:
        """(Re)build the VIP's table over backend ids and switch to it:
        new region, one VIP update, old region released. Returns the table
        as backend ids."""
        key = tables.vip_key(addr, proto, port)
        weights = weights or [1] * len(ids)
        table = maglev.build([(f"be{i}", w) for i, w in zip(ids, weights)], SIZE)
        base = self.regions.alloc(SIZE)
        self.m["xc_lb_ring"].update_batch(tables.ring_keys(base, SIZE),
                                          tables.ring_image(table, ids), SIZE)
        self.m["xc_lb_vips"].update(key, tables.vip_value(base, SIZE, vip_id, flags))
        if key in self.vips:
            self.regions.release(self.vips[key][0])
        self.vips[key] = (base, ids)
        return [ids[i] for i in table]

    def run(self, frame: bytes) -> testrun.RunResult:
        return self.bench.run(frame)

    def forwarded(self, res) -> bool:
        return res.retval == (testrun.XDP_TX if self.kind == "xdp" else TC_ACT_REDIRECT)

    def reasons(self) -> dict[int, tuple[int, int]]:
        return self.bench.percpu_sums("xc_lb_cnt")

    def stats(self, name: str) -> dict[int, tuple[int, int, int]]:
        m = self.m[name]
        out = {}
        for key, raw in m.items():
            tot = [0, 0, 0]
            for c in range(m.ncpus):
                for k, v in enumerate(abi.LB_STATS.unpack_from(raw, c * m.slot_size)):
                    tot[k] += v
            if any(tot):
                out[int.from_bytes(key, "little")] = tuple(tot)
        return out

    def conn(self, src, dst, sport, dport, proto):
        raw = self.m["xc_lb_conn"].lookup(tables.conn_key(src, dst, sport, dport, proto))
        return None if raw is None else tables.unpack_conn(raw)


@pytest.fixture
def lb(ctx, kind):
    b = LbBench(ctx, kind)
    yield b
    b.close()


def _frame(src, dst, sport, dport, proto=TCP_, flags="A", payload=b"x" * 10) -> bytes:
    ip = IP(src=src, dst=dst) if ipaddress.ip_address(dst).version == 4 else IPv6(src=src, dst=dst)
    l4 = TCP(sport=sport, dport=dport, flags=flags) if proto == TCP_ else UDP(sport=sport, dport=dport)
    return bytes(Ether(src=CLIENT_MAC, dst=HOOK_MAC) / ip / l4 / Raw(payload))


def _pick(table, src, dst, sport, dport, proto):
    """The reference: the backend of table[flow_hash % size]."""
    s = ipaddress.ip_address(src).packed.ljust(16, b"\0")
    d = ipaddress.ip_address(dst).packed.ljust(16, b"\0")
    return table[maglev.flow_hash(s, d, sport, dport, proto) % SIZE]


def _assert_forwarded(lb, res, frame, be_id):
    assert lb.forwarded(res), res.retval
    out = res.data_out
    assert out[:6] == bytes.fromhex(_mac(be_id).replace(":", "")), (out[:6].hex(), be_id)
    assert out[6:12] == bytes.fromhex(HOOK_MAC.replace(":", ""))
    assert out[12:] == frame[12:]


def _assert_passed(lb, res, frame):
    assert lb.bench.passed(res.retval), res.retval
    assert res.data_out == frame


# ---------------------------------------------------------------------------
def test_traffic_for_no_vip_passes_untouched(lb):
    lb.backend(1)
    lb.vip(VIP4, TCP_, 80, [1])
    frames = {
        R.PASS_NOVIP: [_frame("10.0.0.1", "192.0.2.99", 1000, 80),       # other address
                       _frame("10.0.0.1", VIP4, 1000, 81),               # other port
                       _frame("10.0.0.1", VIP4, 1000, 80, proto=UDP_),   # other protocol
                       _frame("2001:db8::1", VIP6, 1000, 80)],
        R.PASS_NOTIP: [bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=VIP4))],
    }
    want = Counter()
    for reason, fs in frames.items():
        for f in fs:
            _assert_passed(lb, lb.run(f), f)
            want[reason] += 1
    # balancing off on this hook: even VIP traffic passes
    lb.m["xc_lb_hook"].update(abi.U32.pack(0), tables.hook_value(HOOK_MAC, on=False))
    f = _frame("10.0.0.1", VIP4, 1000, 80, flags="S")
    _assert_passed(lb, lb.run(f), f)
    want[R.PASS_OFF] += 1
    assert {k: v[0] for k, v in lb.reasons().items()} == dict(want)
    assert lb.stats("xc_lb_vip_cnt") == {} and lb.stats("xc_lb_be_cnt") == {}


@pytest.mark.parametrize("vip,proto", [(VIP4, TCP_), (VIP4, UDP_), (VIP6, TCP_), (VIP6, UDP_)])
def test_backend_is_the_reference_choice(lb, vip, proto):
    """Many random new flows: each reaches table[flow_hash % size] of the
    Python build, with exact per-VIP, per-backend and reason counters."""
    ids = [3, 5, 6, 7, 9, 11, 12, 20]
    for i in ids:
        lb.backend(i)
    table = lb.vip(vip, proto, 443, ids, vip_id=4, weights=[1, 2, 1, 3, 1, 1, 2, 1])
    rnd = random.Random(7)
    want_be: Counter = Counter()
    nbytes: Counter = Counter()
    n = 300
    for _ in range(n):
        if vip == VIP4:
            src = str(ipaddress.IPv4Address(rnd.getrandbits(32) | 0x01000000))
        else:
            src = str(ipaddress.IPv6Address((0x2001_0db8_00ff << 80) | rnd.getrandbits(64)))
        sport = rnd.randrange(1024, 65536)
        f = _frame(src, vip, sport, 443, proto, flags="S")
        be = _pick(table, src, vip, sport, 443, proto)
        _assert_forwarded(lb, lb.run(f), f, be)
        assert lb.conn(src, vip, sport, 443, proto) == (be, 4)
        want_be[be] += 1
        nbytes[be] += len(f)
    assert len(want_be) == len(ids)  # every backend got some
    assert lb.stats("xc_lb_vip_cnt") == {4: (n, sum(nbytes.values()), n)}
    assert lb.stats("xc_lb_be_cnt") == {b: (c, nbytes[b], c) for b, c in want_be.items()}
    assert lb.reasons() == {R.FWD_NEW: (n, sum(nbytes.values()))}


def _flows(n, vip=VIP4):
    return [(f"10.0.{i // 200}.{i % 200 + 1}" if vip == VIP4 else f"2001:db8:ff::{i + 1:x}",
             20000 + i) for i in range(n)]


@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_conn_table_keeps_flows_across_a_ring_change(lb, vip):
    for i in range(1, 7):
        lb.backend(i)
    old = lb.vip(vip, TCP_, 80, [1, 2, 3, 4])
    flows = _flows(200, vip)
    first = {}
    for src, sport in flows:
        f = _frame(src, vip, sport, 80, flags="S")
        first[(src, sport)] = _pick(old, src, vip, sport, 80, TCP_)
        _assert_forwarded(lb, lb.run(f), f, first[(src, sport)])
    new = lb.vip(vip, TCP_, 80, [1, 2, 3, 4, 5, 6])  # two backends more: many slots move
    moved = [fl for fl in flows if _pick(new, fl[0], vip, fl[1], 80, TCP_) != first[fl]]
    assert len(moved) > 20
    for src, sport in flows:  # established: the old backend
        f = _frame(src, vip, sport, 80, flags="A")
        _assert_forwarded(lb, lb.run(f), f, first[(src, sport)])
    for src, sport in moved:  # a SYN takes the ring of the moment, and the entry follows
        f = _frame(src, vip, sport, 80, flags="S")
        be = _pick(new, src, vip, sport, 80, TCP_)
        _assert_forwarded(lb, lb.run(f), f, be)
        assert lb.conn(src, vip, sport, 80, TCP_)[0] == be
    # an unknown flow's first packet (not a SYN) takes the new ring
    f = _frame("10.200.0.1" if vip == VIP4 else "2001:db8:ee::1", vip, 5555, 80, flags="A")
    src = "10.200.0.1" if vip == VIP4 else "2001:db8:ee::1"
    _assert_forwarded(lb, lb.run(f), f, _pick(new, src, vip, 5555, 80, TCP_))
    r = lb.reasons()
    assert r[R.FWD_NEW][0] == len(flows) + len(moved) + 1 and r[R.FWD_CONN][0] == len(flows)
    assert set(r) == {R.FWD_NEW, R.FWD_CONN}


def test_draining_keeps_established_flows_down_moves_them(lb):
    for i in (1, 2, 3):
        lb.backend(i)
    table = lb.vip(VIP4, UDP_, 53, [1, 2, 3])
    flows = _flows(120)
    on = {fl: _pick(table, fl[0], VIP4, fl[1], 53, UDP_) for fl in flows}
    got: Counter = Counter()

    def send(src, sport, be):
        f = _frame(src, VIP4, sport, 53, UDP_)
        _assert_forwarded(lb, lb.run(f), f, be)
        got[be] += 1

    for (src, sport), be in on.items():
        send(src, sport, be)
    assert got[2] > 0
    # 2 drains: out of the ring, its established flows stay
    lb.backend(2, abi.LbState.DRAINING)
    table = lb.vip(VIP4, UDP_, 53, [1, 3])
    assert 2 not in table
    for (src, sport), be in on.items():
        send(src, sport, be)
    for src, sport in _flows(300)[120:]:  # new flows never reach it
        send(src, sport, _pick(table, src, VIP4, sport, 53, UDP_))
    # 2 goes down: its established flows move to the ring's choice
    lb.backend(2, abi.LbState.DOWN)
    for (src, sport), be in on.items():
        want = be if be != 2 else _pick(table, src, VIP4, sport, 53, UDP_)
        send(src, sport, want)
        assert lb.conn(src, VIP4, sport, 53, UDP_)[0] == want
    assert {k: v[0] for k, v in lb.stats("xc_lb_be_cnt").items()} == dict(got)
    assert got[2] == 2 * list(on.values()).count(2)


def test_backend_without_mac_or_down_in_ring_gets_nothing(lb):
    lb.backend(1, mac=False)
    lb.vip(VIP4, TCP_, 80, [1])
    f = _frame("10.0.0.1", VIP4, 1000, 80, flags="S")
    _assert_passed(lb, lb.run(f), f)
    lb.backend(1, abi.LbState.DOWN)
    _assert_passed(lb, lb.run(f), f)
    lb.m["xc_lb_vips"].update(tables.vip_key(VIP4, TCP_, 80), tables.vip_value(0, 0, 1))
    _assert_passed(lb, lb.run(f), f)  # empty table
    assert lb.reasons() == {R.PASS_NOBACKEND: (3, 3 * len(f))}
    assert lb.conn("10.0.0.1", VIP4, 1000, 80, TCP_) is None


def _icmp4_too_big(client, cport, proto=TCP_):
    inner = IPerror(src=VIP4, dst=client) / (TCPerror(sport=80, dport=cport) if proto == TCP_
                                            else UDP(sport=80, dport=cport))
    return bytes(Ether(src=CLIENT_MAC, dst=HOOK_MAC) / IP(src="198.51.100.1", dst=VIP4)
                 / ICMP(type=3, code=4, nexthopmtu=1400) / inner)


def _icmp6_too_big(client, cport):
    inner = IPv6(src=VIP6, dst=client) / TCP(sport=80, dport=cport)
    return bytes(Ether(src=CLIENT_MAC, dst=HOOK_MAC) / IPv6(src="2001:db8:99::1", dst=VIP6)
                 / ICMPv6PacketTooBig(mtu=1280) / inner)


@pytest.mark.parametrize("vip", [VIP4, VIP6])
def test_icmp_too_big_reaches_the_flows_backend(lb, vip):
    for i in range(1, 6):
        lb.backend(i)
    old = lb.vip(vip, TCP_, 80, [1, 2, 3, 4, 5])
    flows = _flows(60, vip)
    for src, sport in flows:
        f = _frame(src, vip, sport, 80, flags="S")
        lb.run(f)
    new = lb.vip(vip, TCP_, 80, [1, 2])  # the ring moves; the conn table still knows
    for src, sport in flows:
        f = _icmp4_too_big(src, sport) if vip == VIP4 else _icmp6_too_big(src, sport)
        be = _pick(old, src, vip, sport, 80, TCP_)
        _assert_forwarded(lb, lb.run(f), f, be)
    # no conn entry: the ring of the moment, and no entry is made
    f = _icmp4_too_big("10.77.0.1", 999) if vip == VIP4 else _icmp6_too_big("2001:db8:77::1", 999)
    src = "10.77.0.1" if vip == VIP4 else "2001:db8:77::1"
    _assert_forwarded(lb, lb.run(f), f, _pick(new, src, vip, 999, 80, TCP_))
    assert lb.conn(src, vip, 999, 80, TCP_) is None
    r = lb.reasons()
    assert r[R.FWD_ICMP][0] == len(flows) + 1 and r[R.FWD_NEW][0] == len(flows)
    # other ICMP to the VIP is not balanced
    echo = bytes(Ether(src=CLIENT_MAC, dst=HOOK_MAC) / IP(src="10.0.0.1", dst=VIP4) / ICMP()) \
        if vip == VIP4 else _frame("2001:db8::1", VIP6, 1, 81)
    _assert_passed(lb, lb.run(echo), echo)


def test_fragments(lb):
    """A port-0 VIP with XC_LB_VIP_HASH_L3 keeps every fragment of a
    datagram (and every flow of a client) on one backend; without the flag
    non-first fragments pass."""
    for i in range(1, 5):
        lb.backend(i)
    table = lb.vip(VIP4, UDP_, 0, [1, 2, 3, 4], flags=abi.LB_VIP_HASH_L3)
    src4 = bytes([10, 0, 0, 7]) + bytes(12)
    vip4 = bytes([192, 0, 2, 10]) + bytes(12)
    be = table[maglev.flow_hash(src4, vip4, 0, 0, UDP_) % SIZE]
    pkt = Ether(src=CLIENT_MAC, dst=HOOK_MAC) / IP(src="10.0.0.7", dst=VIP4, id=9) / \
        UDP(sport=4000, dport=53) / Raw(b"y" * 3000)
    frags = [bytes(Ether(src=CLIENT_MAC, dst=HOOK_MAC) / p) for p in fragment(pkt[IP], 1000)]
    assert len(frags) == 4
    for f in frags:
        _assert_forwarded(lb, lb.run(f), f, be)
    other = _frame("10.0.0.7", VIP4, 4001, 9999, UDP_)
    _assert_forwarded(lb, lb.run(other), other, be)
    # IPv6, same VIP flags: first and later fragments together
    table6 = lb.vip(VIP6, UDP_, 0, [1, 2, 3, 4], vip_id=2, flags=abi.LB_VIP_HASH_L3)
    s6 = ipaddress.ip_address("2001:db8::7").packed
    be6 = table6[maglev.flow_hash(s6, ipaddress.ip_address(VIP6).packed, 0, 0, UDP_) % SIZE]
    for off, m in ((0, 1), (100, 0)):
        f = bytes(Ether(src=CLIENT_MAC, dst=HOOK_MAC) / IPv6(src="2001:db8::7", dst=VIP6)
                  / IPv6ExtHdrFragment(offset=off, m=m, id=5, nh=UDP_)
                  / (UDP(sport=1, dport=2) if off == 0 else Raw(b"z" * 16)))
        _assert_forwarded(lb, lb.run(f), f, be6)
    # without the flag: a non-first fragment passes
    lb.vip(VIP4, UDP_, 0, [1, 2, 3, 4])
    _assert_passed(lb, lb.run(frags[1]), frags[1])
    # one conn entry per (client, VIP, protocol): the first packet of each
    # family is new, the rest follow the entry
    assert {k: v[0] for k, v in lb.reasons().items()} == {
        R.FWD_NEW: 2, R.FWD_CONN: 3 + 1 + 1, R.PASS_FRAGMENT: 1}
