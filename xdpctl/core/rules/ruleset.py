"""The whole stored rule set as compiler input, and the config flags it needs.

Individual rules and list members are merged here, deduplicated by match:
an individually managed rule wins over a list member at the same prefix, an
earlier list (by name) over a later one.
"""

from __future__ import annotations

import operator
from itertools import compress, repeat

from ... import abi
from .. import dlcompile as dlc
from .. import prefixes as px
from ..errors import ValidationError
from .clock import clock_pair, wall_to_kernel_ns
from .index import row_to_rule
from .members import Members
from .store import ListRow, State

V6_TRIE_LENS = [p for p in range(129) if dlc.band_of(6, p) is None]
# _keep cuts a list's columns around at most this many dropped members
# (else it filters them item by item)
CUT_MAX = 4096


def member_columns(row: ListRow, now_wall: float, now_kns: int) -> dlc.RuleColumns:
    """A stored list's members as compiler input (rule ids from its id_base)."""
    return Members.unpack(row.entries).columns(row.id_base, row.dir, row.action,
                                               wall_to_kernel_ns(row.expires, now_wall, now_kns))


def list_columns(state: State, now_wall: float, now_kns: int,
                 pending: tuple[str, dlc.RuleColumns] | None = None) -> list[dlc.RuleColumns]:
    """Every list's members as compiler columns, lists by name (an earlier
    list wins a match over a later one). ``pending``: a list being imported
    (name, members), not stored yet; it stands, in its name's place, for
    the stored list of that name."""
    named = [(row.name, member_columns(row, now_wall, now_kns))
             for row in state.list_rows() if pending is None or row.name != pending[0]]
    if pending is not None:
        named.append(pending)
        named.sort(key=lambda nc: nc[0])
    return [cols for _name, cols in named]


def all_rules(state: State, now_wall: float, now_kns: int,
              pending: tuple[str, dlc.RuleColumns] | None = None) -> dlc.RuleColumns:
    """Every rule, individual and list members, deduplicated by match.
    ``pending``: a list being imported (name, members), not stored yet; it
    stands for the stored list of that name."""
    rules = stored_columns(state, now_wall, now_kns)
    lists = list_columns(state, now_wall, now_kns, pending)
    if not lists:
        return rules
    seen = _Seen.of_rules(rules)
    parts = [rules]
    for i, cols in enumerate(lists):
        keep = seen.fresh(cols)
        if keep is not None:
            cols = _keep(cols, keep)
        if i + 1 < len(lists):
            seen.add(cols)
        parts.append(cols)
    return dlc.RuleColumns.concat(parts)


def stored_columns(state: State, now_wall: float, now_kns: int) -> dlc.RuleColumns:
    """The individually managed rules as compiler columns, in id order:
    each row as index.match_to_rule makes it, without a Rule per row."""
    import numpy as np

    ids, fields, addrs, extra = state.rule_matches()
    if not ids:
        return dlc.RuleColumns.of([])
    n = len(ids)
    idv, f = np.array(ids, np.int64), np.array(fields, np.uint32)
    fam = (f >> 24).astype(np.uint8)
    size = np.select([fam == 4, fam == 6], [4, 16], 0)
    raw, start = np.frombuffer(addrs, np.uint8), np.cumsum(size) - size
    nets = np.zeros(n, object)
    for family, width, kind in ((4, 4, ">u4"), (6, 16, None)):
        pos = np.flatnonzero(fam == family)
        if pos.size:
            rows = raw[start[pos][:, None] + np.arange(width)]
            nets[pos] = rows.view(kind).ravel().tolist() if kind else \
                [int.from_bytes(r, "big") for r in map(bytes, rows)]
    if n > 1 and not (idv[1:] > idv[:-1]).all():  # the scan's order: put in id order
        order = np.argsort(idv, kind="stable")
        idv, f, nets = idv[order], f[order], nets[order]
    ids, nets = idv.tolist(), nets.tolist()
    fields = f.astype("<u4").view(np.uint8).reshape(n, 4)  # action, dir, plen, family
    acts, dirs, plens, fams = (fields[:, i].tobytes() for i in range(4))
    protos, ports, exps = [None] * n, [None] * n, [0] * n
    if extra:
        fams, plens = bytearray(fams), bytearray(plens)
        at = np.searchsorted(idv, np.array([e[0] for e in extra], np.int64)).tolist()
        for i, (_rid, proto, port, anyaddr, expires) in zip(at, extra):
            if anyaddr:  # an L4 rule on any address: no family, network or length; proto and port as stored
                fams[i] = nets[i] = plens[i] = 0
                protos[i], ports[i] = proto, port
            else:
                protos[i], ports[i] = proto or None, port or None
            exps[i] = wall_to_kernel_ns(expires, now_wall, now_kns)
        fams, plens = bytes(fams), bytes(plens)
    return dlc.RuleColumns(ids, fams, nets, plens, dirs, acts, protos, ports, exps)


def _keep(cols: dlc.RuleColumns, keep: bytes) -> dlc.RuleColumns:
    """The rows of cols whose byte in keep is 1. A few rows dropped (a list
    that repeats a handful of rules): the columns are cut around them, not
    rebuilt one item at a time."""
    import numpy as np

    gone = np.flatnonzero(np.frombuffer(keep, np.uint8) == 0).tolist()
    if len(gone) > CUT_MAX:
        return dlc.RuleColumns(*[list(compress(c, keep)) if not isinstance(c, bytes) else bytes(compress(c, keep))
                                 for c in cols.cols])
    bounds = list(zip([0] + [i + 1 for i in gone], gone + [len(cols)]))
    out = []
    for c in cols.cols:
        if isinstance(c, bytes):
            out.append(b"".join([c[a:b] for a, b in bounds]))
        else:
            kept: list = []
            for a, b in bounds:
                kept += c[a:b]
            out.append(kept)
    return dlc.RuleColumns(*out)


