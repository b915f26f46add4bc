"""Which rule decides: the drop list's verdict for one address, from the
desired state, the way the data path reaches it (docs/lookup.md).

The order is bpf/include/droplist.h's: a management prefix covering the
source (or destination) passes; else the longest source match s, the longest
destination match d, the L4 matches of each side; the first ALLOW among
them passes, else the first DENY drops, else the policy. An IPv4-mapped
IPv6 address is looked up as IPv4. Within one side the longest prefix wins;
at the same prefix an individually managed rule beats a list member, an
earlier list (by name) a later one.

Nothing scans the whole rule set: individual rules are asked per prefix
length through the rules table's unique index; a list's members are
searched in their packed blob (xdpctl.core.rules.members) with bytes.find
on the prefix lengths the list holds, so a million members cost a few
memory searches, not a Python loop. Rules and lists past their TTL count
as gone (the reaper removes them).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from ... import abi
from .. import prefixes as px
from ..counters import REASON_NAMES
from ..errors import ValidationError
from ..views import LookupView, RuleView
from .service import DropList, list_member_view, rule_view
from .store import ListRow, RuleRow, State
from .tables import rule_stats
from .validate import _parse, addr_bytes

PORT_PROTOS = (6, 17, 132)  # protocols whose packets carry ports (parse.h)
_HDR = struct.Struct("=II")  # the members blob's header (n4, n6)
_MAPPED = 0xFFFF << 32


@dataclass(frozen=True)
class Addr:
    """An address as the data path looks it up (IPv4-mapped -> IPv4)."""

    family: int
    addr: int

    @classmethod
    def of(cls, family: int, addr: int) -> "Addr":
        if family == 6 and addr >> 32 == 0xFFFF:
            return cls(4, addr & 0xFFFFFFFF)
        return cls(family, addr)

    @property
    def bits(self) -> int:
        return 32 if self.family == 4 else 128

    def net(self, plen: int) -> int:
        return self.addr & (((1 << self.bits) - 1) ^ ((1 << (self.bits - plen)) - 1))

    def as_v6(self) -> int:
        """The address in xc_mgmt's key space (IPv4 as ::ffff:a.b.c.d)."""
        return self.addr | _MAPPED if self.family == 4 else self.addr


@dataclass(frozen=True)
class Match:
    """A rule or list member that matched: its prefix length (0 for an L4
    rule on any address), action and view."""

    plen: int
    action: int
    view: RuleView


def _alive(expires: float | None, now: float) -> bool:
    return expires is None or expires > now


