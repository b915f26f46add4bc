"""List members found by match without loading the lists.

Beside its members (members.py), each list stores one sorted key column per
family: records of (prefix length u8, network big-endian, position u32
big-endian), sorted by (length, network). Record order is byte order, so a
member is found by bisection over the stored blob, read through SQLite's
incremental blob I/O: an incremental change costs a few small reads per
lookup, whatever the size of the lists, and never turns members into
objects. Positions count from the list's first member (rule id id_base).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import NamedTuple

from .. import dlcompile as dlc
from .. import prefixes as px
from .clock import wall_to_kernel_ns
from .members import HDR
from .store import State

ADDR_BYTES = {4: 4, 6: 16}
# numpy dtypes of a key column's records: length, network (big-endian), position
RECORD = {4: [("p", "u1"), ("n", ">u4"), ("i", ">u4")], 6: [("p", "u1"), ("n", "V16"), ("i", ">u4")]}


def sorted_keys(entries: bytes, order4=None) -> tuple[bytes, bytes]:
    """The key columns (IPv4, IPv6) of a packed members blob; ``order4``:
    its IPv4 members' order when known (Members.order4)."""
    import numpy as np

    n4, n6 = HDR.unpack_from(entries)
    o = HDR.size
    plens4 = np.frombuffer(entries, np.uint8, n4, o)
    nets4 = np.frombuffer(entries, ">u4", n4, o + n4)
    o += 5 * n4
    plens6 = np.frombuffer(entries, np.uint8, n6, o)
    nets6 = np.frombuffer(entries, ">u8", 2 * n6, o + n6).reshape(n6, 2)
    if order4 is None:
        order4 = px.order_v4(plens4, nets4)[0]
    rec4 = np.empty(n4, dtype=RECORD[4])
    rec4["p"], rec4["n"], rec4["i"] = plens4[order4], nets4[order4], order4
    order6 = _order6(plens6, nets6)
    rec6 = np.empty(n6, dtype=RECORD[6])
    rec6["p"], rec6["i"] = plens6[order6], order6 + n4
    rec6["n"] = np.frombuffer(entries, "V16", n6, o + n6)[order6]  # as stored: big-endian
    return rec4.tobytes(), rec6.tobytes()


def records(blob, family: int):
    """A key column (bytes, or a blob handle read whole) as records (RECORD)."""
    import numpy as np

    return np.frombuffer(blob if isinstance(blob, bytes) else blob.read(), RECORD[family])


def open_keys(state: State, name: str) -> tuple:
    """A stored list's key columns (IPv4, IPv6): blob handles (the caller
    closes them) or bytes; made from its members for a list stored before
    the key columns existed."""
    blobs = state.open_list_keys(name)
    return sorted_keys(state.list_row(name).entries) if blobs is None else blobs


def _order6(plens, nets):
    """The order of IPv6 keys by (length, high word, low word). A list of
    one length whose high words are all distinct (hosts of distinct /64s,
    the usual block list of /128s) needs one sort of the high words, not
    three passes; else the three-key sort (px.lexsort_u64: numpy's lexsort
    took 0.4-0.5 s for a million)."""
    import numpy as np

    hi = nets[:, 0].astype(np.uint64)  # native order: sorts faster
    if len(hi) > 1 and not np.count_nonzero(plens != plens[0]):
        order, srt = px.argsort_u64(hi)
        if not np.count_nonzero(srt[1:] == srt[:-1]):
            return order
    return px.lexsort_u64((nets[:, 1], hi, plens))


class _Column:
    """One family's sorted records of one list (a blob handle or bytes)."""

    def __init__(self, blob, family: int):
        self.blob = blob
        self.k = 1 + ADDR_BYTES[family]
        self.w = self.k + 4
        self.n = len(blob) // self.w

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> bytes:
        o = i * self.w
        return self.blob[o:o + self.k]

    def find(self, key: bytes) -> int | None:
        """Position of the member with this key, or None."""
        i = bisect_left(self, key)
        if i < self.n and self[i] == key:
            o = i * self.w + self.k
            return int.from_bytes(self.blob[o:o + 4], "big")
        return None

    def span(self, lo: bytes, hi: bytes) -> list[tuple[int, int, int]]:
        """(plen, net, position) of every member with lo <= key <= hi."""
        i, j = bisect_left(self, lo), bisect_right(self, hi)
        if i >= j:
            return []
        data, k, w = self.blob[i * self.w:j * self.w], self.k, self.w
        return [(data[o], int.from_bytes(data[o + 1:o + k], "big"), int.from_bytes(data[o + k:o + w], "big"))
                for o in range(0, len(data), w)]


class _List(NamedTuple):
    name: str
    dir: int
    action: int
    id_base: int
    expires_ns: int
    cols: dict  # family -> _Column


def _key(family: int, plen: int, net: int) -> bytes:
    return bytes((plen,)) + net.to_bytes(ADDR_BYTES[family], "big")


class ListsIndex:
    """Every list's members by match, the first list by name winning;
    close() releases the blob handles (before the transaction ends)."""

    def __init__(self, state: State, now_wall: float, now_kns: int):
        self.lists: list[_List] = []
        self._open: list = []
        for name, d, action, id_base, expires in state.list_heads():
            blobs = open_keys(state, name)
            self._open += [b for b in blobs if not isinstance(b, bytes)]
            cols = {4: _Column(blobs[0], 4), 6: _Column(blobs[1], 6)}
            self.lists.append(_List(name, d, action, id_base, wall_to_kernel_ns(expires, now_wall, now_kns), cols))

    def close(self) -> None:
        for b in self._open:
            b.close()
        self._open = []

    def _rule(self, lst: _List, family: int, plen: int, net: int, pos: int) -> dlc.Rule:
        return dlc.Rule(lst.id_base + pos, family, net, plen, lst.dir, lst.action, None, None, lst.expires_ns)

    def lookup(self, family: int, dir: int, plen: int, net: int) -> tuple[str, dlc.Rule] | None:
        """(list name, member) of the first list holding exactly this prefix."""
        key = _key(family, plen, net)
        for lst in self.lists:
            if lst.dir == dir:
                pos = lst.cols[family].find(key)
                if pos is not None:
                    return lst.name, self._rule(lst, family, plen, net, pos)
        return None

    def get(self, family: int, dir: int, plen: int, net: int) -> dlc.Rule | None:
        hit = self.lookup(family, dir, plen, net)
        return hit[1] if hit else None

    def within(self, family: int, dir: int, net: int, plen: int, lo_plen: int, hi_plen: int) -> list[dlc.Rule]:
        """Members with lo_plen <= length <= hi_plen inside net/plen, one per
        match (the first list's)."""
        last = net | ((1 << (8 * ADDR_BYTES[family] - plen)) - 1)
        seen: dict[tuple[int, int], dlc.Rule] = {}
        for lst in self.lists:
            if lst.dir != dir:
                continue
            col = lst.cols[family]
            for p in range(max(lo_plen, plen), hi_plen + 1):
                for mp, mn, pos in col.span(_key(family, p, net), _key(family, p, last)):
                    if (mp, mn) not in seen:
                        seen[(mp, mn)] = self._rule(lst, family, mp, mn, pos)
        return list(seen.values())
