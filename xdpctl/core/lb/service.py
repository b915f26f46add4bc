"""LoadBalancer: the load balancer's desired state, its changes and reads,
answered as core views.

VIPs (address, protocol, port, table size) and their backends (address,
weight, state, MAC) live in SQLite (xdpctl.core.rules.store, tables lb_vips
and lb_backends). Every change is validated completely first, then runs in
one transaction under the writer lock: the rows, then the kernel
(xdpctl.core.lb.kernel: backend slots; the changed VIP's Maglev table in a
free ring region, the VIP's value switched to it, the old region released),
then the revision. A failed kernel write rolls the transaction back;
:meth:`LoadBalancer.sync` (run by `restore`) rebuilds the maps from the
database.

A VIP's table holds its active backends that have a MAC and a weight above
0, by weight (validate.in_table). A backend that becomes available is
written before the switch, one that stops being so after it.
"""

from __future__ import annotations

import os
import time
from typing import Callable, TypeVar

from ... import abi
from ...kernel import maps
from ..context import Context
from ..counters import sum_percpu
from ..hooks import pinned_hooks
from ..errors import CapacityError, Conflict, NotFound, ValidationError
from ..rules.service import DropList
from ..rules.store import BackendRow, State, VipRow
from ..views import (BackendsView, BackendView, CountView, LbBackendStatsView, LbChangeView, LbCheckView,
                     LbHookStatsView, LbStatsView, LbVipStatsView, VipsView, VipView)
from . import tables
from . import validate as v
from .kernel import SHARED_LB_MAPS, LbKernel

T = TypeVar("T")
VIP_IDS = abi.MAP_SPECS["xc_lb_vip_cnt"].max_entries
BACKEND_IDS = abi.MAP_SPECS["xc_lb_backends"].max_entries


def vip_view(row: VipRow, backends: list[BackendRow]) -> VipView:
    return VipView(id=row.id, address=row.addr, family=row.family, proto=v.PROTO_NAMES[row.proto], port=row.port,
                   table_size=row.table_size, backends=len(backends), in_table=len(v.in_table(backends)),
                   created=row.created, hash=row.hash, check=LbCheckView(kind=row.check_kind, port=row.check_port or row.port,
                                                          interval=row.interval, timeout=row.timeout,
                                                          rise=row.rise, fall=row.fall))


def mac_state(row: BackendRow) -> str:
    if row.mac_given:
        return "given"
    return "resolved" if row.mac else "unresolved"


def backend_view(row: BackendRow, vip: VipRow, slots: int = 0) -> BackendView:
    return BackendView(id=row.id, address=row.addr, family=row.family, vip=vip.addr,
                       proto=v.PROTO_NAMES[vip.proto], port=vip.port, weight=row.weight, state=row.state,
                       health=row.health, health_transitions=row.transitions, health_reason=row.reason,
                       mac=row.mac, mac_state=mac_state(row), slots=slots, created=row.created)


def hook_reasons(ctx: Context) -> list[LbHookStatsView]:
    """Per hook with the LB stage's counters pinned: packets and bytes by
    xc_lb_cnt reason (summed over CPUs)."""
    out = []
    for ref in pinned_hooks(ctx):
        pin = ref.pin(ctx, "xc_lb_cnt")
        if not os.path.exists(pin):
            continue
        with maps.Map.from_pin(pin) as m:
            got = sum_percpu(m)
        out.append(LbHookStatsView(netns=ref.netns, ifname=ref.ifname, hook=ref.hook, reasons={
            r.name.lower(): CountView(packets=got.get(int(r), (0, 0))[0], bytes=got.get(int(r), (0, 0))[1])
            for r in abi.LbReason if r != abi.LbReason.MAX}))
    return out


