"""The drop-list tables in dict form, and the C lookup emulated over them.

The compiler (xdpctl.core.dlcompile) produces packed table images and
per-map plans; the unit tests compare those as {map: {key: value}} dicts and
ask what bpf/include/droplist.h would answer for an address, without a
kernel:

    tables_to_state(compiled) -> TableState      the images as dicts
    empty_state() / apply_plan(state, plan)      plans applied as the kernel
                                                 layer applies them to maps
    kernel_lookup / kernel_port_lookup           the C lookup over a state
"""
from __future__ import annotations

from typing import Mapping

from xdpctl import abi
from xdpctl.abi import Action
from xdpctl.core.dlcompile import KEY_SIZE, L16, L16_ENTRIES, MGMT, PORT_TRIE, V6_TRIE, VAL_SIZE, Plan, Table

TableState = dict  # map name -> {key bytes: value bytes}

_BITS = {4: 32, 6: 128}
_ZERO_VAL = bytes(VAL_SIZE)
_L16_KEYS = [abi.U32.pack(i) for i in range(L16_ENTRIES)]
_L16_IMAGE = b"".join(_L16_KEYS)

# The C asks an LPM trie again, with a shorter prefix, when the longest
# entry has expired: at most this many lookups (XC_TRIE_RETRY).
TRIE_RETRY = 4


def _mask(family: int, plen: int) -> int:
    bits = _BITS[family]
    return ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)


# ---------------------------------------------------------------------------
# Table state
# ---------------------------------------------------------------------------
def empty_state() -> TableState:
    """The tables with no rule: every map empty, xc_v4_l16 all zero."""
    st = {m: {} for m in abi.RULE_MAPS}
    st[L16] = dict.fromkeys(_L16_KEYS, _ZERO_VAL)
    return st


def split_packed(buf: bytes, size: int, count: int) -> list[bytes]:
    """``count`` records of ``size`` bytes packed back to back, one bytes each."""
    return [buf[i:i + size] for i in range(0, size * count, size)]


def without_deadlines(tables: Mapping[str, Mapping[bytes, bytes]]) -> dict:
    """{map: {key: value fields}} with both deadlines of every value zeroed:
    a TTL is stored as a wall time and turned into kernel time by each
    compile, a few µs apart."""
    out = {}
    fields: dict[bytes, tuple] = {}  # value -> its fields: xc_v4_l16's 131072 values are mostly one
    for name, entries in tables.items():
        rows = {}
        for k, v in entries.items():
            f = fields.get(v)
            if f is None:
                f = list(abi.RULE_VAL.unpack(v[:abi.RULE_VAL.size]))
                f[4] = f[9] = 0
                f = fields[v] = tuple(f)
            rows[k] = f
        out[name] = rows
    return out


def tables_to_state(c: Mapping[str, Table]) -> TableState:
    """{map: {key: value}} from table images (a Compiled)."""
    st: TableState = {}
    for m in abi.RULE_MAPS:
        t = c[m]
        if m == L16 and t.count == L16_ENTRIES and t.keys == _L16_IMAGE:
            keys = _L16_KEYS
        else:
            keys = split_packed(t.keys, KEY_SIZE[m], t.count)
        st[m] = dict(zip(keys, split_packed(t.values, VAL_SIZE, t.count)))
        if len(st[m]) != t.count:
            raise ValueError(f"{m}: duplicate keys in the image")
    return st


def apply_plan(state: TableState, plan: Plan) -> TableState:
    """Apply a plan to a table state (in place), as the kernel layer applies
    it to the maps."""
    for m, mp in plan.items():
        t = state[m]
        for k in mp.deletes:
            t.pop(k, None)
        t.update(mp.updates)
    return state


# ---------------------------------------------------------------------------
# The C lookup, emulated
# ---------------------------------------------------------------------------
def _live(v: bytes | None, now_ns: int) -> abi.RuleVal | None:
    """xc_take: the entry, or past its deadline its live fallback, or None."""
    if v is None:
        return None
    rv = abi.unpack_rule_val(v)
    if rv.action == Action.NONE:
        return None
    if rv.expires_ns and rv.expires_ns <= now_ns:
        if rv.fb_action == Action.NONE or (rv.fb_expires_ns and rv.fb_expires_ns <= now_ns):
            return None
        return abi.RuleVal(rv.fb_rule_id, rv.fb_action, rv.fb_plen, 0, rv.fb_expires_ns)
    return rv


