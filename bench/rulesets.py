"""Rule sets the benchmarks load: deterministic, generated from a seed.

Two kinds per family:

exact   random host addresses: IPv4 /32, IPv6 /128.
mixed   like real block lists: 95 % host addresses plus 5 % shorter
        prefixes. IPv4 lengths /8../31 weighted towards /24 and /22-/23
        (see V4_WEIGHTS); IPv6 /16../127, mostly /32../64 (V6_WEIGHTS).

Addresses come from 1.0.0.0-223.255.255.255 (IPv4) and 2000::/3 (IPv6).
One range per family is kept free of every rule, so a "miss" packet is
known to match nothing: 198.18.0.0/15 (RFC 2544 benchmarking) and
3fff::/20 (RFC 9637 documentation).
"""

from __future__ import annotations

import contextlib
import gc
import random
import socket
from array import array
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat

from xdpctl.core import prefixes as px

V4_LO, V4_HI = 0x01000000, 0xE0000000          # 1.0.0.0 .. 223.255.255.255
V4_MISS_NET, V4_MISS_PLEN = 0xC6120000, 15     # 198.18.0.0/15
V6_LO = 0x1 << 125                             # 2000::/3 (global unicast: top bits 001)
V6_MISS_NET, V6_MISS_PLEN = 0x3FFF << 112, 20  # 3fff::/20

# Prefix-length weights of the 5 % non-host prefixes. IPv4: what public
# block lists (DROP/EDROP style, firewall aggregates) look like: /24 most,
# then /22-/23, /19-/21; few /16 and very few shorter.
V4_WEIGHTS = {
    8: 1, 9: 1, 10: 2, 11: 3, 12: 5, 13: 10, 14: 20, 15: 30, 16: 150,
    17: 100, 18: 120, 19: 250, 20: 400, 21: 500, 22: 1000, 23: 1000, 24: 4000,
    25: 150, 26: 150, 27: 150, 28: 200, 29: 250, 30: 150, 31: 50,
}
# IPv6: /32 (LIR), /48 (site), /56 and /64 dominate; a tail on both sides.
V6_WEIGHTS = {
    16: 1, 19: 1, 20: 2, 22: 1, 24: 3, 28: 5, 29: 30, 30: 5, 31: 3,
    32: 200, 33: 5, 34: 5, 35: 5, 36: 30, 37: 5, 38: 5, 39: 5, 40: 40,
    41: 5, 42: 10, 43: 5, 44: 50, 45: 5, 46: 10, 47: 20, 48: 600,
    49: 5, 50: 5, 51: 5, 52: 20, 53: 5, 54: 5, 55: 5, 56: 250,
    57: 5, 58: 5, 59: 5, 60: 30, 61: 5, 62: 10, 63: 10, 64: 500,
    72: 3, 80: 3, 96: 10, 104: 3, 112: 10, 116: 3, 120: 10, 124: 10, 126: 5, 127: 10,
}
SHORT_FRACTION = 0.05
BITS = {4: 32, 6: 128}


def _mask(family: int, plen: int) -> int:
    bits = BITS[family]
    return ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)


def fmt_addr(family: int, addr: int) -> str:
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, addr.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, addr.to_bytes(16, "big"))


@dataclass
class RuleSet:
    family: int
    kind: str                 # "exact" | "mixed"
    count: int
    nets: list[int]
    plens: list[int]
    match_addr: int           # has a host (/32, /128) rule
    miss_addr: int            # in the reserved range: matches nothing
    prefix_addr: int | None = None   # mixed: matched only by a shorter prefix
    prefix_plen: int | None = None
    plen_hist: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"IPv{self.family} {self.kind}"

    @property
    def host_len(self) -> int:
        return BITS[self.family]

    def prefixes(self) -> list[px.Prefix]:
        with gc_paused():
            return list(map(tuple.__new__, repeat(px.Prefix), zip(repeat(self.family), self.nets, self.plens)))

    def lines(self) -> list[str]:
        """One prefix per line; host entries as bare addresses, like block
        lists usually write them."""
        f, hl = self.family, self.host_len
        with gc_paused():
            return [fmt_addr(f, n) if p == hl else f"{fmt_addr(f, n)}/{p}" for n, p in zip(self.nets, self.plens)]

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def write(self, path: str) -> str:
        with open(path, "w") as f:
            f.write(self.text())
        return path


def _overlaps_miss(family: int, net: int, plen: int) -> bool:
    mnet, mplen = (V4_MISS_NET, V4_MISS_PLEN) if family == 4 else (V6_MISS_NET, V6_MISS_PLEN)
    p = min(plen, mplen)
    m = _mask(family, p)
    return (net & m) == (mnet & m)


