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
read of the kernel's maps. The standby set holds exactly the old version's
alone hosts' entries, so their writes come as a whole image's diff would
give them (Split.columns, written in batches); only an old version with a
deadline (kernel values no change reproduces to the byte) has them planned
one by one too (Split.plan).
"""

from __future__ import annotations

import functools
from itertools import groupby
from operator import itemgetter
from typing import NamedTuple

from ... import abi
from .. import dlcompile as dlc
from .. import prefixes as px
from .clock import wall_to_kernel_ns
from .listindex import open_keys, records
from .store import State

_HOST_BAND = {4: dlc.band_of(4, 32), 6: dlc.band_of(6, 128)}  # where a host goes (the IPv6 one holds /128 only)
HOST = {f: b.hi for f, b in _HOST_BAND.items()}
BAND = {f: b.map for f, b in _HOST_BAND.items()}
KEY_SIZE = {f: dlc.KEY_SIZE[b.map] for f, b in _HOST_BAND.items()}
SHORT4 = range(_HOST_BAND[4].lo, _HOST_BAND[4].hi)  # the shorter lengths the IPv4 hosts' band holds too


def non_hosts(members) -> int:
    """Members (listdelta needs few of them) that are not hosts."""
    return len(members) - members.plens4.count(HOST[4]) - members.plens6.count(HOST[6])


class Version(NamedTuple):
    """One version of the list: its sorted key records (listindex) and how
    its members become rules."""

    keys: tuple  # (IPv4 records, IPv6 records), as listindex.sorted_keys makes them
    base: int    # rule id of position 0
    dir: int
    action: int
    expires_ns: int

    @property
    def ids(self) -> range:
        """The rule ids of its members."""
        return range(self.base, self.base + len(records(self.keys[0], 4)) + len(records(self.keys[1], 6)))


def exact(old: Version | None) -> bool:
    """Are the kernel's entries of a stored version (None: no list) known to
    the byte? When it has no deadline: a deadline is the kernel's clock,
    converted anew by each change."""
    return old is None or not old.expires_ns


class Split(NamedTuple):
    """A list change taken apart: its alone hosts, per version and family
    (key records), and its other members as rules (for the planner's index)."""

    old: Version | None
    new: Version | None
    alone_old: dict  # family -> records of the old version's alone hosts
    alone_new: dict  # family -> records of the new version's alone hosts
    removed: list    # Rule: old members that are not alone
    added: list      # Rule: new members that are not alone

    @property
    def alone(self) -> int:
        """Host members (old and new) written directly."""
        return sum(len(r) for r in self.alone_old.values()) + sum(len(r) for r in self.alone_new.values())

    def plan(self) -> dlc.Plan:
        """The alone hosts as a plan: the old version's deleted, the new
        version's written (a key in both: written). The other members'
        plans go after it."""
        plan = dlc.Plan()
        for alone, v in ((self.alone_old, self.old), (self.alone_new, self.new)):
            for fam, rec in alone.items():
                keys, vals = _entries(rec, fam, v)
                ks, vs = KEY_SIZE[fam], abi.RULE_VAL.size
                for j in range(len(rec)):
                    if v is self.new:
                        plan.put(BAND[fam], keys[j * ks:(j + 1) * ks], vals[j * vs:(j + 1) * vs])
                    else:
                        plan.delete(BAND[fam], keys[j * ks:(j + 1) * ks])
        return plan

    def dead_ids(self) -> range | None:
        """The old version's rule ids when the new version's are apart from
        them (as import_list allocates them): every entry the columns
        delete has one, none that the change writes does
        (KernelTables.write_columns may leave the deletes past the flip)."""
        if self.old is None:
            return None
        old = self.old.ids
        if self.new is not None and (new := self.new.ids) and new.start < old.stop and old.start < new.stop:
            return None
        return old

    @property
    def columnar(self) -> bool:
        """May the alone hosts go as columns (columns(), then the other
        members as a plan)? When the old version's entries are known (exact)."""
        return exact(self.old)

    def columns(self) -> dict:
        """Per band, the alone hosts' writes as a whole image's diff gives
        them (tables.Diff, packed): the old version's entries go (deleted,
        or rewritten where the new version has the key: its rule ids are new,
        so every value changes) and the new version's are written. Written
        before the other members' plans: a key an old alone host leaves may
        be one a new shorter member takes."""
        import numpy as np

        from .tables import Diff, pick

        out = {}
        for fam in (4, 6):
            o, w = self.alone_old.get(fam, ()), self.alone_new.get(fam, ())
            if not len(o) and not len(w):
                continue
            ok = _keys(o, fam, self.old) if len(o) else b""
            ov = functools.partial(_values, o, fam, self.old) if len(o) else b""  # made by an undo only
            wk, wv = _entries(w, fam, self.new) if len(w) else (b"", b"")
            kept = np.zeros(len(o), bool)   # old keys the new version has
            fresh = np.ones(len(w), bool)   # new keys the old version lacks
            if len(o) and len(w) and self.old.dir == self.new.dir:  # else no key is in both
                on, wn = (o["n"].astype(np.uint32), w["n"].astype(np.uint32)) if fam == 4 else (o["n"], w["n"])
                kept, at = _find_sorted(on, wn)  # both sorted: one search serves both sides
                fresh[at[kept]] = False
            ks = KEY_SIZE[fam]
            dels, new = pick(ok, ks, len(o), ~kept), pick(wk, ks, len(w), fresh)
            out[BAND[fam]] = Diff(wk, wv, len(w), new, int(fresh.sum()), ok, ov, len(o), dels,
                                  len(o) - int(kept.sum()))
        return out


def _entries(rec, family: int, v: Version) -> tuple[bytes, bytes]:
    """Packed band keys and values of alone host records of a version."""
    return _keys(rec, family, v), _values(rec, family, v)


def _keys(rec, family: int, v: Version) -> bytes:
    """Packed band keys of alone host records of a version."""
    import numpy as np

    keys = np.empty(len(rec), [("d", "=u4"), ("n", ">u4" if family == 4 else "V16")])
    keys["d"], keys["n"] = v.dir, rec["n"]
    return keys.tobytes()


def _values(rec, family: int, v: Version) -> bytes:
    """Packed values (xc_rule_val) of alone host records of a version."""
    import numpy as np

    ids = (rec["i"].astype(np.int64) + v.base).astype(np.uint32)
    return dlc._vals_col(ids, v.action, HOST[family], v.expires_ns)


def _span(rec, lo: int, hi: int):
    """The records with lo <= length <= hi (they are sorted by length)."""
    p = rec["p"]
    return rec[int(p.searchsorted(lo, "left")):int(p.searchsorted(hi, "right"))]


def _find_sorted(q, sorted_nets):
    """Which of q are in a sorted array, and where (a position per q;
    meaningful where found)."""
    import numpy as np

    if not len(sorted_nets) or not len(q):
        return np.zeros(len(q), bool), np.zeros(len(q), np.intp)
    at = np.minimum(np.searchsorted(sorted_nets, q), len(sorted_nets) - 1)
    return sorted_nets[at] == q, at


def _in_sorted(q, sorted_nets):
    """Which of q are in a sorted array."""
    return _find_sorted(q, sorted_nets)[0]


class Others:
    """What else holds keys where a list's hosts go, per family: the host
    prefixes (sorted arrays, one per source) and the IPv4 networks of
    lengths /25../31, of every address rule and every other list of one
    direction."""

    def __init__(self, state: State, name: str, dir: int):
        import numpy as np

        self.hosts: dict[int, list] = {4: [], 6: []}
        self.short: dict[int, list] = {p: [] for p in SHORT4}
        for fam, band in _HOST_BAND.items():
            for p, rows in groupby(state.address_nets(fam, dir, (band.lo, band.hi)), key=itemgetter(0)):
                nets = np.frombuffer(b"".join(addr for _p, addr in rows), ">u4" if fam == 4 else "V16")
                (self.hosts[fam] if p == HOST[fam] else self.short[p]).append(nets)
        for lname, ldir, _action, _base, _expires in state.list_heads():
            if lname == name or ldir != dir:
                continue
            self.add_list(_stored_keys(state, lname))

    def add_list(self, keys: tuple) -> None:
        """A list's key records (listindex.sorted_keys) as one more source."""
        r4, r6 = records(keys[0], 4), records(keys[1], 6)
        self.hosts[4].append(_span(r4, HOST[4], HOST[4])["n"])
        self.hosts[6].append(_span(r6, HOST[6], HOST[6])["n"])
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
    """A stored list's key columns, read whole (bytes)."""
    blobs = open_keys(state, name)
    try:
        return tuple(b if isinstance(b, bytes) else b.read() for b in blobs)
    finally:
        for b in blobs:
            if not isinstance(b, bytes):
                b.close()


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

    others = {d: Others(state, name, d) for d in {v.dir for v in (old, new) if v is not None}}
    sp = Split(old, new, {}, {}, [], [])
    for version, alone, out in ((old, sp.alone_old, sp.removed), (new, sp.alone_new, sp.added)):
        if version is None:
            continue
        for fam, blob in ((4, version.keys[0]), (6, version.keys[1])):
            rec = records(blob, fam)
            if not len(rec):
                continue
            hosts = _span(rec, HOST[fam], HOST[fam])
            if len(sp.removed) + len(sp.added) + len(rec) - len(hosts) > limit:  # before any search
                return None
            own = {p: _span(rec, p, p)["n"].astype(np.uint32) for p in SHORT4} if fam == 4 else None
            ok = others[version.dir].alone(fam, hosts["n"], own)
            if len(sp.removed) + len(sp.added) + len(rec) - int(ok.sum()) > limit:
                return None
            out += _rules(rec[:len(rec) - len(hosts)], fam, version) + _rules(hosts[~ok], fam, version)
            alone[fam] = hosts[ok]
    return sp


def _rules(rec, family: int, v: Version) -> list[dlc.Rule]:
    nets = (px.unpack_v4 if family == 4 else px.unpack_v6)(rec["n"].tobytes())
    return [dlc.Rule(v.base + int(i), family, n, int(p), v.dir, v.action, None, None, v.expires_ns)
            for p, n, i in zip(rec["p"].tolist(), nets, rec["i"].tolist())]
