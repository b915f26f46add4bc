"""The load balancer's VIPs and backends in etcd, with LoadBalancer's
method names and views.

    PREFIX/set/lb/vips/<addr>-<proto>-<port>           {address, proto, port, table_size, created, check, hash}
    PREFIX/set/lb/backends/<addr>-<proto>-<port>/<ip>  {address, weight, state, mac, created}

Each change is one transaction conditional on the cluster revision, checked
as the local LoadBalancer checks it (addresses, table sizes, weights, a
table the backends can fill). Agents apply the VIPs through LoadBalancer
(xdpctl.core.fleet.agent). Ids in the answers are positions in the fleet's
set: each host numbers its kernel's VIPs and backends itself. Counters
(``stats_view``) are this host's, read locally.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

from ..context import Context
from ..errors import NotFound, ValidationError
from ..lb import validate as v
from ..lb.service import LoadBalancer, backend_view, vip_view
from ..rules.store import BackendRow, VipRow
from ..views import BackendsView, LbChangeView, LbStatsView, VipsView
from .kv import Etcd, KeyValue
from .layout import Layout
from .store import FleetStore, Need, delete, put


def vip_name(key: v.VipKey) -> str:
    return f"{key.addr}-{v.PROTO_NAMES[key.proto]}-{key.port}"


@dataclass
class LbDesired:
    """VIPs (by key name) and their backends, as one revision's keys hold them."""

    vips: dict[str, VipRow] = field(default_factory=dict)
    backends: dict[str, list[BackendRow]] = field(default_factory=dict)

    @classmethod
    def of(cls, layout: Layout, kvs: list[KeyValue]) -> "LbDesired":
        d = cls()
        found: list[tuple[str, dict]] = []
        for kv in sorted(kvs, key=lambda kv: kv.key):
            p = layout.set_parts(kv.key)
            if p[:2] == ["lb", "vips"]:
                x = json.loads(kv.value)
                key = v.VipKey.of(x["address"], x["proto"], x["port"])
                hc = v.Check.of(**x.get("check", {}))
                d.vips[p[2]] = VipRow(len(d.vips) + 1, key.family, key.addr, key.proto, key.port,
                                      x["table_size"], 0, 0, x.get("created", 0.0), hc.kind, hc.port, hc.interval,
                                      hc.timeout, hc.rise, hc.fall, v.hash_mode(x.get("hash")))
            elif p[:2] == ["lb", "backends"]:
                found.append((p[2], json.loads(kv.value)))
        n = 0
        for vname, x in found:
            if vname in d.vips:
                n += 1
                d.backends.setdefault(vname, []).append(BackendRow(
                    n, d.vips[vname].id, d.vips[vname].family, x["address"], x["weight"], x["state"], x["mac"],
                    x.get("created", 0.0)))
        return d

    def rows(self, name: str) -> list[BackendRow]:
        return self.backends.get(name, [])


def _vip_value(r: VipRow) -> str:
    return json.dumps({"address": r.addr, "proto": v.PROTO_NAMES[r.proto], "port": r.port,
                       "table_size": r.table_size, "created": r.created,
                       "check": dataclasses.asdict(v.Check.of_row(r)), "hash": r.hash}, sort_keys=True)


def _backend_value(b: BackendRow) -> str:
    return json.dumps({"address": b.addr, "weight": b.weight, "state": b.state, "mac": b.mac, "created": b.created},
                      sort_keys=True)


