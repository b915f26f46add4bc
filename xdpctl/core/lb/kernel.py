"""The load balancer's kernel writer: the shared LB maps (VIPs, ring,
backends, counters) and a hook's xc_lb_hook entry.

The shared maps are created on first use (by loading the hook program with
only them pinned) and are a cache of the database (xdpctl.core.lb.service).
A VIP's table switch follows docs/lb.md, "Atomic switch": the new table is
written into a free region of xc_lb_ring, the VIP's value is replaced to
name it (one hash-map update), then the old region is released. The regions
in use are those the database records, so every writer (under the writer
lock) sees the same placement.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ... import abi
from ...kernel import maps
from ..context import Context
from ..hooks import HookRef
from ..shared import SharedMaps
from ..hooks.program import object_name
from . import tables

SHARED_LB_MAPS = ("xc_lb_vips", "xc_lb_ring", "xc_lb_backends", "xc_lb_conn", "xc_lb_vip_cnt", "xc_lb_be_cnt")
HOOK_MAP = "xc_lb_hook"
_KEY0 = abi.U32.pack(0)


class LbKernel(SharedMaps):
    """The shared LB maps, opened (created if missing) as a context manager;
    the caller holds the writer lock."""

    NAMES = SHARED_LB_MAPS

    def object_name(self) -> str:
        return object_name("xdp")

    # -- capacities
    def capacity(self, name: str) -> int:
        return self.maps[name].max_entries

    def regions(self, used: Iterable[tuple[int, int]]) -> tables.Regions:
        """The ring's placement with the regions ``used`` ((base, size))
        taken."""
        r = tables.Regions(self.capacity("xc_lb_ring"))
        for base, size in sorted(used):
            if not size:
                continue
            for k, (b, n) in enumerate(r.free):
                if b <= base and base + size <= b + n:
                    r.free[k:k + 1] = [p for p in ((b, base - b), (base + size, b + n - base - size)) if p[1]]
                    r.used[base] = size
                    break
        return r

    # -- writes
    def write_backend(self, be_id: int, addr: str | None, mac: str | None, state: int, vip_id: int = 0) -> None:
        """A backend's slot (of VIP ``vip_id``); ``addr`` None clears it
        (down, no MAC)."""
        value = bytes(abi.LB_BACKEND.size) if addr is None else tables.backend_value(addr, mac, state, vip_id=vip_id)
        self.maps["xc_lb_backends"].update(abi.U32.pack(be_id), value)

    def write_table(self, regions: tables.Regions, ids: Sequence[int], table: Sequence[int],
                    old: tuple[int, int] | None) -> tuple[int, int]:
        """Write a table (indexes into ``ids``) into a free region; returns
        (base, size) of it, (0, 0) for an empty table. The VIP's value is
        not touched: :meth:`switch` does that. ``old`` (base, size) is the
        region to rewrite in place instead when it has the same size (a
        rebuild of the same content)."""
        size = len(table)
        if not size:
            return 0, 0
        base = old[0] if old is not None and old[1] == size else regions.alloc(size)
        self.maps["xc_lb_ring"].update_batch(tables.ring_keys(base, size), tables.ring_image(table, ids), size)
        return base, size

    def switch(self, addr: str, proto: int, port: int, vip_id: int, base: int, size: int, flags: int = 0) -> None:
        """Replace the VIP's value (region, XC_LB_VIP_* ``flags``): packets
        use it from now on."""
        self.maps["xc_lb_vips"].update(tables.vip_key(addr, proto, port), tables.vip_value(base, size, vip_id, flags))

    def reset_counters(self, name: str, i: int) -> None:
        """Zero an id's per-CPU counters (an id being reused)."""
        self.maps[name].update(abi.U32.pack(i), bytes(abi.LB_STATS.size))

    def delete_vip(self, addr: str, proto: int, port: int) -> None:
        self.maps["xc_lb_vips"].delete(tables.vip_key(addr, proto, port))

    def vip_keys(self) -> list[bytes]:
        return [k for k, _ in self.maps["xc_lb_vips"].items()]

    def clear_backends(self, keep: set[int]) -> None:
        """Clear every backend slot that is set but not in ``keep``."""
        m = self.maps["xc_lb_backends"]
        zero = bytes(abi.LB_BACKEND.size)
        for key, raw in list(m.items()):
            i = int.from_bytes(key, "little")
            if i not in keep and raw[:abi.LB_BACKEND.size] != zero:
                m.update(key, zero)

    # -- reads
    def counters(self, name: str, ids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
        """(packets, bytes, new flows) summed over CPUs, per id."""
        m = self.maps[name]
        out = {}
        for i in ids:
            tot = [0, 0, 0]
            for raw in m.lookup_percpu(abi.U32.pack(i)) or []:
                for k, v in enumerate(abi.LB_STATS.unpack_from(raw)):
                    tot[k] += v
            out[i] = (tot[0], tot[1], tot[2])
        return out


def write_hook(ctx: Context, ref: HookRef, mac: str | None) -> None:
    """Write the interface's MAC into the hook's xc_lb_hook and switch
    balancing on there (the stage bit decides whether it runs)."""
    with maps.Map.from_pin(ref.pin(ctx, HOOK_MAP)) as m:
        m.update(_KEY0, tables.hook_value(mac or "00:00:00:00:00:00"))
