"""A load-balancer lab: a client, a balancer and backends on one bridge.

Used by the load balancer's traffic tests (tests/netns/lb), ``make demo``
and ``make bench`` (bench/lb_lab.py)::

    client c  ----+
    balancer lb --+-- bridge (namespace sw)
    backends b1.. +

Every host has one veth port on the bridge, in 192.0.2.0/24 and
2001:db8::/64 (client .10 and .11, balancer .2, backend n .100+n). The
client routes the VIPs (:data:`VIP4`, :data:`VIP6`) via the balancer.
Each backend holds both VIPs on its loopback, does not answer ARP for them
(arp_ignore=1, arp_announce=2) and answers the client directly: direct
server return, as docs/lb.md "What a backend must configure" describes.
The balancer forwards nothing by itself (ip_forward 0): a packet for a VIP
reaches a backend only through the load balancer, unless
:meth:`LbLab.route_via` turns plain routing on (the benchmark's baseline).

Native XDP on the balancer's veth sends frames back (XDP_TX) into the
peer's XDP receive queue, which on this kernel (6.18) only runs while the
peer has an XDP program too (GRO on the peer is not enough: the frames
vanish without a counter). Whoever attaches the balancer in native mode
attaches a program to :attr:`LbLab.balancer_port` as well (the tests and
the benchmark attach xdpctl's counter there, which also counts what the
balancer sent out).

:class:`NameServer` is a backend's service: one thread answering every TCP
message and every UDP datagram with the backend's name, counting what it
saw. :func:`ask_tcp` and :class:`UdpFlow` are the client's side.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections import Counter
from dataclasses import dataclass

from .lab import DEFAULT_PREFIX, Endpoint, Lab, LabError, netns_socket

__all__ = ["VIP4", "VIP6", "Backend", "LbLab", "NameServer", "UdpFlow", "ask_tcp", "open_tcp", "ask"]

#: The VIPs: outside the hosts' subnet, so the client needs its route.
VIP4 = "198.51.100.80"
VIP6 = "2001:db8:80::80"

#: The client's second IPv4 address (a second client for drop-list tests).
CLIENT4_ALT = "192.0.2.11"

#: What a DSR backend sets (docs/lb.md): answer ARP only for addresses of
#: the asking interface, and source ARP requests from the outgoing one.
BACKEND_SYSCTLS = {
    "net/ipv4/conf/all/arp_ignore": "1",
    "net/ipv4/conf/all/arp_announce": "2",
}

#: How long a client waits for one answer (an upper bound, not a timing).
ANSWER_TIMEOUT = 5.0


@dataclass(frozen=True)
class Backend:
    name: str
    ep: Endpoint

    @property
    def netns(self) -> str:
        return self.ep.netns


class LbLab(Lab):
    """The lab above with ``backends`` backends (b1, b2, ...); built in the
    constructor and removed whole if building fails."""

    def __init__(self, backends: int = 3, prefix: str = DEFAULT_PREFIX, *, tag: str | None = None) -> None:
        super().__init__(prefix, tag=tag)
        try:
            self._build(backends)
        except BaseException:
            with contextlib.suppress(LabError):
                self.close()
            raise

    def _build(self, n: int) -> None:
        bridge = self.add_bridge("sw")
        self.client = self.add_bridge_port("c", bridge, ipv4="192.0.2.10", ipv6="2001:db8::10")
        self.balancer = self.add_bridge_port("lb", bridge, ipv4="192.0.2.2", ipv6="2001:db8::2")
        self.balancer_port = self.peer(self.balancer)
        # A client on a real wire sends full checksums; a veth end offloads
        # them (CHECKSUM_PARTIAL), and a frame sent on by native XDP leaves
        # its skb, and with it the offload state, behind: the backend would
        # drop it for a bad checksum.
        self.set_tx_checksum(self.client, False)
        self.ipr("c").addr("add", index=self.client.ifindex, address=CLIENT4_ALT, prefixlen=24)
        self.ipr("c").route("add", dst=f"{VIP4}/32", gateway=self.balancer.ipv4)
        self.ipr("c").route("add", dst=f"{VIP6}/128", gateway=self.balancer.ipv6)
        self.backends: list[Backend] = []
        for i in range(1, n + 1):
            label = f"b{i}"
            ep = self.add_bridge_port(label, bridge, ipv4=f"192.0.2.{100 + i}", ipv6=f"2001:db8::{100 + i:x}")
            for key, value in BACKEND_SYSCTLS.items():
                self.sysctl(label, key, value)
            ipr = self.ipr(label)
            ipr.addr("add", index=1, address=VIP4, prefixlen=32)
            ipr.addr("add", index=1, address=VIP6, prefixlen=128)
            self.backends.append(Backend(label, ep))
        for key in ("net/ipv4/conf/all/send_redirects", f"net/ipv4/conf/{self.balancer.ifname}/send_redirects"):
            self.sysctl("lb", key, "0")

    def backend(self, name: str) -> Backend:
        return next(b for b in self.backends if b.name == name)

    def route_via(self, backend: Backend | None) -> None:
        """Plain routing: the balancer forwards the VIPs to ``backend``
        (None: forwards nothing, the lab's default)."""
        ipr = self.ipr("lb")
        for vip, gw in ((f"{VIP4}/32", backend and backend.ep.ipv4), (f"{VIP6}/128", backend and backend.ep.ipv6)):
            with contextlib.suppress(Exception):
                ipr.route("del", dst=vip)
            if gw:
                ipr.route("add", dst=vip, gateway=gw)
        on = "1" if backend else "0"
        self.sysctl("lb", "net/ipv4/ip_forward", on)
        self.sysctl("lb", "net/ipv6/conf/all/forwarding", on)


class NameServer:
    """Answers every TCP message and UDP datagram to ``addrs``:``port`` with
    ``name``, from one thread in namespace ``netns``. Counts accepted TCP
    connections (``tcp_conns``) and UDP datagrams by client address and
    port (``udp``)."""

    def __init__(self, netns: str, name: str, addrs: list[str], port: int) -> None:
        self.name = name
        self.reply = name.encode() + b"\n"
        self.tcp_conns = 0
        self.udp: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()
        self._sel = selectors.DefaultSelector()
        self._stop_r, self._stop_w = socket.socketpair()
        self._sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        try:
            for addr in addrs:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = netns_socket(netns, family, kind)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((addr, port))
                    if kind == socket.SOCK_STREAM:
                        s.listen(1024)
                    s.setblocking(False)
                    self._sel.register(s, selectors.EVENT_READ, "listen" if kind == socket.SOCK_STREAM else "udp")
        except BaseException:
            self._close_all()
            raise
        self._thread = threading.Thread(target=self._serve, name=f"nameserver:{name}", daemon=True)
        self._thread.start()

    def counts(self) -> tuple[int, int]:
        """(TCP connections accepted, UDP datagrams received) so far."""
        with self._lock:
            return self.tcp_conns, sum(self.udp.values())

    def _serve(self) -> None:
        while True:
            for key, _ in self._sel.select():
                sock, role = key.fileobj, key.data
                if role == "stop":
                    return
                with contextlib.suppress(OSError):
                    self._handle(sock, role)

    def _handle(self, sock: socket.socket, role: str) -> None:
        if role == "listen":
            conn, _ = sock.accept()
            conn.setblocking(False)
            self._sel.register(conn, selectors.EVENT_READ, "conn")
            with self._lock:
                self.tcp_conns += 1
        elif role == "udp":
            _data, peer = sock.recvfrom(65536)
            with self._lock:
                self.udp[peer[:2]] += 1
            sock.sendto(self.reply, peer)
        elif sock.recv(4096):
            sock.sendall(self.reply)
        else:
            self._sel.unregister(sock)
            sock.close()

    def _close_all(self) -> None:
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()
        self._sel.close()
        self._stop_w.close()

    def close(self) -> None:
        self._stop_w.send(b"x")
        self._thread.join()
        self._close_all()


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def open_tcp(netns: str, vip: str, port: int, *, source: str | None = None) -> socket.socket:
    """A TCP connection from namespace ``netns`` to ``vip``:``port``."""
    s = netns_socket(netns, _family(vip), socket.SOCK_STREAM)
    try:
        s.settimeout(ANSWER_TIMEOUT)
        if source:
            s.bind((source, 0))
        s.connect((vip, port))
    except BaseException:
        s.close()
        raise
    return s


def ask(sock: socket.socket) -> str:
    """Send one message on a connection; the backend's name it answers."""
    sock.sendall(b"?\n")
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("connection closed before the answer")
        got += chunk
    return got.decode().strip()


def ask_tcp(netns: str, vip: str, port: int) -> str:
    """One short connection: connect, ask, close; the backend that answered."""
    with open_tcp(netns, vip, port) as s:
        return ask(s)


class UdpFlow:
    """One UDP flow (a connected socket, so one 5-tuple) from ``netns``."""

    def __init__(self, netns: str, vip: str, port: int, *, source: str | None = None) -> None:
        self.sock = netns_socket(netns, _family(vip), socket.SOCK_DGRAM)
        self.sock.settimeout(ANSWER_TIMEOUT)
        self.sock.bind((source or ("::" if ":" in vip else "0.0.0.0"), 0))
        self.sock.connect((vip, port))

    @property
    def sport(self) -> int:
        return self.sock.getsockname()[1]

    def ask(self, payload: bytes = b"?") -> str:
        """Send one datagram; the name in the answer."""
        self.sock.send(payload)
        return self.sock.recv(256).decode().strip()

    def close(self) -> None:
        self.sock.close()
