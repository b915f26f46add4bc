"""Parsing and validation of user input: IP prefixes, protocols, ports,
durations, and block-list files.

Every error is a `PrefixError` (a ValueError) that carries the offending
text, a one-line human reason, a short machine code and, for files, the line
number. str(error) is the message to show a person as is.

A prefix is a `Prefix(family, net, plen)`: family 4 or 6, the network as an
int (host bits zero), and the prefix length. IPv4-mapped IPv6 prefixes
(::ffff:a.b.c.d/N, N >= 96) become the IPv4 prefix a.b.c.d/(N-96), because
the classifiers look mapped addresses up in the IPv4 tables.
"""
from __future__ import annotations

import os
import re
import socket
import sys
from array import array
from collections import deque
from itertools import accumulate, compress, repeat
from operator import and_, itemgetter, lshift, or_
from typing import Iterable, NamedTuple

from .. import native
from .errors import cut
from .gcpause import collector_paused

__all__ = [
    "PrefixError", "Prefix", "parse_prefix", "parse_address", "format_prefix",
    "format_address", "prefix_contains", "parse_proto", "proto_name",
    "parse_port", "parse_duration", "parse_prefix_text", "parse_prefix_lines",
    "load_prefix_file", "ipv4_columns", "text_columns", "PROTOCOLS",
]


class PrefixError(ValueError):
    """Bad user input. Attributes: text (the offending input), reason (the
    message without the line number), code (short machine-readable kind),
    lineno (1-based line in a file, or None), other_lineno (for duplicates:
    the line of the first occurrence)."""

    def __init__(self, text: str, reason: str, code: str = "syntax", *,
                 lineno: int | None = None, other_lineno: int | None = None):
        self.text = text
        self.reason = reason
        self.code = code
        self.lineno = lineno
        self.other_lineno = other_lineno
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.lineno is not None:
            return f"line {self.lineno}: {self.reason}"
        return self.reason

    def at_line(self, lineno: int) -> "PrefixError":
        return PrefixError(self.text, self.reason, self.code, lineno=lineno,
                           other_lineno=self.other_lineno)


class PrefixItemError(PrefixError):
    """A bad item of prefixes given one per item (a JSON array): index
    (0-based) and value (the item as given) name it instead of a line."""

    def __init__(self, index: int, value: object, reason: str, code: str = "syntax", *,
                 other_index: int | None = None):
        self.index, self.value, self.other_index = index, value, other_index
        super().__init__(str(value), reason, code)

    def __str__(self) -> str:
        return f"prefixes[{self.index}]: {self.reason}"


class Prefix(NamedTuple):
    family: int   # 4 or 6
    net: int      # network address, host bits zero
    plen: int     # prefix length

    def __str__(self) -> str:
        return format_prefix(self)


_DIGITS_MAX = 20  # decimal digits of the largest number any field takes (u64)
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_BITS = {4: 32, 6: 128}
_MAPPED_HI = 0xFFFF  # ::ffff:0:0/96, address >> 32
_MASK4 = [(0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF for p in range(33)]
_ALL6 = (1 << 128) - 1


def _mask(family: int, plen: int) -> int:
    bits = _BITS[family]
    return ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)


def pack_v6(nets: list[int]) -> bytes:
    """IPv6 addresses packed as 16 big-endian bytes each (raises
    OverflowError for one out of range, TypeError for a non-integer)."""
    return b"".join(map(int.to_bytes, nets, repeat(16), repeat("big")))


def unpack_v6(raw: bytes) -> list[int]:
    """The inverse of pack_v6: packed 16-byte addresses as integers."""
    return _ints(6, raw)


def pack_v4(nets: list[int]) -> bytes:
    """IPv4 addresses packed as 4 big-endian bytes each."""
    packed = array("I", nets)
    if sys.byteorder == "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_v4(raw: bytes) -> list[int]:
    """The inverse of pack_v4: packed 4-byte addresses as integers."""
    return _ints(4, raw)


def format_address(family: int, addr: int) -> str:
    return socket.inet_ntop(_AF[family], addr.to_bytes(4 if family == 4 else 16, "big"))


def format_prefix(p: Prefix, *, bare: bool = False) -> str:
    """'10.0.0.0/8'; with bare=True a host prefix is written without length."""
    s = format_address(p.family, p.net)
    if bare and p.plen == _BITS[p.family]:
        return s
    return f"{s}/{p.plen}"


def prefix_contains(p: Prefix, family: int, addr: int) -> bool:
    return family == p.family and (addr & _mask(family, p.plen)) == p.net


def _q(text: str) -> str:
    """Quote text for a message only when it would otherwise be unclear;
    long text is cut (a 10 MB bad line is never echoed whole)."""
    if text and text.isprintable() and not text.isspace() and text == text.strip():
        return cut(text)
    return cut(repr(text))