def _covers(row: RuleRow, a: Addr) -> bool:
    if row.anyaddr:
        return True
    return row.family == a.family and a.net(row.plen).to_bytes(a.bits // 8, "big") == row.addr


def _member_plen(entries: bytes, a: Addr) -> tuple[int, int] | None:
    """(prefix length, index in rule-id order) of the longest member of a
    packed list that covers ``a``, or None."""
    n4, n6 = _HDR.unpack_from(entries)
    if a.family == 4:
        plens, n, width = _HDR.size, n4, 4
        first = 0
    else:
        plens, n, width = _HDR.size + 5 * n4, n6, 16
        first = n4
    nets = plens + n
    end = nets + n * width
    for plen in range(a.bits, -1, -1):
        if entries.find(bytes((plen,)), plens, nets) < 0:
            continue  # the list holds no member of this length
        pat = a.net(plen).to_bytes(width, "big")
        pos = entries.find(pat, nets, end)
        while pos >= 0:
            i, off = divmod(pos - nets, width)
            if off == 0 and entries[plens + i] == plen:
                return plen, first + i
            pos = entries.find(pat, pos + 1, end)
    return None


class Lookup:
    """The drop list's decision over the stored rule set at one moment."""

    def __init__(self, drop_list: DropList):
        self.dl = drop_list
        self.state: State = drop_list.state
        self.now = time.time()
        self.lists = [r for r in self.state.list_rows() if _alive(r.expires, self.now)]
        self.dst_lookups = self.state.has_dst_rules()

    def _stats(self, rid: int) -> dict:
        return rule_stats(self.dl.ctx, [rid])

    def _rule(self, row: RuleRow) -> Match:
        return Match(0 if row.anyaddr else row.plen, row.action, rule_view(row, self._stats(row.id)))

    def _member(self, row: ListRow, plen: int, index: int, a: Addr) -> Match:
        pfx = px.Prefix(a.family, a.net(plen), plen)
        rid = row.id_base + index
        return Match(plen, row.action, list_member_view(row, rid, pfx, self._stats(rid)))

    def address(self, d: int, a: Addr) -> Match | None:
        """Longest address rule or list member of direction ``d`` covering ``a``."""
        best: tuple[int, RuleRow] | None = None
        for plen in range(a.bits, -1, -1):
            row = self.state.address_rule(a.family, d, plen, addr_bytes(a.family, a.net(plen)))
            if row is not None and _alive(row.expires, self.now):
                best = (plen, row)
                break
        found = self._rule(best[1]) if best else None
        for row in self.lists:
            if row.dir != d or not row.count:
                continue
            hit = _member_plen(row.entries, a)
            if hit is not None and (found is None or hit[0] > found.plen):
                found = self._member(row, hit[0], hit[1], a)
        return found

    def port(self, d: int, a: Addr, proto: int, port: int) -> Match | None:
        """Longest L4 rule of direction ``d`` for (proto, port) covering ``a``."""
        rows = [r for r in self.state.l4_rules(d, proto, port, a.family)
                if _alive(r.expires, self.now) and _covers(r, a)]
        if not rows:
            return None
        return self._rule(max(rows, key=lambda r: 0 if r.anyaddr else r.plen))

    def mgmt(self, d: int, a: Addr) -> Match | None:
        """Longest management prefix of direction ``d`` covering ``a``
        (IPv4 and IPv6 in one key space, as in xc_mgmt)."""
        best = None
        for row in self.state.mgmt_rule_rows():
            if row.dir != d or not _alive(row.expires, self.now):
                continue
            plen = row.plen + 96 if row.family == 4 else row.plen
            net = int.from_bytes(row.addr, "big") | (_MAPPED if row.family == 4 else 0)
            if Addr(6, a.as_v6()).net(plen) == net and (best is None or plen > best[0]):
                best = (plen, row)
        return self._rule(best[1]) if best else None

    def decide(self, src: Addr | None, dst: Addr | None, proto: int | None,
               port: int | None) -> tuple[abi.DlReason, Match | None, str]:
        """(reason, deciding match or None, what decided) for an IP packet
        from ``src`` to ``dst``; a side given as None matches no rule."""
        sides = [(0, src)] + ([(1, dst)] if self.dst_lookups else [])
        for d, a in sides:
            m = self.mgmt(d, a) if a is not None else None
            if m is not None:
                return abi.DlReason.PASS_ALLOW, m, "mgmt"
        found = [(self.address(0, src) if src else None, abi.DlReason.DROP_SRC, "src"),
                 (self.address(1, dst) if dst and self.dst_lookups else None, abi.DlReason.DROP_DST, "dst")]
        if proto in PORT_PROTOS and port is not None:
            found += [(self.port(d, a, proto, port) if a else None, abi.DlReason.DROP_PORT, f"port_{side}")
                      for d, a, side in ((0, src, "src"), (1, dst, "dst"))]
        for m, _reason, what in found:
            if m is not None and m.action == abi.Action.ALLOW:
                return abi.DlReason.PASS_ALLOW, m, what
        for m, reason, what in found:
            if m is not None and m.action == abi.Action.DENY:
                return reason, m, what
        if self.dl.policy() == "deny":
            return abi.DlReason.DROP_POLICY, None, "policy"
        return abi.DlReason.PASS_NOMATCH, None, "policy"


def _l4(proto: str | int | None, port: str | int | None) -> tuple[int | None, int | None]:
    p = _parse("proto", proto, px.parse_proto) if proto not in (None, "") else None
    pt = _parse("port", port, px.parse_port) if port not in (None, "") else None
    if pt is not None and p not in PORT_PROTOS:
        raise ValidationError("{field:port} needs {field:proto} tcp, udp or sctp", field="port", value=port,
                              hint="add {field:proto}")
    return p, pt


def lookup(drop_list: DropList, address: str, dst: bool = False, proto: str | int | None = None,
           port: str | int | None = None) -> LookupView:
    """GET /v1/lookup, `xdpctl lookup`: the verdict of the drop list for a
    packet with ``address`` as its source (or destination with ``dst``),
    and the rule or list member that decides it. The other address matches
    no rule."""
    family, addr = _parse("address", address, px.parse_address)
    p, pt = _l4(proto, port)
    a = Addr.of(family, addr)
    lk = Lookup(drop_list)
    reason, m, what = lk.decide(None if dst else a, a if dst else None, p, pt)
    drop = reason in (abi.DlReason.DROP_SRC, abi.DlReason.DROP_DST, abi.DlReason.DROP_PORT,
                      abi.DlReason.DROP_POLICY)
    return LookupView(address=px.format_address(family, addr), dir="dst" if dst else "src",
                      proto=px.proto_name(p) if p else None, port=pt, revision=drop_list.revision(),
                      policy=drop_list.policy(), verdict="drop" if drop else "pass",
                      reason=REASON_NAMES[reason], decided_by=what, rule=m.view if m else None)
