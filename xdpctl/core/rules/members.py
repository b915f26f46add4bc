"""A list's members, packed as one blob for the lists table.

Columnar so that a million pack and unpack with array operations: header
(u32 n4, u32 n6), n4 prefix lengths, n4 IPv4 networks (big-endian), n6
prefix lengths, n6 IPv6 networks (16 bytes each). Rule ids follow that order
(IPv4 members first).
"""

from __future__ import annotations

import struct
from array import array
from itertools import compress
from operator import itemgetter

from ... import abi
from .. import dlcompile as dlc
from .. import prefixes as px

HDR = struct.Struct("=II")


class Members:
    """A list's members as columns, IPv4 ones first (rule-id order)."""

    def __init__(self, nets4: list | None, plens4: bytes, nets6: list | None, plens6: bytes,
                 packed6: bytes | None = None, packed4: bytes | None = None, order4=None):
        """``nets4`` / ``nets6`` None: made from ``packed4`` / ``packed6``
        when first asked for. ``order4``: the IPv4 positions by (length,
        network) when the parser sorted them (px.order_v4)."""
        self._nets4, self.plens4, self._nets6, self.plens6 = nets4, plens4, nets6, plens6
        self.n4, self.n6 = len(plens4), len(plens6)
        self.packed4 = packed4  # nets4 packed (4 bytes each, big-endian) when the parser or the blob had them
        self.packed6 = packed6  # nets6 packed (16 bytes each, big-endian) when the parser had them
        self.order4 = order4  # the key columns (listindex.sorted_keys) reuse it

    def __len__(self) -> int:
        return self.n4 + self.n6

    @property
    def nets4(self) -> list[int]:
        """The IPv4 networks as integers, made on first use from the packed
        ones like nets6: a delta and the stored blob only need the packed
        form (a million integers: 30 ms to make, 36 MB to hold)."""
        if self._nets4 is None:
            self._nets4 = px.unpack_v4(self.packed4)
        return self._nets4

    @property
    def nets6(self) -> list[int]:
        """The IPv6 networks as integers. Made on first use from the packed
        ones (the parser's, or the stored blob's): a list written as a delta
        (listdelta) only reads the packed blob, and a million integers took
        0.3-0.5 s of a 1M IPv6 import."""
        if self._nets6 is None:
            self._nets6 = px.unpack_v6(self.packed6)
        return self._nets6

    @classmethod
    def of(cls, prefixes: "list[px.Prefix] | Members") -> "Members":
        """Members from prefixes (a Members as it is). A caller that builds
        them at once and keeps no list lets a million prefix objects go
        before the import's other peaks."""
        if isinstance(prefixes, Members):
            return prefixes
        if not prefixes:
            return cls([], b"", [], b"")
        fams_b = bytes(map(itemgetter(0), prefixes))
        nets = list(map(itemgetter(1), prefixes))
        plens = bytes(map(itemgetter(2), prefixes))
        n4 = fams_b.count(4)
        if n4 == len(fams_b):
            return cls(nets, plens, [], b"")
        if n4 == 0:
            return cls([], b"", nets, plens)
        m4 = fams_b.translate(bytes(int(i == 4) for i in range(256)))
        m6 = fams_b.translate(bytes(int(i != 4) for i in range(256)))
        return cls(list(compress(nets, m4)), bytes(compress(plens, m4)),
                   list(compress(nets, m6)), bytes(compress(plens, m6)))

    @classmethod
    def _columns(cls, text: str | bytes) -> "Members | None":
        """Text straight to columns, no object per prefix: plain IPv4 or
        IPv6 text by the C helper (px.ipv4_columns, px.ipv6_columns: IPv4
        by numpy without it), else any text whose chunks each hold
        one family (px.text_columns); None for the line-by-line parser."""
        v4 = px.ipv4_columns(text, with_order=True)
        if v4 is not None:
            return cls(None, v4[1], [], b"", packed4=v4[0], order4=v4[2])
        v6 = px.ipv6_columns(text)
        if v6 is not None:
            return cls([], b"", None, v6[1], v6[0])
        cols = px.text_columns(text)
        return None if cols is None else cls(*cols)

    @classmethod
    def parse(cls, text: str | bytes) -> "Members":
        """A block-list text's members, as columns where it can
        (_columns); any other text, or text with a problem, goes through
        px.parse_prefix_text, which raises PrefixError naming the first
        bad line."""
        m = cls._columns(text)
        return m if m is not None else cls.of(px.parse_prefix_text(text))

    @classmethod
    def parse_items(cls, items: list) -> "Members":
        """The members of a JSON list body, one prefix per item, as columns
        like Members.parse; anything else, or a problem, goes through
        px.parse_prefix_items, which raises PrefixItemError naming the item."""
        m = cls._columns(px.items_text(items)) if items else None
        if m is not None and len(m) == len(items):  # else an empty item: the parser names it
            return m
        return cls.of(px.parse_prefix_items(items))

    def flags(self, dst: bool) -> int:
        flags = int(abi.CfgFlag.HAVE_DST) if dst and (self.n4 or self.n6) else 0
        if any(dlc.band_of(6, p) is None for p in set(self.plens6)):
            flags |= int(abi.CfgFlag.HAVE_V6TRIE)
        return flags

    @classmethod
    def unpack(cls, blob: bytes) -> "Members":
        """The inverse of pack()."""
        n4, n6 = HDR.unpack_from(blob)
        o = HDR.size
        plens4 = blob[o:o + n4]
        o += n4
        packed4 = blob[o:o + 4 * n4]
        o += 4 * n4
        plens6 = blob[o:o + n6]
        o += n6
        return cls(None, plens4, None, plens6, blob[o:o + 16 * n6], packed4)

    def prefixes(self) -> list[px.Prefix]:
        """Members in rule-id order."""
        return [px.Prefix(4, n, p) for n, p in zip(self.nets4, self.plens4)] + \
               [px.Prefix(6, n, p) for n, p in zip(self.nets6, self.plens6)]

    def columns(self, base: int, d: int, action: int, expires_ns: int) -> dlc.RuleColumns:
        """Members as compiler input, rule ids from base."""
        import numpy as np

        n = self.n4 + self.n6
        none = [None] * n
        ids = array("I")
        ids.frombytes(np.arange(base, base + n, dtype=np.uint32).tobytes())  # a quarter of array(range())'s time
        return dlc.RuleColumns(
            ids, b"\x04" * self.n4 + b"\x06" * self.n6,
            self._nets(), self.plens4 + self.plens6, bytes([d]) * n, bytes([action]) * n,
            none, none, [expires_ns] * n)

    def _nets(self):
        """The networks column of columns(): with the packed IPv6 networks
        when there are some (dlc.Nets6Later: integers only where asked for,
        unless made already)."""
        if self.n6 and self.packed6 is not None:
            return dlc.Nets6Later(self.nets4, self.packed6, self._nets6)
        return self.nets4 + self.nets6

    def pack(self) -> bytes:
        """The stored blob: header, IPv4 lengths, IPv4 networks (big-endian),
        IPv6 lengths, IPv6 networks."""
        return b"".join((
            HDR.pack(self.n4, self.n6),
            self.plens4,
            self.packed4 if self.packed4 is not None else px.pack_v4(self.nets4),
            self.plens6,
            self.packed6 if self.packed6 is not None else px.pack_v6(self.nets6),
        ))