class _Seen:
    """The matches (family, dir, plen, net) taken so far: IPv4 ones as a
    sorted array of 64-bit keys (dir << 40 | plen << 32 | net), searched
    once per list; IPv6 ones in a set."""

    def __init__(self) -> None:
        self.v6: set[tuple] = set()
        self.v4 = None  # no IPv4 match yet

    @classmethod
    def of_rules(cls, rules: dlc.RuleColumns) -> "_Seen":
        """The matches of the individual rules that have no port (an L4
        rule does not take a list member's match)."""
        import numpy as np

        seen = cls()
        plain = np.fromiter(map(operator.is_, rules.cols[6], repeat(None)), bool, len(rules))
        fam = np.frombuffer(rules.cols[1], np.uint8)
        seen._take(rules, np.flatnonzero(plain & (fam == 4)), np.flatnonzero(plain & (fam == 6)))
        return seen

    @staticmethod
    def _keys4(cols: dlc.RuleColumns, pos=None):
        """The 64-bit keys of the IPv4 rows at ``pos`` (default: every IPv4
        row; a list's IPv4 members come first), and those positions."""
        import numpy as np

        _ids, fams, nets, plens, dirs = cols.cols[:5]
        if pos is None and fams.startswith(b"\x04" * fams.count(4)):
            pos = np.arange(fams.count(4))
            net = nets[:len(pos)]
        else:
            pos = _positions(fams, 4) if pos is None else pos
            net = [nets[i] for i in pos.tolist()]
        d = np.frombuffer(dirs, np.uint8)[pos].astype(np.uint64)
        p = np.frombuffer(plens, np.uint8)[pos].astype(np.uint64)
        return (d << np.uint64(40)) | (p << np.uint64(32)) | np.array(net, np.uint64), pos

    def _take(self, cols: dlc.RuleColumns, pos4=None, pos6=None) -> None:
        """Add the matches of rows of cols: the IPv4 ones at pos4, the IPv6
        ones at pos6 (default: every row of the family)."""
        import numpy as np

        n4 = cols.cols[1].count(4) if pos4 is None else len(pos4)
        if n4:
            keys = self._keys4(cols, pos4)[0]
            self.v4 = px.sort_u64(keys if self.v4 is None else np.concatenate((self.v4, keys)))
        _ids, fams, nets, plens, dirs = cols.cols[:5]
        pos6 = _positions(fams, 6) if pos6 is None else pos6
        self.v6.update((6, dirs[i], plens[i], nets[i]) for i in pos6.tolist())

    def fresh(self, cols: dlc.RuleColumns) -> bytes | None:
        """Which members of a list no earlier rule or list has taken (one
        byte each); None when none is taken."""
        if self.v4 is None and not self.v6:
            return None
        import numpy as np

        drop = np.zeros(len(cols), bool)
        if self.v4 is not None and cols.cols[1].count(4):
            keys, pos = self._keys4(cols)
            at = np.minimum(np.searchsorted(self.v4, keys), self.v4.size - 1)
            drop[pos] = self.v4[at] == keys  # one sorted search (numpy's isin hashes: slower)
        if self.v6 and cols.cols[1].count(6):
            _ids, fams, nets, plens, dirs = cols.cols[:5]
            for i in _positions(fams, 6).tolist():
                drop[i] = (6, dirs[i], plens[i], nets[i]) in self.v6
        return (~drop).astype(np.uint8).tobytes() if drop.any() else None

    def add(self, cols: dlc.RuleColumns) -> None:
        """Add every match of a list's members."""
        self._take(cols)


def _positions(fams: bytes, family: int):
    """The rows of a family column that hold ``family``."""
    import numpy as np

    return np.flatnonzero(np.frombuffer(fams, np.uint8) == family)


def config_flags(state: State) -> int:
    """The xc_cfg flags the stored rule set needs (which lookups to make)."""
    dst, port, v6trie, mgmt, flags = state.rule_set_facts(V6_TRIE_LENS)
    for have, flag in ((dst, abi.CfgFlag.HAVE_DST), (port, abi.CfgFlag.HAVE_PORT),
                       (v6trie, abi.CfgFlag.HAVE_V6TRIE), (mgmt, abi.CfgFlag.HAVE_MGMT)):
        if have:
            flags |= int(flag)
    return flags


def mgmt_rules(state: State, now_wall: float, now_kns: int) -> list[dlc.Rule]:
    return [row_to_rule(r, now_wall, now_kns) for r in state.mgmt_rule_rows()]


def compile_rules(rules, mgmt: list[dlc.Rule]) -> dlc.Compiled:
    """The images of every rule map: ``rules`` into the address and port
    tables, the management rules (also among ``rules``) into xc_mgmt."""
    try:
        out = dlc.compile_full(rules)
        dlc.compile_mgmt(mgmt, out)
        return out
    except dlc.RuleError as exc:  # pragma: no cover - inputs are validated
        raise ValidationError(f"rule set does not compile: {exc}") from None


def compile_stored(state: State) -> dlc.Compiled:
    """The kernel image of the whole stored rule set, as of now."""
    now_wall, now_kns = clock_pair()
    return compile_rules(all_rules(state, now_wall, now_kns), mgmt_rules(state, now_wall, now_kns))