class LoadBalancer:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @property
    def state(self) -> State:
        return self.ctx.state

    # ----------------------------------------------------------- reads
    def _vip(self, key: v.VipKey, field: str) -> VipRow:
        row = self.state.lb_vip(key.addr, key.proto, key.port)
        if row is None:
            raise NotFound(f"no VIP {key.label()}", field=field, value=key.addr)
        return row

    def _backend(self, vip: VipRow, addr: str) -> BackendRow:
        a = str(v.address(addr))
        row = self.state.lb_backend(vip.id, a)
        if row is None:
            raise NotFound(f"no backend {a} of VIP {vip.addr}", field="address", value=addr)
        return row

    def vips_view(self) -> VipsView:
        """GET /v1/lb/vips, `xdpctl lb vip list --json`."""
        rows = self.state.lb_backends()
        return VipsView(revision=self.state.revision, vips=[
            vip_view(r, [b for b in rows if b.vip == r.id]) for r in self.state.lb_vips()])

    def backends_view(self) -> BackendsView:
        """GET /v1/lb/backends, `xdpctl lb backend list --json`; ``slots``
        from each VIP's table as the kernel holds it."""
        out = []
        for vip in self.state.lb_vips():
            rows = self.state.lb_backends(vip.id)
            ids, table = v.build(rows, vip.table_size)
            counts = [0] * len(ids)
            for i in table:
                counts[i] += 1
            slots = dict(zip(ids, counts))
            out += [backend_view(b, vip, slots.get(b.id, 0)) for b in rows]
        return BackendsView(revision=self.state.revision, backends=out)

    def stats_view(self) -> LbStatsView:
        """GET /v1/lb/stats, `xdpctl lb stats --json`: per-VIP and
        per-backend packets, bytes and new flows (zero before any write)."""
        vips, backends = self.state.lb_vips(), self.state.lb_backends()
        vc: dict = {}
        bc: dict = {}
        if all(os.path.exists(os.path.join(self.ctx.settings.shared_map_dir, m)) for m in SHARED_LB_MAPS):
            with LbKernel(self.ctx) as k:
                vc = k.counters("xc_lb_vip_cnt", [r.id for r in vips])
                bc = k.counters("xc_lb_be_cnt", [b.id for b in backends])
        by_id = {r.id: r for r in vips}
        return LbStatsView(
            revision=self.state.revision, hooks=hook_reasons(self.ctx),
            vips=[LbVipStatsView(vip=r.addr, proto=v.PROTO_NAMES[r.proto], port=r.port,
                                 **dict(zip(("packets", "bytes", "new_flows"), vc.get(r.id, (0, 0, 0)))))
                  for r in vips],
            backends=[LbBackendStatsView(backend=b.addr, vip=by_id[b.vip].addr,
                                         proto=v.PROTO_NAMES[by_id[b.vip].proto], port=by_id[b.vip].port,
                                         health=b.health, health_transitions=b.transitions,
                                         **dict(zip(("packets", "bytes", "new_flows"), bc.get(b.id, (0, 0, 0)))))
                      for b in backends])

    # ----------------------------------------------------------- kernel writes
    def _change(self, expected_revision: int | None, fn: Callable[[State, LbKernel], T]) -> tuple[int, T]:
        with self.ctx.writer() as st:
            st.check_revision(expected_revision)
            with LbKernel(self.ctx) as k:
                out = fn(st, k)
            return DropList(self.ctx).bump_revision(), out

    def _rebuild(self, st: State, k: LbKernel, vip: VipRow) -> None:
        """Write the VIP's table into a free region and switch to it."""
        ids, table = v.build(st.lb_backends(vip.id), vip.table_size)
        regions = k.regions((r.ring_base, r.ring_size) for r in st.lb_vips())
        base, size = k.write_table(regions, ids, table, None)
        k.switch(vip.addr, vip.proto, vip.port, vip.id, base, size, v.vip_flags(vip))
        st.lb_set_ring(vip.id, base, size)  # the old region is free from now on

    @staticmethod
    def _slot(k: LbKernel, b: BackendRow) -> None:
        k.write_backend(b.id, b.addr, b.mac, v.kernel_state(b), b.vip)

    def apply(self, st: State, k: LbKernel, vip: VipRow, old: BackendRow, new: BackendRow) -> None:
        """Switch a backend from ``old`` to ``new`` (rows already written):
        one that becomes usable is written before the table switch, one
        that stops being so after it, so no packet reaches a backend slot
        that cannot take it."""
        if v.usable(new):
            self._slot(k, new)
        if v.usable(old) != v.usable(new) or (v.usable(new) and old.weight != new.weight):
            self._rebuild(st, k, vip)
        if not v.usable(new):
            self._slot(k, new)

    # ----------------------------------------------------------- VIPs
    def add_vip(self, addr: str, proto: str, port: int, table_size: int | None = None,
                expected_revision: int | None = None, hash: str | None = None, **check) -> LbChangeView:
        """Add a VIP; ``hash`` its flow hash (l4, l3; default l4), ``check``
        its backends' health check (v.Check.changed's arguments; default:
        no check)."""
        key = v.VipKey.of(addr, proto, port)
        size = v.table_size(table_size)
        mode = v.hash_mode(hash)
        hc = v.Check().changed(**check)
        if self.state.lb_vip(key.addr, key.proto, key.port) is not None:
            raise Conflict(f"VIP {key.label()} exists", field="address", value=addr)
        vid = self.state.lb_free_id("lb_vips", VIP_IDS)
        if vid is None:
            raise CapacityError(f"no room for another VIP: at most {VIP_IDS - 1}", field="address", value=addr)
        row = VipRow(vid, key.family, key.addr, key.proto, key.port, size, 0, 0, time.time(), hc.kind, hc.port,
                     hc.interval, hc.timeout, hc.rise, hc.fall, mode)

        def change(st: State, k: LbKernel) -> None:
            st.lb_insert_vip(row)
            k.reset_counters("xc_lb_vip_cnt", vid)
            k.switch(row.addr, row.proto, row.port, row.id, 0, 0, v.vip_flags(row))

        rev, _ = self._change(expected_revision, change)
        return LbChangeView(revision=rev, vip=vip_view(row, []))

    def set_vip(self, addr: str, proto: str, port: int, expected_revision: int | None = None,
                hash: str | None = None, **check) -> LbChangeView:
        """Change a VIP's flow hash (``hash``: l4, l3) or its health check
        (``check``, ``check_port``, ``interval``, ``timeout``, ``rise``,
        ``fall``); None: unchanged. Unless only the hash is given, its
        backends' health starts again from unknown; a backend that was down
        by its check comes back into the table at once. A new hash applies
        to flows without a conn entry; established flows keep theirs."""
        vip = self._vip(v.VipKey.of(addr, proto, port), "address")
        mode = v.hash_mode(hash, vip.hash)
        hc = v.Check.of_row(vip).changed(**check)
        recheck = hash is None or any(x is not None for x in check.values())
        rows = self.state.lb_backends(vip.id)
        new_vip = vip._replace(check_kind=hc.kind, check_port=hc.port, interval=hc.interval, timeout=hc.timeout,
                               rise=hc.rise, fall=hc.fall, hash=mode)
        fresh = [b._replace(health="unknown", streak=0) for b in rows] if recheck else rows

        def change(st: State, k: LbKernel) -> None:
            st.lb_set_check(vip.id, hc.kind, hc.port, hc.interval, hc.timeout, hc.rise, hc.fall)
            st.lb_set_hash(vip.id, mode)
            if recheck:
                st.lb_reset_health(vip.id)
            for b in fresh:
                if v.usable(b):
                    self._slot(k, b)
            if [b.id for b in v.in_table(rows)] != [b.id for b in v.in_table(fresh)]:
                self._rebuild(st, k, new_vip)
            elif mode != vip.hash:
                k.switch(vip.addr, vip.proto, vip.port, vip.id, vip.ring_base, vip.ring_size, v.vip_flags(new_vip))
            for b in fresh:
                if not v.usable(b):
                    self._slot(k, b)

        rev, _ = self._change(expected_revision, change)
        return LbChangeView(revision=rev, vip=vip_view(new_vip, fresh))

    def delete_vip(self, addr: str, proto: str, port: int, expected_revision: int | None = None) -> LbChangeView:
        """Remove a VIP and its backends."""
        vip = self._vip(v.VipKey.of(addr, proto, port), "address")
        rows = self.state.lb_backends(vip.id)

        def change(st: State, k: LbKernel) -> None:
            st.lb_delete_vip(vip.id)
            k.delete_vip(vip.addr, vip.proto, vip.port)
            for b in rows:
                k.write_backend(b.id, None, None, 0)

        rev, _ = self._change(expected_revision, change)
        return LbChangeView(revision=rev, vip=vip_view(vip, rows), removed=True)

    # ----------------------------------------------------------- backends
    def add_backend(self, addr: str, vip: str, proto: str, port: int, weight: int = 1, mac: str | None = None,
                    expected_revision: int | None = None) -> LbChangeView:
        a = v.address(addr)
        w, m = v.weight(weight), v.mac(mac)
        row_vip = self._vip(v.VipKey.of(vip, proto, port, field="vip"), "vip")
        if a.version != row_vip.family:
            raise ValidationError(f"backend {a} is IPv{a.version}, VIP {row_vip.addr} is IPv{row_vip.family}",
                                  field="address", value=addr)
        rows = self.state.lb_backends(row_vip.id)
        if any(b.addr == str(a) for b in rows):
            raise Conflict(f"backend {a} of VIP {row_vip.addr} exists", field="address", value=addr)
        bid = self.state.lb_free_id("lb_backends", BACKEND_IDS)
        if bid is None:
            raise CapacityError(f"no room for another backend: at most {BACKEND_IDS - 1}", field="address",
                                value=addr)
        row = BackendRow(bid, row_vip.id, a.version, str(a), w, "active", m, time.time(), mac_given=int(m is not None))
        v.check_backends(rows + [row], row_vip.table_size)

        def change(st: State, k: LbKernel) -> None:
            st.lb_insert_backend(row)
            k.reset_counters("xc_lb_be_cnt", bid)
            self._slot(k, row)
            self._rebuild(st, k, row_vip)

        rev, _ = self._change(expected_revision, change)
        return LbChangeView(revision=rev, vip=vip_view(row_vip, rows + [row]), backend=backend_view(row, row_vip))

    def delete_backend(self, addr: str, vip: str, proto: str, port: int,
                       expected_revision: int | None = None) -> LbChangeView:
        row_vip = self._vip(v.VipKey.of(vip, proto, port, field="vip"), "vip")
        row = self._backend(row_vip, addr)
        rest = [b for b in self.state.lb_backends(row_vip.id) if b.id != row.id]
        v.check_backends(rest, row_vip.table_size)

        def change(st: State, k: LbKernel) -> None:
            st.lb_delete_backend(row.id)
            self._rebuild(st, k, row_vip)
            k.write_backend(row.id, None, None, 0)

        rev, _ = self._change(expected_revision, change)
        return LbChangeView(revision=rev, vip=vip_view(row_vip, rest), backend=backend_view(row, row_vip),
                            removed=True)

    def set_backend(self, addr: str, vip: str, proto: str, port: int, weight: int | None = None,
                    state: str | None = None, expected_revision: int | None = None) -> LbChangeView:
        """Change a backend's weight or state (active, draining, down)."""
        if (weight is None) == (state is None):
            raise ValidationError("give either a weight or a state", field="weight", value=weight)
        row_vip = self._vip(v.VipKey.of(vip, proto, port, field="vip"), "vip")
        old = self._backend(row_vip, addr)
        row = old._replace(weight=old.weight if weight is None else v.weight(weight),
                           state=old.state if state is None else v.state(state))
        rows = [row if b.id == row.id else b for b in self.state.lb_backends(row_vip.id)]
        v.check_backends(rows, row_vip.table_size)

        def change(st: State, k: LbKernel) -> None:
            st.lb_update_backend(row.id, row.weight, row.state)
            if row.state == "active":
                self._slot(k, row)
            self._rebuild(st, k, row_vip)
            if row.state != "active":
                self._slot(k, row)

        rev, _ = self._change(expected_revision, change)
        return LbChangeView(revision=rev, vip=vip_view(row_vip, rows), backend=backend_view(row, row_vip))

    # ----------------------------------------------------------- restore
    def sync(self) -> int:
        """Make the LB maps hold the database's VIPs, tables and backends;
        returns the VIPs written. Each table is rewritten in the region the
        database records (the same content), then its VIP value. Without
        VIPs and without LB maps, nothing is created."""
        pinned = all(os.path.exists(os.path.join(self.ctx.settings.shared_map_dir, m)) for m in SHARED_LB_MAPS)
        with self.ctx.writer() as st:
            vips = st.lb_vips()
            if not vips and not pinned:
                return 0
            with LbKernel(self.ctx) as k:
                rows = st.lb_backends()
                for b in rows:
                    self._slot(k, b)
                k.clear_backends({b.id for b in rows})
                regions = k.regions((r.ring_base, r.ring_size) for r in vips)
                for vip in vips:
                    ids, table = v.build([b for b in rows if b.vip == vip.id], vip.table_size)
                    base, size = k.write_table(regions, ids, table, (vip.ring_base, vip.ring_size))
                    k.switch(vip.addr, vip.proto, vip.port, vip.id, base, size, v.vip_flags(vip))
                    st.lb_set_ring(vip.id, base, size)
                keep = {tables.vip_key(r.addr, r.proto, r.port) for r in vips}
                for key in k.vip_keys():
                    if key not in keep:
                        k["xc_lb_vips"].delete(key)
            return len(vips)
