"""The drop-list compiler: rules -> the exact contents of the kernel tables
(docs/internals.md, "Maps" and "The drop list verdict"; layouts in
xdpctl.abi).

Address rules are stored by controlled prefix expansion into bands:

    IPv4  xc_v4_l32   HASH   /25../32  stride /32
          xc_v4_l24   HASH   /17../24  stride /24
          xc_v4_l16   ARRAY   /0../16  stride /16, index dir*65536 + (addr >> 16)
    IPv6  xc_v6_l128  HASH   /128
          xc_v6_l64   HASH   /57../64  stride /64
          xc_v6_l48   HASH   /41../48  stride /48
          xc_v6_l32   HASH   /25../32  stride /32
          xc_v6_trie  LPM    every other length, prefixlen = 32 + plen

A rule is written under every stride key it covers; each key holds the
longest rule of its band covering it. L4 rules (protocol + destination
port, optionally a prefix on the source or destination) go to xc_port_trie
with prefixlen = 64 + plen; an L4 rule without prefix (family 0) is stored
as /0 for family 4 and for family 6.

Two entry points:
  compile_full(rules)        every table from scratch (fast, columnar)
  plan_add / plan_remove     per-map updates and deletes for one rule, given
                             a RuleIndex over the current rule set
"""
from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from array import array
from itertools import compress, repeat
from operator import is_, itemgetter, lshift, or_
from collections.abc import Sequence
from typing import Iterable, NamedTuple

from xdpctl import abi
from xdpctl.abi import Action, CfgFlag
from xdpctl.core.gcpause import collector_paused
from xdpctl.core.prefixes import lexsort_u64, pack_v6, sort_u64, unpack_v6

__all__ = [
    "Rule", "RuleColumns", "RuleError", "validate_rule", "band_of", "Band", "BANDS",
    "Table", "Compiled", "compile_full", "compile_mgmt", "mgmt_entry", "rule_flags",
    "MapPlan", "Plan", "RuleIndex", "MemoryRuleIndex", "plan_add", "plan_remove",
]

L4_PROTOS = frozenset((6, 17, 132))
_BITS = {4: 32, 6: 128}
_LE = sys.byteorder == "little"
U64_MAX = (1 << 64) - 1


class Rule(NamedTuple):
    id: int                     # >= 1, indexes xc_rule_stats
    family: int                 # 4 or 6; 0 only for an L4 rule without prefix
    net: int                    # network (host bits zero); 0 when family is 0
    plen: int                   # prefix length; 0 when family is 0
    dir: int = 0                # abi.Dir: 0 source, 1 destination
    action: int = Action.DENY   # abi.Action.DENY or ALLOW
    proto: int | None = None    # 6/17/132 for an L4 rule
    port: int | None = None     # destination port 1..65535 for an L4 rule
    expires_ns: int = 0         # CLOCK_BOOTTIME deadline, 0 = never


class Nets6Later(Sequence):
    """A rule set's networks column whose IPv6 rows stay packed (16 bytes
    each, big-endian) until asked for: IPv4 networks as integers, then the
    IPv6 ones. Iterating, or an item or slice that reaches an IPv6 row,
    makes them all integers once (1M: 0.2 s); :meth:`pick` makes only the
    rows a mask selects. The compile of a list of mixed IPv6 lengths asks
    only for its non-host rows' integers: its /128 hosts go into their
    table packed."""

    __slots__ = ("_v4", "packed6", "_n", "_all")

    def __init__(self, v4: list, packed6: bytes, v6: list | None = None):
        """``v6``: the IPv6 networks as integers, when made already."""
        self._v4, self.packed6 = v4, packed6
        self._n = len(v4) + len(packed6) // 16
        self._all: list | None = None if v6 is None else v4 + v6

    def __len__(self) -> int:
        return self._n

    def _list(self) -> list:
        if self._all is None:
            self._all = self._v4 + unpack_v6(self.packed6)
        return self._all

    def __iter__(self):
        return iter(self._list())

    def __getitem__(self, i):
        if self._all is None:  # IPv4 rows need no IPv6 integer
            n4 = len(self._v4)
            if isinstance(i, slice):
                rows = range(*i.indices(self._n))
                if not rows or max(rows) < n4:
                    return self._v4[rows.start:rows.stop] if rows.step == 1 else [self._v4[j] for j in rows]
            elif -self._n <= i < n4 - self._n or 0 <= i < n4:
                return self._v4[i % self._n]
        return self._list()[i]

    def pick(self, mask: bytes) -> list:
        """The networks of the rows a 0/1 byte mask selects, in row order."""
        if self._all is not None:
            return list(compress(self._all, mask))
        import numpy as np

        n4 = len(self._v4)
        rows = np.frombuffer(mask, np.bool_)[n4:]
        return list(compress(self._v4, mask[:n4])) + \
            unpack_v6(np.frombuffer(self.packed6, np.uint8).reshape(-1, 16)[rows].tobytes())


def _pick_nets(nets, mask: bytes) -> list:
    """The networks of the rows a 0/1 byte mask selects."""
    return nets.pick(mask) if isinstance(nets, Nets6Later) else list(compress(nets, mask))


class RuleColumns:
    """Rules given column by column, in Rule field order: a million list
    members compile without a million tuples. Indexing and iteration give
    plain 9-tuples."""

    __slots__ = ("cols", "n")

    def __init__(self, ids, fams, nets, plens, dirs, acts, protos, ports, exps):
        self.cols = (ids, fams, nets, plens, dirs, acts, protos, ports, exps)
        self.n = len(ids)
        if any(len(c) != self.n for c in self.cols):
            raise ValueError("rule columns of different lengths")

    @property
    def packed6(self) -> bytes | None:
        """The networks of the IPv6 rows, packed (16 bytes each, big-endian,
        in row order), when the networks column has them (Nets6Later: a
        parser's): not packed again."""
        nets = self.cols[2]
        return nets.packed6 if isinstance(nets, Nets6Later) else None

    @classmethod
    def of(cls, rules: Iterable) -> "RuleColumns":
        rules = list(rules)
        if not rules:
            return cls([], b"", [], b"", b"", b"", [], [], [])
        ids, fams, nets, plens, dirs, acts, protos, ports, exps = zip(*rules)
        return cls(list(ids), bytes(fams), list(nets), bytes(plens), bytes(dirs), bytes(acts),
                   list(protos), list(ports), list(exps))

    @classmethod
    def concat(cls, parts: list["RuleColumns"]) -> "RuleColumns":
        parts = [p for p in parts if p.n]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.of([])
        cols = []
        for i in range(9):
            vals = [p.cols[i] for p in parts]
            if all(isinstance(v, (bytes, bytearray)) for v in vals):
                cols.append(b"".join(vals))
            else:
                out: list = []
                for v in vals:
                    out.extend(v)
                cols.append(out)
        return cls(*cols)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple:
        return tuple(c[i] for c in self.cols)

    def __iter__(self):
        return zip(*self.cols)


