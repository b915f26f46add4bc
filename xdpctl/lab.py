"""Network-namespace lab: throwaway hosts joined by veth pairs.

Used by the traffic tests (tests/netns) and by ``make demo``. A lab builds
named network namespaces and veth pairs between them with pyroute2, gives
every end IPv4 and IPv6 addresses from the documentation ranges, and removes
everything it made when it is closed, also after an exception::

    with TwoHostLab() as lab:
        print(lab.a.netns, lab.a.ifname, lab.a.ipv4, "->", lab.b.ipv4)
        with in_netns(lab.b.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((lab.b.ipv4, 5000))      # the socket lives in namespace b

The process itself stays in the root namespace (BPF pins are only visible
there); code that must run inside a namespace either moves one thread for a
while (:func:`in_netns`) or runs in a helper thread (:func:`run_in_netns`).
A socket belongs to the namespace it was created in, for its whole life, so
"create inside, use from anywhere" is the usual pattern
(:func:`netns_socket`).

Names
    Namespace: ``<prefix>-<pid>-<tag>-<label>``, e.g. ``xcl-4242-3f9a2c-a``.
    Interface: ``<prefix><tag><label><n>``, e.g. ``xcl3f9a2ca0`` (at most 15
    characters, the kernel's IFNAMSIZ limit). ``tag`` is random per lab,
    ``pid`` is the creating process: :func:`cleanup_stale` uses it to remove
    what crashed runs left behind without touching labs of live processes.
    Interfaces are created directly inside the lab namespaces, never in the
    root namespace, and die with them.

Addresses
    The n-th veth pair gets 192.0.2.0/24 (n = 0) or 198.51.100.0/24 (n = 1)
    and 2001:db8:n::/64; its first end takes host .1 / ::1, the second .2 /
    ::2. 203.0.113.0/24 (TEST-NET-3) is never assigned: tests use it as a
    spoofed or remote source. IPv6 addresses are added with IFA_F_NODAD and
    DAD is off in lab namespaces, so they are usable at once; the link-local
    address the kernel adds as a link comes up is tentative until its DAD
    worker has run (later on a loaded machine), and setup waits for that.

Namespace settings (see :data:`NETNS_SYSCTLS`)
    rp_filter is 0 (all, default and every lab interface) and accept_local is
    1, so packets with spoofed source addresses reach sockets instead of being
    dropped by the stack before the classifier under test matters. Router
    solicitations are off to cut background IPv6 traffic; MLD reports and
    similar frames still appear now and then, so tests must recognise their own
    frames (tests/netns/traffic.py marks them).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import os
import re
import secrets
import socket
import struct
import threading
import time
import warnings
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD, IFA_F_TENTATIVE

from .core.procs import pid_alive
from .kernel.netns import in_netns, netns_exists, netns_path, netns_socket, run_in_netns

__all__ = [
    "DEFAULT_PREFIX",
    "IFACE_SYSCTLS",
    "IFNAME_MAX",
    "NETNS_SYSCTLS",
    "Endpoint",
    "Lab",
    "LabError",
    "TwoHostLab",
    "cleanup_stale",
    "create_netns",
    "get_gro",
    "get_tx_checksum",
    "inet_checksum",
    "in_netns",
    "lab_netns",
    "netns_exists",
    "netns_path",
    "netns_socket",
    "read_sysctl",
    "remove_netns",
    "run_in_netns",
    "set_gro",
    "set_tx_checksum",
    "write_sysctl",
]

#: Default name prefix of lab namespaces and interfaces.
DEFAULT_PREFIX = "xcl"

#: Longest interface name the kernel accepts (IFNAMSIZ - 1).
IFNAME_MAX = 15

#: How long setup waits for links to come up. Only bounds the wait.
LINK_UP_TIMEOUT = 10.0

#: sysctls written in every lab namespace before any interface exists, so
#: interfaces inherit the ``default`` values.
NETNS_SYSCTLS: dict[str, str] = {
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
    "net/ipv4/conf/all/accept_local": "1",
    "net/ipv4/conf/default/accept_local": "1",
    "net/ipv6/conf/all/accept_dad": "0",
    "net/ipv6/conf/default/accept_dad": "0",
    "net/ipv6/conf/all/router_solicitations": "0",
    "net/ipv6/conf/default/router_solicitations": "0",
}

#: sysctls written for every lab interface (``{ifname}`` is replaced).
IFACE_SYSCTLS: dict[str, str] = {
    "net/ipv4/conf/{ifname}/rp_filter": "0",
    "net/ipv4/conf/{ifname}/accept_local": "1",
}

_V4_SUBNETS = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
)
_V6_BASE = ipaddress.IPv6Network("2001:db8::/32")

_CLONE_NEWNET = 0x40000000
_NUD_PERMANENT = 0x80
_SIOCETHTOOL = 0x8946
_ETHTOOL_GTXCSUM = 0x00000016
_ETHTOOL_STXCSUM = 0x00000017
_ETHTOOL_GGRO = 0x0000002B
_ETHTOOL_SGRO = 0x0000002C

# prefix (<= 4) + tag (6) + label (<= 3) + pair counter (<= 2) <= IFNAME_MAX
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")
_LABEL_RE = re.compile(r"^[a-z][a-z0-9]{0,2}$")

_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """Setup or teardown of a lab failed."""


# --------------------------------------------------------------------------
# Namespaces


def create_netns(name: str) -> None:
    """Create the named network namespace ``name`` (like ``ip netns add``).

    A short-lived thread unshares its network namespace and pyroute2 binds it
    under the netns run directory. This avoids fork(): pyroute2's own
    ``netns.create`` forks a child, which is fragile in a process that runs
    other threads (sniffers, servers).
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            if _libc.unshare(_CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            pr_netns.attach(name, threading.get_native_id())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"create-netns:{name}")
    thread.start()
    thread.join()
    if failure:
        if not isinstance(failure[0], FileExistsError):
            with contextlib.suppress(OSError):
                remove_netns(name)
        raise LabError(f"cannot create network namespace {name}: {failure[0]}") from failure[0]