def _unmap(family: int, addr: int) -> tuple[int, int]:
    if family == 6 and (addr >> 32) == 0xFFFF:
        return 4, addr & 0xFFFFFFFF
    return family, addr


def _trie_match(trie: dict, keyf, base: int, maxlen: int, now_ns: int) -> abi.RuleVal | None:
    """Longest live entry of an LPM trie image: keyf(plen) is the stored key
    of a prefix of that length. An expired entry makes it ask again below
    that entry's length, up to TRIE_RETRY lookups in all."""
    if not trie:
        return None
    lens = sorted({abi.U32.unpack_from(k)[0] - base for k in trie}, reverse=True)
    p = maxlen
    for _ in range(TRIE_RETRY):
        raw = None
        for q in lens:
            if q <= p:
                raw = trie.get(keyf(q))
                if raw is not None:
                    break
        if raw is None:
            return None
        v = _live(raw, now_ns)
        if v is not None:
            return v
        rv = abi.unpack_rule_val(raw)
        if rv.plen == 0 or rv.plen > 128:
            return None
        p = rv.plen - 1
    return None


def kernel_lookup(st: TableState, family: int, dir: int, addr: int, now_ns: int = 0) -> abi.RuleVal | None:
    """The address lookup of the drop list over a table state, as the C does
    it: IPv4-mapped addresses go to the IPv4 tables; IPv4 l32, l24, l16;
    IPv6 l128, then the trie match t against the l64, l48, l32 bands (a live
    t longer than the band wins, else a live band entry), then t. An expired
    entry counts as absent. ``st`` may map a name to anything with get()."""
    family, addr = _unmap(family, addr)
    if family == 4:
        for m, stride in (("xc_v4_l32", 32), ("xc_v4_l24", 24)):
            v = _live(st[m].get(abi.pack_key4(dir, addr & _mask(4, stride))), now_ns)
            if v is not None:
                return v
        return _live(st[L16].get(abi.U32.pack(dir * 65536 + (addr >> 16))), now_ns)
    v = _live(st["xc_v6_l128"].get(abi.pack_key6(dir, addr)), now_ns)
    if v is not None:
        return v
    t = _trie_match(st[V6_TRIE], lambda p: abi.pack_trie6_key(dir, addr & _mask(6, p), p),
                    abi.TRIE6_PREFIX_BASE, 128, now_ns)
    for m, stride in (("xc_v6_l64", 64), ("xc_v6_l48", 48), ("xc_v6_l32", 32)):
        if t is not None and t.plen > stride:
            return t
        v = _live(st[m].get(abi.pack_key6(dir, addr & _mask(6, stride))), now_ns)
        if v is not None:
            return v
    return t


def kernel_port_lookup(st: TableState, dir: int, proto: int, port: int, family: int, addr: int,
                       now_ns: int = 0) -> abi.RuleVal | None:
    """xc_port_trie match for (dir, proto, destination port, family,
    address), IPv4-mapped addresses as IPv4, expired entries as in the C."""
    family, addr = _unmap(family, addr)
    return _trie_match(
        st[PORT_TRIE],
        lambda p: abi.pack_port_key(dir, proto, port, family, addr & _mask(family, p), p),
        abi.PORT_PREFIX_BASE, _BITS[family], now_ns)


def kernel_mgmt_lookup(st: TableState, dir: int, family: int, addr: int, now_ns: int = 0) -> abi.RuleVal | None:
    """xc_mgmt match for the address of side ``dir``: IPv4 (and IPv4-mapped)
    as ::ffff:a.b.c.d, expired entries as in the C."""
    family, addr = _unmap(family, addr)
    if family == 4:
        addr |= 0xFFFF00000000
    return _trie_match(st[MGMT], lambda p: abi.pack_trie6_key(dir, addr & _mask(6, p), p),
                       abi.TRIE6_PREFIX_BASE, 128, now_ns)