class RuleError(ValueError):
    """A rule that cannot be compiled (bad field, or a duplicate key)."""

    def __init__(self, rule, reason: str):
        self.rule = rule
        self.reason = reason
        super().__init__(f"rule {getattr(rule, 'id', '?')}: {reason}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate_rule(r: Rule) -> None:
    """Raise RuleError when a rule has a field out of range."""
    try:
        rid, fam, net, plen, dir_, act, proto, port, exp = r
    except (TypeError, ValueError):
        raise RuleError(r, "a rule has 9 fields") from None
    # the common shape, checked in one go
    if (fam == 4 and proto is None and port is None and type(rid) is int
            and 0 < rid <= 0xFFFFFFFF and (dir_ == 0 or dir_ == 1)
            and (act == 1 or act == 2) and type(plen) is int and 0 <= plen <= 32
            and type(net) is int and 0 <= net <= 0xFFFFFFFF
            and not net & _HOST4[plen] and type(exp) is int and 0 <= exp <= U64_MAX):
        return

    def bad(why):
        raise RuleError(r, why)
    if not _is_int(rid) or not 1 <= rid <= 0xFFFFFFFF:
        bad(f"id {rid!r} out of range 1..4294967295")
    if not _is_int(dir_) or dir_ not in (0, 1):
        bad(f"dir {dir_!r} is not 0 (source) or 1 (destination)")
    if not _is_int(act) or act not in (Action.DENY, Action.ALLOW):
        bad(f"action {act!r} is not DENY (1) or ALLOW (2)")
    if not _is_int(exp) or not 0 <= exp <= U64_MAX:
        bad(f"expires_ns {exp!r} out of range 0..2**64-1")
    if (proto is None) != (port is None):
        bad("an L4 rule needs both protocol and port")
    if proto is not None:
        if proto not in L4_PROTOS:
            bad(f"protocol {proto!r} is not tcp (6), udp (17) or sctp (132)")
        if not _is_int(port) or not 1 <= port <= 65535:
            bad(f"port {port!r} out of range 1..65535")
    if fam == 0:
        if proto is None:
            bad("family 0 (no prefix) is only for L4 rules")
        if net != 0 or plen != 0:
            bad("a rule without prefix has net 0 and plen 0")
        return
    if fam not in _BITS:
        bad(f"family {fam!r} is not 4 or 6")
    bits = _BITS[fam]
    if not _is_int(plen) or not 0 <= plen <= bits:
        bad(f"plen {plen!r} out of range 0..{bits}")
    if not _is_int(net) or not 0 <= net < (1 << bits):
        bad(f"net {net!r} is not an IPv{fam} address")
    if net & ((1 << (bits - plen)) - 1):
        bad("host bits set in net")


_HOST4 = [(1 << (32 - p)) - 1 for p in range(33)]


# ---------------------------------------------------------------------------
# Bands
# ---------------------------------------------------------------------------
class Band(NamedTuple):
    map: str
    family: int
    lo: int        # shortest rule length stored here
    hi: int        # longest rule length stored here
    stride: int    # bits of address a key keeps


BANDS = (
    Band("xc_v4_l32", 4, 25, 32, 32),
    Band("xc_v4_l24", 4, 17, 24, 24),
    Band("xc_v4_l16", 4, 0, 16, 16),
    Band("xc_v6_l128", 6, 128, 128, 128),
    Band("xc_v6_l64", 6, 57, 64, 64),
    Band("xc_v6_l48", 6, 41, 48, 48),
    Band("xc_v6_l32", 6, 25, 32, 32),
)
V6_TRIE = "xc_v6_trie"
PORT_TRIE = "xc_port_trie"
MGMT = "xc_mgmt"
L16 = "xc_v4_l16"
V6_L128 = "xc_v6_l128"
L16_ENTRIES = 2 * 65536

_BAND_BY_LEN: dict[tuple[int, int], Band | None] = {}
for _f, _bits in _BITS.items():
    for _p in range(_bits + 1):
        _BAND_BY_LEN[(_f, _p)] = next(
            (b for b in BANDS if b.family == _f and b.lo <= _p <= b.hi), None)


def band_of(family: int, plen: int) -> Band | None:
    """The hash/array band of an address rule, or None for xc_v6_trie."""
    return _BAND_BY_LEN[(family, plen)]


_NO_FB = bytes(abi.RULE_HALF.size)


def _val(r: Rule, fb: Rule | None = None) -> bytes:
    """xc_rule_val of a winning rule and, when it has a deadline, its fallback."""
    head = abi.RULE_HALF.pack(r.id, r.action, r.plen, 0, r.expires_ns)
    if fb is None:
        return head + _NO_FB
    return head + abi.RULE_HALF.pack(fb.id, fb.action, fb.plen, 0, fb.expires_ns)


def _fallback(index: "RuleIndex", band: "Band", family: int, dir: int, a: int, winner: Rule,
              exclude_id: int, extra: Rule | None = None) -> Rule | None:
    """The rule that takes key `a` over when `winner`'s deadline passes: the
    longest rule of the band covering `a`, shorter than the winner, whose
    deadline is later (or none). `extra` is a rule that covers `a` and
    may not be in the index yet."""
    if not winner.expires_ns:
        return None
    hi = winner.plen - 1
    while hi >= band.lo:
        r = index.best_covering(family, dir, a, band.lo, hi, exclude_id)
        if (extra is not None and extra.id != exclude_id and band.lo <= extra.plen <= hi
                and (r is None or extra.plen > r.plen)):
            r = extra
        if r is None:
            return None
        if r.expires_ns == 0 or r.expires_ns > winner.expires_ns:
            return r
        hi = r.plen - 1
    return None


_ZERO_VAL = bytes(abi.RULE_VAL.size)


def _band_key(band: Band, dir: int, addr: int) -> bytes:
    if band.map == L16:
        return abi.U32.pack(dir * 65536 + (addr >> 16))
    if band.family == 4:
        return abi.pack_key4(dir, addr)
    return abi.pack_key6(dir, addr)


def _band_keys(band: Band, r: Rule) -> list[int]:
    """Stride addresses a band rule expands to."""
    shift = _BITS[band.family] - band.stride
    return list(range(r.net, r.net + (1 << (_BITS[band.family] - r.plen)), 1 << shift))


def _port_keys(r: Rule) -> list[bytes]:
    if r.family == 0:
        return [abi.pack_port_key(r.dir, r.proto, r.port, 4, 0, 0),
                abi.pack_port_key(r.dir, r.proto, r.port, 6, 0, 0)]
    return [abi.pack_port_key(r.dir, r.proto, r.port, r.family, r.net, r.plen)]


def rule_flags(r: Rule) -> int:
    """The xc_cfg flags one rule needs (OR them over the rule set)."""
    if r.proto is not None:
        return int(CfgFlag.HAVE_PORT)
    f = int(CfgFlag.HAVE_DST) if r.dir == 1 else 0
    if r.family == 6 and band_of(6, r.plen) is None:
        f |= int(CfgFlag.HAVE_V6TRIE)
    return f


# ---------------------------------------------------------------------------
# Full compile
# ---------------------------------------------------------------------------
class Table(NamedTuple):
    keys: bytes      # count keys, packed back to back
    values: bytes    # count values (struct xc_rule_val), same order
    count: int


class Compiled(dict):
    """map name -> Table for every rule map (abi.RULE_MAPS), plus .flags
    (the XC_CFG_* bits the rule set implies). xc_v4_l16 is the full array
    image (131072 entries, empty slots zero); the other tables hold only
    their entries."""

    flags: int = 0


def _key_sizes() -> dict[str, int]:
    return {m: abi.MAP_SPECS[m].key_size for m in abi.RULE_MAPS}


KEY_SIZE = _key_sizes()
VAL_SIZE = abi.RULE_VAL.size


def _addr_key(r: Rule):
    return (r.family, r.dir, r.plen, r.net)


def _find_dup(rules: Iterable[Rule], keyf=_addr_key) -> None:
    """Raise RuleError for the first two rules with the same key."""
    seen: dict = {}
    for r in rules:
        k = keyf(r)
        first = seen.get(k)
        if first is not None:
            raise RuleError(r, f"same key as rule {first.id} (family, direction, prefix"
                               f"{', protocol, port' if r.proto is not None else ''})")
        seen[k] = r


class _V4Cols(NamedTuple):
    """An IPv4 band's rules as columns, made once per band: ids, actions
    and deadlines as they are; networks, lengths and directions as int64
    arrays."""

    ids: tuple
    nets: object
    plens: object
    dirs: object
    acts: tuple
    exps: tuple

    @classmethod
    def of(cls, minor: list[Rule]) -> "_V4Cols":
        import numpy as np

        ids, _f, nets, plens, dirs, acts, _p, _q, exps = zip(*minor)
        return cls(ids, np.array(nets, np.int64), np.array(plens, np.int64), np.array(dirs, np.int64), acts, exps)


def _check_unique(minor: list[Rule], v4: _V4Cols | None = None) -> None:
    """Raise RuleError when two rules of a table have the same key. ``v4``:
    the rules (IPv4 address rules, a band's) as columns, checked with one
    sort of packed keys from _COLUMNS_MIN rules up."""
    if v4 is not None and len(minor) >= _COLUMNS_MIN:
        import numpy as np

        if np.unique(v4.nets | v4.plens << 32 | v4.dirs << 40).size == len(minor):
            return
    elif len({_addr_key(r) for r in minor}) == len(minor):
        return
    _find_dup(minor)


# -- IPv4, columnar ----------------------------------------------------------
# IPv4 band keys are handled as ints hk = addr | dir << 32 (host-order
# address: hashes well), turned into packed xc_key4 only at the end, with
# array operations. These helpers assume a little-endian host; other hosts
# take the plain path (_compile_plain).

def _key4_bytes(hks) -> bytes:
    """Packed xc_key4 (dir host order, addr big-endian) from hk ints."""
    ka = array("I", array("Q", hks).tobytes())   # [addr, dir] pairs
    addrs = ka[0::2]
    addrs.byteswap()
    out = array("I", bytes(4 * len(ka)))
    out[0::2] = ka[1::2]
    out[1::2] = addrs
    return out.tobytes()


def _vals_col(ids, acts, plen, exps) -> bytes:
    """Packed xc_rule_val for columns of rules: u32 rule_id | u8 action,
    u8 plen, u16 flags | u64 expires_ns. ids: ints (an array "I" as it
    is), acts: action bytes or ints, or one action for all; plen: one
    length for all or a uint32 column, exps: ints, or one deadline for
    all; numpy arrays as they are."""
    import numpy as np

    n = len(ids)
    va = np.zeros((n, VAL_SIZE // 4), np.uint32)
    va[:, 0] = np.frombuffer(ids, np.uint32) if isinstance(ids, array) and ids.itemsize == 4 else ids
    a = np.frombuffer(acts, np.uint8) if isinstance(acts, (bytes, bytearray)) else np.asarray(acts, np.uint8)
    va[:, 1] = a.astype(np.uint32) | (np.asarray(plen, np.uint32) << np.uint32(8))  # one action or length: broadcast
    if isinstance(exps, int):
        exps = [exps] if exps else []  # one deadline for all (broadcast), or none
    if isinstance(exps, np.ndarray) or exps.count(0) != len(exps):
        va[:, 2:4] = np.ascontiguousarray(exps, np.uint64).view(np.uint32).reshape(-1, 2)  # [low, high] halves
    return va.tobytes()  # fallbacks (words 4..7) are filled by _add_fallbacks


def _rule_vals(rules: list[Rule]) -> bytes:
    """The xc_rule_val of each rule, no fallbacks (as _val gives them):
    as columns from _COLUMNS_MIN rules up."""
    if len(rules) < _COLUMNS_MIN:
        return b"".join(map(_val, rules))
    ids, _f, _n, plens, _d, acts, _p, _q, exps = zip(*rules)
    return _vals_col(array("I", ids), bytes(acts), array("I", plens), list(exps))


def _clusters(minor: list[Rule]) -> tuple[list[Rule], list[list[Rule]]]:
    """Split a band's rules into those that overlap no other rule of the
    band (same dir) and clusters of overlapping rules."""
    if len(minor) < 2:
        return list(minor), []
    bits = _BITS[minor[0].family]
    order = sorted(minor, key=lambda r: (r.dir, r.net, r.plen))
    alone: list[Rule] = []
    clusters: list[list[Rule]] = []
    cur = [order[0]]
    cur_end = (order[0].dir << bits) | order[0].net | ((1 << (bits - order[0].plen)) - 1)
    for r in order[1:]:
        lo = (r.dir << bits) | r.net
        if lo <= cur_end:
            cur.append(r)
            cur_end = max(cur_end, lo | ((1 << (bits - r.plen)) - 1))
            continue
        _close(cur, alone, clusters)
        cur = [r]
        cur_end = lo | ((1 << (bits - r.plen)) - 1)
    _close(cur, alone, clusters)
    return alone, clusters


def _close(cur: list[Rule], alone: list[Rule], clusters: list[list[Rule]]) -> None:
    if len(cur) == 1:
        alone.append(cur[0])
    else:
        clusters.append(cur)


_BYTE_SEQ = bytes(range(256))


def _compile_v4_hash(band: Band, minor: list[Rule], fast, out: Compiled) -> None:
    """One IPv4 hash band. minor: its rules as Rule objects; fast: for
    xc_v4_l32, columns (hks, ids, acts, exps) of the plain /32 rules (minor
    then holds /25../31 only; a /32 rule holds its key against them).

    A rule that overlaps no other is written with two byte operations:
    its keys differ in one address byte only (l32: the last, l24: the
    third), so they are a repeated template with that byte filled from a
    running sequence. Overlapping rules and keys taken by /32 rules go key
    by key."""
    v4 = _V4Cols.of(minor) if minor else None
    _check_unique(minor, v4)
    keys: list[bytes] = []
    vals: list[bytes] = []
    count = 0
    fset = srt = None
    if fast is not None and fast[0]:
        fhks, fids, facts, fexps = fast
        fhks = array("Q", fhks)
        srt, fset = _fast_keys_within(fhks, v4)
        keys.append(_key4_bytes(fhks))
        vals.append(_vals_col(fids, facts, 32, fexps))
        count += len(fhks)
    shift = 32 - band.stride          # 0 for l32, 8 for l24
    if len(minor) >= _COLUMNS_MIN:
        # alone: only the lone rules with /32 keys inside them, done key by key below
        clusters, alone, (k, v, c) = _alone_columns(minor, v4, band.stride, srt if fset else None)
        keys.append(k)
        vals.append(v)
        count += c
    else:
        alone, clusters = _clusters(minor)
    vbyte = 7 if band.stride == 32 else 6   # byte of the key that varies
    single: dict[int, Rule] = {}      # hk -> rule, for keys done one by one
    for r in alone:
        cnt = 1 << (band.stride - r.plen)
        hk = r.net | (r.dir << 32)
        if fset is not None and not fset.isdisjoint(range(hk, hk + cnt)):
            for k in range(hk, hk + cnt):
                if k not in fset:
                    single[k] = r
            continue
        head = bytearray(abi.pack_key4(r.dir, r.net) * cnt)
        first = (r.net >> shift) & 0xFF
        head[vbyte::8] = _BYTE_SEQ[first:first + cnt]
        keys.append(bytes(head))
        vals.append(_val(r) * cnt)
        count += cnt
    for cl in clusters:
        cl.sort(key=itemgetter(3))     # longer rules last: they win
        for r in cl:
            step = 1 << shift
            hk = r.net | (r.dir << 32)
            for k in range(hk, hk + (1 << (32 - r.plen)), step):
                if fset is None or k not in fset:
                    single[k] = r
    if single:
        hks = list(single.keys())
        keys.append(_key4_bytes(hks))
        vals.append(_rule_vals(list(single.values())))
        count += len(hks)
    out[band.map] = Table(b"".join(keys), b"".join(vals), count)


_COLUMNS_MIN = 64  # rules of a band from which _alone_columns does the work of _clusters and the loop


def _alone_columns(minor: list[Rule], v4: _V4Cols, stride: int,
                   fast_keys=None) -> tuple[list[list[Rule]], list[Rule], tuple[bytes, bytes, int]]:
    """_clusters and the image of the rules that overlap no other, as
    columns (little-endian hosts): the clusters of overlapping rules as
    _clusters gives them, the lone rules with a key of ``fast_keys`` (the
    /32 rules' sorted hash keys, or None) inside them, in _clusters'
    order (they go key by key), and (keys, values, count) of the other
    lone rules, in the order the one-rule-at-a-time loop writes them (rules
    by (dir, net, plen), each rule's keys ascending)."""
    import numpy as np

    n = len(minor)
    ids, net, pl, dr, acts, exps = v4
    order = np.lexsort((pl, net, dr))  # by dir, then net, then plen (stable, as sorted())
    lo = (dr[order] << 32) | net[order]
    end = lo | ((np.int64(1) << (32 - pl[order])) - 1)
    top = np.maximum.accumulate(end)
    new = np.ones(n, bool)
    new[1:] = lo[1:] > top[:-1]  # a rule starts a cluster when no earlier one reaches it
    gid = np.cumsum(new) - 1
    lone = np.bincount(gid)[gid] == 1
    grouped = order[~lone]
    cuts = np.flatnonzero(np.diff(gid[~lone])) + 1
    clusters = [[minor[i] for i in g] for g in np.split(grouped, cuts)] if grouped.size else []
    a = order[lone]
    held: list[Rule] = []
    if fast_keys is not None and a.size:
        lo_a = ((dr[a] << 32) | net[a]).astype(np.uint64)
        hi_a = lo_a + (np.uint64(1) << (32 - pl[a]).astype(np.uint64))
        has = np.searchsorted(fast_keys, hi_a) > np.searchsorted(fast_keys, lo_a)
        held = [minor[i] for i in a[has].tolist()]
        a = a[~has]
    cnt = np.int64(1) << (stride - pl[a])
    total = int(cnt.sum())
    rep = np.repeat(np.arange(a.size), cnt)
    off = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    keys = np.empty((total, 2), np.uint32)
    keys[:, 0] = dr[a][rep]
    keys[:, 1] = (net[a][rep] + (off << (32 - stride))).astype(">u4").view(np.uint32)
    vals = _vals_col(np.array(ids, np.uint32)[a][rep], np.array(acts, np.uint8)[a][rep],
                     pl[a].astype(np.uint32)[rep], np.array(exps, np.uint64)[a][rep])
    return clusters, held, (keys.tobytes(), vals, total)


class _FastDup(Exception):
    pass


def _fast_keys_within(hks: array, v4: _V4Cols | None) -> tuple:
    """The /32 keys (hks) sorted, and the set of those that lie in the
    range of one of the band's other rules, where they hold their key
    against it: one sort of the keys (raises _FastDup when two are equal),
    then a search per rule."""
    import numpy as np

    srt = sort_u64(np.frombuffer(hks, np.uint64).copy())
    if np.count_nonzero(srt[1:] == srt[:-1]):
        raise _FastDup
    if v4 is None:
        return srt, set()
    lo = (v4.nets | v4.dirs << 32).astype(np.uint64)
    hi = lo + (np.uint64(1) << (32 - v4.plens).astype(np.uint64))
    first, last = np.searchsorted(srt, lo), np.searchsorted(srt, hi)
    out: set[int] = set()
    for i in np.flatnonzero(last > first).tolist():
        out.update(srt[first[i]:last[i]].tolist())
    return srt, out


def _compile_l16(minor: list[Rule], out: Compiled) -> None:
    minor.sort(key=itemgetter(3))
    _check_unique(minor, _V4Cols.of(minor) if len(minor) >= _COLUMNS_MIN else None)
    if not minor:
        out[L16] = Table(_L16_IMAGE_KEYS(), bytes(VAL_SIZE * L16_ENTRIES), L16_ENTRIES)
        return
    slots = [-1] * L16_ENTRIES
    for i, r in enumerate(minor):
        base = r.dir * 65536 + (r.net >> 16)
        cnt = 1 << (16 - r.plen)
        slots[base:base + cnt] = repeat(i, cnt)
    valtab = [_val(r) for r in minor]
    valtab.append(_ZERO_VAL)  # slot -1: empty
    out[L16] = Table(_L16_IMAGE_KEYS(), b"".join(map(valtab.__getitem__, slots)), L16_ENTRIES)


# -- plain Python: IPv6 bands, tries, and every band on big-endian hosts ------

def _compile_plain(band: Band, minor: list[Rule], out: Compiled) -> None:
    minor.sort(key=itemgetter(3))
    _check_unique(minor)
    d: dict[bytes, bytes] = {}
    for r in minor:
        v = _val(r)
        for a in _band_keys(band, r):
            d[_band_key(band, r.dir, a)] = v
    if band.map == L16:
        full = {abi.U32.pack(i): _ZERO_VAL for i in range(L16_ENTRIES)}
        full.update(d)
        d = full
    out[band.map] = Table(b"".join(d.keys()), b"".join(d.values()), len(d))


def _compile_band6(band: Band, minor: list[Rule], out: Compiled) -> None:
    """An IPv6 band whose keys keep the high word only (stride 64 or less)
    as columns, from _COLUMNS_MIN rules up: every rule's keys made at once,
    each key taken by the last (longest) rule that makes it. The bytes, in
    their order, are _compile_plain's: its dict keeps a key where it first
    came and the value last written. 1M mixed IPv6 members (142k keys in
    three bands): 0.33 -> 0.03 s. Little-endian hosts (the xc_key6
    direction is host order)."""
    if len(minor) < _COLUMNS_MIN or band.stride > 64:
        _compile_plain(band, minor, out)
        return
    import numpy as np

    minor.sort(key=itemgetter(3))
    _check_unique(minor)
    n = len(minor)
    _i, _f, nets, plens, dirs, _a, _p, _q, _e = zip(*minor)
    counts = np.int64(1) << (band.stride - np.array(plens, np.int64))   # keys per rule
    owner = np.repeat(np.arange(n), counts)                              # the rule of each key
    first = np.cumsum(counts) - counts
    step = np.uint64(1) << np.uint64(64 - band.stride)
    his = np.array([a >> 64 for a in nets], np.uint64)                  # the low word: host bits, zero
    khi = his[owner] + (np.arange(owner.size) - first[owner]).astype(np.uint64) * step
    kdir = np.array(dirs, np.uint64)[owner]
    order = lexsort_u64([khi, kdir])        # equal keys stay in position order
    shi, sdir = khi[order], kdir[order]
    new = np.ones(order.size, np.bool_)
    new[1:] = (shi[1:] != shi[:-1]) | (sdir[1:] != sdir[:-1])
    last = np.empty_like(new)
    last[:-1], last[-1] = new[1:], True
    starts, ends = order[new], order[last]  # each key's first and last position
    by_first = np.argsort(starts)
    at, take = starts[by_first], owner[ends[by_first]]
    keys = np.zeros((at.size, KEY_SIZE[band.map]), np.uint8)
    keys[:, 0:4] = kdir[at].astype("<u4").view(np.uint8).reshape(-1, 4)
    keys[:, 4:12] = khi[at].astype(">u8").view(np.uint8).reshape(-1, 8)
    vals = np.frombuffer(_rule_vals(minor), np.uint8).reshape(n, VAL_SIZE)[take]
    out[band.map] = Table(keys.tobytes(), vals.tobytes(), int(at.size))


def _compile_v6_trie(minor: list[Rule], out: Compiled) -> None:
    _check_unique(minor)
    keys = [abi.pack_trie6_key(r.dir, r.net, r.plen) for r in minor]
    out[V6_TRIE] = Table(b"".join(keys), b"".join(map(_val, minor)), len(keys))


def _compile_port(l4: list[Rule], out: Compiled) -> None:
    d: dict[bytes, bytes] = {}
    owner: dict[bytes, Rule] = {}
    for r in l4:
        v = _val(r)
        for k in _port_keys(r):
            if k in owner:
                raise RuleError(r, f"same key as rule {owner[k].id} (direction, protocol, port, prefix)")
            owner[k] = r
            d[k] = v
    out[PORT_TRIE] = Table(b"".join(d.keys()), b"".join(d.values()), len(d))


# -- management prefixes -----------------------------------------------------
def mgmt_entry(r: Rule) -> tuple[bytes, bytes]:
    """The xc_mgmt key and value of a management rule: an allow address
    rule; the value's plen is the key's length past the dir word (an IPv4
    prefix is v4-mapped), as the lookup's retry over expired entries needs."""
    if r.proto is not None or r.family == 0 or r.action != Action.ALLOW:
        raise RuleError(r, "a management prefix is an allow rule on an address prefix")
    plen = r.plen + (abi.MGMT_V4_PLEN if r.family == 4 else 0)
    return (abi.pack_mgmt_key(r.dir, r.family, r.net, r.plen),
            abi.RULE_HALF.pack(r.id, r.action, plen, 0, r.expires_ns) + _NO_FB)


def compile_mgmt(rules: Iterable[Rule], out: Compiled) -> None:
    """Put the xc_mgmt image of the management rules into ``out`` (and the
    flag the lookup needs). The rules are compiled into the address tables
    as ordinary allow rules too."""
    d = dict(mgmt_entry(r) for r in rules)
    out[MGMT] = Table(b"".join(d), b"".join(d.values()), len(d))
    if d:
        out.flags |= int(CfgFlag.HAVE_MGMT)


# -- driver ------------------------------------------------------------------
_EQ = [bytes(v) + b"\x01" + bytes(255 - v) for v in range(256)]  # byte == v, as a translate table
_NOT01 = _EQ[0]


def compile_full(rules: Iterable[Rule]) -> Compiled:
    """Compile a whole rule set into the images of every rule map.

    rules: Rule objects or plain 9-tuples in Rule's field order (rows from
    a database). Rule ids are taken as unique (they are the store's key) and
    are not checked. Raises RuleError on a bad rule, or on two rules with the
    same kernel key (family, dir, prefix; for L4 rules also protocol and
    port, where a rule without prefix takes the /0 key of both families)."""
    rules = rules if isinstance(rules, (list, RuleColumns)) else list(rules)
    out = Compiled()
    with collector_paused():  # millions of small objects, no cycles
        _compile_into(rules, out)
        _add_fallbacks(rules, out)
    return out


def _add_fallbacks(rules: list, out: Compiled) -> None:
    """Give every key won by a rule with a deadline its same-band fallback
    (_fallback: the longest shorter rule of the band covering the key that
    outlives it). Only a rule of a band holding such a TTL rule, shorter
    than the longest of them, can be a fallback (``under``); a key that no
    rule of ``under`` covers has none and is not looked up (a TTL list of
    hosts beside a few shorter rules: the keys inside those rules only)."""
    if isinstance(rules, RuleColumns) and not any(rules.cols[8]):
        return
    may = _may_fall_back(rules)
    if not may:
        return
    longest: dict[str, int] = {}
    for f, p in may:
        m = _BAND_BY_LEN[(f, p)].map
        longest[m] = max(p, longest.get(m, 0))
    ttl, under = [], []
    for r in rules:
        if r[6] is not None or not r[1]:
            continue
        b = _BAND_BY_LEN.get((r[1], r[3]))
        if b is None or b.map not in longest:
            continue
        if r[8] and (r[1], r[3]) in may:
            ttl.append(r)
        if r[3] < longest[b.map]:
            under.append(r if type(r) is Rule else Rule(*r))
    if not ttl:
        return
    index = MemoryRuleIndex(under)
    held = {_addr_key(u) for u in under}
    # (family, dir, band) -> (length, network mask) of the lengths ``under`` has there
    shorter: dict[tuple[int, int, str], list[tuple[int, int]]] = {}
    for f, d_, p in {(u.family, u.dir, u.plen) for u in under}:
        full = (1 << _BITS[f]) - 1
        shorter.setdefault((f, d_, _BAND_BY_LEN[(f, p)].map), []).append((p, full ^ ((1 << (_BITS[f] - p)) - 1)))
    ks = KEY_SIZE
    changed: dict[str, dict[bytes, bytes]] = {}
    for t in ttl:
        fam, dr, tplen = t[1], t[4], t[3]
        band = _BAND_BY_LEN[(fam, tplen)]
        below = shorter.get((fam, dr, band.map))
        if not below:
            continue
        r = None
        for a in _band_keys(band, t if type(t) is Rule else Rule(*t)) if tplen < band.stride else (t[2],):
            for p, mask in below:
                if p < tplen and (fam, dr, p, a & mask) in held:
                    break
            else:
                continue  # nothing under this key to fall back to
            if r is None:
                r = t if type(t) is Rule else Rule(*t)
            d = changed.get(band.map)
            if d is None:
                tb = out[band.map]
                k_sz = ks[band.map]
                d = changed[band.map] = {tb.keys[i * k_sz:(i + 1) * k_sz]: tb.values[i * VAL_SIZE:(i + 1) * VAL_SIZE]
                                         for i in range(tb.count)}
            k = _band_key(band, r.dir, a)
            v = d.get(k)
            if v is None or abi.U32.unpack_from(v)[0] != r.id:
                continue  # a longer rule holds this key
            fb = _fallback(index, band, r.family, r.dir, a, r, 0)
            if fb is not None:
                d[k] = _val(r, fb)
    for m, d in changed.items():
        out[m] = Table(b"".join(d.keys()), b"".join(d.values()), len(d))
    out._state = None


def _may_fall_back(rules: list) -> set[tuple[int, int]]:
    """The (family, prefix length) of the band rules that may have a
    fallback: a rule's fallback is a shorter rule of its band, so a rule as
    short as the shortest rule of its band has none (a TTL list of hosts
    with nothing shorter beside it: no rule index, no walk over its keys).
    Counted over every rule's family and length, L4 rules too (a length
    they add only makes the set larger)."""
    import numpy as np

    if isinstance(rules, RuleColumns):
        fams, plens = bytes(rules.cols[1]), bytes(rules.cols[3])
    else:
        fams, plens = bytes(r[1] for r in rules), bytes(r[3] for r in rules)
    pair = np.frombuffer(fams, np.uint8).astype(np.uint16) << 8 | np.frombuffer(plens, np.uint8)
    present = [(int(x) >> 8, int(x) & 255) for x in np.flatnonzero(np.bincount(pair, minlength=1))]
    shortest: dict[str, int] = {}
    for f, p in present:
        b = _BAND_BY_LEN.get((f, p))
        if b is not None:
            shortest[b.map] = min(p, shortest.get(b.map, p))
    return {(f, p) for f, p in present if (b := _BAND_BY_LEN.get((f, p))) is not None and p > shortest[b.map]}


def _validate_all(rules) -> None:
    for r in rules:
        validate_rule(r if type(r) is Rule else Rule(*r))
    raise RuleError(None, "rule fields of the wrong type")  # pragma: no cover


class _Split(NamedTuple):
    """A rule set taken apart for compiling: the columnar fast set (IPv4 /32
    address rules), and every other rule sorted by the table it goes to."""

    fast: tuple | None            # (hash keys, ids, actions, deadlines) or None
    fastmask: bytes | None        # which rules are in the fast set (None: all)
    host6: Table | None           # the xc_v6_l128 image of the plain IPv6 /128 rules, or None
    per_band: dict[str, list[Rule]]
    trie6: list[Rule]
    l4: list[Rule]
    flags: int


def _columns(rules) -> tuple:
    """The nine columns of a rule set, and its byte columns; a rule set whose
    columns do not have the right types is reported rule by rule."""
    try:
        if isinstance(rules, RuleColumns):
            cols = rules.cols
        else:
            cols = tuple(zip(*rules))
        ids, fams, nets, plens, dirs, acts, protos, ports, exps = cols
        return cols, (bytes(fams), bytes(plens), bytes(dirs), bytes(acts))
    except (ValueError, TypeError):
        _validate_all(rules)


def _fast_mask(n: int, fams_b: bytes, plens_b: bytes, protos, ports, family: int = 4) -> bytes | None:
    """Which rules are plain host address rules of ``family`` (IPv4 /32 or
    IPv6 /128; None: every rule is)."""
    bits = _BITS[family]
    no_proto = protos.count(None) == n
    no_port = ports.count(None) == n
    if fams_b.count(family) == n and plens_b.count(bits) == n and no_proto and no_port:
        return None
    m = int.from_bytes(fams_b.translate(_EQ[family]), "little") & \
        int.from_bytes(plens_b.translate(_EQ[bits]), "little")
    if not no_proto:
        m &= int.from_bytes(bytes(map(is_, protos, repeat(None))), "little")
    if not no_port:
        m &= int.from_bytes(bytes(map(is_, ports, repeat(None))), "little")
    return m.to_bytes(n, "little")


def _pick(col, mask: bytes, size: int = 1) -> bytes:
    """The items a 0/1 byte mask selects from a column of bytes (or, with
    ``size`` 4, of an array "I"), packed: at array speed."""
    import numpy as np

    return np.frombuffer(col, np.uint8 if size == 1 else np.uint32)[np.frombuffer(mask, np.bool_)].tobytes()


def _no_zero_id(ids: array) -> bool:
    """Whether no id of an array "I" is 0 (array.count compares item by item)."""
    import numpy as np

    return bool(np.frombuffer(ids, np.uint32).all())


def _host_columns(cols, dirs_b: bytes, acts_b: bytes, mask: bytes | None, n: int, nets_too: bool = True) -> tuple:
    """The columns (ids, nets, dirs, actions, deadlines) of the rules a
    mask selects, the ids, directions, actions and deadlines checked;
    raises ValueError, OverflowError or TypeError on a bad one. Without
    ``nets_too`` the networks are None (the caller has them packed)."""
    ids, _fams, nets, _plens, _dirs, _acts, _protos, _ports, exps = cols
    sel = (lambda col: col) if mask is None else (lambda col: list(compress(col, mask)))
    f_dirs_b = dirs_b if mask is None else _pick(dirs_b, mask)
    f_acts_b = acts_b if mask is None else _pick(acts_b, mask)
    if f_dirs_b.count(0) + f_dirs_b.count(1) != n or \
            f_acts_b.count(Action.DENY) + f_acts_b.count(Action.ALLOW) != n:
        raise ValueError
    if mask is not None and isinstance(ids, array) and ids.typecode == "I" and len(ids) == len(mask):
        f_ids = array("I", _pick(ids, mask, 4))  # a list's ids: picked by the mask at array speed
    else:
        f_ids = array("I", sel(ids))
    if n and not _no_zero_id(f_ids):
        raise ValueError
    if exps.count(0) == len(exps):  # no deadline (a list's members have one value): nothing to pick or check
        f_exps = exps if mask is None else [0] * n
    else:
        f_exps = sel(exps)
        array("Q", f_exps)          # range check
    f_nets = None if not nets_too else nets if mask is None else _pick_nets(nets, mask)
    return f_ids, f_nets, f_dirs_b, f_acts_b, f_exps


def _host6_table(rules, cols, dirs_b: bytes, acts_b: bytes, mask: bytes | None, n: int,
                 packed: bytes | None = None) -> tuple:
    """The xc_v6_l128 image of the plain IPv6 /128 rules, built as columns
    (each rule is one key of its own), and whether any matches the
    destination. Two rules with the same key raise RuleError. ``packed``:
    their networks packed already (RuleColumns.packed6)."""
    import numpy as np

    packed = packed if packed is not None and len(packed) == 16 * n else None
    try:
        ids, nets, f_dirs_b, acts, exps = _host_columns(cols, dirs_b, acts_b, mask, n, nets_too=packed is None)
        addrs = packed if packed is not None else pack_v6(nets)  # range check too
    except (ValueError, OverflowError, TypeError):
        _validate_all(rules)
    keys = np.zeros((n, KEY_SIZE[V6_L128]), np.uint8)
    dirs = np.frombuffer(f_dirs_b, np.uint8)
    keys[:, 0] = dirs   # u32 dir, little-endian host
    keys[:, 4:] = np.frombuffer(addrs, np.uint8).reshape(n, 16)
    # duplicates: sort a 64-bit hash of each key; equal hashes are checked exactly
    halves = np.frombuffer(addrs, np.uint64).reshape(n, 2)
    h = sort_u64(halves[:, 0] * np.uint64(0x9E3779B97F4A7C15) ^ halves[:, 1] ^ dirs.astype(np.uint64))
    if (h[1:] == h[:-1]).any():
        _find_dup(Rule(*r) for r in (rules if mask is None else compress(rules, mask)))
    return Table(keys.tobytes(), _vals_col(ids, acts, 128, exps), n), bool(f_dirs_b.count(1))


def _host6_packed(rules, fams_b: bytes, mask6: bytes | None, n6: int) -> bytes | None:
    """The packed networks of the ``n6`` rows ``mask6`` selects (IPv6
    /128 rules), taken from the rule set's own (RuleColumns.packed6: every
    IPv6 row's) when it has them, else None (pack_v6 packs them). A list of
    mixed IPv6 lengths picks its hosts' rows by numpy: 950k of 1M members,
    0.17 s -> 0.01 s."""
    packed = getattr(rules, "packed6", None)
    nf6 = fams_b.count(6)
    if packed is None or len(packed) != 16 * nf6:
        return None
    if nf6 == n6:
        return packed  # every IPv6 row is a host
    import numpy as np

    rows = np.frombuffer(mask6, np.bool_)[np.frombuffer(fams_b, np.uint8) == 6]
    return np.frombuffer(packed, np.uint8).reshape(nf6, 16)[rows].tobytes()


def _fast_set(rules, cols, dirs_b: bytes, acts_b: bytes, fastmask: bytes | None, nfast: int) -> tuple:
    """The fast set as columns, checked column-wise: (hash keys, ids,
    actions, deadlines) and whether any rule matches the destination."""
    try:
        f_ids, f_nets, f_dirs_b, f_acts_b, f_exps = _host_columns(cols, dirs_b, acts_b, fastmask, nfast)
        array("I", f_nets)          # range check
    except (ValueError, OverflowError, TypeError):
        _validate_all(rules)
    have_dst = bool(f_dirs_b.count(1))
    f_hks = list(map(or_, f_nets, map(lshift, f_dirs_b, repeat(32)))) if have_dst else f_nets
    return (f_hks, f_ids, f_acts_b, f_exps), have_dst


# The tables a family's address rules go to (None: xc_v6_trie), and a
# bytes.translate table from a prefix length to its table's index there.
_BAND_TABLES = {4: ("xc_v4_l16", "xc_v4_l24", "xc_v4_l32"),
                6: ("xc_v6_l128", "xc_v6_l64", "xc_v6_l48", "xc_v6_l32", None)}
_BAND_IDX = {f: bytes(t.index(b.map if b else None) for b in (_BAND_BY_LEN[(f, p)] for p in range(_BITS[f] + 1)))
             + bytes(255 - _BITS[f]) for f, t in _BAND_TABLES.items()}
_HOST6 = [(1 << (128 - p)) - 1 for p in range(129)]
_V6_END = 1 << 128


def _band_rules(family: int, cols: tuple, byte_cols: tuple, rest: bytes, per_band: dict[str, list[Rule]],
                trie6: list[Rule]) -> tuple | None:
    """The address rules of ``family`` among those ``rest`` selects,
    checked as columns (as the fast set is) and sorted into their tables'
    lists (a band's, or for IPv6 lengths no band holds, ``trie6``) in rule
    order; returns (what ``rest`` leaves for the rule-by-rule loop, the
    config flags they need), or None when they are fewer than _COLUMNS_MIN
    or a column has a bad value (the loop then names the rule)."""
    import numpy as np

    n = len(rest)
    fams_b, plens_b, dirs_b, acts_b = byte_cols
    m = int.from_bytes(rest, "little") & int.from_bytes(fams_b.translate(_EQ[family]), "little")
    for c in cols[6:8]:  # protocol, port: None for an address rule
        if c.count(None) != n:
            m &= int.from_bytes(bytes(map(is_, c, repeat(None))), "little")
    mask = m.to_bytes(n, "little")
    k = mask.count(1)
    if k < _COLUMNS_MIN:
        return None
    try:  # checked as the fast set is, and the networks' range
        ids, net_col, dirs, acts, exps = _host_columns(cols, dirs_b, acts_b, mask, k)
        nets = array("I", net_col) if family == 4 else None
    except (ValueError, OverflowError, TypeError):
        return None
    plens = _pick(plens_b, mask)
    if max(plens) > _BITS[family]:
        return None
    if family == 4:
        host = (np.int64(1) << (32 - np.frombuffer(plens, np.uint8).astype(np.int64))) - 1
        if np.any(np.frombuffer(nets, np.uint32) & host):
            return None
    elif not all(type(a) is int and 0 <= a < _V6_END and not a & _HOST6[p] for a, p in zip(net_col, plens)):
        return None
    fam = bytes([family]) * k
    nones = [None] * k
    bands = plens.translate(_BAND_IDX[family])
    flags = int(CfgFlag.HAVE_DST) if dirs.count(1) else 0
    for b, name in enumerate(_BAND_TABLES[family]):
        bm = bands.translate(_EQ[b])
        if bm.count(1):
            got = list(map(Rule, compress(ids, bm), fam, compress(net_col, bm), compress(plens, bm),
                           compress(dirs, bm), compress(acts, bm), nones, nones, compress(exps, bm)))
            if name is None:
                trie6.extend(got)
            else:
                per_band[name].extend(got)
    left = (int.from_bytes(rest, "little") & ~m).to_bytes(n, "little")
    return left, flags


def _sort_rest(cols: tuple, byte_cols: tuple, rest: bytes, per_band: dict[str, list[Rule]], trie6: list[Rule],
               l4: list[Rule]) -> int:
    """Sort the rules ``rest`` selects (those outside the columnar sets)
    into their tables, checked: the address rules of each family as
    columns (_band_rules), the others one by one; returns the config flags
    they need. ``cols``, ``byte_cols``: the rule set's columns (_columns)."""
    flags = 0
    for family in (4, 6):
        got = _band_rules(family, cols, byte_cols, rest, per_band, trie6)
        if got is not None:
            rest, more = got
            flags |= more
            if not rest.count(1):
                return flags
    idx = list(compress(range(len(rest)), rest))
    get = itemgetter(*idx) if len(idx) > 1 else (lambda col: (col[idx[0]],))
    for r in map(Rule, *map(get, cols)):
        validate_rule(r)
        if r.proto is not None:
            l4.append(r)
            flags |= CfgFlag.HAVE_PORT
            continue
        if r.dir == 1:
            flags |= CfgFlag.HAVE_DST
        b = _BAND_BY_LEN[(r.family, r.plen)]
        if b is None:
            trie6.append(r)
        else:
            per_band[b.map].append(r)
    return flags


def _take_apart(rules) -> _Split:
    n = len(rules)
    per_band: dict[str, list[Rule]] = {b.map: [] for b in BANDS}
    trie6: list[Rule] = []
    l4: list[Rule] = []
    if not n:
        return _Split(None, None, None, per_band, trie6, l4, 0)
    cols, (fams_b, plens_b, dirs_b, acts_b) = _columns(rules)
    fastmask = _fast_mask(n, fams_b, plens_b, cols[6], cols[7])
    nfast = n if fastmask is None else fastmask.count(1)
    fast, host6, flags = None, None, 0
    if nfast:
        fast, have_dst = _fast_set(rules, cols, dirs_b, acts_b, fastmask, nfast)
        if have_dst:
            flags |= CfgFlag.HAVE_DST
    if nfast != n:
        rest = int.from_bytes(fastmask.translate(_NOT01), "little")
        mask6 = _fast_mask(n, fams_b, plens_b, cols[6], cols[7], family=6) if _LE else bytes(n)
        n6 = n if mask6 is None else mask6.count(1)
        if n6:
            host6, have_dst = _host6_table(rules, cols, dirs_b, acts_b, mask6, n6,
                                           _host6_packed(rules, fams_b, mask6, n6))
            if have_dst:
                flags |= CfgFlag.HAVE_DST
            rest = 0 if mask6 is None else rest & ~int.from_bytes(mask6, "little")
        if rest:
            flags |= _sort_rest(cols, (fams_b, plens_b, dirs_b, acts_b), rest.to_bytes(n, "little"), per_band,
                                trie6, l4)
    if trie6:
        flags |= CfgFlag.HAVE_V6TRIE
    return _Split(fast, fastmask, host6, per_band, trie6, l4, flags)


def _compile_into(rules: list, out: Compiled) -> None:
    """Three paths: the columnar fast set (IPv4 /32 address rules) goes
    straight into the /32 hash image; every other rule is checked and
    compiled per table; big-endian hosts take the plain path for all."""
    sp = _take_apart(rules)

    def fast_rules() -> Iterable[Rule]:
        sel = rules if sp.fastmask is None else compress(rules, sp.fastmask)
        return (r if type(r) is Rule else Rule(*r) for r in sel)

    for b in BANDS:
        minor = sp.per_band[b.map]
        if not _LE:
            if b.map == "xc_v4_l32" and sp.fast is not None:
                minor.extend(fast_rules())
            _compile_plain(b, minor, out)
        elif b.map == L16:
            _compile_l16(minor, out)
        elif b.family == 4:
            try:
                _compile_v4_hash(b, minor, sp.fast if b.map == "xc_v4_l32" else None, out)
            except _FastDup:
                _find_dup(fast_rules())
                raise
        elif b.map == V6_L128 and sp.host6 is not None:
            out[b.map] = sp.host6
        else:
            _compile_band6(b, minor, out)
    _compile_v6_trie(sp.trie6, out)
    _compile_port(sp.l4, out)
    out[MGMT] = Table(b"", b"", 0)
    out.flags = int(sp.flags)


_L16_IMAGE = None


def _L16_IMAGE_KEYS() -> bytes:
    global _L16_IMAGE
    if _L16_IMAGE is None:
        _L16_IMAGE = array("I", range(L16_ENTRIES)).tobytes()
    return _L16_IMAGE


# ---------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------
class MapPlan(NamedTuple):
    updates: dict   # key bytes -> value bytes
    deletes: set    # key bytes (never for xc_v4_l16: it gets zero values)


class Plan(dict):
    """map name -> MapPlan, only for maps that change."""

    def _mp(self, m: str) -> MapPlan:
        mp = self.get(m)
        if mp is None:
            mp = self[m] = MapPlan({}, set())
        return mp

    def put(self, m: str, key: bytes, val: bytes) -> None:
        mp = self._mp(m)
        mp.deletes.discard(key)
        mp.updates[key] = val

    def delete(self, m: str, key: bytes) -> None:
        if m == L16:
            self.put(m, key, _ZERO_VAL)
            return
        mp = self._mp(m)
        mp.updates.pop(key, None)
        mp.deletes.add(key)

    def merge(self, later: "Plan") -> "Plan":
        """Fold a plan computed after this one into it (in place)."""
        for m, mp in later.items():
            for k in mp.deletes:
                self.delete(m, k)
            for k, v in mp.updates.items():
                self.put(m, k, v)
        return self

    def size(self) -> int:
        return sum(len(mp.updates) + len(mp.deletes) for mp in self.values())


class RuleIndex(ABC):
    """What the incremental planner needs to know about the current rules.
    Only address rules (proto None) matter; L4 rules are never asked for."""

    @abstractmethod
    def best_covering(self, family: int, dir: int, addr: int, lo_plen: int,
                      hi_plen: int, exclude_id: int) -> Rule | None:
        """The longest address rule of this family and dir with
        lo_plen <= plen <= hi_plen whose prefix contains addr (an address
        masked to a band stride, so hi_plen <= stride), ignoring the rule
        whose id is exclude_id; None if there is none."""

    def rules_within(self, family: int, dir: int, net: int, plen: int, lo_plen: int,
                     hi_plen: int, exclude_id: int) -> list[Rule] | None:
        """Optional, for speed: every address rule of this family and dir
        with lo_plen <= rule plen <= hi_plen that lies inside net/plen,
        except exclude_id. Return None when not supported: the planner then
        asks best_covering once per expanded key (up to 65536 keys for a
        /0 rule). An SQL index answers this with one range query."""
        return None


class MemoryRuleIndex(RuleIndex):
    """RuleIndex over a dict keyed by (family, dir, plen, net)."""

    def __init__(self, rules: Iterable[Rule] = ()):
        self._addr: dict[tuple[int, int, int, int], Rule] = {}
        self._l4: dict[int, Rule] = {}
        for r in rules:
            self.add(r)

    def add(self, r: Rule) -> None:
        if r.proto is not None:
            self._l4[r.id] = r
        else:
            self._addr[_addr_key(r)] = r

    def remove(self, r: Rule) -> None:
        if r.proto is not None:
            self._l4.pop(r.id, None)
        elif self._addr.get(_addr_key(r), r).id == r.id:
            self._addr.pop(_addr_key(r), None)

    def rules(self) -> list[Rule]:
        return list(self._addr.values()) + list(self._l4.values())

    def __len__(self) -> int:
        return len(self._addr) + len(self._l4)

    def best_covering(self, family, dir, addr, lo_plen, hi_plen, exclude_id):
        bits = _BITS[family]
        get = self._addr.get
        full = (1 << bits) - 1
        for p in range(hi_plen, lo_plen - 1, -1):
            r = get((family, dir, p, addr & (full ^ ((1 << (bits - p)) - 1))))
            if r is not None and r.id != exclude_id:
                return r
        return None


# Above this many best_covering calls, a plan asks rules_within first.
_WITHIN_MIN = 1024


def _plan_l4(r: Rule, add_: bool) -> Plan:
    plan = Plan()
    for k in _port_keys(r):
        if add_:
            plan.put(PORT_TRIE, k, _val(r))
        else:
            plan.delete(PORT_TRIE, k)
    return plan


def _held_by_longer(rule: Rule, band: Band, index: RuleIndex) -> dict[int, Rule] | None:
    """Stride addresses inside `rule` that a longer rule of its band covers,
    with the longest such rule, from one rules_within call; None if the
    index cannot say or asking key by key is cheap anyway."""
    n_keys = 1 << (band.stride - rule.plen)
    if rule.plen >= band.hi or n_keys * (band.hi - rule.plen) < _WITHIN_MIN:
        return None
    inner = index.rules_within(rule.family, rule.dir, rule.net, rule.plen, rule.plen + 1,
                               band.hi, rule.id)
    if inner is None:
        return None
    held: dict[int, Rule] = {}
    for r in sorted(inner, key=lambda x: x.plen):
        for a in _band_keys(band, r):
            held[a] = r
    return held


def _holder(rule: Rule, band: Band, index: RuleIndex, held, a: int) -> Rule | None:
    """The longer rule of the band holding key `a` inside `rule`, if any."""
    if held is not None:
        return held.get(a)
    if rule.plen >= band.hi:
        return None
    return index.best_covering(rule.family, rule.dir, a, rule.plen + 1, band.hi, rule.id)


def plan_add(rule: Rule, index: RuleIndex) -> Plan:
    """Table changes that add `rule` (or replace the rule with the same id,
    or with the same key) to the rule set `index` describes. `index` may
    already hold the rule or not."""
    validate_rule(rule)
    if rule.proto is not None:
        return _plan_l4(rule, True)
    plan = Plan()
    band = _BAND_BY_LEN[(rule.family, rule.plen)]
    if band is None:
        plan.put(V6_TRIE, abi.pack_trie6_key(rule.dir, rule.net, rule.plen), _val(rule))
        return plan
    held = _held_by_longer(rule, band, index)
    fam, d = rule.family, rule.dir
    plain = None if rule.expires_ns else _val(rule)
    for a in _band_keys(band, rule):
        k = _band_key(band, d, a)
        longer = _holder(rule, band, index, held, a)
        if longer is not None:
            if longer.expires_ns:  # the new rule may become its fallback
                plan.put(band.map, k, _val(longer, _fallback(index, band, fam, d, a, longer, 0, rule)))
            continue
        v = plain if plain is not None else _val(rule, _fallback(index, band, fam, d, a, rule, rule.id))
        plan.put(band.map, k, v)
    return plan


def plan_remove(rule: Rule, index: RuleIndex) -> Plan:
    """Table changes that remove `rule` from the rule set `index` describes
    (`index` may still hold it): each key it held falls back to the next
    longest rule of its band, or goes away."""
    if rule.proto is not None:
        return _plan_l4(rule, False)
    plan = Plan()
    band = _BAND_BY_LEN[(rule.family, rule.plen)]
    if band is None:  # the entry goes, or passes to a list member it hid (same prefix)
        key = abi.pack_trie6_key(rule.dir, rule.net, rule.plen)
        heir = index.best_covering(rule.family, rule.dir, rule.net, rule.plen, rule.plen, rule.id)
        if heir is not None:
            plan.put(V6_TRIE, key, _val(heir))
        else:
            plan.delete(V6_TRIE, key)
        return plan
    held = _held_by_longer(rule, band, index)
    fam, d = rule.family, rule.dir
    up = None
    up_val = None
    if held is not None:
        # keys not held by a longer rule fall back to the longest rule of the
        # band that covers the whole of `rule` (same length included: a rule
        # that replaced it under another id); its fallback is the same for
        # every key, since anything shorter covers all of `up`
        up = index.best_covering(fam, d, rule.net, band.lo, rule.plen, rule.id)
        if up is not None:
            up_val = _val(up, _fallback(index, band, fam, d, rule.net, up, rule.id))
    for a in _band_keys(band, rule):
        k = _band_key(band, d, a)
        longer = _holder(rule, band, index, held, a)
        if longer is not None:
            if longer.expires_ns:  # its fallback may have been `rule`
                plan.put(band.map, k, _val(longer, _fallback(index, band, fam, d, a, longer, rule.id)))
            continue
        if held is not None:
            w, v = up, up_val
        else:
            w = index.best_covering(fam, d, a, band.lo, rule.plen, rule.id)
            v = _val(w, _fallback(index, band, fam, d, a, w, rule.id)) if w is not None else None
        if w is None:
            plan.delete(band.map, k)
        else:
            plan.put(band.map, k, v)
    return plan