def remove_netns(name: str) -> None:
    """Remove named namespace ``name``; a missing namespace is not an error.

    The kernel frees the namespace (and deletes its interfaces) once nothing
    refers to it any more: a socket created in it or a thread still inside
    keeps it alive after the name is gone.
    """
    try:
        pr_netns.remove(name)
    except FileNotFoundError:
        pass


def lab_netns(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Names of existing namespaces that look like labs with ``prefix``."""
    return sorted(n for n in pr_netns.listnetns() if n.startswith(prefix + "-"))


_live_tags: set[str] = set()
_live_labs: list[Lab] = []
_registry_lock = threading.Lock()


def cleanup_stale(prefix: str = DEFAULT_PREFIX, *, force: bool = False) -> list[str]:
    """Remove lab namespaces left behind by crashed runs; return their names.

    A namespace ``<prefix>-<pid>-<tag>-<label>`` is stale when process
    ``pid`` is gone, or when ``pid`` is this process and no open lab here
    owns ``tag``. Labs of other live processes (a test run next door) are
    left alone unless ``force`` is true, which removes every namespace whose
    name starts with ``<prefix>-``. Their interfaces go with them.
    """
    removed = []
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-([0-9a-f]+)-")
    me = os.getpid()
    with _registry_lock:
        live = set(_live_tags)
    for name in lab_netns(prefix):
        m = pattern.match(name)
        if not force:
            if m is None:
                continue
            pid, tag = int(m.group(1)), m.group(2)
            if pid == me and tag in live:
                continue
            if pid != me and pid_alive(pid):
                continue
        remove_netns(name)
        removed.append(name)
    return removed


# --------------------------------------------------------------------------
# sysctl and ethtool inside a namespace


def _sysctl_path(key: str) -> str:
    # Dotted keys ("net.ipv4.ip_forward") need no dots in names; interface
    # names may contain dots, so slash keys ("net/ipv4/conf/eth0.5/...") are
    # taken literally.
    rel = key if "/" in key else key.replace(".", "/")
    return os.path.join("/proc/sys", rel)


def write_sysctl(netns: str | None, key: str, value: str | int) -> None:
    """Set sysctl ``key`` (dotted or slash form) in namespace ``netns``.

    /proc/sys/net resolves to the namespace of the thread that opens the
    file, so this works from a thread that entered the namespace; no
    ``ip netns exec`` (and no remounted /sys) is needed.
    """
    with in_netns(netns), open(_sysctl_path(key), "w") as f:
        f.write(str(value))


def read_sysctl(netns: str | None, key: str) -> str:
    """Value of sysctl ``key`` in namespace ``netns``, stripped."""
    with in_netns(netns), open(_sysctl_path(key)) as f:
        return f.read().strip()


def _ethtool_value(netns: str | None, ifname: str, cmd: int, data: int = 0) -> int:
    # struct ethtool_value {u32 cmd; u32 data;} passed through struct ifreq's
    # ifr_data pointer (SIOCETHTOOL). The ioctl acts in the namespace of the
    # socket, so the socket is created inside the namespace.
    name = ifname.encode()
    if not 0 < len(name) <= IFNAME_MAX:
        raise ValueError(f"bad interface name {ifname!r}")
    value = ctypes.create_string_buffer(struct.pack("=II", cmd, data), 8)
    ifreq = bytearray(struct.pack("16sP", name, ctypes.addressof(value)).ljust(40, b"\0"))
    with netns_socket(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    return struct.unpack("=II", value.raw)[1]


def set_gro(netns: str | None, ifname: str, on: bool = True) -> None:
    """Turn generic receive offload on or off (``ethtool -K IF gro on|off``).

    Uses the ETHTOOL_SGRO ioctl, so no ethtool binary and no ``ip netns
    exec``. On veth, GRO makes the device receive through NAPI, which generic
    XDP needs to see frames that arrive by XDP redirect or XDP_TX.
    """
    _ethtool_value(netns, ifname, _ETHTOOL_SGRO, 1 if on else 0)


def get_gro(netns: str | None, ifname: str) -> bool:
    """Whether GRO is on for ``ifname`` in namespace ``netns``."""
    return bool(_ethtool_value(netns, ifname, _ETHTOOL_GGRO))


def inet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def set_tx_checksum(netns: str | None, ifname: str, on: bool = True) -> None:
    """Turn transmit checksum offload on or off (``ethtool -K IF tx on|off``).

    veth offloads checksums by default: a datagram sent from a socket
    crosses the pair with only the pseudo-header sum in its L4 checksum field
    (CHECKSUM_PARTIAL), so a capture or an XDP program on the peer sees an
    "incorrect" checksum. With offload off on the sending end the stack
    writes the full checksum.
    """
    _ethtool_value(netns, ifname, _ETHTOOL_STXCSUM, 1 if on else 0)


def get_tx_checksum(netns: str | None, ifname: str) -> bool:
    """Whether transmit checksum offload is on for ``ifname``."""
    return bool(_ethtool_value(netns, ifname, _ETHTOOL_GTXCSUM))


# --------------------------------------------------------------------------
# Labs


@dataclass(frozen=True)
class Endpoint:
    """One end of a veth pair: where it lives and how to reach it.

    ``label`` is the short name of its namespace within the lab ("a", "b"),
    ``netns`` the full namespace name, ``ifindex`` the index inside that
    namespace, ``mac`` lower-case "aa:bb:cc:dd:ee:ff". Addresses are None
    when the pair was built without that family.
    """

    label: str
    netns: str
    ifname: str
    ifindex: int
    mac: str
    ipv4: str | None
    ipv6: str | None
    ipv4_prefixlen: int = 24
    ipv6_prefixlen: int = 64

    @property
    def ipv4_cidr(self) -> str | None:
        """"192.0.2.1/24" style address, or None."""
        return None if self.ipv4 is None else f"{self.ipv4}/{self.ipv4_prefixlen}"

    @property
    def ipv6_cidr(self) -> str | None:
        """"2001:db8::1/64" style address, or None."""
        return None if self.ipv6 is None else f"{self.ipv6}/{self.ipv6_prefixlen}"


AddrPair = tuple[str, str]


class Lab:
    """Namespaces and veth pairs that exist until :meth:`close`.

    Build with :meth:`add_netns` and :meth:`add_veth`, or use
    :class:`TwoHostLab`. Usable as a context manager; :meth:`close` removes
    every namespace the lab created (and with them their interfaces), tries
    every step even when one fails, and is safe to call twice. Labs still
    open when the interpreter exits are closed by an atexit hook; labs of a
    killed process are removed by :func:`cleanup_stale`.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, *, tag: str | None = None) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"lab prefix must match {_PREFIX_RE.pattern}: {prefix!r}")
        if tag is not None and not re.fullmatch(r"[0-9a-f]{6}", tag):
            raise ValueError(f"lab tag must be 6 lower-case hex digits: {tag!r}")
        self.prefix = prefix
        self.tag = tag or secrets.token_hex(3)
        self.pid = os.getpid()
        self._namespaces: dict[str, str] = {}
        self._ipr: dict[str, IPRoute] = {}
        self._pairs: list[tuple[Endpoint, Endpoint]] = []
        self._if_count: dict[str, int] = {}
        self._bridges: dict[str, str] = {}
        self._closed = False
        with _registry_lock:
            _live_tags.add(self.tag)
            _live_labs.append(self)

    # -- context manager -------------------------------------------------

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close()
            return
        # Do not hide the exception that ended the with-block.
        try:
            self.close()
        except LabError as teardown:
            warnings.warn(f"lab teardown failed: {teardown}", RuntimeWarning, stacklevel=2)

    # -- names and lookups -----------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def namespaces(self) -> dict[str, str]:
        """Label -> full namespace name, for every namespace of the lab."""
        return dict(self._namespaces)

    @property
    def pairs(self) -> list[tuple[Endpoint, Endpoint]]:
        """Every veth pair, in creation order."""
        return list(self._pairs)

    @property
    def endpoints(self) -> list[Endpoint]:
        """Every veth end, in creation order."""
        return [ep for pair in self._pairs for ep in pair]

    def netns(self, label: str) -> str:
        """Full namespace name of ``label``."""
        try:
            return self._namespaces[label]
        except KeyError:
            raise KeyError(f"lab {self.tag} has no namespace {label!r}") from None

    def ipr(self, label: str) -> IPRoute:
        """The lab's netlink handle inside namespace ``label`` (do not close)."""
        self._check_open()
        self.netns(label)
        return self._ipr[label]

    def peer(self, ep: Endpoint) -> Endpoint:
        """The other end of ``ep``'s veth pair."""
        for left, right in self._pairs:
            if ep == left:
                return right
            if ep == right:
                return left
        raise KeyError(f"{ep.ifname} is not an interface of lab {self.tag}")

    def netns_name(self, label: str) -> str:
        """The namespace name this lab uses (or would use) for ``label``."""
        return f"{self.prefix}-{self.pid}-{self.tag}-{label}"

    # -- building ----------------------------------------------------------

    def add_netns(self, label: str) -> str:
        """Create namespace ``label`` with lab sysctls and lo up; return its name."""
        self._check_open()
        if not _LABEL_RE.match(label):
            raise ValueError(f"namespace label must match {_LABEL_RE.pattern}: {label!r}")
        if label in self._namespaces:
            raise ValueError(f"lab {self.tag} already has namespace {label!r}")
        name = self.netns_name(label)
        create_netns(name)
        self._namespaces[label] = name
        for key, value in NETNS_SYSCTLS.items():
            write_sysctl(name, key, value)
        with in_netns(name):
            ipr = IPRoute(ext_ack=True)
        self._ipr[label] = ipr
        ipr.link("set", index=1, state="up")  # lo is ifindex 1 in every namespace
        return name

    def add_veth(
        self,
        left: str,
        right: str,
        *,
        ipv4: AddrPair | bool = True,
        ipv6: AddrPair | bool = True,
        ipv4_prefixlen: int = 24,
        ipv6_prefixlen: int = 64,
        ifnames: tuple[str, str] | None = None,
        static_neighbours: bool = True,
        gro: bool = False,
    ) -> tuple[Endpoint, Endpoint]:
        """Join namespaces ``left`` and ``right`` with a veth pair.

        Namespaces that do not exist yet are created. ``ipv4``/``ipv6``: True
        picks addresses for this pair (see the module doc), a pair of strings
        assigns those, False assigns none. ``ipv6=False`` also disables IPv6
        on both ends (disable_ipv6=1 before they come up): no link-local
        addresses, hence no MLD reports or other background frames, which
        suits tests that count every frame. ``static_neighbours`` adds
        permanent ARP/ND entries on both ends so traffic needs no address
        resolution. ``gro`` turns GRO on for both ends. Returns the two ends,
        up and addressed.
        """
        self._check_open()
        if left == right:
            raise ValueError("a veth pair joins two different namespaces")
        index = len(self._pairs)
        addrs4 = self._pick_addrs(ipv4, index, 4)
        addrs6 = self._pick_addrs(ipv6, index, 6)
        names = ifnames or (self._next_ifname(left), self._next_ifname(right))
        _check_ifnames(names)
        for label in (left, right):
            if label not in self._namespaces:
                self.add_netns(label)
        indexes = self._create_pair((left, right), names, ipv6_off=addrs6 is None)
        ends = tuple(
            self._address_end(label, indexes[side], names[side],
                              (addrs4[side] if addrs4 else None, ipv4_prefixlen),
                              (addrs6[side] if addrs6 else None, ipv6_prefixlen))
            for side, label in enumerate((left, right))
        )
        pair = (ends[0], ends[1])
        self._pairs.append(pair)
        if static_neighbours:
            self.add_static_neighbours(*pair)
        if gro:
            for ep in pair:
                self.set_gro(ep, True)
        return pair

    def _create_pair(self, labels: tuple[str, str], names: tuple[str, str], *, ipv6_off: bool) -> tuple[int, int]:
        """Create the veth pair, set its sysctls, bring both ends up; their ifindexes."""
        left, right = labels
        ipr_l, ipr_r = self._ipr[left], self._ipr[right]
        # The peer is created straight in the right-hand namespace: nothing of
        # the lab ever appears in the root namespace.
        ipr_l.link(
            "add",
            ifname=names[0],
            kind="veth",
            peer={"ifname": names[1], "net_ns_fd": self._namespaces[right]},
        )
        idx_l = ipr_l.link_lookup(ifname=names[0])[0]
        idx_r = ipr_r.link_lookup(ifname=names[1])[0]
        for label, ifname in zip(labels, names):
            for key, value in IFACE_SYSCTLS.items():
                write_sysctl(self._namespaces[label], key.format(ifname=ifname), value)
            if ipv6_off:
                write_sysctl(self._namespaces[label], f"net/ipv6/conf/{ifname}/disable_ipv6", 1)
        ipr_r.link("set", index=idx_r, state="up")
        ipr_l.link("set", index=idx_l, state="up")
        # The end that came up first gets its carrier (and its transmit
        # queue) from the kernel's linkwatch worker, a moment later: until
        # then frames sent from it are dropped. Wait for operstate UP on both
        # ends. Linkwatch holds RTNL while it activates the queue, so the
        # address and neighbour updates that follow, which take RTNL, also
        # order after that activation.
        _wait_oper_up(ipr_l, idx_l, names[0])
        _wait_oper_up(ipr_r, idx_r, names[1])
        return idx_l, idx_r

    def _address_end(self, label: str, idx: int, ifname: str, v4: tuple[str | None, int],
                     v6: tuple[str | None, int]) -> Endpoint:
        """Assign one end's addresses ((address or None, prefix length) per family)."""
        ipr = self._ipr[label]
        (addr4, plen4), (addr6, plen6) = v4, v6
        if addr4 is not None:
            ipr.addr("add", index=idx, address=addr4, prefixlen=plen4)
        if addr6 is not None:
            ipr.addr("add", index=idx, address=addr6, prefixlen=plen6, flags=IFA_F_NODAD)
        _wait_not_tentative(ipr, idx, ifname)
        mac = ipr.get_links(idx)[0].get("IFLA_ADDRESS").lower()
        return Endpoint(label=label, netns=self._namespaces[label], ifname=ifname, ifindex=idx, mac=mac,
                        ipv4=addr4, ipv6=addr6, ipv4_prefixlen=plen4, ipv6_prefixlen=plen6)

    def add_static_neighbours(self, left: Endpoint, right: Endpoint) -> None:
        """Permanent ARP/ND entries on each end for the other end's addresses."""
        self._check_open()
        for here, there in ((left, right), (right, left)):
            ipr = self._ipr[here.label]
            for addr in (there.ipv4, there.ipv6):
                if addr is not None:
                    ipr.neigh(
                        "replace",
                        dst=addr,
                        lladdr=there.mac,
                        ifindex=here.ifindex,
                        state=_NUD_PERMANENT,
                    )

    def add_bridge(self, label: str) -> str:
        """Create a Linux bridge in namespace ``label`` (created if missing),
        up, with multicast snooping off (neighbour discovery floods like ARP);
        return its name. Ports join with :meth:`add_bridge_port`."""
        self._check_open()
        if label not in self._namespaces:
            self.add_netns(label)
        name = f"{self.prefix}{self.tag}br"
        ipr = self._ipr[label]
        ipr.link("add", ifname=name, kind="bridge", br_mcast_snooping=0)
        index = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=index, state="up")
        self._bridges[name] = label
        return name

    def add_bridge_port(self, host: str, bridge: str, *, ipv4: str | None, ipv6: str | None,
                        ipv4_prefixlen: int = 24, ipv6_prefixlen: int = 64) -> Endpoint:
        """Join namespace ``host`` to ``bridge`` with a veth pair; return the
        host's end, addressed (the bridge's end: :meth:`peer`)."""
        self._check_open()
        switch = self._bridges[bridge]
        if host not in self._namespaces:
            self.add_netns(host)
        names = (self._next_ifname(host), self._next_ifname(switch))
        _check_ifnames(names)
        idx_h, idx_s = self._create_pair((host, switch), names, ipv6_off=False)
        ipr = self._ipr[switch]
        ipr.link("set", index=idx_s, master=ipr.link_lookup(ifname=bridge)[0])
        ends = (self._address_end(host, idx_h, names[0], (ipv4, ipv4_prefixlen), (ipv6, ipv6_prefixlen)),
                self._address_end(switch, idx_s, names[1], (None, 0), (None, 0)))
        self._pairs.append(ends)
        return ends[0]

    def set_gro(self, ep: Endpoint, on: bool = True) -> None:
        """Turn GRO on or off on ``ep``."""
        self._check_open()
        set_gro(ep.netns, ep.ifname, on)

    def set_tx_checksum(self, ep: Endpoint, on: bool = True) -> None:
        """Turn transmit checksum offload on or off on ``ep``."""
        self._check_open()
        set_tx_checksum(ep.netns, ep.ifname, on)

    def sysctl(self, label: str, key: str, value: str | int) -> None:
        """Write sysctl ``key`` in namespace ``label``."""
        self._check_open()
        write_sysctl(self.netns(label), key, value)

    def _pick_addrs(self, spec: AddrPair | bool, index: int, family: int) -> AddrPair | None:
        if spec is False:
            return None
        if spec is not True:
            left, right = spec
            return (str(ipaddress.ip_address(left)), str(ipaddress.ip_address(right)))
        if family == 4:
            if index >= len(_V4_SUBNETS):
                raise ValueError(
                    f"no free IPv4 documentation subnet for veth pair {index}: pass ipv4=(left, right)"
                )
            net4 = _V4_SUBNETS[index]
            return (str(net4[1]), str(net4[2]))
        net6 = ipaddress.IPv6Network((int(_V6_BASE.network_address) + (index << 80), 64))
        return (str(net6[1]), str(net6[2]))

    def _next_ifname(self, label: str) -> str:
        n = self._if_count.get(label, 0)
        self._if_count[label] = n + 1
        return f"{self.prefix}{self.tag}{label}{n}"

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.tag} is closed")

    # -- teardown ----------------------------------------------------------

    def close(self) -> None:
        """Remove everything the lab made. Raises LabError listing failures."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        # Delete the veths first: that is synchronous, whereas a namespace
        # that something still refers to (a leaked socket) outlives its name
        # together with its interfaces.
        for left, _right in self._pairs:
            ipr = self._ipr.get(left.label)
            if ipr is None:
                continue
            try:
                ipr.link("del", index=left.ifindex)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    errors.append(f"delete {left.ifname}: {exc}")
            except Exception as exc:
                errors.append(f"delete {left.ifname}: {exc}")
        for label, ipr in self._ipr.items():
            try:
                ipr.close()
            except Exception as exc:
                errors.append(f"close netlink handle in {label}: {exc}")
        self._ipr.clear()
        for name in self._namespaces.values():
            try:
                remove_netns(name)
            except Exception as exc:
                errors.append(f"remove namespace {name}: {exc}")
        with _registry_lock:
            _live_tags.discard(self.tag)
            with contextlib.suppress(ValueError):
                _live_labs.remove(self)
        if errors:
            raise LabError(f"lab {self.tag} teardown: " + "; ".join(errors))


class TwoHostLab(Lab):
    """The usual layout: hosts ``a`` and ``b`` joined by one veth pair.

    ``a`` holds 192.0.2.1 and 2001:db8::1, ``b`` holds 192.0.2.2 and
    2001:db8::2 (/24 and /64); ``ipv6=False`` gives an IPv4-only lab with
    IPv6 disabled, in which the hosts send nothing unprompted (see
    :meth:`Lab.add_veth`). Built in the constructor, so both
    ``with TwoHostLab() as lab:`` and ``lab = TwoHostLab(); ...; lab.close()``
    work. If building fails, whatever was made is removed before the error
    propagates.
    """

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        *,
        tag: str | None = None,
        static_neighbours: bool = True,
        gro: bool = False,
        ipv6: bool = True,
    ) -> None:
        super().__init__(prefix, tag=tag)
        try:
            self._a, self._b = self.add_veth(
                "a", "b", ipv6=ipv6, static_neighbours=static_neighbours, gro=gro
            )
        except BaseException:
            with contextlib.suppress(LabError):
                self.close()
            raise

    def __enter__(self) -> TwoHostLab:
        return self

    @property
    def a(self) -> Endpoint:
        """The veth end in namespace ``a``."""
        return self._a

    @property
    def b(self) -> Endpoint:
        """The veth end in namespace ``b``."""
        return self._b


def _check_ifnames(names: tuple[str, str]) -> None:
    for ifname in names:
        if not 0 < len(ifname) <= IFNAME_MAX or "/" in ifname or ifname.strip() != ifname:
            raise ValueError(f"interface name must have 1..{IFNAME_MAX} characters, no '/' or blanks: {ifname!r}")


def _wait_until(done, what: str, timeout: float) -> None:
    """Poll ``done()`` (None: done, else what is still wrong) every 2 ms
    until it is done; LabError after ``timeout`` seconds, naming ``what``
    and the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        left = done()
        if left is None:
            return
        if time.monotonic() > deadline:
            raise LabError(f"{what} within {timeout:g}s ({left})")
        time.sleep(0.002)


