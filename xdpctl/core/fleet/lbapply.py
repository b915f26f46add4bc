"""Make this host's load balancer equal to the fleet's (the agent's part).

The desired VIPs and backends of one cluster revision are compared with the
local ones and the differences applied through LoadBalancer, each a local
change that rebuilds and switches that VIP's Maglev table: VIPs gone (or
with another table size) are removed, new ones added, then each VIP's
backends removed, added or changed (weight, state, a given MAC; a MAC
the host resolved itself stays), and the flow hash and the health check
set.
"""

from __future__ import annotations

from ..context import Context
from ..lb import validate as v
from ..lb.service import LoadBalancer
from ..rules.store import BackendRow, VipRow
from .lbset import LbDesired


def _key(r: VipRow) -> tuple:
    return r.addr, v.PROTO_NAMES[r.proto], r.port


def apply_lb(ctx: Context, want: LbDesired) -> int:
    """Apply ``want``; the number of local changes made."""
    lb, st = LoadBalancer(ctx), ctx.state
    wanted = {_key(r): (name, r) for name, r in want.vips.items()}
    changes = 0
    for r in st.lb_vips():
        w = wanted.get(_key(r))
        if w is None or w[1].table_size != r.table_size:
            lb.delete_vip(*_key(r))
            changes += 1
    have = {_key(r): r for r in st.lb_vips()}
    for key, (name, r) in wanted.items():
        if key not in have:
            lb.add_vip(*key, r.table_size, hash=r.hash)
            changes += 1
        if st.lb_vip(r.addr, r.proto, r.port).hash != r.hash:
            lb.set_vip(*key, hash=r.hash)
            changes += 1
        hc = v.Check.of_row(r)
        if v.Check.of_row(st.lb_vip(r.addr, r.proto, r.port)) != hc:
            lb.set_vip(*key, check=hc.kind, check_port=hc.port, interval=hc.interval, timeout=hc.timeout,
                       rise=hc.rise, fall=hc.fall)
            changes += 1
        changes += _backends(lb, st.lb_vip(r.addr, r.proto, r.port), want.rows(name))
    return changes


def _backends(lb: LoadBalancer, vip: VipRow, want: list[BackendRow]) -> int:
    key = _key(vip)
    have = {b.addr: b for b in lb.state.lb_backends(vip.id)}
    wanted = {b.addr: b for b in want}
    changes = 0
    for addr, b in have.items():
        if addr not in wanted or wanted[addr].mac != (b.mac if b.mac_given else None):
            lb.delete_backend(addr, *key)
            changes += 1
    have = {b.addr: b for b in lb.state.lb_backends(vip.id)}
    for addr, w in wanted.items():
        b = have.get(addr)
        if b is None:
            lb.add_backend(addr, *key, weight=w.weight, mac=w.mac)
            changes += 1
            b = lb.state.lb_backend(vip.id, addr)
        if b.weight != w.weight:
            lb.set_backend(addr, *key, weight=w.weight)
            changes += 1
        if b.state != w.state:
            lb.set_backend(addr, *key, state=w.state)
            changes += 1
    return changes
