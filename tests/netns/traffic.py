"""Traffic helpers for the namespace tests: send frames, capture, receive.

Everything runs from the root namespace: sockets are created inside a lab
namespace (xdpctl.lab.in_netns) and then used from the test's threads.

Recognising our own frames
    Every test frame carries a marker (:func:`marker`, unique per test) and
    usually a kind label (:func:`payload`). Captures keep only frames with the
    marker, so background traffic (IPv6 MLD reports, ND, router solicitations)
    never disturbs counts.

No timing guesses
    A capture opens its packet socket before anything is sent, so it cannot
    miss the start. To know that everything sent has arrived, the sender
    finally sends a *sentinel* frame and the capture ends when it sees it.
    Frames from one CPU go through the receiving veth in order (one backlog
    queue or one veth ring per CPU), so every send helper here runs pinned to
    the same CPU; then "sentinel seen" means "everything before it was
    processed". Timeouts only bound waits and raise when hit.

    The sentinel is an Ethernet frame with the local experimental ethertype
    0x88b5: not IP, so xdpctl's drop list lets it pass, and the stack ignores
    it. A classifier counting L3 kinds sees it as one "other" frame per
    capture. Socket receivers use a sentinel datagram or connection instead,
    which the caller sends from an address the filter under test lets pass.

Where to look
    A packet socket on an interface sees frames after XDP but before TC
    ingress, so a capture on the receiving interface (direction "in") shows
    what XDP let through, while a capture with direction "out" on the sending
    interface shows what left after TC egress. Delivery past TC ingress is
    proven with :class:`UdpReceiver`/:class:`TcpReceiver` or :func:`snmp`,
    and for frames the IP stack would discard with :class:`PastIngress`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from scapy.arch.common import compile_filter, free_filter
from scapy.arch.linux import L2ListenSocket, L2Socket, get_last_packet_timestamp
from scapy.data import DLT_EN10MB, MTU, SO_ATTACH_FILTER
from scapy.interfaces import NetworkInterface, resolve_iface
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.libs.structures import sock_fprog
from scapy.packet import Packet, Raw
from scapy.sendrecv import AsyncSniffer, sendp

from xdpctl.lab import Endpoint, in_netns, netns_socket

#: Upper bound for every wait in this module (seconds). Never an assertion.
DEFAULT_TIMEOUT = 10.0

#: Ethertype of sentinel frames (IEEE 802 local experimental ethertype 1).
SENTINEL_ETHERTYPE = 0x88B5

#: Source address outside every lab subnet, for spoofed-source tests.
SPOOFED_IPV4 = "203.0.113.7"

MARKER_PREFIX = b"XCLM"

Direction = Literal["in", "out", "both"]

_SOL_PACKET = 263
_SO_RCVBUFFORCE = 33  # not exported by the socket module
_PACKET_IGNORE_OUTGOING = 23
_CAPTURE_RCVBUF = 32 << 20
_SENTINEL_TAG = b"/sentinel/"


# --------------------------------------------------------------------------
# Markers and payloads


def marker() -> bytes:
    """A fresh 16-byte marker, e.g. b"XCLM3f9a2c0b1d7e"."""
    return MARKER_PREFIX + secrets.token_hex(6).encode()


def payload(mark: bytes, kind: str = "", pad: int = 0) -> bytes:
    """Payload that carries ``mark`` and a kind label: b"<mark>/<kind>/"."""
    return mark + b"/" + kind.encode() + b"/" + b"." * pad


def sentinel_payload(mark: bytes) -> bytes:
    """Payload of the sentinel that ends a capture or a receive for ``mark``."""
    return mark + _SENTINEL_TAG


def frame_bytes(pkt: Packet | bytes) -> bytes:
    """The bytes of a frame as captured (or as built)."""
    if isinstance(pkt, bytes | bytearray):
        return bytes(pkt)
    original = getattr(pkt, "original", None)
    return bytes(original) if original else bytes(pkt)


def has_marker(pkt: Packet | bytes, mark: bytes) -> bool:
    """True if ``mark`` occurs anywhere in the frame."""
    return mark in frame_bytes(pkt)


def marker_filter(mark: bytes) -> Callable[[Packet], bool]:
    """lfilter for scapy sniffers: keep frames that carry ``mark``."""
    return lambda pkt: has_marker(pkt, mark)


def kind_of(pkt: Packet | bytes, mark: bytes) -> str | None:
    """The kind label written by :func:`payload`, or None."""
    m = re.search(re.escape(mark) + rb"/([^/]*)/", frame_bytes(pkt))
    return m.group(1).decode() if m else None


def is_sentinel(pkt: Packet | bytes, mark: bytes) -> bool:
    """True for the sentinel frame of ``mark``."""
    raw = frame_bytes(pkt)
    return (
        len(raw) >= 14
        and int.from_bytes(raw[12:14], "big") == SENTINEL_ETHERTYPE
        and sentinel_payload(mark) in raw
    )


# --------------------------------------------------------------------------
# Frames


def ether(src: Endpoint, dst: Endpoint, **fields: object) -> Ether:
    """Ethernet header from ``src`` to ``dst`` with explicit MACs.

    Always give MACs explicitly: scapy would otherwise resolve them with the
    root namespace's routes and ARP cache.
    """
    return Ether(src=src.mac, dst=dst.mac, **fields)


def sentinel_frame(src: Endpoint, mark: bytes) -> Ether:
    """Broadcast sentinel frame for ``mark`` sent from ``src``."""
    return Ether(src=src.mac, dst="ff:ff:ff:ff:ff:ff", type=SENTINEL_ETHERTYPE) / Raw(
        sentinel_payload(mark)
    )


#: Kinds built by :func:`frame_mix`.
MIX_KINDS = (
    "tcp4",
    "udp4",
    "icmp4",
    "icmp6-echo",
    "arp",
    "vlan",
    "qinq",
    "ipv6-ext",
    "ipv4-trunc",
)


def build_frame(kind: str, src: Endpoint, dst: Endpoint, mark: bytes, seq: int = 0) -> Ether:
    """One frame of ``kind`` (see :data:`MIX_KINDS`) from ``src`` to ``dst``.

    Every frame carries ``payload(mark, kind)``. Ports are 40000+seq -> 7
    (TCP, UDP). "vlan" is 802.1Q id 10 over IPv4/UDP; "qinq" is 802.1ad id
    100 over 802.1Q id 10 over IPv4/UDP; "ipv6-ext" is IPv6 with hop-by-hop
    and destination options headers over UDP; "ipv4-trunc" claims a 60-byte
    IPv4 header (IHL 15) but the frame ends inside it. An end without an
    address of a family gets the lab's default one (192.0.2.1/.2,
    2001:db8::1/::2) in the frame, so IPv4-only labs can carry the full mix.
    """
    data = Raw(payload(mark, kind))
    eth = ether(src, dst)
    sport = 40000 + seq
    src4, dst4 = src.ipv4 or "192.0.2.1", dst.ipv4 or "192.0.2.2"
    src6, dst6 = src.ipv6 or "2001:db8::1", dst.ipv6 or "2001:db8::2"
    ip4 = IP(src=src4, dst=dst4)
    ip6 = IPv6(src=src6, dst=dst6)
    if kind == "tcp4":
        return eth / ip4 / TCP(sport=sport, dport=7, flags="S", seq=seq) / data
    if kind == "udp4":
        return eth / ip4 / UDP(sport=sport, dport=7) / data
    if kind == "icmp4":
        return eth / ip4 / ICMP(type=8, id=0x7863, seq=seq) / data
    if kind == "icmp6-echo":
        return eth / ip6 / ICMPv6EchoRequest(id=0x7863, seq=seq, data=payload(mark, kind))
    if kind == "arp":
        return eth / ARP(op=1, hwsrc=src.mac, psrc=src4, pdst=dst4) / data
    if kind == "vlan":
        return eth / Dot1Q(vlan=10) / ip4 / UDP(sport=sport, dport=7) / data
    if kind == "qinq":
        return eth / Dot1AD(vlan=100) / Dot1Q(vlan=10) / ip4 / UDP(sport=sport, dport=7) / data
    if kind == "ipv6-ext":
        return eth / ip6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=sport, dport=7) / data
    if kind == "ipv4-trunc":
        header = bytes(IP(src=src4, dst=dst4, ihl=15, len=60, proto=17))[:20]
        return Ether(src=src.mac, dst=dst.mac, type=0x0800) / Raw(header + payload(mark, kind))
    raise ValueError(f"unknown frame kind {kind!r}")


def frame_mix(
    src: Endpoint, dst: Endpoint, mark: bytes, counts: Mapping[str, int]
) -> list[Ether]:
    """``counts[kind]`` frames of every kind, interleaved round-robin."""
    frames: list[Ether] = []
    remaining = dict(counts)
    seq = 0
    while any(remaining.values()):
        for kind in list(remaining):
            if remaining[kind]:
                frames.append(build_frame(kind, src, dst, mark, seq))
                remaining[kind] -= 1
                seq += 1
    return frames


def count_kinds(frames: Iterable[Packet], mark: bytes) -> Counter[str]:
    """How many frames carry each kind label (unlabelled ones count as "")."""
    return Counter(kind_of(f, mark) or "" for f in frames)


# --------------------------------------------------------------------------
# Sending


@contextlib.contextmanager
def same_cpu() -> Iterator[int]:
    """Pin the calling thread to one fixed CPU for the with-block.

    All send helpers use the same CPU (the lowest one the process may use),
    so frames from successive calls keep their order through the veth.
    """
    before = os.sched_getaffinity(0)
    cpu = min(os.sched_getaffinity(os.getpid()))
    os.sched_setaffinity(0, {cpu})  # 0: the calling thread only
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def scapy_iface(ep: Endpoint) -> NetworkInterface:
    """A scapy interface object for ``ep``.

    Scapy's interface table describes the root namespace; handing it an
    object keeps it from looking lab interfaces up there (and from reloading
    that table from inside a namespace).
    """
    provider = resolve_iface("lo").provider
    return NetworkInterface(
        provider,
        data={
            "name": ep.ifname,
            "description": f"{ep.ifname} in {ep.netns}",
            "network_name": ep.ifname,
            "index": ep.ifindex,
            "mac": ep.mac,
            "type": 1,  # ARPHRD_ETHER
        },
    )


@contextlib.contextmanager
def l2_sender(ep: Endpoint) -> Iterator[L2Socket]:
    """A scapy layer-2 socket that sends out of ``ep`` (receives nothing)."""
    iface = scapy_iface(ep)
    with in_netns(ep.netns):
        # Protocol 0: the packet socket is bound for sending only and queues
        # no received frames.
        sock = L2Socket(iface=iface, type=0, promisc=False)
    try:
        yield sock
    finally:
        sock.close()


def send_frames(ep: Endpoint, frames: Iterable[Packet | bytes]) -> int:
    """sendp() ``frames`` in order out of ``ep``'s interface; return the count.

    Frames go out as given (build them with explicit MACs, see
    :func:`ether`). The kernel's checksum offload does not apply: packet
    socket frames carry whatever checksums scapy computed.
    """
    batch = [f if isinstance(f, Packet) else Raw(bytes(f)) for f in frames]
    with same_cpu(), l2_sender(ep) as sock:
        sendp(batch, socket=sock, verbose=False)
    return len(batch)


def send_sentinel(ep: Endpoint, mark: bytes) -> None:
    """Send the sentinel frame for ``mark`` out of ``ep``."""
    send_frames(ep, [sentinel_frame(ep, mark)])


# --------------------------------------------------------------------------
# Capturing


class _NetnsListenSocket(L2ListenSocket):
    """Packet socket bound to a lab interface, keeping one direction."""

    def __init__(self, ep: Endpoint, direction: Direction, bpf: str | None) -> None:
        iface = scapy_iface(ep)
        with in_netns(ep.netns):
            super().__init__(iface=iface, promisc=False)
        self._direction = direction
        # A burst can outrun the sniffer thread; the default buffer (capped
        # by net.core.rmem_max) would drop frames silently. Root may force it.
        with contextlib.suppress(OSError):
            self.ins.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _CAPTURE_RCVBUF)
        if direction == "in":
            self.ins.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
        if bpf is not None:
            self._attach_bpf(bpf)

    def _attach_bpf(self, expr: str) -> None:
        # Compiled for plain Ethernet without an interface: scapy would look
        # the interface up in the root namespace. Frames queued before the
        # filter was attached are dropped so that everything kept passed it.
        program = compile_filter(expr, linktype=DLT_EN10MB)
        try:
            fprog = sock_fprog(program.bf_len, program.bf_insns)
            self.ins.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
        finally:
            free_filter(program)
        self.ins.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.ins.recv(MTU)
        self.ins.setblocking(True)

    def recv_raw(self, x: int = MTU):  # type: ignore[no-untyped-def]
        pkt, sa_ll, ts = self._recv_raw(self.ins, x)
        outgoing = sa_ll[2] == socket.PACKET_OUTGOING
        if self._direction != "both" and outgoing != (self._direction == "out"):
            return None, None, None
        if ts is None:
            ts = get_last_packet_timestamp(self.ins)
        return self.LL, pkt, ts


class CaptureTimeout(AssertionError):
    """The sentinel of a capture did not arrive in time."""


class Capture:
    """A scapy AsyncSniffer on a lab interface, ended by a sentinel frame.

    ``direction`` "in" keeps frames the interface receives, "out" frames it
    sends, "both" all. Kept are frames carrying ``mark`` that also pass
    ``bpf`` and ``lfilter``. Use::

        with Capture(lab.b, mark) as cap:
            send_frames(lab.a, frames)
            got = cap.finish(via=lab.a)

    ``bpf`` is a tcpdump expression, compiled for Ethernet and run by the
    kernel on the frame as the packet socket gets it, which is after the
    kernel moved the outer VLAN tag into metadata: an 802.1Q frame matches
    "ip"/"udp" like an untagged one, a QinQ frame looks single-tagged, and
    "vlan" matches only QinQ. Frames returned to Python have the tag put
    back (scapy reads it from PACKET_AUXDATA), so ``lfilter`` sees the wire
    format: prefer it for anything VLAN-related.
    """

    def __init__(
        self,
        ep: Endpoint,
        mark: bytes,
        *,
        direction: Direction = "in",
        bpf: str | None = None,
        lfilter: Callable[[Packet], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.ep = ep
        self.mark = mark
        self.direction = direction
        self.bpf = bpf
        self.user_lfilter = lfilter
        self.timeout = timeout
        self.frames: list[Packet] = []
        self._sock: _NetnsListenSocket | None = None
        self._sniffer: AsyncSniffer | None = None

    def _keep(self, pkt: Packet) -> bool:
        # Runs in the sniffer thread, which drops a socket whose filter
        # raises: never raise here.
        try:
            if is_sentinel(pkt, self.mark):
                return True
            if not has_marker(pkt, self.mark):
                return False
            return self.user_lfilter is None or bool(self.user_lfilter(pkt))
        except Exception:
            return False

    def start(self) -> Capture:
        """Open the socket and start sniffing; returns once the sniffer runs."""
        bpf = None
        if self.bpf is not None:
            # Sentinel test first: libpcap's "vlan" keyword shifts the offsets
            # of every test after it, which would hide the sentinel.
            bpf = f"(ether proto {SENTINEL_ETHERTYPE:#x}) or ({self.bpf})"
        self._sock = _NetnsListenSocket(self.ep, self.direction, bpf)
        started = threading.Event()
        self._sniffer = AsyncSniffer(
            opened_socket=self._sock,
            lfilter=self._keep,
            stop_filter=lambda pkt: is_sentinel(pkt, self.mark),
            started_callback=started.set,
            store=True,
        )
        self._sniffer.start()
        if not started.wait(self.timeout):
            self._abort()
            raise CaptureTimeout(f"sniffer on {self.ep.ifname} did not start in {self.timeout:g}s")
        return self

    def finish(self, via: Endpoint | None = None) -> list[Packet]:
        """Send the sentinel from ``via``, wait for it, return kept frames.

        ``via`` must be an interface whose frames this capture sees: the
        peer of a receiving ("in") interface, or the capturing interface
        itself for "out". Default: the capturing interface for "out" and
        "both"; required for "in".
        """
        if self._sniffer is None or self._sock is None:
            raise RuntimeError("capture not started")
        if via is None:
            if self.direction == "in":
                raise ValueError("finish(via=...) needs the sending peer for direction 'in'")
            via = self.ep
        send_sentinel(via, self.mark)
        self._sniffer.join(self.timeout)
        if self._sniffer.thread is not None and self._sniffer.thread.is_alive():
            partial = self._abort()
            summary = ", ".join(p.summary() for p in partial[:10])
            raise CaptureTimeout(
                f"sentinel from {via.ifname} not seen on {self.ep.ifname} within "
                f"{self.timeout:g}s; kept {len(partial)} frames: {summary}"
            )
        results = list(self._sniffer.results or [])
        self._close_socket()
        self._sniffer = None
        self.frames = [p for p in results if not is_sentinel(p, self.mark)]
        return self.frames

    def _abort(self) -> list[Packet]:
        sniffer, self._sniffer = self._sniffer, None
        partial: list[Packet] = []
        if sniffer is not None:
            with contextlib.suppress(Exception):
                if sniffer.running:
                    partial = list(sniffer.stop() or [])
        self._close_socket()
        return partial

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._abort()


def send_and_capture(
    tx: Endpoint,
    rx: Endpoint,
    frames: Iterable[Packet | bytes],
    mark: bytes,
    **capture_options: object,
) -> list[Packet]:
    """Send ``frames`` out of ``tx``; return what ``rx`` received with ``mark``."""
    with Capture(rx, mark, **capture_options) as cap:  # type: ignore[arg-type]
        send_frames(tx, frames)
        return cap.finish(via=tx)


# --------------------------------------------------------------------------
# Frames past TC ingress


class PastIngress:
    """The frames of one ethertype that ``ep`` received and its TC ingress
    let through, whatever the IP stack then makes of them.

    A packet socket bound to one protocol (not ETH_P_ALL) is served with the
    protocol handlers (like ip_rcv), after TC ingress ran, while a capture
    (ETH_P_ALL) sees frames before it. Such a socket sees frames that no
    UDP or TCP socket would get, e.g. an IP header cut short. Open it before
    sending; :meth:`recv_until` returns what arrived before a frame carrying
    a sentinel payload, which the caller sends last (with this ethertype,
    from an address the filter under test lets pass).
    """

    def __init__(self, ep: Endpoint, ethertype: int) -> None:
        self.ep = ep
        self.sock = netns_socket(ep.netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        self.sock.bind((ep.ifname, ethertype))
        self.sock.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _CAPTURE_RCVBUF)

    def recv_until(self, sentinel: bytes, timeout: float = DEFAULT_TIMEOUT) -> list[bytes]:
        """Frames received before the first one that contains ``sentinel``."""
        deadline = time.monotonic() + timeout
        got: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.ep.ifname} in {self.ep.netns}: sentinel not received in "
                                   f"{timeout:g}s ({len(got)} frames before)")
            self.sock.settimeout(left)
            try:
                frame = self.sock.recv(65535)
            except socket.timeout:
                continue
            if sentinel in frame:
                return got
            got.append(frame)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> PastIngress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------
# Sockets: delivery past TC ingress


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


@dataclass(frozen=True)
class Message:
    """One UDP datagram, or all data of one TCP connection, and its sender."""

    payload: bytes
    src: str
    sport: int


class UdpReceiver:
    """A UDP socket bound in namespace ``netns``; counts what arrives.

    ``port`` 0 lets the kernel choose (read :attr:`port`). Datagrams reach it
    only after TC ingress and the IP/UDP stack accepted them.
    """

    def __init__(self, netns: str, addr: str, port: int = 0) -> None:
        self.netns = netns
        self.addr = addr
        self.sock = netns_socket(netns, _family(addr), socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _CAPTURE_RCVBUF)
        self.sock.bind((addr, port))
        self.port: int = self.sock.getsockname()[1]
        self.received: list[Message] = []

    def _recv_one(self, deadline: float) -> Message:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        data, addr = self.sock.recvfrom(65535)
        dgram = Message(data, addr[0], addr[1])
        self.received.append(dgram)
        return dgram

    def recv(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """Wait for ``count`` more datagrams (raises TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        got = []
        try:
            while len(got) < count:
                got.append(self._recv_one(deadline))
        except (TimeoutError, socket.timeout):
            raise TimeoutError(
                f"UDP {self.addr}:{self.port} in {self.netns}: {len(got)} of {count} datagrams "
                f"in {timeout:g}s"
            ) from None
        return got

    def recv_until(self, sentinel: bytes, timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """Datagrams received before the one whose payload is ``sentinel``."""
        deadline = time.monotonic() + timeout
        got = []
        try:
            while True:
                dgram = self._recv_one(deadline)
                if dgram.payload == sentinel:
                    return got
                got.append(dgram)
        except (TimeoutError, socket.timeout):
            raise TimeoutError(
                f"UDP {self.addr}:{self.port} in {self.netns}: sentinel not received in "
                f"{timeout:g}s ({len(got)} datagrams before)"
            ) from None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpReceiver:
    """A listening TCP socket in namespace ``netns``; counts connections.

    The kernel completes handshakes on its own; :meth:`accept` takes them
    from the accept queue and reads each to end of stream.
    """

    def __init__(self, netns: str, addr: str, port: int = 0, backlog: int = 128) -> None:
        self.netns = netns
        self.addr = addr
        self.sock = netns_socket(netns, _family(addr), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(backlog)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[Message] = []

    def _accept_one(self, deadline: float) -> Message:
        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            return left

        self.sock.settimeout(remaining())
        conn, addr = self.sock.accept()
        with conn:
            chunks = []
            while True:
                conn.settimeout(remaining())
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        got = Message(b"".join(chunks), addr[0], addr[1])
        self.received.append(got)
        return got

    def accept(self, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """Accept ``count`` connections; return each one's data and peer."""
        deadline = time.monotonic() + timeout
        got = []
        try:
            while len(got) < count:
                got.append(self._accept_one(deadline))
        except (TimeoutError, socket.timeout):
            raise TimeoutError(
                f"TCP {self.addr}:{self.port} in {self.netns}: {len(got)} of {count} connections "
                f"in {timeout:g}s"
            ) from None
        return got

    def accept_until(self, sentinel: bytes, timeout: float = DEFAULT_TIMEOUT) -> list[Message]:
        """Connections accepted before the one that sent exactly ``sentinel``."""
        deadline = time.monotonic() + timeout
        got = []
        try:
            while True:
                conn = self._accept_one(deadline)
                if conn.payload == sentinel:
                    return got
                got.append(conn)
        except (TimeoutError, socket.timeout):
            raise TimeoutError(
                f"TCP {self.addr}:{self.port} in {self.netns}: sentinel connection not seen in "
                f"{timeout:g}s ({len(got)} before)"
            ) from None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TcpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def udp_send(
    netns: str, dst: str, dport: int, data: bytes, *, src: str | None = None, sport: int = 0
) -> None:
    """Send one datagram from a real socket in ``netns`` (kernel-built headers)."""
    with same_cpu(), netns_socket(netns, _family(dst), socket.SOCK_DGRAM) as sock:
        if src is not None or sport:
            sock.bind((src or ("::" if ":" in dst else "0.0.0.0"), sport))
        sock.sendto(data, (dst, dport))


def tcp_send(
    netns: str,
    dst: str,
    dport: int,
    data: bytes,
    *,
    src: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Connect from ``netns``, send ``data``, close; raise if that fails.

    Does not wait for the server to accept: the kernel completes the
    handshake and queues the data, and :class:`TcpReceiver` reads it later.
    Raises (after ``timeout``) when the handshake does not complete, e.g.
    because a filter drops the SYN.
    """
    with same_cpu(), netns_socket(netns, _family(dst), socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if src is not None:
            sock.bind((src, 0))
        sock.connect((dst, dport))
        sock.sendall(data)


# --------------------------------------------------------------------------
# Kernel counters


def snmp(netns: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp and snmp6 of namespace ``netns`` as {"Udp": {...}, "Udp6": {...}}.

    Read through /proc/thread-self, which follows the reading thread's
    namespace (/proc/net follows the process's main thread).
    """
    out: dict[str, dict[str, int]] = {}
    with in_netns(netns):
        with open("/proc/thread-self/net/snmp") as f:
            lines = f.read().splitlines()
        with open("/proc/thread-self/net/snmp6") as f:
            lines6 = f.read().splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        section, names = head.split(":", 1)
        _, nums = values.split(":", 1)
        out[section] = dict(zip(names.split(), map(int, nums.split())))
    for line in lines6:
        name, value = line.split()
        section = re.match(r"^(Ip6|Icmp6|Udp6|UdpLite6)", name)
        key = section.group(1) if section else "Other6"
        out.setdefault(key, {})[name[len(key) :] if section else name] = int(value)
    return out


__all__ = [
    "DEFAULT_TIMEOUT",
    "MARKER_PREFIX",
    "MIX_KINDS",
    "SENTINEL_ETHERTYPE",
    "SPOOFED_IPV4",
    "Capture",
    "CaptureTimeout",
    "Message",
    "PastIngress",
    "TcpReceiver",
    "UdpReceiver",
    "build_frame",
    "count_kinds",
    "ether",
    "frame_bytes",
    "frame_mix",
    "has_marker",
    "is_sentinel",
    "kind_of",
    "l2_sender",
    "marker",
    "marker_filter",
    "payload",
    "same_cpu",
    "scapy_iface",
    "send_and_capture",
    "send_frames",
    "send_sentinel",
    "sentinel_frame",
    "sentinel_payload",
    "snmp",
    "tcp_send",
    "udp_send",
]
