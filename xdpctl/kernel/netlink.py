"""Netlink (pyroute2): interfaces, XDP attach modes, TC clsact filters.

All attachment goes through here. Interfaces in other network namespaces
are reached with ``IPRoute(netns=...)``; program fds are process-wide, so a
program loaded in the root namespace can be attached anywhere.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib.metadata
import os
import socket
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PrNetlinkError
from pyroute2.netlink.rtnl.tcmsg import sched_bpf

from . import netns as netns_mod
from ..core.errors import (
    Conflict,
    InterfaceNotFound,
    MissingDependency,
    NamespaceNotFound,
    NetlinkError,
    Unsupported,
)

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4

MODE_FLAGS = {"generic": XDP_FLAGS_SKB_MODE, "native": XDP_FLAGS_DRV_MODE, "offload": XDP_FLAGS_HW_MODE}
ATTACHED_MODE = {1: "native", 2: "generic", 3: "offload", 4: "multi"}
TC_PARENT = {"tc-ingress": 0xFFFFFFF2, "tc-egress": 0xFFFFFFF3}
TC_PREF = 0xC0DE & 0xFFFF  # filter priority xdpctl uses on clsact
TC_HANDLE = 1
TC_NAME_PREFIX = "xdpctl:"
NETNS_RUN_DIR = "/var/run/netns"

PYROUTE2_RANGE = ">=0.9.1,<0.10"  # as pinned in pyproject.toml
_TC_BPF_EXTRA = (("TCA_BPF_FLAGS_GEN", "uint32"), ("TCA_BPF_TAG", "hex"), ("TCA_BPF_ID", "uint32"))
_TC_BPF_LOCK = threading.Lock()
_TC_BPF_READY = False


def teach_tc_bpf_attrs() -> None:
    """Teach pyroute2 the cls_bpf attributes after TCA_BPF_FLAGS.

    pyroute2 0.9.x (checked: 0.9.1, 0.9.4, 0.9.7) stops decoding cls_bpf
    options at TCA_BPF_FLAGS; the kernel sends flags_gen, tag and id after
    it. The table is extended once, on the first filter read (never at
    import). A pyroute2 whose table is not shaped as expected is a
    MissingDependency naming the range this was checked against.
    """
    global _TC_BPF_READY
    with _TC_BPF_LOCK:
        if not _TC_BPF_READY:
            _extend_tc_bpf_table()
            _TC_BPF_READY = True


def _extend_tc_bpf_table() -> None:
    options = getattr(sched_bpf, "options", None)
    table = getattr(options, "nla_map", None)
    if not isinstance(table, (tuple, list)) or not all(isinstance(e, (tuple, list)) and e for e in table):
        raise MissingDependency(f"pyroute2 {_pyroute2_version()} decodes tc bpf filters differently than "
                                "xdpctl expects", hint=f"install pyroute2{PYROUTE2_RANGE}")
    names = [entry[0] for entry in table]
    if "TCA_BPF_ID" not in names:
        if names[-1] != "TCA_BPF_FLAGS":
            raise MissingDependency(f"pyroute2 {_pyroute2_version()}: unexpected cls_bpf attribute table "
                                    f"(last entry {names[-1]})", hint=f"install pyroute2{PYROUTE2_RANGE}")
        options.nla_map = tuple(table) + _TC_BPF_EXTRA


def _pyroute2_version() -> str:
    try:
        return importlib.metadata.version("pyroute2")
    except importlib.metadata.PackageNotFoundError:
        return "(unknown version)"


def _nl_error(what: str, exc: PrNetlinkError) -> NetlinkError:
    code = exc.code
    text = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(code)
    err = NetlinkError(f"{what}: {text} ({errno.errorcode.get(code, code)})")
    err.errno = code  # type: ignore[attr-defined]
    return err


def check_netns(netns: str | None) -> None:
    if netns is None:
        return
    if "/" in netns or netns in (".", "..") or not netns:
        raise NamespaceNotFound(f"invalid network namespace name {netns!r}")
    if not os.path.exists(os.path.join(NETNS_RUN_DIR, netns)):
        raise NamespaceNotFound(f"network namespace {netns!r} does not exist (see `ip netns list`)")


@contextmanager
def ipr(netns: str | None = None) -> Iterator[IPRoute]:
    check_netns(netns)
    ip = IPRoute(netns=netns, ext_ack=True) if netns else IPRoute(ext_ack=True)
    try:
        yield ip
    finally:
        ip.close()


@contextmanager
def in_netns(netns: str | None):
    """Run the block with the current thread inside ``netns`` (checked first)."""
    check_netns(netns or None)
    with netns_mod.in_netns(netns or None):
        yield


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None  # IFLA_INFO_KIND for virtual devices (veth, bridge, ...)
    up: bool
    mac: str | None
    xdp_mode: str | None
    xdp_prog_id: int | None
    xdp_ids: dict


def _link_from_msg(msg) -> Link:
    name = msg.get_attr("IFLA_IFNAME")
    kind = None
    li = msg.get_attr("IFLA_LINKINFO")
    if li is not None:
        kind = li.get_attr("IFLA_INFO_KIND")
    xdp = msg.get_attr("IFLA_XDP")
    mode, pid, ids = None, None, {}
    if xdp is not None:
        attached = xdp.get_attr("IFLA_XDP_ATTACHED")
        if isinstance(attached, str):
            attached = {"xdp": 1, "xdpgeneric": 2, "xdpoffload": 3, "xdpmulti": 4}.get(attached, 0)
        if attached:
            mode = ATTACHED_MODE.get(attached)
            pid = xdp.get_attr("IFLA_XDP_PROG_ID")
            for key, label in (
                ("IFLA_XDP_SKB_PROG_ID", "generic"),
                ("IFLA_XDP_DRV_PROG_ID", "native"),
                ("IFLA_XDP_HW_PROG_ID", "offload"),
            ):
                v = xdp.get_attr(key)
                if v:
                    ids[label] = v
            if not ids and pid and mode:
                ids[mode] = pid
    return Link(
        index=msg["index"],
        name=name,
        kind=kind,
        up=bool(msg["flags"] & 1),
        mac=msg.get_attr("IFLA_ADDRESS"),
        xdp_mode=mode,
        xdp_prog_id=pid,
        xdp_ids=ids,
    )


def get_link(ifname: str, netns: str | None = None) -> Link:
    with ipr(netns) as ip:
        idx = ip.link_lookup(ifname=ifname)
        if not idx:
            where = f" in network namespace {netns!r}" if netns else ""
            raise InterfaceNotFound(f"no interface {ifname!r}{where}")
        return _link_from_msg(ip.get_links(idx[0])[0])


def list_links(netns: str | None = None) -> list[Link]:
    with ipr(netns) as ip:
        return [_link_from_msg(m) for m in ip.get_links()]


# ---------------------------------------------------------------- driver
SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003


def driver_name(ifname: str, netns: str | None = None) -> str:
    """Driver as ethtool reports it (veth, virtio_net, nfp, ...), or 'unknown'."""
    buf = bytearray(struct.pack("I", ETHTOOL_GDRVINFO) + b"\0" * 192)
    addr = (ctypes.c_char * len(buf)).from_buffer(buf)
    ifreq = struct.pack("16sP", ifname.encode()[:15], ctypes.addressof(addr))
    try:
        with in_netns(netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
            finally:
                s.close()
    except OSError:
        try:
            return get_link(ifname, netns).kind or "unknown"
        except Exception:
            return "unknown"
    drv = bytes(buf[4:36]).split(b"\0", 1)[0].decode(errors="replace")
    return drv or "unknown"


# ---------------------------------------------------------------- XDP
def xdp_set(
    ifname: str,
    netns: str | None,
    prog_fd: int,
    mode: str,
    expected_fd: int | None = None,
    exclusive: bool = False,
) -> None:
    """Attach (prog_fd >= 0) or detach (prog_fd == -1) an XDP program.

    With ``expected_fd`` the kernel swaps atomically and only if that program
    is the one attached (XDP_FLAGS_REPLACE); with ``exclusive`` it refuses
    when any program is attached (XDP_FLAGS_UPDATE_IF_NOEXIST).
    """
    link = get_link(ifname, netns)
    flags = MODE_FLAGS[mode]
    attrs = [("IFLA_XDP_FD", prog_fd)]
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    elif exclusive:
        flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    attrs.append(("IFLA_XDP_FLAGS", flags))
    verb = "attach" if prog_fd >= 0 else "detach"
    with ipr(netns) as ip:
        try:
            ip.link("set", index=link.index, IFLA_XDP={"attrs": attrs})
        except PrNetlinkError as exc:
            raise _xdp_error(verb, ifname, netns, mode, exc, expected_fd is not None) from None


def _xdp_error(verb: str, ifname: str, netns: str | None, mode: str, exc: PrNetlinkError, expected: bool = False):
    code = exc.code
    where = f"{ifname}" + (f" (netns {netns})" if netns else "")
    kernel = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(code)
    if code == errno.EEXIST and expected:
        return Conflict(f"XDP {verb} on {where}: the attached program is no longer the one expected "
                        f"(it changed meanwhile); re-read the state and retry ({kernel})")
    if code == errno.EEXIST:
        return Conflict(f"XDP {verb} on {where}: another program is already attached ({kernel})")
    if code == errno.EBUSY:
        return Conflict(f"XDP {verb} on {where} in {mode} mode: {kernel}")
    if mode in ("native", "offload") and code not in (errno.EPERM, errno.ENODEV, errno.ENOMEM):
        # the driver refused: no support (EOPNOTSUPP/EINVAL), MTU too large for
        # XDP (ERANGE), queue layout (ENOSPC), ...: the kernel's text says which
        drv = driver_name(ifname, netns)
        need = (
            "a driver with native XDP support" if mode == "native" else
            "a NIC whose driver can offload BPF programs (e.g. Netronome nfp)"
        )
        return Unsupported(
            f"{mode} XDP is not supported on {where} (driver {drv}): {kernel}; it needs {need}"
        )
    return _nl_error(f"XDP {verb} on {where} ({mode})", exc)


# ---------------------------------------------------------------- TC
@dataclass(frozen=True)
class TcFilter:
    hook: str
    pref: int
    handle: int
    name: str | None
    prog_id: int | None
    tag: str | None
    direct_action: bool


def ensure_clsact(ifname: str, netns: str | None) -> None:
    link = get_link(ifname, netns)
    with ipr(netns) as ip:
        try:
            ip.tc("add", "clsact", index=link.index)
        except PrNetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _nl_error(f"add clsact qdisc on {ifname}", exc) from None


def has_clsact(ifname: str, netns: str | None) -> bool:
    link = get_link(ifname, netns)
    with ipr(netns) as ip:
        return any(q.get_attr("TCA_KIND") == "clsact" for q in ip.get_qdiscs(index=link.index))


def del_clsact(ifname: str, netns: str | None) -> None:
    link = get_link(ifname, netns)
    with ipr(netns) as ip:
        try:
            ip.tc("del", "clsact", index=link.index)
        except PrNetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.EINVAL):
                raise _nl_error(f"delete clsact qdisc on {ifname}", exc) from None


def _filter_msgs(ifname: str, netns: str | None, hook: str) -> list:
    """Raw filter messages on a clsact hook; none when there is no clsact."""
    teach_tc_bpf_attrs()
    link = get_link(ifname, netns)
    with ipr(netns) as ip:
        try:
            return list(ip.get_filters(index=link.index, parent=TC_PARENT[hook]))
        except PrNetlinkError as exc:
            if exc.code in (errno.EINVAL, errno.ENOENT):
                return []
            raise _nl_error(f"list tc filters on {ifname}", exc) from None


def tc_filters(ifname: str, netns: str | None, hook: str) -> list[TcFilter]:
    """xdpctl's and others' BPF filters on a clsact hook."""
    out = []
    for m in _filter_msgs(ifname, netns, hook):
        if m.get_attr("TCA_KIND") != "bpf":
            continue
        opts = m.get_attr("TCA_OPTIONS")
        if opts is None:
            continue
        flags = opts.get_attr("TCA_BPF_FLAGS") or 0
        tag = opts.get_attr("TCA_BPF_TAG")
        if isinstance(tag, str):
            tag = tag.replace(":", "")
        out.append(
            TcFilter(
                hook=hook,
                pref=(m["info"] >> 16) & 0xFFFF,
                handle=m["handle"],
                name=opts.get_attr("TCA_BPF_NAME"),
                prog_id=opts.get_attr("TCA_BPF_ID"),
                tag=tag,
                direct_action=bool(flags & 1),
            )
        )
    return out


def tc_filter_count(ifname: str, netns: str | None, hook: str) -> int:
    """Filters of any kind on a clsact hook (not only BPF ones)."""
    return sum(1 for m in _filter_msgs(ifname, netns, hook) if m.get_attr("TCA_KIND"))


def ensure_clsact_created(ifname: str, netns: str | None) -> bool:
    """Add the clsact qdisc if missing; True when this call created it."""
    if has_clsact(ifname, netns):
        return False
    ensure_clsact(ifname, netns)
    return True


def tc_set(ifname: str, netns: str | None, hook: str, prog_fd: int, name: str) -> None:
    """Attach or atomically replace xdpctl's filter on a clsact hook."""
    ensure_clsact(ifname, netns)
    link = get_link(ifname, netns)
    with ipr(netns) as ip:
        try:
            ip.tc(
                "replace-filter",
                "bpf",
                index=link.index,
                handle=TC_HANDLE,
                prio=TC_PREF,
                parent=TC_PARENT[hook],
                fd=prog_fd,
                name=name,
                direct_action=True,
            )
        except PrNetlinkError as exc:
            raise _nl_error(f"attach tc filter on {ifname} {hook}", exc) from None


def tc_del(ifname: str, netns: str | None, hook: str) -> bool:
    link = get_link(ifname, netns)
    with ipr(netns) as ip:
        try:
            ip.tc(
                "del-filter",
                "bpf",
                index=link.index,
                handle=TC_HANDLE,
                prio=TC_PREF,
                parent=TC_PARENT[hook],
            )
        except PrNetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.EINVAL):
                return False
            raise _nl_error(f"detach tc filter on {ifname} {hook}", exc) from None
    return True


def tc_ours(ifname: str, netns: str | None, hook: str) -> TcFilter | None:
    for f in tc_filters(ifname, netns, hook):
        if f.pref == TC_PREF and f.handle == TC_HANDLE:
            return f
    return None