def _number(text: str, what: str, code: str) -> int:
    """Decimal digits -> int; more digits than any valid value has is an
    error (never Python's integer-string limit)."""
    if len(text) > _DIGITS_MAX:
        raise PrefixError(text, f"{what} {_q(text)} is too large", code)
    return int(text)


def _int_text(value: int) -> str:
    """An int as text for a message (Python refuses str() of huge ints)."""
    return str(value) if value.bit_length() <= 64 else f"a number of {value.bit_length()} bits"


def _why_bad_v4(addr: str) -> str:
    parts = addr.split(".")
    if len(parts) != 4:
        return f"{_q(addr)} is not an IPv4 address: expected 4 dotted decimal numbers, found {len(parts)}"
    for part in parts:
        if not part:
            return f"{_q(addr)} is not an IPv4 address: empty number between dots"
        if not (part.isascii() and part.isdigit()):
            return f"{_q(addr)} is not an IPv4 address: {_q(part)} is not a decimal number"
        if len(part) > 1 and part[0] == "0":
            return f"{_q(addr)} is not an IPv4 address: leading zero in {part!r} (octal is not accepted)"
        if len(part) > 3 or int(part) > 255:
            return f"{_q(addr)} is not an IPv4 address: {_q(part)} is out of range 0..255"
    return f"{_q(addr)} is not an IPv4 address"


def _parse_addr(addr: str, whole: str) -> tuple[int, int]:
    """(family, int) of an address string without length; no normalisation."""
    if ":" in addr:
        if "%" in addr:
            raise PrefixError(whole, f"{_q(whole)}: a zone index (%...) is not allowed in a prefix", "syntax")
        try:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, addr), "big")
        except (OSError, ValueError):
            raise PrefixError(whole, f"{_q(addr)} is not an IPv6 address", "syntax") from None
    if "." in addr:
        try:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
        except (OSError, ValueError):
            raise PrefixError(whole, _why_bad_v4(addr), "syntax") from None
    if not addr:
        raise PrefixError(whole, f"{_q(whole)}: missing address", "syntax")
    raise PrefixError(whole, f"{_q(addr)} is not an IP address or prefix", "syntax")


def parse_prefix(text: str, *, strict: bool = True, family: int | None = None) -> Prefix:
    """Parse 'a.b.c.d/N', 'x:y::/N' or a bare address (/32, /128).

    strict: host bits set is an error (with the corrected prefix as a hint);
    strict=False masks them off. family: 4 or 6 to require one family (after
    IPv4-mapped normalisation)."""
    if not isinstance(text, str):
        raise PrefixError(repr(text), f"expected a prefix string, got {type(text).__name__}", "syntax")
    s = text.strip()
    if not s:
        raise PrefixError(text, "empty prefix", "syntax")
    addr, slash, plen_s = s.partition("/")
    fam, net = _parse_addr(addr, s)
    bits = _BITS[fam]
    if slash:
        if not plen_s:
            raise PrefixError(s, f"{_q(s)}: missing prefix length after '/'", "syntax")
        if not (plen_s.isascii() and plen_s.isdigit()) or len(plen_s) > 3:
            raise PrefixError(s, f"{_q(s)}: prefix length {_q(plen_s)} is not a decimal number", "syntax")
        plen = int(plen_s)
        if plen > bits:
            raise PrefixError(s, f"{_q(s)}: prefix length {plen} out of range 0..{bits} for IPv{fam}", "length")
    else:
        plen = bits
    out_fam, out_net, out_plen = fam, net, plen
    if fam == 6 and (net >> 32) == _MAPPED_HI:
        if plen < 96:
            raise PrefixError(
                s, f"{_q(s)}: an IPv4-mapped prefix needs a length of 96 or more "
                   f"(/{plen} would span non-mapped IPv6 space)", "mapped")
        out_fam, out_net, out_plen = 4, net & 0xFFFFFFFF, plen - 96
    m = _mask(out_fam, out_plen)
    if out_net & ~m:
        fixed = net & _mask(fam, plen)
        if strict:
            hint = f"{format_address(fam, fixed)}/{plen}"
            raise PrefixError(s, f"{_q(s)} has host bits set; did you mean {hint}?", "host_bits")
        out_net &= m
    if family is not None and out_fam != family:
        raise PrefixError(s, f"{_q(s)} is an IPv{out_fam} prefix; IPv{family} expected", "family")
    return Prefix(out_fam, out_net, out_plen)


def parse_address(text: str, *, family: int | None = None) -> tuple[int, int]:
    """Parse a bare address to (family, int), IPv4-mapped IPv6 -> IPv4."""
    if isinstance(text, str) and "/" in text:
        raise PrefixError(text, f"{_q(text.strip())}: an address is expected, not a prefix", "syntax")
    p = parse_prefix(text, family=family)
    return p.family, p.net


