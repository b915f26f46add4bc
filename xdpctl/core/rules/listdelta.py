"""A list change written as a delta, whatever the list's size.

A change of more than BULK_THRESHOLD rules or list members is written as
a whole image: every rule compiled, every map of the standby set read and
compared. For a list that costs as much as everything loaded beside it: a
10,000-member list refreshed beside a million other members cost as much as
the million. Most members of a big list are hosts (IPv4 /32, IPv6 /128)
that nothing else touches; such a member owns exactly one key of its band,
with its own value, and is written or deleted as it is. A host member is
*alone* when no rule and no other list of its direction has its prefix,
and (IPv4) no rule or member of its band's shorter lengths (/25../31, its
own list's included) covers it. Every other member (shorter prefixes, hosts
that something else touches) goes through the planner's index
(dlcompile.plan_add / plan_remove), as a small change does.

Found with array operations over the lists' sorted key columns
(listindex) and one query of the rules table per family: no compile, no
read of the kernel's maps.
"""

from __future__ import annotations

from typing import NamedTuple

from ... import abi
from .. import dlcompile as dlc
from .clock import wall_to_kernel_ns
from .listindex import ADDR_BYTES
from .store import State

V4_REC = [("p", "u1"), ("n", ">u4"), ("i", ">u4")]
V6_REC = [("p", "u1"), ("n", "V16"), ("i", ">u4")]
SHORT4 = range(25, 32)  # the shorter lengths of the IPv4 /32 band (xc_v4_l32 holds /25../32)
HOST = {4: 32, 6: 128}
BAND = {4: "xc_v4_l32", 6: "xc_v6_l128"}


class Version(NamedTuple):
    """One version of the list: its sorted key records (listindex) and how
    its members become rules."""

    keys: tuple  # (IPv4 records, IPv6 records), as listindex.sorted_keys makes them
    base: int    # rule id of position 0
    dir: int
    action: int
    expires_ns: int


class Split(NamedTuple):
    """A list change taken apart: the plan of its alone hosts, and its
    other members as rules (for the planner's index)."""

    plan: dlc.Plan
    removed: list   # Rule: old members that are not alone
    added: list     # Rule: new members that are not alone
    alone: int      # host members (old and new) written directly


def _records(blob, family: int):
    import numpy as np

    return np.frombuffer(bytes(blob), V4_REC if family == 4 else V6_REC)


def _span(rec, lo: int, hi: int):
    """The records with lo <= length <= hi (they are sorted by length)."""
    p = rec["p"]
    return rec[int(p.searchsorted(lo, "left")):int(p.searchsorted(hi, "right"))]


def _in_sorted(q, sorted_nets):
    """Which of q are in a sorted array."""
    import numpy as np

    if not len(sorted_nets) or not len(q):
        return np.zeros(len(q), bool)
    i = np.searchsorted(sorted_nets, q)
    i[i >= len(sorted_nets)] = 0
    return sorted_nets[i] == q


