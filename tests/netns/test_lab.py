"""The harness itself: labs, captures and socket receivers do what they claim.

No BPF programs are attached here; these tests prove that what the traffic
tests rely on (every frame arrives, spoofed sources get through, teardown is
complete) holds on a bare lab.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q
from scapy.packet import Packet

import traffic
from traffic import (
    MIX_KINDS,
    SPOOFED_IPV4,
    Capture,
    CaptureTimeout,
    count_kinds,
    ether,
    frame_mix,
    kind_of,
    payload,
    send_and_capture,
    send_frames,
    sentinel_payload,
    tcp_send,
    udp_send,
)
from xdpctl.lab import (
    DEFAULT_PREFIX,
    Lab,
    TwoHostLab,
    cleanup_stale,
    create_netns,
    get_gro,
    get_tx_checksum,
    in_netns,
    lab_netns,
    netns_exists,
    netns_path,
    read_sysctl,
    remove_netns,
    run_in_netns,
)

# Distinct counts per kind, so that one kind mistaken for another shows.
MIX_COUNTS = {kind: n for n, kind in enumerate(MIX_KINDS, start=2)}


def _netns_inode(name: str) -> int:
    return os.stat(netns_path(name)).st_ino


def _thread_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _structure(pkt: Packet) -> str:
    """Kind of a received frame judged from its headers alone."""
    if ARP in pkt:
        return "arp"
    if Dot1AD in pkt:
        assert pkt[Dot1AD].vlan == 100 and pkt[Dot1Q].vlan == 10 and UDP in pkt
        return "qinq"
    if Dot1Q in pkt:
        assert pkt[Dot1Q].vlan == 10 and UDP in pkt
        return "vlan"
    if IPv6ExtHdrHopByHop in pkt:
        assert IPv6ExtHdrDestOpt in pkt and UDP in pkt
        return "ipv6-ext"
    if ICMPv6EchoRequest in pkt:
        return "icmp6-echo"
    if IP in pkt:
        if pkt[IP].ihl == 15:
            assert len(traffic.frame_bytes(pkt)) < 14 + 60, "header should be cut short"
            return "ipv4-trunc"
        for layer, kind in ((TCP, "tcp4"), (UDP, "udp4"), (ICMP, "icmp4")):
            if layer in pkt:
                return kind
    return "unknown"


def _assert_lab_gone(tag: str, inodes: set[int]) -> None:
    assert not [n for n in lab_netns(DEFAULT_PREFIX) if tag in n]
    assert not [n for n in os.listdir(Path(netns_path("x")).parent) if tag in n]
    with IPRoute() as ipr:
        root_links = [link.get("IFLA_IFNAME") for link in ipr.get_links()]
    assert not [name for name in root_links if tag in name]
    # No thread of this process was left inside a lab namespace.
    for task in Path("/proc/self/task").iterdir():
        assert os.stat(task / "ns" / "net").st_ino not in inodes


# --------------------------------------------------------------------------
# The lab


def test_two_host_lab_layout(lab: TwoHostLab) -> None:
    a, b = lab.a, lab.b
    assert (a.ipv4, b.ipv4, a.ipv6, b.ipv6) == ("192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2")
    assert a.netns == lab.netns("a") and b.netns == lab.netns("b") and a.netns != b.netns
    assert lab.tag in a.netns and lab.tag in a.ifname and len(a.ifname) <= 15
    assert lab.peer(a) == b and lab.peer(b) == a
    for ep in (a, b):
        ipr = lab.ipr(ep.label)
        link = ipr.get_links(ep.ifindex)[0]
        assert link.get("IFLA_IFNAME") == ep.ifname
        assert link.get("IFLA_ADDRESS") == ep.mac
        assert link.get("IFLA_OPERSTATE") == "UP"
        assert ipr.get_links(1)[0].get("IFLA_OPERSTATE") in ("UNKNOWN", "UP")  # lo
        addrs = {x.get("IFA_ADDRESS") for x in ipr.get_addr(index=ep.ifindex)}
        assert {ep.ipv4, ep.ipv6} <= addrs
        # The IPv6 address is usable at once: not tentative.
        for x in ipr.get_addr(index=ep.ifindex, family=socket.AF_INET6):
            assert not (x.get("IFA_FLAGS") or x["flags"]) & 0x40
        neigh = {(n.get("NDA_DST"), n.get("NDA_LLADDR"), n["state"]) for n in ipr.get_neighbours(ifindex=ep.ifindex)}
        there = lab.peer(ep)
        assert {(there.ipv4, there.mac, 0x80), (there.ipv6, there.mac, 0x80)} <= neigh
        for conf in ("all", "default", ep.ifname):
            assert read_sysctl(ep.netns, f"net/ipv4/conf/{conf}/rp_filter") == "0"
            assert read_sysctl(ep.netns, f"net/ipv4/conf/{conf}/accept_local") == "1"


def test_lab_with_more_namespaces(make_lab) -> None:
    three = make_lab(Lab)
    a, r1 = three.add_veth("a", "r")
    r2, b = three.add_veth("r", "b")
    assert set(three.namespaces) == {"a", "r", "b"}
    assert (a.ipv4, r1.ipv4, r2.ipv4, b.ipv4) == ("192.0.2.1", "192.0.2.2", "198.51.100.1", "198.51.100.2")
    assert (r2.ipv6, b.ipv6) == ("2001:db8:1::1", "2001:db8:1::2")
    assert r1.netns == r2.netns and r1.ifname != r2.ifname
    assert three.endpoints == [a, r1, r2, b]
    with pytest.raises(ValueError, match="documentation subnet"):
        three.add_veth("a", "b")
    explicit, _ = three.add_veth("a", "b", ipv4=("10.9.0.1", "10.9.0.2"), ipv6=False)
    assert explicit.ipv4 == "10.9.0.1" and explicit.ipv6 is None
    with pytest.raises(ValueError, match="characters"):
        three.add_veth("a", "b", ifnames=("x" * 16, "y"), ipv4=False, ipv6=False)


def test_ipv4_only_lab_is_quiet_but_carries_everything(make_lab, mark: bytes, udp_receiver) -> None:
    quiet = make_lab(ipv6=False)
    for ep in (quiet.a, quiet.b):
        assert ep.ipv6 is None
        assert read_sysctl(ep.netns, f"net/ipv6/conf/{ep.ifname}/disable_ipv6") == "1"
        # No IPv6 address at all, not even link-local: nothing to send MLD for.
        assert not quiet.ipr(ep.label).get_addr(index=ep.ifindex, family=socket.AF_INET6)
    got = send_and_capture(quiet.a, quiet.b, frame_mix(quiet.a, quiet.b, mark, MIX_COUNTS), mark)
    assert count_kinds(got, mark) == MIX_COUNTS
    rx = udp_receiver(quiet.b.netns, quiet.b.ipv4)
    udp_send(quiet.a.netns, quiet.b.ipv4, rx.port, payload(mark, "v4"))
    assert [m.payload for m in rx.recv(1)] == [payload(mark, "v4")]


def test_gro_toggle(lab: TwoHostLab) -> None:
    lab.set_gro(lab.b, True)
    assert get_gro(lab.b.netns, lab.b.ifname)
    lab.set_gro(lab.b, False)
    assert not get_gro(lab.b.netns, lab.b.ifname)


def _udp_checksum_ok(pkt: Packet) -> bool:
    rebuilt = pkt.copy()
    del rebuilt[UDP].chksum
    return pkt.__class__(bytes(rebuilt))[UDP].chksum == pkt[UDP].chksum


def test_veth_checksum_offload_shows_in_captures(lab: TwoHostLab, mark: bytes, udp_receiver) -> None:
    rx = udp_receiver(lab.b.netns, lab.b.ipv4)
    with Capture(lab.b, mark) as cap:
        udp_send(lab.a.netns, lab.b.ipv4, rx.port, payload(mark, "offloaded"))
        (offloaded,) = cap.finish(via=lab.a)
    lab.set_tx_checksum(lab.a, False)
    assert not get_tx_checksum(lab.a.netns, lab.a.ifname)
    with Capture(lab.b, mark) as cap:
        udp_send(lab.a.netns, lab.b.ipv4, rx.port, payload(mark, "full"))
        (full,) = cap.finish(via=lab.a)
    # Both reach the socket; only the second carries a complete checksum on
    # the wire (the first has just the pseudo-header sum: CHECKSUM_PARTIAL).
    assert [m.payload for m in rx.recv(2)] == [payload(mark, "offloaded"), payload(mark, "full")]
    assert not _udp_checksum_ok(offloaded)
    assert _udp_checksum_ok(full)


def test_in_netns_moves_only_this_thread_and_restores(lab: TwoHostLab) -> None:
    root = _thread_netns_inode()
    inside = _netns_inode(lab.b.netns)
    seen_elsewhere: list[int] = []
    with in_netns(lab.b.netns):
        assert _thread_netns_inode() == inside
        other = threading.Thread(target=lambda: seen_elsewhere.append(_thread_netns_inode()))
        other.start()
        other.join()
        # Threads started inside inherit the namespace; the main test thread
        # is the one that moved, nothing else did.
        assert seen_elsewhere == [inside]
    assert _thread_netns_inode() == root
    with pytest.raises(ZeroDivisionError), in_netns(lab.a.netns):
        1 / 0  # noqa: B018
    assert _thread_netns_inode() == root
    with pytest.raises(FileNotFoundError):
        with in_netns(f"{lab.netns('a')}-missing"):
            pass
    assert _thread_netns_inode() == root


def test_run_in_netns(lab: TwoHostLab) -> None:
    def links() -> list[str]:
        with IPRoute() as ipr:
            return sorted(link.get("IFLA_IFNAME") for link in ipr.get_links())

    assert run_in_netns(lab.a.netns, links) == sorted(["lo", lab.a.ifname])
    root = _thread_netns_inode()
    with pytest.raises(KeyError, match="boom"):
        run_in_netns(lab.a.netns, lambda: {}["boom"])
    assert _thread_netns_inode() == root


# --------------------------------------------------------------------------
# Frames through the veth


@pytest.mark.parametrize("gro", [False, True], ids=["plain", "gro"])
def test_frame_mix_arrives_exactly(make_lab, mark: bytes, gro: bool) -> None:
    # GRO on makes veth receive through NAPI (as XDP redirect tests need).
    lab = make_lab(gro=gro)
    frames = frame_mix(lab.a, lab.b, mark, MIX_COUNTS)
    got = send_and_capture(lab.a, lab.b, frames, mark)
    assert count_kinds(got, mark) == MIX_COUNTS
    # Same CPU, one veth: order is kept (what the sentinel relies on).
    assert [kind_of(p, mark) for p in got] == [kind_of(f, mark) for f in frames]
    for pkt in got:
        assert _structure(pkt) == kind_of(pkt, mark), pkt.summary()


def test_capture_keeps_only_marked_frames(lab: TwoHostLab, mark: bytes) -> None:
    stranger = traffic.marker()
    frames = frame_mix(lab.a, lab.b, stranger, {"udp4": 3}) + frame_mix(lab.a, lab.b, mark, {"udp4": 2})
    got = send_and_capture(lab.a, lab.b, frames, mark)
    assert count_kinds(got, mark) == {"udp4": 2}


def test_capture_bpf_and_lfilter(lab: TwoHostLab, mark: bytes) -> None:
    frames = frame_mix(lab.a, lab.b, mark, MIX_COUNTS)
    got = send_and_capture(lab.a, lab.b, frames, mark, bpf="icmp or arp")
    assert count_kinds(got, mark) == {"icmp4": MIX_COUNTS["icmp4"], "arp": MIX_COUNTS["arp"]}
    got = send_and_capture(lab.a, lab.b, frames, mark, lfilter=lambda p: Dot1Q in p)
    assert count_kinds(got, mark) == {"vlan": MIX_COUNTS["vlan"], "qinq": MIX_COUNTS["qinq"]}
    # The kernel filter sees frames with the outer tag already stripped: a
    # single tag is invisible to it and "vlan" only matches QinQ. A "vlan"
    # expression must not hide the sentinel either (libpcap shifts offsets).
    got = send_and_capture(lab.a, lab.b, frames, mark, bpf="vlan")
    assert count_kinds(got, mark) == {"qinq": MIX_COUNTS["qinq"]}
    got = send_and_capture(lab.a, lab.b, frames, mark, bpf="udp")
    assert count_kinds(got, mark) == {kind: MIX_COUNTS[kind] for kind in ("udp4", "vlan", "ipv4-trunc")}


def test_capture_outgoing_on_sender(lab: TwoHostLab, mark: bytes) -> None:
    with Capture(lab.a, mark, direction="out") as cap:
        send_frames(lab.a, frame_mix(lab.a, lab.b, mark, {"udp4": 3, "arp": 1}))
        got = cap.finish()
    assert count_kinds(got, mark) == {"udp4": 3, "arp": 1}


def test_capture_without_sentinel_times_out(lab: TwoHostLab, mark: bytes) -> None:
    # A receiving capture on b never sees b's own outgoing sentinel.
    with Capture(lab.b, mark, timeout=0.3) as cap:
        with pytest.raises(CaptureTimeout, match="sentinel"):
            cap.finish(via=lab.b)


# --------------------------------------------------------------------------
# Delivery to sockets (past TC ingress)


def test_udp_from_a_reaches_socket_in_b(lab: TwoHostLab, mark: bytes, udp_receiver) -> None:
    for dst in (lab.b.ipv4, lab.b.ipv6):
        rx = udp_receiver(lab.b.netns, dst)
        udp_send(lab.a.netns, dst, rx.port, payload(mark, "socket"))
        (got,) = rx.recv(1)
        assert got.payload == payload(mark, "socket")
        assert got.src in (lab.a.ipv4, lab.a.ipv6)


def test_scapy_udp_frames_reach_socket(lab: TwoHostLab, mark: bytes, udp_receiver) -> None:
    rx4 = udp_receiver(lab.b.netns, lab.b.ipv4)
    rx6 = udp_receiver(lab.b.netns, lab.b.ipv6)
    frames = [
        ether(lab.a, lab.b) / IP(src=lab.a.ipv4, dst=lab.b.ipv4) / UDP(sport=4000, dport=rx4.port) / payload(mark, "v4"),
        ether(lab.a, lab.b) / IPv6(src=lab.a.ipv6, dst=lab.b.ipv6) / UDP(sport=4000, dport=rx6.port) / payload(mark, "v6"),
        ether(lab.a, lab.b)
        / IPv6(src=lab.a.ipv6, dst=lab.b.ipv6)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / UDP(sport=4000, dport=rx6.port)
        / payload(mark, "v6ext"),
    ]
    send_frames(lab.a, frames)
    assert [m.payload for m in rx4.recv(1)] == [payload(mark, "v4")]
    assert [m.payload for m in rx6.recv(2)] == [payload(mark, "v6"), payload(mark, "v6ext")]


def test_spoofed_source_reaches_socket(lab: TwoHostLab, mark: bytes, udp_receiver) -> None:
    rx = udp_receiver(lab.b.netns, lab.b.ipv4)
    spoofed = ether(lab.a, lab.b) / IP(src=SPOOFED_IPV4, dst=lab.b.ipv4) / UDP(sport=5353, dport=rx.port)
    send_frames(lab.a, [spoofed / payload(mark, "spoofed")])
    udp_send(lab.a.netns, lab.b.ipv4, rx.port, sentinel_payload(mark))
    got = rx.recv_until(sentinel_payload(mark))
    assert [(m.src, m.sport, m.payload) for m in got] == [(SPOOFED_IPV4, 5353, payload(mark, "spoofed"))]

    # The same frame with strict reverse-path filtering is dropped by the
    # stack: the setting above is what let it through.
    lab.sysctl("b", "net.ipv4.conf.all.rp_filter", 1)
    send_frames(lab.a, [spoofed / payload(mark, "spoofed-strict")])
    udp_send(lab.a.netns, lab.b.ipv4, rx.port, sentinel_payload(mark))
    assert rx.recv_until(sentinel_payload(mark)) == []


def test_tcp_connection_reaches_listener(lab: TwoHostLab, mark: bytes, tcp_receiver) -> None:
    for dst in (lab.b.ipv4, lab.b.ipv6):
        rx = tcp_receiver(lab.b.netns, dst)
        tcp_send(lab.a.netns, dst, rx.port, payload(mark, "first"))
        tcp_send(lab.a.netns, dst, rx.port, payload(mark, "second"))
        tcp_send(lab.a.netns, dst, rx.port, sentinel_payload(mark))
        got = rx.accept_until(sentinel_payload(mark))
        assert [m.payload for m in got] == [payload(mark, "first"), payload(mark, "second")]


def test_snmp_counts_delivery(lab: TwoHostLab, mark: bytes, udp_receiver) -> None:
    rx = udp_receiver(lab.b.netns, lab.b.ipv4)
    before = traffic.snmp(lab.b.netns)["Udp"]["InDatagrams"]
    for _ in range(3):
        udp_send(lab.a.netns, lab.b.ipv4, rx.port, payload(mark, "count"))
    rx.recv(3)
    assert traffic.snmp(lab.b.netns)["Udp"]["InDatagrams"] - before == 3


# --------------------------------------------------------------------------
# Teardown


def test_close_leaves_nothing() -> None:
    two = TwoHostLab()
    tag = two.tag
    names = list(two.namespaces.values())
    inodes = {_netns_inode(n) for n in names}
    assert all(netns_exists(n) for n in names)
    two.close()
    two.close()  # idempotent
    _assert_lab_gone(tag, inodes)


def test_exception_in_with_block_leaves_nothing() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with TwoHostLab() as two:
            tag = two.tag
            inodes = {_netns_inode(n) for n in two.namespaces.values()}
            with in_netns(two.a.netns):
                raise RuntimeError("boom")
    _assert_lab_gone(tag, inodes)


def test_close_removes_interfaces_of_a_pinned_namespace(lab: TwoHostLab) -> None:
    # Something still holds namespace b (here an open fd; in real life a
    # leaked socket): its name goes away, and the lab's veth must go too.
    held = os.open(netns_path(lab.b.netns), os.O_RDONLY)
    try:
        lab.close()
        assert not netns_exists(lab.b.netns)

        def links_in_held() -> list[str]:
            from pyroute2 import netns as pr_netns

            pr_netns.setns(held)
            with IPRoute() as ipr:
                return [link.get("IFLA_IFNAME") for link in ipr.get_links()]

        assert run_in_netns(None, links_in_held) == ["lo"]
    finally:
        os.close(held)


def test_cleanup_stale_spares_live_labs(lab: TwoHostLab) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{DEFAULT_PREFIX}-{dead.pid}-{secrets.token_hex(3)}-a"
    other_live = f"{DEFAULT_PREFIX}-{os.getppid()}-{secrets.token_hex(3)}-a"
    create_netns(stale)
    create_netns(other_live)
    try:
        removed = cleanup_stale(DEFAULT_PREFIX)
        assert stale in removed and not netns_exists(stale)
        assert netns_exists(other_live), "a live process's lab must survive"
        assert netns_exists(lab.a.netns) and netns_exists(lab.b.netns), "this process's open lab must survive"
    finally:
        remove_netns(stale)
        remove_netns(other_live)