# ---------------------------------------------------------------------------
# Protocols, ports, durations
# ---------------------------------------------------------------------------
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
_PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}


def proto_name(num: int) -> str:
    return _PROTO_NAMES.get(num, str(num))


def parse_proto(value: str | int) -> int:
    """'tcp'/'udp'/'sctp' (any case) or 6/17/132 -> protocol number."""
    if isinstance(value, bool):
        raise PrefixError(repr(value), f"protocol {value!r} is not valid; expected tcp, udp or sctp", "proto")
    if isinstance(value, int):
        if value in _PROTO_NAMES:
            return value
        raise PrefixError(_int_text(value), f"protocol {_int_text(value)} is not supported; expected tcp (6), udp (17) or sctp (132)", "proto")
    s = str(value).strip()
    num = PROTOCOLS.get(s.lower())
    if num is not None:
        return num
    if s.isascii() and s.isdigit():
        return parse_proto(_number(s, "protocol", "proto"))
    if not s:
        raise PrefixError(value, "empty protocol; expected tcp, udp or sctp", "proto")
    raise PrefixError(value, f"protocol {_q(s)} is not supported; expected tcp, udp or sctp", "proto")


def parse_port(value: str | int) -> int:
    """A destination port 1..65535."""
    if isinstance(value, bool):
        raise PrefixError(repr(value), f"port {value!r} is not a number", "port")
    if isinstance(value, int):
        n = value
        text = _int_text(value)
    else:
        text = str(value).strip()
        if not text:
            raise PrefixError(value, "empty port; expected a number 1..65535", "port")
        if not (text.isascii() and text.isdigit()):
            raise PrefixError(value, f"port {_q(text)} is not a number; expected 1..65535", "port")
        n = _number(text, "port", "port")
    if not 1 <= n <= 65535:
        raise PrefixError(text, f"port {text} out of range 1..65535", "port")
    return n


_DUR_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DUR_RE = re.compile(r"(\d+)([a-zA-Z]*)")
_DUR_MAX_S = (1 << 63) // 1_000_000_000  # fits a u64 nanosecond deadline


