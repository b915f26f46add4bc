"""Stored rules as compiler input, and the compiler's RuleIndex over SQLite.

An incremental change (xdpctl.core.dlcompile.plan_add / plan_remove) asks the
index which rules cover or lie inside the prefix it writes; this index
answers from the rules table and from the lists' sorted key columns
(xdpctl.core.rules.listindex), so its cost does not grow with the lists.
"""

from __future__ import annotations

import time

from .. import dlcompile as dlc
from .clock import kernel_ns, wall_to_kernel_ns
from .listindex import ListsIndex
from .store import RuleRow, State
from .validate import addr_bytes


def row_to_rule(row: RuleRow, now_wall: float, now_kns: int) -> dlc.Rule:
    """A stored rule as the compiler takes it (deadline on the kernel clock)."""
    return match_to_rule(row.id, row.family, row.addr, row.plen, row.dir, row.action, row.proto, row.port,
                         row.anyaddr, row.expires, now_wall, now_kns)


def match_to_rule(rid: int, family: int, addr: bytes, plen: int, dir: int, action: int, proto: int, port: int,
                  anyaddr: int, expires: float | None, now_wall: float, now_kns: int) -> dlc.Rule:
    """A stored rule's match fields (those of a RuleRow) as a Rule."""
    exp = wall_to_kernel_ns(expires, now_wall, now_kns)
    if anyaddr:
        return dlc.Rule(rid, 0, 0, 0, dir, action, proto, port, exp)
    return dlc.Rule(rid, family, int.from_bytes(addr, "big"), plen, dir, action, proto or None, port or None, exp)


class SqlRuleIndex(dlc.RuleIndex):
    """RuleIndex over the rules table and the lists' key columns; close()
    it before the transaction ends.

    ``prepare(rule)`` loads, in one range query per length, every address
    rule of the rule's band that lies inside its prefix, plus its ancestors
    in the band; ``best_covering`` for keys of that rule is then answered
    from memory. A /0 expands to 65,536 keys: this keeps that at one query.
    """

    def __init__(self, state: State, now_wall: float | None = None, now_kns: int | None = None):
        """``now_wall``, ``now_kns``: the time pair deadlines are converted
        with (the change's own, so they compare equal where their wall
        times do); read now when not given."""
        self.state = state
        self.now_wall = time.time() if now_wall is None else now_wall
        self.now_kns = kernel_ns() if now_kns is None else now_kns
        self.lists = ListsIndex(state, self.now_wall, self.now_kns)
        self.cache: dict[tuple[int, int, int, int], dlc.Rule] = {}
        self.scope: tuple | None = None  # (family, dir, net, plen, lo, hi) the cache answers for

    def close(self) -> None:
        self.lists.close()

    def prepare(self, rule: dlc.Rule) -> None:
        self.cache.clear()
        self.scope = None
        if rule.proto is not None or rule.family == 0:
            return
        band = dlc.band_of(rule.family, rule.plen)
        if band is None:
            return
        bits = 32 if rule.family == 4 else 128
        last = rule.net | ((1 << (bits - rule.plen)) - 1)
        rows = self.state.address_rules_in(rule.family, rule.dir, (rule.plen, band.hi),
                                           (addr_bytes(rule.family, rule.net), addr_bytes(rule.family, last)))
        full = (1 << bits) - 1
        ancestors = {p: addr_bytes(rule.family, rule.net & (full ^ ((1 << (bits - p)) - 1)))
                     for p in range(band.lo, rule.plen)}
        if ancestors:  # one query for every (length, network) pair; the ancestors are the matching pairs
            rows += [row for row in self.state.address_rules_at(rule.family, rule.dir, list(ancestors),
                                                                 sorted(set(ancestors.values())))
                     if ancestors[row.plen] == row.addr]
        for row in rows:
            r = row_to_rule(row, self.now_wall, self.now_kns)
            self.cache[(r.family, r.dir, r.plen, r.net)] = r
        self.scope = (rule.family, rule.dir, rule.net, rule.plen, band.lo, band.hi)

    def _in_scope(self, family, dir, addr, lo_plen, hi_plen) -> bool:
        if self.scope is None:
            return False
        f, d, net, plen, blo, bhi = self.scope
        bits = 32 if f == 4 else 128
        return (f == family and d == dir and blo <= lo_plen and hi_plen <= bhi
                and (addr >> (bits - plen)) == (net >> (bits - plen)))

    def rules_within(self, family, dir, net, plen, lo_plen, hi_plen, exclude_id):
        """From the prepared cache, when the question is inside its scope."""
        if not self._in_scope(family, dir, net, lo_plen, hi_plen):
            return None
        bits = 32 if family == 4 else 128
        out = {(p, n): r for (f, d, p, n), r in self.cache.items()
               if f == family and d == dir and lo_plen <= p <= hi_plen and r.id != exclude_id
               and (n >> (bits - plen)) == (net >> (bits - plen))}
        for m in self.lists.within(family, dir, net, plen, lo_plen, hi_plen):
            if m.id != exclude_id:
                out.setdefault((m.plen, m.net), m)  # a rule wins over a member with its match
        return list(out.values())

    def best_covering(self, family, dir, addr, lo_plen, hi_plen, exclude_id):
        bits = 32 if family == 4 else 128
        full = (1 << bits) - 1
        cached = self._in_scope(family, dir, addr, lo_plen, hi_plen)
        for p in range(hi_plen, lo_plen - 1, -1):
            net = addr & (full ^ ((1 << (bits - p)) - 1))
            if cached:
                r = self.cache.get((family, dir, p, net))
            else:
                row = self.state.address_rule(family, dir, p, addr_bytes(family, net))
                r = row_to_rule(row, self.now_wall, self.now_kns) if row is not None else None
            if r is not None and r.id != exclude_id:
                return r
            lr = self.lists.get(family, dir, p, net)
            if lr is not None and lr.id != exclude_id:
                return lr
        return None