class Others:
    """What else holds keys where a list's hosts go, per family: the host
    prefixes (sorted arrays, one per source) and the IPv4 networks of
    lengths /25../31, of every address rule and every other list of one
    direction."""

    def __init__(self, state: State, name: str, dir: int):
        import numpy as np

        self.hosts: dict[int, list] = {4: [], 6: []}
        self.short: dict[int, list] = {p: [] for p in SHORT4}
        for fam, lo in ((4, SHORT4.start), (6, HOST[6])):
            width = ADDR_BYTES[fam]
            rows = state.address_rules_in(fam, dir, (lo, HOST[fam]), (bytes(width), b"\xff" * width))
            for p in sorted({r.plen for r in rows}):
                raw = b"".join(sorted(r.addr for r in rows if r.plen == p))
                nets = np.frombuffer(raw, ">u4" if fam == 4 else "V16")
                (self.hosts[fam] if p == HOST[fam] else self.short[p]).append(nets)
        for lname, ldir, _action, _base, _expires in state.list_heads():
            if lname == name or ldir != dir:
                continue
            self.add_list(_stored_keys(state, lname))

    def add_list(self, keys: tuple) -> None:
        """A list's key records (listindex.sorted_keys) as one more source."""
        r4, r6 = _records(keys[0], 4), _records(keys[1], 6)
        self.hosts[4].append(_span(r4, 32, 32)["n"])
        self.hosts[6].append(_span(r6, 128, 128)["n"])
        for p in SHORT4:
            nets = _span(r4, p, p)["n"]
            if len(nets):
                self.short[p].append(nets)

    def alone(self, family: int, nets, own_short: dict | None = None):
        """Which of these host networks nothing else touches. ``own_short``:
        the list's own /25../31 networks (length -> sorted array)."""
        import numpy as np

        hit = np.zeros(len(nets), bool)
        for src in self.hosts[family]:
            hit |= _in_sorted(nets, src)
        if family == 4:
            q = nets.astype(np.uint32)
            for p in SHORT4:
                srcs = self.short[p] + ([own_short[p]] if own_short and len(own_short.get(p, ())) else [])
                if srcs:
                    masked = q & np.uint32((0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF)
                    for src in srcs:
                        hit |= _in_sorted(masked, src.astype(np.uint32))
        return ~hit


def _stored_keys(state: State, name: str) -> tuple:
    from .listindex import sorted_keys

    blobs = state.open_list_keys(name)
    if blobs is None:  # stored before the key columns existed
        return sorted_keys(state.list_row(name).entries)
    out = []
    for b in blobs:
        if isinstance(b, bytes):
            out.append(b)
        else:
            out.append(b.read())
            b.close()
    return tuple(out)


def stored_version(state: State, name: str, now_wall: float, now_kns: int) -> Version | None:
    """The stored list of this name as a Version (None: no such list), its
    deadline converted with the change's clock pair."""
    for lname, d, action, base, expires in state.list_heads():
        if lname == name:
            return Version(_stored_keys(state, name), base, d, action, wall_to_kernel_ns(expires, now_wall, now_kns))
    return None


def split(state: State, name: str, old: Version | None, new: Version | None, limit: int) -> Split | None:
    """Take a change of list ``name`` from ``old`` to ``new`` (either None:
    created, removed) apart, against everything else stored (the list
    itself excluded: call before storing the change). None when more than
    ``limit`` members are not alone hosts (a whole image is cheaper)."""
    import numpy as np

    dirs = {v.dir for v in (old, new) if v is not None}
    others = {d: Others(state, name, d) for d in dirs}
    plan = dlc.Plan()
    removed: list[dlc.Rule] = []
    added: list[dlc.Rule] = []
    alone = 0
    for version, out in ((old, removed), (new, added)):
        if version is None:
            continue
        for fam, blob in ((4, version.keys[0]), (6, version.keys[1])):
            rec = _records(blob, fam)
            if not len(rec):
                continue
            hosts = _span(rec, HOST[fam], HOST[fam])
            own = {p: _span(rec, p, p)["n"].astype(np.uint32) for p in SHORT4} if fam == 4 else None
            ok = others[version.dir].alone(fam, hosts["n"], own)
            rest = len(rec) - int(ok.sum())
            if len(removed) + len(added) + rest > limit:
                return None
            for r in _rules(rec[:len(rec) - len(hosts)], fam, version):
                out.append(r)
            for r in _rules(hosts[~ok], fam, version):
                out.append(r)
            mine = hosts[ok]
            alone += len(mine)
            keys = _keys(fam, version.dir, mine["n"])
            if out is removed:
                for k in keys:
                    plan.delete(BAND[fam], k)
            else:
                ids = (mine["i"].astype(np.int64) + version.base).astype(np.uint32)
                vals = dlc._vals_col(ids, bytes([version.action]) * len(mine), HOST[fam],
                                     np.full(len(mine), version.expires_ns, np.uint64))
                vs = abi.RULE_VAL.size
                for j, k in enumerate(keys):
                    plan.put(BAND[fam], k, vals[j * vs:(j + 1) * vs])
    return Split(plan, removed, added, alone)


def _keys(family: int, dir: int, nets) -> list[bytes]:
    """Band keys (xc_key4 / xc_key6) of host networks."""
    import numpy as np

    rec = np.empty(len(nets), [("d", "=u4"), ("n", ">u4" if family == 4 else "V16")])
    rec["d"], rec["n"] = dir, nets
    raw, w = rec.tobytes(), rec.itemsize
    return [raw[o:o + w] for o in range(0, len(raw), w)]


def _rules(rec, family: int, v: Version) -> list[dlc.Rule]:
    if family == 4:
        nets = rec["n"].astype(int).tolist()
    else:
        nets = [int.from_bytes(bytes(n), "big") for n in rec["n"]]
    return [dlc.Rule(v.base + int(i), family, n, int(p), v.dir, v.action, None, None, v.expires_ns)
            for p, n, i in zip(rec["p"].tolist(), nets, rec["i"].tolist())]