def _wait_oper_up(ipr: IPRoute, index: int, ifname: str, timeout: float = LINK_UP_TIMEOUT) -> None:
    def state():
        st = ipr.get_links(index)[0].get("IFLA_OPERSTATE")
        return None if st == "UP" else f"operstate {st}"

    _wait_until(state, f"{ifname} did not come up", timeout)


def _wait_not_tentative(ipr: IPRoute, index: int, ifname: str, timeout: float = LINK_UP_TIMEOUT) -> None:
    """Wait until no IPv6 address of the link is tentative. With DAD off the
    kernel still adds the link-local address as tentative when the link
    comes up, and its DAD worker clears the flag a moment later."""
    def tentative():
        busy = [x.get("IFA_ADDRESS") for x in ipr.get_addr(index=index, family=socket.AF_INET6)
                if (x.get("IFA_FLAGS") or x["flags"]) & IFA_F_TENTATIVE]
        return f"{busy[0]} tentative" if busy else None

    _wait_until(tentative, f"{ifname}: an IPv6 address did not leave the tentative state", timeout)


@atexit.register
def _close_leftover_labs() -> None:
    with _registry_lock:
        labs = [lab for lab in _live_labs if lab.pid == os.getpid()]
    for lab in labs:
        with contextlib.suppress(Exception):
            lab.close()
