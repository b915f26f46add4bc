"""The load balancer's map contents as bytes (layouts in xdpctl/abi.py):
VIP keys and values, backend values, ring images, connection keys, the
per-hook config; and the placement of tables in xc_lb_ring. Pure: no kernel
access, no state store.

A table switch (docs/lb.md, "Atomic switch"): place the new table in a free
region (:meth:`Regions.alloc`), write its image there, replace the VIP's
value with one naming the new region (one map update), then release the old
region (:meth:`Regions.release`). A packet reads one VIP value and one ring
slot of the region that value names, so it never sees half a table.
"""

from __future__ import annotations

import ipaddress
from array import array
from typing import Sequence

from ... import abi
from ..errors import CapacityError, ValidationError

Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def _addr(addr: Address, field: str) -> tuple[int, bytes]:
    """(family, 16 bytes: network order, IPv4 in the first 4)."""
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        raise ValidationError(f"not an IP address: {addr!r}", field=field, value=addr) from None
    return a.version, a.packed.ljust(16, b"\0")


def _mac(mac: str, field: str = "mac") -> bytes:
    try:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except (AttributeError, ValueError):
        raw = b""
    if len(raw) != 6:
        raise ValidationError(f"not a MAC address: {mac!r}", field=field, value=mac)
    return raw


def vip_key(addr: Address, proto: int, port: int) -> bytes:
    """xc_lb_vip_key; port 0: every port of proto."""
    family, a = _addr(addr, "vip")
    return abi.LB_VIP_KEY.pack(a, port.to_bytes(2, "big"), proto, family)


def vip_value(ring_base: int, ring_size: int, vip_id: int, flags: int = 0) -> bytes:
    return abi.LB_VIP.pack(ring_base, ring_size, vip_id, flags)


def backend_value(addr: Address, mac: str | None, state: int = abi.LbState.ACTIVE,
                  flags: int = 0, vip_id: int = 0) -> bytes:
    """xc_lb_backend of a backend of VIP ``vip_id``; without a MAC the
    backend gets no flows."""
    family, a = _addr(addr, "backend")
    if mac is None:
        m = bytes(6)
        flags &= ~abi.LB_BE_HAVE_MAC
    else:
        m = _mac(mac)
        flags |= abi.LB_BE_HAVE_MAC
    return abi.LB_BACKEND.pack(a, m, family, int(state), flags, vip_id)


def hook_value(mac: str, on: bool = True) -> bytes:
    """xc_lb_hook: the interface's own MAC, balancing on or off."""
    return abi.LB_HOOK.pack(_mac(mac), abi.LB_HOOK_ON if on else 0)


def conn_key(src: Address, dst: Address, sport: int, dport: int, proto: int) -> bytes:
    """xc_lb_conn_key of a client -> VIP flow."""
    family, s = _addr(src, "src")
    _, d = _addr(dst, "dst")
    return abi.LB_CONN_KEY.pack(s, d, sport.to_bytes(2, "big"), dport.to_bytes(2, "big"),
                                proto, family)


def unpack_conn(raw: bytes) -> tuple[int, int]:
    """(backend id, vip_id) of an xc_lb_conn value."""
    return abi.LB_CONN.unpack_from(raw)


def ring_image(table: Sequence[int], ids: Sequence[int]) -> bytes:
    """A Maglev table (indexes into the backend list) as xc_lb_ring values:
    ids[i] is the backend id of backend i."""
    return array("I", map(ids.__getitem__, table)).tobytes()


def ring_keys(base: int, size: int) -> bytes:
    """The xc_lb_ring keys of a region, for a batch update."""
    return array("I", range(base, base + size)).tobytes()


class Regions:
    """Placement of tables in xc_lb_ring (first fit; neighbours merge on
    release). Region 0 starts at slot 0."""

    def __init__(self, entries: int = abi.MAP_SPECS["xc_lb_ring"].max_entries):
        self.entries = entries
        self.free: list[tuple[int, int]] = [(0, entries)]  # (base, size), by base
        self.used: dict[int, int] = {}

    def alloc(self, size: int) -> int:
        for k, (base, n) in enumerate(self.free):
            if n >= size:
                if n == size:
                    del self.free[k]
                else:
                    self.free[k] = (base + size, n - size)
                self.used[base] = size
                return base
        raise CapacityError(f"no free region of {size} slots in xc_lb_ring ({self.entries} slots)",
                            hint="raise the capacity of xc_lb_ring, or use smaller tables")

    def release(self, base: int) -> None:
        size = self.used.pop(base)
        self.free.append((base, size))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for b, n in self.free:
            if merged and merged[-1][0] + merged[-1][1] == b:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((b, n))
        self.free = merged