def parse_duration(value: str | int) -> int:
    """'30s', '5m', '2h', '7d', '1h30m' (units d, h, m, s, each at most once,
    largest first) or a bare number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise PrefixError(repr(value), f"duration {value!r} is not valid", "duration")
    if isinstance(value, int):
        total = value
        text = _int_text(value)
    else:
        text = str(value).strip()
        if not text:
            raise PrefixError(value, "empty duration; expected e.g. 30s, 5m, 2h, 7d or 1h30m", "duration")
        if text.isascii() and text.isdigit():
            total = _number(text, "duration", "duration")
        else:
            parts = _DUR_RE.findall(text)
            if not text.isascii() or not parts or "".join(n + u for n, u in parts) != text:
                raise PrefixError(text, f"duration {_q(text)} is not valid; expected e.g. "
                                        "30s, 5m, 2h, 7d or 1h30m", "duration")
            order = list(_DUR_UNITS)
            total, last = 0, -1
            for num, unit in parts:
                u = unit.lower()
                if u not in _DUR_UNITS:
                    what = f"unit {unit!r} is unknown" if unit else f"number {num} has no unit"
                    raise PrefixError(text, f"duration {_q(text)}: {what}; use d, h, m or s", "duration")
                if order.index(u) <= last:
                    raise PrefixError(text, f"duration {_q(text)}: units must appear once each, "
                                            "largest first (d, h, m, s)", "duration")
                last = order.index(u)
                total += _number(num, "duration", "duration") * _DUR_UNITS[u]
    if total <= 0:
        raise PrefixError(text, f"duration {_q(text)} must be positive", "duration")
    if total > _DUR_MAX_S:
        raise PrefixError(text, f"duration {_q(text)} is too long", "duration")
    return total


# ---------------------------------------------------------------------------
# Block-list files
# ---------------------------------------------------------------------------
# One prefix per line; '#' or ';' starts a comment (whole line or trailing,
# e.g. "1.2.3.0/24 ; SBL123"); blank lines are skipped. Duplicates are an
# error naming both lines. The fast path handles IPv4 or IPv6 text a chunk
# at a time with C-level passes (split, inet_pton, array); any anomaly sends the whole
# input through the line-by-line path, which is the authority: it reports
# the first bad line, or returns the same result when the fast path was only
# being cautious.

_COMMENT_RE = re.compile(r"[#;][^\n]*")
_TEXT_ONLY = "\r#;"  # text-body syntax: never part of one prefix given as an item
_PLEN4 = {str(i): i for i in range(33)}
_PLEN6 = {str(i): i for i in range(129)}
_MASK6 = [(_ALL6 << (128 - p)) & _ALL6 for p in range(129)]
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_CHUNK = 1 << 18  # characters per fast-path chunk: intermediates stay cache-warm
_PREFIX_NEW = tuple.__new__


class _Reject(Exception):
    """The fast path cannot vouch for a chunk."""


def _strip_comment(line: str) -> str:
    for c in "#;":
        i = line.find(c)
        if i >= 0:
            line = line[:i]
    return line.strip()


def _slow(lines: Iterable[str], start: int, allow_duplicates: bool) -> list[Prefix]:
    out: list[Prefix] = []
    seen: dict[Prefix, int] = {}
    for lineno, raw in enumerate(lines, start):
        s = _strip_comment(raw)
        if not s:
            continue
        try:
            p = parse_prefix(s)
        except PrefixError as e:
            raise e.at_line(lineno) from None
        first = seen.get(p)
        if first is not None:
            if allow_duplicates:
                continue
            raise PrefixError(s, f"{format_prefix(p)} on line {lineno} duplicates line {first}",
                              "duplicate", lineno=lineno, other_lineno=first)
        seen[p] = lineno
        out.append(p)
    return out


def _chunk_lines(text: str) -> tuple[list[str], str]:
    """A chunk's non-empty lines, without comments and blanks, and the
    text they make (joined by newlines)."""
    if "#" in text or ";" in text:
        text = _COMMENT_RE.sub("", text)
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n")
    dirty = False
    if " " in text or "\t" in text or "\r" in text or "\f" in text or "\v" in text:
        lines = list(map(str.strip, lines))
        dirty = True
    if "" in lines:
        lines = list(filter(None, lines))
        dirty = True
    return lines, "\n".join(lines) if dirty else text


def _slashes(text: str, lines: list[str], plens: list[int], table: dict) -> list[int] | None:
    """Split 'addr/len' lines in place (lines keep the address, plens get
    the length); the indexes of those lines, or None if there are none."""
    if "/" not in text:
        return None
    # line numbers of the lines with a '/', without visiting every line:
    # count the newlines between one '/' and the next
    pieces = text.split("/")
    del pieces[-1]
    idx = list(accumulate(map(str.count, pieces, repeat("\n"))))
    sl = itemgetter(*idx)(lines) if len(idx) > 1 else (lines[idx[0]],)
    addrs, _, ps = zip(*map(str.partition, sl, repeat("/")))
    if not table.keys() >= set(ps):
        raise _Reject
    deque(map(lines.__setitem__, idx, addrs), maxlen=0)
    deque(map(plens.__setitem__, idx, map(table.__getitem__, ps)), maxlen=0)
    return idx


def _nets(family: int, lines: list[str]) -> tuple[list[int], bytes]:
    """The addresses of the lines as integers, and packed (C-level
    inet_pton passes)."""
    try:
        raw = b"".join(map(socket.inet_pton, repeat(_AF[family]), lines))
    except (OSError, ValueError):
        raise _Reject from None
    return _ints(family, raw), raw


def _ints(family: int, raw: bytes) -> list[int]:
    if family == 6:  # each as its two halves: two lists of small ints, then one shift and or
        import numpy as np

        halves = np.frombuffer(raw, ">u8").reshape(-1, 2)
        return list(map(or_, map(lshift, halves[:, 0].tolist(), repeat(64)), halves[:, 1].tolist()))
    arr = array("I")
    arr.frombytes(raw)
    if sys.byteorder == "little":
        arr.byteswap()
    return arr.tolist()


def _any_mapped(raw: bytes) -> bool:
    """Is any of the packed IPv6 addresses IPv4-mapped (::ffff:0:0/96)?"""
    import numpy as np

    w = np.frombuffer(raw, ">u4").reshape(-1, 4)
    return bool(np.count_nonzero((w[:, 0] == 0) & (w[:, 1] == 0) & (w[:, 2] == _MAPPED_HI)))


class _Chunk(NamedTuple):
    """One chunk of single-family text as columns (_chunk_columns)."""

    family: int
    nets: list[int]
    plens: list[int]
    raw: bytes          # the networks packed (4 or 16 bytes each, big-endian)
    short: list[int]    # indexes of the entries shorter than a host


def _chunk_columns(text: str) -> _Chunk | None:
    """One chunk of single-family text (comments and blank lines allowed)
    as columns; None when it holds no entry. Raises _Reject on anything
    unusual: both families, IPv4-mapped addresses, bad syntax, host bits."""
    family = 6 if ":" in text else 4
    if family == 6 and "." in text:
        raise _Reject  # IPv4 lines or IPv4-mapped addresses: the line-by-line path
    lines, text = _chunk_lines(text)
    n = len(lines)
    if not n:
        return None
    if family == 4 and native.lib() is not None:
        got = native.ipv4_columns(text.encode("utf-8", "surrogatepass"))
        if got is not None:  # else the lines below accept it (a zero-led length) or refuse it
            import numpy as np

            nets4, plens4 = got
            return _Chunk(4, nets4.tolist(), plens4.tolist(), nets4.astype(">u4").tobytes(),
                          np.flatnonzero(plens4 != 32).tolist())
    bits = _BITS[family]
    plens = [bits] * n
    idx = _slashes(text, lines, plens, _PLEN4 if family == 4 else _PLEN6)
    nets, raw = _nets(family, lines)
    short: list[int] = []
    if idx:
        masks = _MASK4 if family == 4 else _MASK6
        sn = itemgetter(*idx)(nets) if len(idx) > 1 else (nets[idx[0]],)
        sp = itemgetter(*idx)(plens) if len(idx) > 1 else (plens[idx[0]],)
        if list(map(and_, sn, map(masks.__getitem__, sp))) != list(sn):
            raise _Reject  # host bits set
        short = [i for i, p in zip(idx, sp) if p != bits]
    if family == 6 and _any_mapped(raw):
        raise _Reject
    return _Chunk(family, nets, plens, raw, short)


def _hosts_of(c: _Chunk):
    """The chunk's host networks, for the one sort that finds their
    duplicates: IPv4 as an array of u32, IPv6 packed."""
    if c.short:
        keep = bytearray(b"\x01") * len(c.nets)
        for i in c.short:
            keep[i] = 0
    if c.family == 4:
        return array("I", compress(c.nets, keep) if c.short else c.nets)
    if not c.short:
        return c.raw
    n = len(c.nets)
    return b"".join(compress(map(c.raw.__getitem__, map(slice, range(0, 16 * n, 16), range(16, 16 * n + 16, 16))),
                             keep))


def _fast_chunk(text: str, out: list, seen32: list, seen128: list, other: set) -> tuple[int, int]:
    """Parse one chunk of single-family text: append Prefixes to out, the
    networks of its hosts (IPv4 /32, IPv6 /128) to seen32 or seen128 (one
    array or packed blob per chunk) and the other entries to other; return
    the numbers of hosts and others. Raises _Reject as _chunk_columns."""
    c = _chunk_columns(text)
    if c is None:
        return 0, 0
    mark = len(out)
    out.extend(map(_PREFIX_NEW, repeat(Prefix), zip(repeat(c.family), c.nets, c.plens)))
    (seen32 if c.family == 4 else seen128).append(_hosts_of(c))
    other.update(out[mark + i] for i in c.short)
    return len(c.nets) - len(c.short), len(c.short)


def _distinct(parts: list) -> int:
    """How many distinct values arrays of u32 hold together (one sort:
    numpy's unique hashes, several times slower here)."""
    import numpy as np

    srt = np.sort(np.frombuffer(b"".join(parts), np.uint32))
    return int(srt.size and 1 + np.count_nonzero(srt[1:] != srt[:-1]))


def _distinct128(parts: list, lens: bytes | None = None) -> int:
    """How many distinct 16-byte addresses packed blobs hold together (with
    ``lens``, distinct (address, length) pairs, a length per address): one
    sort of a 64-bit mix of each; only when two mixes collide, one sort of
    the addresses (and lengths) themselves."""
    import numpy as np

    words = np.frombuffer(b"".join(parts), np.uint64).reshape(-1, 2)
    if not len(words):
        return 0
    ln = np.zeros(len(words), np.uint64) if lens is None else np.frombuffer(lens, np.uint8).astype(np.uint64)
    mix = sort_u64(words[:, 0] ^ (words[:, 1] * np.uint64(0x9E3779B97F4A7C15)) ^ (ln << np.uint64(56)))
    if not np.count_nonzero(mix[1:] == mix[:-1]):
        return len(words)
    order = lexsort_u64((ln, words[:, 1], words[:, 0]))
    w, ln = words[order], ln[order]
    return int(1 + np.count_nonzero((w[1:] != w[:-1]).any(axis=1) | (ln[1:] != ln[:-1])))


def _decoded(text: str | bytes) -> str:
    """A block list's text: UTF-8 (else Latin-1) bytes decoded, a byte-order mark dropped."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            text = bytes(text).decode("latin-1")
    return text[1:] if text.startswith("\ufeff") else text


def _chunks(text: str):
    """The text in pieces of about _CHUNK characters, each ending at a line end."""
    pos, end_all = 0, len(text)
    while pos < end_all:
        end = text.find("\n", pos + _CHUNK)
        end = end_all if end < 0 else end + 1
        yield text[pos:end]
        pos = end


def parse_prefix_text(text: str | bytes, *, allow_duplicates: bool = False) -> list[Prefix]:
    """Parse a whole block-list file's text. Returns the prefixes in file
    order; raises PrefixError naming the first bad line (or, for a
    duplicate, both lines). With allow_duplicates, later duplicates are
    dropped silently."""
    text = _decoded(text)
    with collector_paused():  # millions of small objects, no cycles
        out: list[Prefix] = []
        # Duplicates: the IPv4 /32 and IPv6 /128 networks must be distinct
        # (arrays and packed blobs, sorted once at the end), and so must the
        # other prefixes (a set; counted as they are added).
        seen32: list = []
        seen128: list = []
        other: set = set()
        n32 = n_other = 0
        lineno = 1
        try:
            for chunk in _chunks(text):
                mark = len(out)
                try:
                    a, b = _fast_chunk(chunk, out, seen32, seen128, other)
                except _Reject:
                    del out[mark:]
                    got = _slow(chunk.split("\n"), lineno, False)
                    a = b = 0
                    seen32.append(array("I"))
                    for p in got:
                        if p.family == 4 and p.plen == 32:
                            seen32[-1].append(p.net)
                            a += 1
                        elif p.family == 6 and p.plen == 128:
                            seen128.append(p.net.to_bytes(16, "big"))
                            a += 1
                        else:
                            other.add(p)
                            b += 1
                    out.extend(got)
                n32 += a
                n_other += b
                lineno += chunk.count("\n")
            if _distinct(seen32) + _distinct128(seen128) != n32 or len(other) != n_other:
                raise _Reject  # a duplicate somewhere
        except (_Reject, PrefixError):
            # the line-by-line pass names the first problem in file order
            return _slow(text.split("\n"), 1, allow_duplicates)
        return out


_V4_TEXT = b"0123456789./\n"  # all that plain IPv4 text holds
_V4_CHUNK = 1 << 20  # bytes per step of ipv4_columns: its arrays stay a few MB


def ipv4_columns(data: str | bytes, with_order: bool = False) -> tuple | None:
    """Plain IPv4 text (one a.b.c.d or a.b.c.d/len per line and nothing
    else: no comment, blank line or space) as columns, without an object
    per line: the networks packed (4 bytes each, big-endian: no integer per
    network, which a list written as a delta never needs; unpack_v4 makes
    them) and the prefix lengths, in file order; ``with_order``: and the
    sort that found the duplicates (order_v4), which a list's key columns
    reuse. None for
    any other text, and for any problem in it (a bad octet or length, a
    leading zero, host bits, a duplicate): parse_prefix_text then parses
    it, and names the problem. The C helper reads the text in one pass
    (xdpctl.native); without it numpy works a megabyte at a time."""
    data = _plain_bytes(data, ":")  # ':': IPv6 text
    if data is None:
        return None
    import numpy as np

    got = native.ipv4_columns(data) if native.lib() is not None else _ipv4_numpy(np, data)
    if got is None:
        return None
    net, plen = got
    order, unique = order_v4(plen, net)
    if not unique:
        return None  # a duplicate
    cols = net.astype(">u4").tobytes(), plen.tobytes()
    return (*cols, order) if with_order else cols


def sort_u64(words):
    """A new uint64 array ``words`` sorted, maybe in place: by the C
    helper's radix sort (xdpctl.native), else by numpy."""
    import numpy as np

    if native.lib() is None:
        return np.sort(words)
    native.sort_u64(words)
    return words


def argsort_u64(words) -> tuple:
    """uint64 ``words`` (left as they are) in ascending order: (the
    positions they came from, equal words in position order; the words
    sorted). By the C helper's radix sort, else numpy's stable argsort."""
    import numpy as np

    if native.lib() is None or len(words) >= 1 << 32:
        order = np.argsort(words, kind="stable")
        return order, words[order]
    srt = np.array(words, dtype=np.uint64, order="C")  # a copy: sorted in place
    return native.argsort_u64(srt), srt


def lexsort_u64(keys):
    """The order numpy's ``lexsort`` gives unsigned integer columns of one
    length (the last key primary; ties in position order), by one stable
    argsort_u64 per key, least significant first: a million rows of three
    keys 0.30 -> 0.12 s here."""
    order = None
    for k in keys:
        by, _srt = argsort_u64(k if order is None else k[order])
        order = by if order is None else order[by]
    return order


_POS_BITS = 24  # order_v4: positions that ride in the low bits of a (length, network) word


def order_v4(plens, nets) -> tuple:
    """IPv4 prefixes (lengths and networks as numpy arrays) sorted by
    (length, network): (their positions in that order; no two equal). Up
    to 2^24 of them, one plain sort (sort_u64) of 64-bit words with the
    position in their low 24 bits; past that, argsort_u64. The parser's
    duplicate check and a list's key columns (listindex) need the same
    sort, so a parsed list is sorted once (Members.order4)."""
    import numpy as np

    keys = (plens.astype(np.uint64) << np.uint64(32)) | nets.astype(np.uint64)
    if len(keys) > 1 << _POS_BITS:
        order, keys = argsort_u64(keys)
        return order, not np.count_nonzero(keys[1:] == keys[:-1])
    bits = np.uint64(_POS_BITS)
    srt = sort_u64((keys << bits) | np.arange(len(keys), dtype=np.uint64))
    keys = srt >> bits
    return (srt & np.uint64((1 << _POS_BITS) - 1)).astype(np.intp), not np.count_nonzero(keys[1:] == keys[:-1])


def _plain_bytes(data: str | bytes, other: str) -> bytes | None:
    """Text for a plain-text reader of one family: as bytes without a
    byte-order mark; None when it is empty or holds ``other`` (a character
    only the other family's text has), found at memchr speed, before any
    encoding."""
    if isinstance(data, str):
        if other in data:
            return None
        data = data.encode("utf-8", "surrogatepass")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return None if not data or other.encode() in data else data


def ipv6_columns(data: str | bytes) -> tuple[bytes, bytes] | None:
    """Plain IPv6 text (one address or address/len per line and nothing
    else) as columns by the C helper: the networks packed (16 bytes each)
    and the prefix lengths, in file order (no integer per network: a
    million took 0.3-0.5 s, and a list written as a delta never needs
    them; unpack_v6 makes them). None for
    any other text (a dotted IPv4 tail, comments, blank lines, spaces), for
    any problem in it (host bits, a bad length, an IPv4-mapped address, a
    duplicate), and without the library: text_columns then takes it, and
    parse_prefix_text names a problem."""
    data = _plain_bytes(data, ".") if native.lib() is not None else None  # '.': IPv4 text, a dotted tail
    if data is None:
        return None
    got = native.ipv6_columns(data)
    if got is None:
        return None
    packed, plens = got
    if _distinct128([packed], plens) != len(plens):
        return None  # a duplicate
    return packed, plens


def _ipv4_numpy(np, data: bytes):
    """ipv4_columns' columns by numpy, a chunk at a time: (networks,
    lengths) as arrays, duplicates included, or None."""
    if data.translate(None, _V4_TEXT):
        return None
    if not data.endswith(b"\n"):
        data += b"\n"
    nets, plens = [], []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos + _V4_CHUNK)
        end = len(data) if end < 0 else end + 1
        got = _v4_chunk(np, np.frombuffer(data, np.uint8, end - pos, pos))
        if got is None:
            return None
        nets.append(got[0])
        plens.append(got[1])
        pos = end
    return np.concatenate(nets), np.concatenate(plens)


