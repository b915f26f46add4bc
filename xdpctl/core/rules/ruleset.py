"""The whole stored rule set as compiler input, and the config flags it needs.

Individual rules and list members are merged here, deduplicated by match:
an individually managed rule wins over a list member at the same prefix, an
earlier list (by name) over a later one.
"""

from __future__ import annotations

import time
from itertools import compress

from ... import abi
from .. import dlcompile as dlc
from ..errors import ValidationError
from .clock import kernel_ns, wall_to_kernel_ns
from .index import row_to_rule
from .members import Members
from .store import State

V6_TRIE_LENS = [p for p in range(129) if dlc.band_of(6, p) is None]


def list_columns(state: State, now_wall: float, now_kns: int, skip: str | None = None) -> list[dlc.RuleColumns]:
    """Every list's members as compiler columns, lists by name."""
    return [Members.unpack(row.entries).columns(row.id_base, row.dir, row.action,
                                                wall_to_kernel_ns(row.expires, now_wall, now_kns))
            for row in state.list_rows() if row.name != skip]


def all_rules(state: State, now_wall: float, now_kns: int,
              pending: tuple[str, dlc.RuleColumns] | None = None) -> dlc.RuleColumns:
    """Every rule, individual and list members, deduplicated by match.
    ``pending``: a list being imported (name, members), not stored yet; it
    stands for the stored list of that name."""
    rules = [row_to_rule(r, now_wall, now_kns) for r in state.rule_rows()]
    lists = list_columns(state, now_wall, now_kns, skip=pending[0] if pending else None)
    if pending is not None:
        lists.append(pending[1])
    if not lists:
        return dlc.RuleColumns.of(rules)
    seen = {(r.family, r.dir, r.plen, r.net) for r in rules if r.proto is None}
    parts = [dlc.RuleColumns.of(rules)]
    for i, cols in enumerate(lists):
        last = i + 1 == len(lists)
        _ids, fams, nets, plens, dirs = cols.cols[:5]
        if not seen:
            if not last:
                seen.update(zip(fams, dirs, plens, nets))
            parts.append(cols)
            continue
        keys = list(zip(fams, dirs, plens, nets))
        keep = bytes(k not in seen for k in keys)
        if keep.count(1) != len(keep):
            cols = dlc.RuleColumns(*[list(compress(c, keep)) if not isinstance(c, bytes)
                                     else bytes(compress(c, keep)) for c in cols.cols])
            keys = list(compress(keys, keep))
        if not last:
            seen.update(keys)
        parts.append(cols)
    return dlc.RuleColumns.concat(parts)


def config_flags(state: State) -> int:
    """The xc_cfg flags the stored rule set needs (which lookups to make)."""
    flags = 0
    if state.has_dst_rules():
        flags |= int(abi.CfgFlag.HAVE_DST)
    if state.has_port_rules():
        flags |= int(abi.CfgFlag.HAVE_PORT)
    if state.has_v6_address_rules(V6_TRIE_LENS):
        flags |= int(abi.CfgFlag.HAVE_V6TRIE)
    if state.mgmt_rule_rows():
        flags |= int(abi.CfgFlag.HAVE_MGMT)
    return flags | state.list_flags()


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
    now_wall, now_kns = time.time(), kernel_ns()
    return compile_rules(all_rules(state, now_wall, now_kns), mgmt_rules(state, now_wall, now_kns))
