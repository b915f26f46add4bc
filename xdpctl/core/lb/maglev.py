"""Maglev consistent hashing (Eisenbud et al., NSDI 2016) and the flow hash
of the load balancer's data plane (bpf/include/lb.h, docs/lb.md).

A table has a prime number of slots, each naming one backend. Every
backend walks its own permutation of the slots (offset and skip from two
hashes of its name) and, turn by turn, claims the next slot of its walk
that is still free. A backend of weight w takes w turns per round, so its
share of the table follows its weight; removing one of N backends moves
little more than its own 1/N of the slots.

The build is the plain algorithm until few slots are left; from then on
each backend's walk over the free slots is computed at once (the position
of slot s in a walk is ``(s - offset) * skip^-1 mod size``), which gives the
same table without stepping over the filled slots one by one.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

from ... import abi
from ..errors import ValidationError

# A table needs this many rounds of turns at least: the last, partial
# round then shifts a backend's share by at most a tenth.
MIN_ROUNDS = 10

_M32 = 0xFFFFFFFF


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def walk(name: str, size: int) -> tuple[int, int]:
    """(offset, skip) of a backend's permutation: slot k of its walk is
    (offset + k * skip) % size. Two halves of one BLAKE2b digest of the name."""
    d = hashlib.blake2b(name.encode(), digest_size=16, person=b"xdpctl-maglev").digest()
    offset = int.from_bytes(d[:8], "little") % size
    skip = int.from_bytes(d[8:], "little") % (size - 1) + 1
    return offset, skip


def check(backends: Sequence[tuple[str, int]], size: int) -> list[int]:
    """Validate; return the turns of one round (backend indexes, weights
    divided by their greatest common divisor)."""
    if not isinstance(size, int) or isinstance(size, bool) or not is_prime(size) \
            or size > abi.LB_RING_MAX:
        raise ValidationError(
            f"table size must be a prime number up to {abi.LB_RING_MAX}",
            field="table_size", value=size, hint=f"the default is {abi.LB_RING_DEFAULT}")
    for name, w in backends:
        if not isinstance(w, int) or isinstance(w, bool) or w < 0:
            raise ValidationError(f"weight of backend {name!r} must be an integer >= 0",
                                  field="weight", value=w)
    g = math.gcd(*(w for _, w in backends)) if backends else 0
    if not g:
        raise ValidationError("at least one backend needs a weight above 0",
                              field="weight", value=[w for _, w in backends])
    turns = [i for i, (_, w) in enumerate(backends) for _ in range(w // g)]
    if size < MIN_ROUNDS * len(turns):
        raise ValidationError(
            f"table size {size} is too small for {len(turns)} turns per round "
            f"(backends by weight); it must be at least {MIN_ROUNDS} times that",
            field="table_size", value=size,
            hint="use a larger prime table size, or coarser weights")
    return turns


def build(backends: Sequence[tuple[str, int]], size: int = abi.LB_RING_DEFAULT) -> list[int]:
    """The Maglev table: ``size`` entries, each an index into ``backends``
    (a sequence of (name, weight)). Raises ValidationError (field
    ``table_size`` or ``weight``)."""
    turns = check(backends, size)
    walks = [walk(name, size) for name, _ in backends]
    skips = [sk for _, sk in walks]
    table = [-1] * size
    nxt = [o for o, _ in walks]
    # Step over filled slots while that is cheap: until size / turns slots
    # are left (the walks of the last ones then cost turns * that, once).
    endgame = max(64, min(size // 16, size // len(turns)))
    left = size
    while left - len(turns) > endgame:  # whole rounds
        for i in turns:
            c = nxt[i]
            s = skips[i]
            while table[c] >= 0:
                c += s
                if c >= size:
                    c -= size
            table[c] = i
            c += s
            nxt[i] = c - size if c >= size else c
        left -= len(turns)
    for k, i in enumerate(turns):  # the round in which the endgame starts
        c = nxt[i]
        while table[c] >= 0:
            c = (c + skips[i]) % size
        table[c] = i
        nxt[i] = (c + skips[i]) % size
        left -= 1
        if left <= endgame:
            break
    if left:
        _finish(table, turns, walks, size, k + 1)
    return table


def _finish(table: list[int], turns: list[int], walks, size: int, start: int) -> None:
    """Fill the last free slots, turns going on from turns[start]: each
    backend's remaining walk over them, in walk order, computed at once."""
    free = [s for s in range(size) if table[s] < 0]
    queues: dict[int, list[int]] = {}
    left = len(free)
    order = turns[start:]
    while True:
        for i in order:
            q = queues.get(i)
            if q is None:
                # positions in i's walk of the free slots, furthest first (its
                # walk has only passed filled slots: every free one is ahead)
                o, sk = walks[i]
                inv = pow(sk, -1, size)
                q = queues[i] = sorted((((s - o) * inv) % size for s in free), reverse=True)
            while True:
                c = (walks[i][0] + q.pop() * walks[i][1]) % size
                if table[c] < 0:
                    break
            table[c] = i
            left -= 1
            if not left:
                return
        order = turns


def flow_hash(src: bytes, dst: bytes, sport: int, dport: int, proto: int) -> int:
    """The data plane's flow hash (lb.h xc_lb_hash): MurmurHash3 x86_32 with
    seed XC_LB_HASH_SEED over ten 32-bit words, each read big-endian:
    src (16 bytes; IPv4 in the first 4, the rest 0), dst, sport << 16 |
    dport, proto. Ports are 0 for a VIP that hashes on addresses only."""
    words = [int.from_bytes(b[k:k + 4], "big") for b in (src, dst) for k in (0, 4, 8, 12)]
    words += [(sport << 16) | dport, proto]
    h = abi.LB_HASH_SEED
    for w in words:
        w = (w * 0xCC9E2D51) & _M32
        w = ((w << 15) | (w >> 17)) & _M32
        w = (w * 0x1B873593) & _M32
        h ^= w
        h = ((h << 13) | (h >> 19)) & _M32
        h = (h * 5 + 0xE6546B64) & _M32
    h ^= 40
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def moved(old: Sequence[int], new: Sequence[int]) -> float:
    """Share of the slots whose entry differs between two tables."""
    return sum(a != b for a, b in zip(old, new, strict=True)) / len(old)
