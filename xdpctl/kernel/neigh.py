"""Backends as the network sees them: neighbour-table reads (pyroute2),
neighbour solicitation, and TCP/UDP health probes, each from a given
network namespace.

Sockets are made inside the namespace (netns.netns_socket moves only
the calling thread there, for the socket's creation) and used from any
thread; the probe's packets leave through that namespace's routes.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
import time
from dataclasses import dataclass

from .netns import netns_socket
from .netlink import ipr

# NUD states with a usable link-layer address (linux/neighbour.h):
# REACHABLE, STALE, DELAY, PROBE, NOARP, PERMANENT.
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80
DISCARD_PORT = 9  # the datagram that makes the kernel resolve an address


def _family(addr: str) -> int:
    return socket.AF_INET if ipaddress.ip_address(addr).version == 4 else socket.AF_INET6


def table(netns: str | None, ifindexes: set[int]) -> dict[str, str]:
    """Address -> MAC of the namespace's usable neighbour entries on
    ``ifindexes`` (both families; addresses in canonical text)."""
    out: dict[str, str] = {}
    with ipr(netns) as ip:
        for m in ip.get_neighbours():
            dst, mac = m.get_attr("NDA_DST"), m.get_attr("NDA_LLADDR")
            if dst and mac and m["ifindex"] in ifindexes and m["state"] & NUD_USABLE:
                out[str(ipaddress.ip_address(dst))] = mac.lower()
    return out


def subnets(netns: str | None, ifindexes: set[int]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The on-link prefixes of ``ifindexes`` in ``netns``: the network of
    each address on them (both families)."""
    out = []
    with ipr(netns) as ip:
        for m in ip.get_addr():
            addr = m.get_attr("IFA_ADDRESS")
            if addr and m["index"] in ifindexes:
                out.append(ipaddress.ip_network(f"{addr}/{m['prefixlen']}", strict=False))
    return out


def solicit(netns: str | None, addr: str) -> None:
    """Make the kernel of ``netns`` resolve ``addr`` (ARP or neighbour
    discovery): send one empty datagram to its discard port. Errors are
    ignored: the next lookup tells."""
    try:
        s = netns_socket(netns, _family(addr), socket.SOCK_DGRAM)
    except OSError:
        return
    with s:
        try:
            s.setblocking(False)
            s.sendto(b"", (addr, DISCARD_PORT))
        except OSError:
            pass


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


def _why(err: int) -> str:
    return {errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "host unreachable",
            errno.ENETUNREACH: "network unreachable", errno.ETIMEDOUT: "timed out"}.get(
        err, errno.errorcode.get(err, str(err)))


def probe_tcp(netns: str | None, addr: str, port: int, timeout: float) -> ProbeResult:
    """A TCP connect within ``timeout`` seconds (closed at once)."""
    with netns_socket(netns, _family(addr), socket.SOCK_STREAM) as s:
        s.setblocking(False)
        err = s.connect_ex((addr, port))
        if err == errno.EINPROGRESS:
            _, w, _ = select.select([], [s], [], timeout)
            if not w:
                return ProbeResult(False, f"tcp {port}: no answer in {timeout:g} s")
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return ProbeResult(False, f"tcp {port}: {_why(err)}")
        return ProbeResult(True, f"tcp {port}: connected")


def probe_udp(netns: str | None, addr: str, port: int, timeout: float, payload: bytes) -> ProbeResult:
    """Send ``payload`` to a UDP port; any reply within ``timeout`` seconds
    is a success, an ICMP unreachable (ECONNREFUSED on the connected
    socket) or silence a failure."""
    with netns_socket(netns, _family(addr), socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        try:
            s.connect((addr, port))
            s.send(payload)
        except OSError as exc:
            return ProbeResult(False, f"udp {port}: {_why(exc.errno or 0)}")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            try:
                s.recv(65535)
            except BlockingIOError:
                continue
            except OSError as exc:
                return ProbeResult(False, f"udp {port}: {_why(exc.errno or 0)}")
            return ProbeResult(True, f"udp {port}: answered")
        return ProbeResult(False, f"udp {port}: no answer in {timeout:g} s")