class FleetLoadBalancer(FleetStore):
    """The fleet's load balancer: LoadBalancer's changes and reads, kept in etcd."""

    def __init__(self, etcd: Etcd, prefix: str, ctx: Context):
        super().__init__(etcd, prefix)
        self.ctx = ctx

    def desired(self) -> tuple[int, LbDesired]:
        snap = self.snapshot(self.layout.lb)
        return snap.revision, LbDesired.of(self.layout, snap.kvs)

    def _vip(self, d: LbDesired, key: v.VipKey, field_name: str) -> tuple[str, VipRow]:
        name = vip_name(key)
        if name not in d.vips:
            raise NotFound(f"the fleet has no VIP {key.label()}", field=field_name, value=key.addr)
        return name, d.vips[name]

    def _backend(self, d: LbDesired, vname: str, addr: str) -> BackendRow:
        a = str(v.address(addr))
        for b in d.rows(vname):
            if b.addr == a:
                return b
        raise NotFound(f"the fleet has no backend {a} of VIP {d.vips[vname].addr}", field="address", value=addr)

    # ----------------------------------------------------------- reads
    def vips_view(self) -> VipsView:
        rev, d = self.desired()
        return VipsView(revision=rev, vips=[vip_view(r, d.rows(n)) for n, r in d.vips.items()])

    def backends_view(self) -> BackendsView:
        rev, d = self.desired()
        out = []
        for name, vip in d.vips.items():
            rows = d.rows(name)
            ids, table = v.build(rows, vip.table_size)
            slots = {i: table.count(k) for k, i in enumerate(ids)}
            out += [backend_view(b, vip, slots.get(b.id, 0)) for b in rows]
        return BackendsView(revision=rev, backends=out)

    def stats_view(self) -> LbStatsView:
        """This host's counters (each host counts its own traffic)."""
        return LoadBalancer(self.ctx).stats_view()

    # ----------------------------------------------------------- VIPs
    def add_vip(self, addr: str, proto: str, port: int, table_size: int | None = None,
                expected_revision: int | None = None, hash: str | None = None, **check) -> LbChangeView:
        key = v.VipKey.of(addr, proto, port)
        size = v.table_size(table_size)
        mode = v.hash_mode(hash)
        hc = v.Check().changed(**check)
        row = VipRow(0, key.family, key.addr, key.proto, key.port, size, 0, 0, time.time(), hc.kind, hc.port,
                     hc.interval, hc.timeout, hc.rise, hc.fall, mode)
        k = self.layout.vip(vip_name(key))
        rev = self.commit([put(k, _vip_value(row))], expected_revision,
                          [Need(k, f"VIP {key.label()}", "address", addr, present=False)])
        return LbChangeView(revision=rev, vip=vip_view(row, []))

    def set_vip(self, addr: str, proto: str, port: int, expected_revision: int | None = None,
                hash: str | None = None, **check) -> LbChangeView:
        """A VIP's new flow hash or health check (LoadBalancer.set_vip's
        arguments)."""
        key = v.VipKey.of(addr, proto, port)
        _rev, d = self.desired()
        name, row = self._vip(d, key, "address")
        mode = v.hash_mode(hash, row.hash)
        hc = v.Check.of_row(row).changed(**check)
        row = row._replace(check_kind=hc.kind, check_port=hc.port, interval=hc.interval, timeout=hc.timeout,
                           rise=hc.rise, fall=hc.fall, hash=mode)
        k = self.layout.vip(name)
        rev = self.commit([put(k, _vip_value(row))], expected_revision,
                          [Need(k, f"VIP {key.label()}", "address", addr)])
        return LbChangeView(revision=rev, vip=vip_view(row, d.rows(name)))

    def delete_vip(self, addr: str, proto: str, port: int, expected_revision: int | None = None) -> LbChangeView:
        key = v.VipKey.of(addr, proto, port)
        _rev, d = self.desired()
        name, row = self._vip(d, key, "address")
        rev = self.commit([delete(self.layout.vip(name)), delete(self.layout.backends(name), prefix=True)],
                          expected_revision, [Need(self.layout.vip(name), f"VIP {key.label()}", "address", addr)])
        return LbChangeView(revision=rev, vip=vip_view(row, d.rows(name)), removed=True)

    # ----------------------------------------------------------- backends
    def _write_backend(self, d: LbDesired, vname: str, row: BackendRow, rows: list[BackendRow],
                       expected_revision: int | None, new: bool) -> int:
        vip = d.vips[vname]
        v.check_backends(rows, vip.table_size)
        k = self.layout.backend(vname, row.addr)
        needs = [Need(self.layout.vip(vname), f"VIP {vip.addr}", "vip", vip.addr),
                 Need(k, f"backend {row.addr} of VIP {vip.addr}", "address", row.addr, present=not new)]
        return self.commit([put(k, _backend_value(row))], expected_revision, needs)

    def add_backend(self, addr: str, vip: str, proto: str, port: int, weight: int = 1, mac: str | None = None,
                    expected_revision: int | None = None) -> LbChangeView:
        a = v.address(addr)
        w, m = v.weight(weight), v.mac(mac)
        _rev, d = self.desired()
        vname, row_vip = self._vip(d, v.VipKey.of(vip, proto, port, field="vip"), "vip")
        if a.version != row_vip.family:
            raise ValidationError(f"backend {a} is IPv{a.version}, VIP {row_vip.addr} is IPv{row_vip.family}",
                                  field="address", value=addr)
        rows = d.rows(vname)
        row = BackendRow(len(rows) + 1, row_vip.id, a.version, str(a), w, "active", m, time.time())
        rev = self._write_backend(d, vname, row, rows + [row], expected_revision, new=True)
        return LbChangeView(revision=rev, vip=vip_view(row_vip, rows + [row]), backend=backend_view(row, row_vip))

    def delete_backend(self, addr: str, vip: str, proto: str, port: int,
                       expected_revision: int | None = None) -> LbChangeView:
        _rev, d = self.desired()
        vname, row_vip = self._vip(d, v.VipKey.of(vip, proto, port, field="vip"), "vip")
        row = self._backend(d, vname, addr)
        rest = [b for b in d.rows(vname) if b.id != row.id]
        v.check_backends(rest, row_vip.table_size)
        k = self.layout.backend(vname, row.addr)
        rev = self.commit([delete(k)], expected_revision, [Need(k, f"backend {row.addr}", "address", addr)])
        return LbChangeView(revision=rev, vip=vip_view(row_vip, rest), backend=backend_view(row, row_vip),
                            removed=True)

    def set_backend(self, addr: str, vip: str, proto: str, port: int, weight: int | None = None,
                    state: str | None = None, expected_revision: int | None = None) -> LbChangeView:
        """A backend with a new weight or a new state (one of the two)."""
        _rev, d = self.desired()
        vname, row_vip = self._vip(d, v.VipKey.of(vip, proto, port, field="vip"), "vip")
        row = _changed(self._backend(d, vname, addr), weight, state)
        rows = [row if b.id == row.id else b for b in d.rows(vname)]
        rev = self._write_backend(d, vname, row, rows, expected_revision, new=False)
        return LbChangeView(revision=rev, vip=vip_view(row_vip, rows), backend=backend_view(row, row_vip))


def _changed(old: BackendRow, weight: int | None, state: str | None) -> BackendRow:
    if (weight is None) == (state is None):
        raise ValidationError("give either a weight or a state", field="weight", value=weight)
    if weight is not None:
        return old._replace(weight=v.weight(weight))
    return old._replace(state=v.state(state))