def _v4_chunk(np, a):
    """One chunk of ipv4_columns (whole lines, the last ending in a newline):
    (networks as uint32, lengths as uint8), or None."""
    sep = np.flatnonzero((a == 46) | (a == 47) | (a == 10)).astype(np.int32)  # . / newline
    kind = a[sep]
    flen = np.diff(sep, prepend=-1) - 1  # each field: the digits before a separator
    if flen.min() < 1 or flen.max() > 3:
        return None
    # a field's digits, from its separator back: ones, tens, hundreds
    ones = a[sep - 1].astype(np.int16) - 48
    tens = a[sep - 2].astype(np.int16) - 48  # before the chunk (-1: its last byte) when the field is shorter
    hundreds = a[sep - 3].astype(np.int16) - 48
    two, three = flen >= 2, flen == 3
    lead = np.where(three, hundreds, np.where(two, tens, ones))
    if np.count_nonzero(two & (lead == 0)):
        return None  # a leading zero
    val = ones + two * (tens * 10) + three * (hundreds * 100)
    nl = np.flatnonzero(kind == 10)  # the field ending each line
    nf = np.diff(nl, prepend=-1)  # fields per line: 4, or 5 with a length
    if np.count_nonzero((nf != 4) & (nf != 5)):
        return None
    has_len = nf == 5
    b = nl - 3 - has_len  # each line's first octet
    if np.count_nonzero(kind[b] != 46) or np.count_nonzero(kind[b + 1] != 46) \
            or np.count_nonzero(kind[b + 2] != 46) or np.count_nonzero(kind[b + 3] != np.where(has_len, 47, 10)):
        return None
    octets = np.stack((val[b], val[b + 1], val[b + 2], val[b + 3])).astype(np.uint32)
    plen = np.where(has_len, val[nl], 32)
    if octets.max() > 255 or plen.max() > 32:
        return None
    net = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
    host = (np.uint64(1) << (32 - plen).astype(np.uint64)) - np.uint64(1)  # the host bits of each length
    if np.count_nonzero(net.astype(np.uint64) & host):
        return None
    return net, plen.astype(np.uint8)


