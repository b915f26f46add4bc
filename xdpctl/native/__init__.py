"""xdpctl's userspace helpers in C (native/*.c), built by ``make native``
into this folder as libxcnative.so.1 (a name that no import takes for an
extension module), shipped with the package like the BPF objects and
called through ctypes: the calls run without the GIL.

Each helper has a numpy twin in the module that uses it; the twin runs
when the library is missing (a tree before ``make native``), and the unit
tests hold the two to the same answers.
"""

from __future__ import annotations

import ctypes
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libxcnative.so.1")

_lib: ctypes.CDLL | None = None
_tried = False


def lib() -> ctypes.CDLL | None:
    """The library, loaded once; None when it was not built, or cannot be
    loaded here (built for another machine, a stale build without a
    symbol): the numpy twins then do the work."""
    global _lib, _tried
    if not _tried:
        _tried = True
        try:
            got = ctypes.CDLL(PATH)
            fns = (got.xc_ipv4_columns, got.xc_ipv6_columns)
            got.xc_sort_u64.restype = None
            got.xc_or_bits.restype = ctypes.c_long
            got.xc_argsort_u64.restype = None
        except (OSError, AttributeError):
            return None
        for f in fns:
            f.restype = ctypes.c_long
            f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        got.xc_sort_u64.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        got.xc_or_bits.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
        got.xc_argsort_u64.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                       ctypes.c_void_p]
        _lib = got
    return _lib


def _need() -> ctypes.CDLL:
    """The library, for a helper without a twin of its own here."""
    c = lib()
    if c is None:
        raise RuntimeError(f"{PATH} is missing: run `make native`")
    return c


def _in_place(words, what: str) -> ctypes.CDLL:
    """The library, for a helper that works in place on ``words``: a
    contiguous, writable uint64 array, else ValueError ("{what} a ...")."""
    import numpy as np

    c = _need()
    if words.dtype != np.uint64 or not words.flags.c_contiguous or not words.flags.writeable:
        raise ValueError(f"{what} a contiguous, writable uint64 array")
    return c


def ipv4_columns(data: bytes):
    """Plain IPv4 text (bytes, no byte-order mark) as (networks as uint32,
    lengths as uint8) numpy arrays in text order, duplicates included; None
    when the text is not plain IPv4. Raises RuntimeError without the library."""
    import numpy as np

    c = _need()
    cap = len(data) // 8 + 1  # a line takes at least 8 bytes ("0.0.0.0\n"; the last may lack the newline)
    nets, plens = np.empty(cap, np.uint32), np.empty(cap, np.uint8)
    n = c.xc_ipv4_columns(data, len(data), nets.ctypes.data, plens.ctypes.data, cap)
    return None if n < 0 else (nets[:n], plens[:n])


def ipv6_columns(data: bytes):
    """Plain IPv6 text (bytes, no byte-order mark) as (networks packed, 16
    bytes each in network order; lengths as bytes) in text order,
    duplicates included; None when the text is not plain IPv6 (or has host
    bits, or an IPv4-mapped address). Raises RuntimeError without the library."""
    c = _need()
    cap = data.count(b"\n") + 1  # lines (the last may lack its newline)
    nets, plens = ctypes.create_string_buffer(16 * cap), ctypes.create_string_buffer(cap)
    n = c.xc_ipv6_columns(data, len(data), nets, plens, cap)
    return None if n < 0 else (ctypes.string_at(nets, 16 * n), ctypes.string_at(plens, n))


def sort_u64(words) -> None:
    """Sort a contiguous uint64 numpy array in place, ascending (a radix
    sort: numpy's took 50-70 ns a word on a million). Raises RuntimeError
    without the library."""
    import numpy as np

    c = _in_place(words, "sort_u64 sorts")
    tmp = np.empty_like(words)
    c.xc_sort_u64(words.ctypes.data, tmp.ctypes.data, len(words))


def argsort_u64(words):
    """Sort a contiguous uint64 numpy array in place, ascending, and return
    the positions the words came from (uint32; equal words in position
    order), as numpy's stable argsort orders them. Fewer than 2^32 words.
    Raises RuntimeError without the library."""
    import numpy as np

    c = _in_place(words, "argsort_u64 sorts")
    if len(words) >= 1 << 32:
        raise ValueError("argsort_u64 takes fewer than 2^32 words")
    idx, tk, ti = np.empty(len(words), np.uint32), np.empty_like(words), np.empty(len(words), np.uint32)
    c.xc_argsort_u64(words.ctypes.data, idx.ctypes.data, len(words), tk.ctypes.data, ti.ctypes.data)
    return idx


def or_bits(words, bits) -> None:
    """words[bit // 64] |= 1 << (bit % 64) for each bit: ``words`` a
    contiguous, writable uint64 array, ``bits`` uint32 bit numbers. Raises
    ValueError for a bit past the words (they may then be partly set), and
    RuntimeError without the library."""
    import numpy as np

    c = _in_place(words, "or_bits sets bits in")
    bits = np.ascontiguousarray(bits, np.uint32)
    if c.xc_or_bits(words.ctypes.data, len(words), bits.ctypes.data, len(bits)) < 0:
        raise ValueError(f"a bit past the {len(words)} words")