def random_host(rng: random.Random, family: int) -> int:
    """A random address of the unicast space the rule sets are drawn from."""
    if family == 4:
        return rng.randrange(V4_LO, V4_HI)
    return V6_LO | rng.getrandbits(125)


def _hosts(rng: random.Random, family: int, n: int) -> list[int]:
    """n distinct random host addresses outside the miss range."""
    out: list[int] = []
    seen: dict[int, None] = {}
    while len(seen) < n:
        m = int((n - len(seen)) * 1.1) + 16
        if family == 4:
            a = array("I")
            a.frombytes(rng.randbytes(4 * m))
            miss = V4_MISS_NET >> (32 - V4_MISS_PLEN)
            new = [x for x in a if V4_LO <= x < V4_HI and x >> (32 - V4_MISS_PLEN) != miss]
        else:
            raw = rng.randbytes(16 * m)
            miss = V6_MISS_NET >> (128 - V6_MISS_PLEN)
            new = [V6_LO | int.from_bytes(raw[i:i + 16], "big") >> 3 for i in range(0, 16 * m, 16)]
            new = [x for x in new if x >> (128 - V6_MISS_PLEN) != miss]
        seen.update(dict.fromkeys(new))
    out = list(seen)[:n]
    return out


def _shorts(rng: random.Random, family: int, n: int) -> list[tuple[int, int]]:
    weights = V4_WEIGHTS if family == 4 else V6_WEIGHTS
    lens = rng.choices(list(weights), weights=list(weights.values()), k=n)
    out: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for plen in lens:
        while True:
            net = random_host(rng, family) & _mask(family, plen)
            if (net, plen) not in seen and not _overlaps_miss(family, net, plen):
                break
        seen.add((net, plen))
        out.append((net, plen))
    return out


@contextlib.contextmanager
def gc_paused():
    """Millions of small objects and no cycles: keep the collector out."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@lru_cache(maxsize=8)
def make(family: int, kind: str, count: int, seed: int = 20240601) -> RuleSet:
    with gc_paused():
        return _make(family, kind, count, seed)


def _make(family: int, kind: str, count: int, seed: int) -> RuleSet:
    rng = random.Random(f"{seed}-{family}-{kind}-{count}")
    hl = BITS[family]
    n_short = round(count * SHORT_FRACTION) if kind == "mixed" else 0
    hosts = _hosts(rng, family, count - n_short)
    shorts = _shorts(rng, family, n_short)
    # hosts are in random order already; put the short prefixes at random
    # places among them (a real list is not sorted by length)
    nets: list[int] = []
    plens: list[int] = []
    prev = 0
    for pos, (n, p) in zip(sorted(rng.sample(range(len(hosts) + 1), len(shorts))), shorts):
        nets += hosts[prev:pos]
        plens += [hl] * (pos - prev)
        nets.append(n)
        plens.append(p)
        prev = pos
    nets += hosts[prev:]
    plens += [hl] * (len(hosts) - prev)
    miss = (V4_MISS_NET | 0x0105) if family == 4 else (V6_MISS_NET | (1 << 64) | 1)
    rs = RuleSet(family, kind, count, nets, plens, match_addr=hosts[len(hosts) // 2], miss_addr=miss)
    hist: dict[int, int] = {}
    for p in plens:
        hist[p] = hist.get(p, 0) + 1
    rs.plen_hist = dict(sorted(hist.items()))
    if shorts:
        rs.prefix_addr, rs.prefix_plen = _prefix_probe(family, hosts, shorts)
    return rs


def _prefix_probe(family: int, hosts: list[int], shorts: list[tuple[int, int]]) -> tuple[int, int] | tuple[None, None]:
    """An address whose longest match is a short prefix of a typical band:
    IPv4 a /20../24 (the /24 hash), IPv6 a /49../56 (the trie)."""
    lo, hi = (20, 24) if family == 4 else (49, 56)
    hl = BITS[family]
    by_len: dict[int, set[int]] = {}
    for n, p in shorts:
        by_len.setdefault(p, set()).add(n)
    hostset = set(hosts)

    def longest(addr: int) -> int | None:
        if addr in hostset:
            return hl
        for p in sorted(by_len, reverse=True):
            if (addr & _mask(family, p)) in by_len[p]:
                return p
        return None

    for n, p in shorts:
        if lo <= p <= hi:
            for off in (1, 2, 3, 5, 7, 11):
                addr = n | off
                if longest(addr) == p:
                    return addr, p
    return None, None


def expected_longest(rs: RuleSet, addr: int) -> int | None:
    """The longest rule covering addr (slow; for checks)."""
    best = None
    for n, p in zip(rs.nets, rs.plens):
        if (addr & _mask(rs.family, p)) == n and (best is None or p > best):
            best = p
    return best