def _by_family(chunk: str) -> list[str]:
    """A chunk as texts of one family each, for columns kept by family: its
    comments dropped (a URL in one holds both ':' and '.'), then its lines
    split by ':' (IPv6) or not, each family's lines in their order. An
    IPv4-mapped address stays among the IPv6 lines, whose '.' sends the
    text to the parser."""
    if ":" not in chunk or "." not in chunk:
        return [chunk]
    if "#" in chunk or ";" in chunk:
        chunk = _COMMENT_RE.sub("", chunk)
        if ":" not in chunk or "." not in chunk:
            return [chunk]
    v4, v6 = [], []
    for line in chunk.split("\n"):
        (v6 if ":" in line else v4).append(line)
    return ["\n".join(v4), "\n".join(v6)]


def text_columns(data: str | bytes) -> tuple[list[int], bytes, list[int], bytes, bytes] | None:
    """Block-list text as columns by family, without an object per line:
    IPv4 networks and lengths, IPv6 networks, lengths and networks packed
    (16 bytes each), each family in file order. The chunks of
    parse_prefix_text's fast path, comments and blank lines allowed, a
    chunk of both families split by family (_by_family). None for anything
    the fast path leaves to the line-by-line one (IPv4-mapped addresses),
    and for any problem: parse_prefix_text then names it."""
    text = _decoded(data)
    cols: dict[int, tuple[list, bytearray, list]] = {4: ([], bytearray(), []), 6: ([], bytearray(), [])}
    seen = {4: [], 6: []}  # the hosts of each chunk, for one sort at the end
    other: set = set()
    n_hosts = 0
    with collector_paused():
        try:
            for c in map(_chunk_columns, (part for chunk in _chunks(text) for part in _by_family(chunk))):
                if c is None:
                    continue
                nets, plens, packed = cols[c.family]
                nets += c.nets
                plens += bytes(c.plens)
                if c.family == 6:  # kept for the stored blob
                    packed.append(c.raw)
                seen[c.family].append(_hosts_of(c))
                other.update((c.family, c.nets[i], c.plens[i]) for i in c.short)
                n_hosts += len(c.nets) - len(c.short)
        except _Reject:
            return None
        if _distinct(seen[4]) + _distinct128(seen[6]) != n_hosts or \
                len(other) != len(cols[4][0]) + len(cols[6][0]) - n_hosts:
            return None  # a duplicate
    (n4, p4, _), (n6, p6, b6) = cols[4], cols[6]
    return n4, bytes(p4), n6, bytes(p6), b"".join(b6)


def parse_prefix_items(items: list) -> list[Prefix]:
    """Prefixes given one per item (the members of a JSON list body), parsed
    as one block-list text by the columnar parser: one string per item, no
    other object. Raises PrefixItemError naming the first bad item: not a
    string, not exactly one line of prefix (a line break or a comment
    character is text-body syntax), not valid Unicode, empty, invalid, or a
    duplicate of an earlier one."""
    text = items_text(items)
    try:
        out = parse_prefix_text(text)
    except PrefixError as exc:
        i = (exc.lineno or 1) - 1
        if exc.code == "duplicate" and exc.other_lineno:
            raise PrefixItemError(i, items[i], f"{items[i].strip()} duplicates prefixes[{exc.other_lineno - 1}]",
                                  exc.code, other_index=exc.other_lineno - 1) from None
        raise PrefixItemError(i, items[i], exc.reason, exc.code) from None
    if len(out) != len(items):  # the parser skips blank lines
        i = next(i for i, s in enumerate(items) if not s.strip())
        raise PrefixItemError(i, "", "an empty string is not a prefix")
    return out


def items_text(items: list) -> str:
    """Items of a JSON list body as one block-list text, a line each;
    PrefixItemError for an item that is not one line of text (see
    parse_prefix_items)."""
    try:
        text = "\n".join(items)
    except TypeError:
        i = next(i for i, s in enumerate(items) if not isinstance(s, str))
        raise PrefixItemError(i, items[i], f"{cut(items[i])} is not a string") from None
    if text.count("\n") != max(len(items) - 1, 0) or any(c in text for c in _TEXT_ONLY):
        i = next(i for i, s in enumerate(items) if any(c in s for c in "\n" + _TEXT_ONLY))
        raise PrefixItemError(i, items[i], f"{cut(items[i])!r} is not a prefix (line breaks and comments are "
                                           f"for text bodies)")
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate (\udXXX escapes) is no text
        i = text.count("\n", 0, exc.start)
        raise PrefixItemError(i, ascii(items[i]), f"{ascii(items[i])} is not valid Unicode") from None
    return text


def parse_prefix_lines(lines: Iterable[str], *, start: int = 1,
                       allow_duplicates: bool = False) -> list[Prefix]:
    """Like parse_prefix_text over an iterable of lines (line numbers from
    start), without the fast path."""
    return _slow((l.rstrip("\r\n") for l in lines), start, allow_duplicates)


def load_prefix_file(path: str | os.PathLike, *, allow_duplicates: bool = False) -> list[Prefix]:
    with open(path, "rb") as f:
        data = f.read()
    return parse_prefix_text(data, allow_duplicates=allow_duplicates)
