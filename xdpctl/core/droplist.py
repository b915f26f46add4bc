"""The drop list: deny/allow rules on prefixes, addresses and L4 ports.

Desired state lives in SQLite (``rules`` for individually managed rules,
``lists`` for bulk lists replaced as a whole); the shared kernel maps are a
cache of it, written by controlled prefix expansion (xdpctl.core.dlcompile).

Every mutation is validated completely before anything is written, runs in
one SQLite transaction under the pin-directory lock, and writes the kernel
with rollback: if a map write fails, the maps are put back as they were and
the transaction is rolled back, so a bulk change is all or nothing.

Semantics (docs/internals.md, "The drop list verdict"):
- longest prefix wins within a direction; an allow anywhere beats a deny;
- at the same prefix, an individually managed rule beats a list member;
- rules match the source address unless they say ``dst``;
- L4 rules match protocol + destination port, optionally with a prefix.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import threading
import time
from array import array
from itertools import compress
from operator import itemgetter
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from .. import abi
from .errors import CapacityError, Conflict, NotFound, ValidationError
from ..kernel import bpffs, maps, objects
from . import dlcompile as dlc
from . import prefixes as px
from .context import Context
from .hooks import PER_HOOK_MAPS

DENY, ALLOW = int(abi.Action.DENY), int(abi.Action.ALLOW)
ACTION_NAMES = {DENY: "deny", ALLOW: "allow"}
DIR_NAMES = {0: "src", 1: "dst"}
POLICIES = {"allow": int(abi.Policy.ALLOW), "deny": int(abi.Policy.DENY)}
SHARED_DL_MAPS = tuple(abi.RULE_MAPS) + ("xc_cfg", "xc_rule_stats")
VAL_SIZE = abi.RULE_VAL.size
BULK_THRESHOLD = 2000  # more rules than this in one change: full compile + diff
# The classifiers read bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC at tick
# resolution, about half the cost of a precise clock read per rule hit.
# Deadlines and last-hit times in the maps are on that clock.
CLOCK_MONOTONIC_COARSE = getattr(time, "CLOCK_MONOTONIC_COARSE", 6)


def kernel_ns() -> int:
    """Now, on the clock the classifiers compare deadlines with."""
    return time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)


def wall_to_kernel_ns(expires: float | None, now_wall: float | None = None, now_kns: int | None = None) -> int:
    if expires is None:
        return 0
    now_wall = time.time() if now_wall is None else now_wall
    now_kns = kernel_ns() if now_kns is None else now_kns
    return max(1, now_kns + int((expires - now_wall) * 1e9))


def kernel_ns_to_wall(ns: int) -> float | None:
    if not ns:
        return None
    return time.time() - (kernel_ns() - ns) / 1e9


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleSpec:
    """A validated rule as a person asked for it."""

    prefix: px.Prefix | None  # None: an L4 rule on any address
    dir: int = 0
    action: int = DENY
    proto: int | None = None
    port: int | None = None
    comment: str | None = None
    ttl: int | None = None  # seconds
    mgmt: bool = False

    def key(self) -> tuple:
        if self.prefix is None:
            return (0, self.dir, self.proto or 0, self.port or 0, 1, 0, b"")
        return (self.prefix.family, self.dir, self.proto or 0, self.port or 0, 0, self.prefix.plen,
                _addr_bytes(self.prefix.family, self.prefix.net))

    def describe(self) -> str:
        return describe(self.prefix, self.dir, self.proto, self.port)


def describe(prefix: px.Prefix | None, dir: int, proto: int | None, port: int | None) -> str:
    where = px.format_prefix(prefix) if prefix is not None else "any"
    s = f"{where}" + (" (dst)" if dir == 1 else "")
    if proto:
        s += f" {px.proto_name(proto)}/{port}"
    return s


def _addr_bytes(family: int, net: int) -> bytes:
    return net.to_bytes(4 if family == 4 else 16, "big")


def spec(
    prefix: str | None,
    *,
    action: str | int = "deny",
    dst: bool = False,
    proto: str | int | None = None,
    port: str | int | None = None,
    comment: str | None = None,
    ttl: str | int | None = None,
    mgmt: bool = False,
) -> RuleSpec:
    """Validate one rule from user input; raises ValidationError."""
    try:
        pfx = px.parse_prefix(prefix) if prefix not in (None, "", "any") else None
        p = px.parse_proto(proto) if proto not in (None, "") else None
        pt = px.parse_port(port) if port not in (None, "") else None
        t = px.parse_duration(ttl) if ttl not in (None, "", 0) else None
    except px.PrefixError as exc:
        raise ValidationError(str(exc)) from None
    if (p is None) != (pt is None):
        raise ValidationError("an L4 rule needs both --proto and --port")
    if pfx is None and p is None:
        raise ValidationError("a rule needs a prefix, or --proto and --port")
    act = action if isinstance(action, int) else {"deny": DENY, "allow": ALLOW}.get(action)
    if act not in (DENY, ALLOW):
        raise ValidationError(f"unknown action {action!r}; expected deny or allow")
    if mgmt and act != ALLOW:
        raise ValidationError("a management prefix is an allow rule")
    if comment is not None and len(comment) > 512:
        raise ValidationError("comment longer than 512 characters")
    return RuleSpec(pfx, 1 if dst else 0, act, p, pt, comment, t, mgmt)


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------
@dataclass
class RuleView:
    id: int
    prefix: str | None
    family: int
    dir: str
    action: str
    proto: str | None
    port: int | None
    comment: str | None
    source: str | None
    created: float
    expires: float | None
    mgmt: bool
    list: str | None = None
    packets: int = 0
    bytes: int = 0
    last_hit: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ListView:
    name: str
    count: int
    dir: str
    action: str
    comment: str | None
    source: str | None
    created: float
    expires: float | None
    id_base: int
    sha256: str | None = None
    packets: int = 0
    bytes: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChangeResult:
    revision: int
    added: list[RuleView] = field(default_factory=list)
    removed: list[RuleView] = field(default_factory=list)
    updated: list[RuleView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class SyncReport:
    revision: int
    written: int = 0
    deleted: int = 0
    per_map: dict = field(default_factory=dict)

    @property
    def drift(self) -> int:
        return self.written + self.deleted


# ---------------------------------------------------------------------------
# Rule index over SQLite (+ lists held in memory)
# ---------------------------------------------------------------------------
_RULE_COLS = "id, family, addr, plen, dir, action, proto, port, anyaddr, mgmt, comment, source, created, expires"


def _row_to_rule(row, now_wall: float, now_kns: int) -> dlc.Rule:
    (rid, family, addr, plen, d, action, proto, port, anyaddr, _m, _c, _s, _cr, expires) = row
    exp = wall_to_kernel_ns(expires, now_wall, now_kns)
    if anyaddr:
        return dlc.Rule(rid, 0, 0, 0, d, action, proto, port, exp)
    return dlc.Rule(rid, family, int.from_bytes(addr, "big"), plen, d, action, proto or None, port or None, exp)


def _row_to_view(row, stats: dict[int, tuple[int, int, int]] | None = None) -> RuleView:
    (rid, family, addr, plen, d, action, proto, port, anyaddr, mgmt, comment, source, created, expires) = row
    pfx = None if anyaddr else px.format_prefix(px.Prefix(family, int.from_bytes(addr, "big"), plen))
    pk, by, last = (stats or {}).get(rid, (0, 0, 0))
    return RuleView(
        id=rid, prefix=pfx, family=family, dir=DIR_NAMES[d], action=ACTION_NAMES[action],
        proto=px.proto_name(proto) if proto else None, port=port or None, comment=comment, source=source,
        created=created, expires=expires, mgmt=bool(mgmt), packets=pk, bytes=by, last_hit=kernel_ns_to_wall(last),
    )


class SqlRuleIndex(dlc.RuleIndex):
    """RuleIndex over the rules table (and list members held in memory).

    ``prepare(rule)`` loads, in one range query per length, every address
    rule of the rule's band that lies inside its prefix, plus its ancestors
    in the band; ``best_covering`` for keys of that rule is then answered
    from memory. A /0 expands to 65,536 keys: this keeps that at one query.
    """

    def __init__(self, state, lists_index: dict | None):
        self.db = state.db
        self.lists = lists_index or {}
        self.now_wall = time.time()
        self.now_kns = kernel_ns()
        self.cache: dict[tuple[int, int, int, int], dlc.Rule] = {}
        self.scope: tuple | None = None  # (family, dir, net, plen, lo, hi) the cache answers for

    def prepare(self, rule: dlc.Rule) -> None:
        self.cache.clear()
        self.scope = None
        if rule.proto is not None or rule.family == 0:
            return
        band = dlc.band_of(rule.family, rule.plen)
        if band is None:
            return
        bits = 32 if rule.family == 4 else 128
        last = rule.net | ((1 << (bits - rule.plen)) - 1)
        lo_b, hi_b = _addr_bytes(rule.family, rule.net), _addr_bytes(rule.family, last)
        rows = self.db.execute(
            f"SELECT {_RULE_COLS} FROM rules WHERE family=? AND dir=? AND proto=0 AND port=0 AND anyaddr=0 "
            f"AND plen BETWEEN ? AND ? AND addr BETWEEN ? AND ?",
            (rule.family, rule.dir, rule.plen, band.hi, lo_b, hi_b),
        ).fetchall()
        full = (1 << bits) - 1
        for p in range(band.lo, rule.plen):
            anc = rule.net & (full ^ ((1 << (bits - p)) - 1))
            rows += self.db.execute(
                f"SELECT {_RULE_COLS} FROM rules WHERE family=? AND dir=? AND proto=0 AND port=0 AND anyaddr=0 "
                f"AND plen=? AND addr=?",
                (rule.family, rule.dir, p, _addr_bytes(rule.family, anc)),
            ).fetchall()
        for row in rows:
            r = _row_to_rule(row, self.now_wall, self.now_kns)
            self.cache[(r.family, r.dir, r.plen, r.net)] = r
        self.scope = (rule.family, rule.dir, rule.net, rule.plen, band.lo, band.hi)

    def _in_scope(self, family, dir, addr, lo_plen, hi_plen) -> bool:
        if self.scope is None:
            return False
        f, d, net, plen, blo, bhi = self.scope
        bits = 32 if f == 4 else 128
        return (f == family and d == dir and blo <= lo_plen and hi_plen <= bhi
                and (addr >> (bits - plen)) == (net >> (bits - plen)))

    def rules_within(self, family, dir, net, plen, lo_plen, hi_plen, exclude_id):
        """From the prepared cache, when the question is inside its scope."""
        if not self._in_scope(family, dir, net, lo_plen, hi_plen):
            return None
        bits = 32 if family == 4 else 128
        out = [r for (f, d, p, n), r in self.cache.items()
               if f == family and d == dir and lo_plen <= p <= hi_plen and r.id != exclude_id
               and (n >> (bits - plen)) == (net >> (bits - plen))]
        out += [r for (f, d, p, n), r in self.lists.items()
                if f == family and d == dir and lo_plen <= p <= hi_plen and r.id != exclude_id
                and (n >> (bits - plen)) == (net >> (bits - plen))] if len(self.lists) < 100000 else []
        return out

    def best_covering(self, family, dir, addr, lo_plen, hi_plen, exclude_id):
        bits = 32 if family == 4 else 128
        full = (1 << bits) - 1
        cached = self._in_scope(family, dir, addr, lo_plen, hi_plen)
        for p in range(hi_plen, lo_plen - 1, -1):
            net = addr & (full ^ ((1 << (bits - p)) - 1))
            if cached:
                r = self.cache.get((family, dir, p, net))
            else:
                row = self.db.execute(
                    f"SELECT {_RULE_COLS} FROM rules WHERE family=? AND dir=? AND proto=0 AND port=0 "
                    f"AND anyaddr=0 AND plen=? AND addr=?",
                    (family, dir, p, _addr_bytes(family, net)),
                ).fetchone()
                r = _row_to_rule(row, self.now_wall, self.now_kns) if row is not None else None
            if r is not None and r.id != exclude_id:
                return r
            lr = self.lists.get((family, dir, p, net))
            if lr is not None and lr.id != exclude_id:
                return lr
        return None


# ---------------------------------------------------------------------------
# Kernel tables
# ---------------------------------------------------------------------------
class KernelTables:
    """The shared drop-list maps, created (by loading the drop-list object
    once) if bpffs does not have them yet."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.dir = ctx.settings.shared_map_dir
        self.maps: dict[str, maps.Map] = {}

    def ensure(self) -> "KernelTables":
        missing = [m for m in SHARED_DL_MAPS if not os.path.exists(os.path.join(self.dir, m))]
        if missing:
            bpffs.makedirs(self.dir)

            def pin(name: str) -> str | None:
                return None if name in PER_HOOK_MAPS else os.path.join(self.dir, name)

            objects.load(objects.object_path("xdp_droplist"), pin_path=pin,
                         max_entries=dict(self.ctx.settings.capacity)).close()
        for m in SHARED_DL_MAPS:
            if m not in self.maps:
                self.maps[m] = maps.Map.from_pin(os.path.join(self.dir, m))
        return self

    def __getitem__(self, name: str) -> maps.Map:
        return self.maps[name]

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        self.maps.clear()

    def __enter__(self) -> "KernelTables":
        return self.ensure()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing with rollback
    def apply(self, plan: dlc.Plan) -> None:
        """Apply a small plan; on any failure put every touched key back."""
        saved: list[tuple[str, bytes, bytes | None]] = []
        try:
            for m, mp in plan.items():
                mo = self.maps[m]
                for k, v in mp.updates.items():
                    saved.append((m, k, mo.lookup(k)))
                    mo.update(k, v)
                for k in mp.deletes:
                    old = mo.lookup(k)
                    if old is not None:
                        saved.append((m, k, old))
                        mo.delete(k)
        except BaseException:
            self._restore(saved)
            raise

    def _restore(self, saved) -> None:
        for m, k, old in reversed(saved):
            try:
                if old is None:
                    self.maps[m].delete(k)
                else:
                    self.maps[m].update(k, old)
            except Exception:  # pragma: no cover - best effort on the way out
                pass

    def read(self, name: str) -> dict[bytes, bytes]:
        return dict(self.maps[name].items())

    def sync_to(self, compiled: dlc.Compiled, progress: Callable[[int, int], None] | None = None) -> SyncReport:
        """Make every rule map equal the compiled image; rollback on failure."""
        report = SyncReport(revision=0)
        undo: list[tuple[str, dict[bytes, bytes], set[bytes]]] = []
        total = sum(compiled[m].count for m in abi.RULE_MAPS)
        done = 0
        try:
            for name in abi.RULE_MAPS:
                mo = self.maps[name]
                table = compiled[name]
                if name == dlc.L16:
                    # the whole array image: compare raw, touch only what differs
                    cur = b"".join(v[:VAL_SIZE] for _i, v in mo.lookup_range(0, mo.max_entries))
                    if cur == table.values:
                        report.per_map[name] = (0, 0)
                        continue
                    current = {abi.U32.pack(i): cur[i * VAL_SIZE:(i + 1) * VAL_SIZE]
                               for i in range(len(cur) // VAL_SIZE)}
                elif not mo.has_entries():
                    current = {}
                else:
                    current = self.read(name)
                if not current and table.count:
                    _check_capacity(mo, table.count)
                    mo.update_batch(table.keys, table.values, table.count)
                    undo.append((name, {}, (table.keys, table.count)))
                    report.per_map[name] = (table.count, 0)
                    report.written += table.count
                    done += table.count
                    if progress:
                        progress(done, total)
                    continue
                want = _table_dict(table, mo.key_size)
                upd = {k: v for k, v in want.items() if current.get(k) != v}
                dels = [k for k in current if k not in want]
                if name == dlc.L16:
                    dels = []
                _check_capacity(mo, len(want))
                old_vals = {k: current[k] for k in upd if k in current}
                old_vals.update({k: current[k] for k in dels})
                if upd:
                    mo.update_batch(b"".join(upd), b"".join(upd.values()), len(upd))
                new_keys = [k for k in upd if k not in current]
                undo.append((name, old_vals, (b"".join(new_keys), len(new_keys))))
                if dels:
                    mo.delete_batch(b"".join(dels), len(dels))
                report.per_map[name] = (len(upd), len(dels))
                report.written += len(upd)
                report.deleted += len(dels)
                done += table.count
                if progress:
                    progress(done, total)
        except BaseException:
            for name, old_vals, (new_keys, n_new) in reversed(undo):
                mo = self.maps[name]
                try:
                    if n_new:
                        mo.delete_batch(new_keys, n_new)
                    if old_vals:
                        mo.update_batch(b"".join(old_vals), b"".join(old_vals.values()), len(old_vals))
                except Exception:  # pragma: no cover
                    pass
            raise
        return report

    def write_config(self, policy: int, flags: int, generation: int) -> None:
        self.maps["xc_cfg"].update(abi.U32.pack(0), abi.pack_config(policy, flags, generation))

    def read_config(self) -> tuple[int, int, int]:
        raw = self.maps["xc_cfg"].lookup(abi.U32.pack(0))
        return abi.CONFIG.unpack(raw[: abi.CONFIG.size]) if raw else (0, 0, 0)

    def zero_stats(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        m = self.maps["xc_rule_stats"]
        zero = bytes(abi.RULE_STATS.size)
        ks = array("I", ids)
        if sys.byteorder != "little":
            ks.byteswap()
        m.update_batch(ks.tobytes(), zero * len(ids), len(ids))

    def stats_for(self, ids: list[int]) -> dict[int, tuple[int, int, int]]:
        m = self.maps["xc_rule_stats"]
        out = {}
        if len(ids) > 256:
            lo, hi = min(ids), max(ids)
            if hi - lo < 4 * len(ids):  # dense (a list's id range): one batch over the range
                size = abi.RULE_STATS.size
                for i, v in m.lookup_range(lo, hi - lo + 1):
                    out[i] = abi.RULE_STATS.unpack(v[:size])
                return {i: out.get(i, (0, 0, 0)) for i in ids}
        for i in ids:
            raw = m.lookup(abi.U32.pack(i))
            if raw:
                out[i] = abi.RULE_STATS.unpack(raw[: abi.RULE_STATS.size])
        return out


@dataclass
class KernelHealth:
    pin_dir: str
    bpffs: bool
    missing_maps: list[str]
    detail: str | None

    @property
    def ok(self) -> bool:
        return self.bpffs and not self.missing_maps


def kernel_health(ctx: Context) -> KernelHealth:
    """Is the pin directory on bpffs, and are the shared maps pinned? Reads
    only; the service's /healthz and any monitoring use it."""
    pin = ctx.settings.pin_dir
    try:
        on = bpffs.is_bpffs(pin)
    except OSError as exc:
        return KernelHealth(pin, False, list(SHARED_DL_MAPS), str(exc))
    if not on:
        why = "does not exist" if not os.path.isdir(pin) else "is not on a bpffs mount"
        return KernelHealth(pin, False, list(SHARED_DL_MAPS), f"pin directory {pin} {why}")
    missing = [m for m in SHARED_DL_MAPS if not os.path.exists(os.path.join(ctx.settings.shared_map_dir, m))]
    detail = f"shared maps missing ({', '.join(missing)}): {{action:restore}} rebuilds them" if missing else None
    return KernelHealth(pin, True, missing, detail)


def _table_dict(table: dlc.Table, key_size: int) -> dict[bytes, bytes]:
    vs = len(table.values) // table.count if table.count else 0
    k, v = table.keys, table.values
    return {k[i * key_size:(i + 1) * key_size]: v[i * vs:(i + 1) * vs] for i in range(table.count)}


def _check_capacity(m: maps.Map, need: int) -> None:
    if m.type not in maps.ARRAY_TYPES and need > m.max_entries:
        raise CapacityError(
            f"map {m.name} would need {need} entries but holds {m.max_entries}; "
            f"nothing was changed (raise its capacity and run `xdpctl restore --rebuild`)"
        )


# ---------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------
class DropList:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._lists_index: dict | None = None

    @property
    def state(self):
        return self.ctx.state

    # ----------------------------------------------------------- reads
    def policy(self) -> str:
        return self.state.get_meta("policy", "allow") or "allow"

    def revision(self) -> int:
        return self.state.revision

    def rules(self, with_stats: bool = True, list_name: str | None = None, limit: int | None = None,
              prefix: str | None = None) -> list[RuleView]:
        if list_name is not None:
            return self._list_members(list_name, with_stats, limit)
        q = f"SELECT {_RULE_COLS} FROM rules"
        args: tuple = ()
        if prefix is not None:
            s = spec(prefix)
            q += " WHERE family=? AND plen=? AND addr=?"
            args = (s.prefix.family, s.prefix.plen, _addr_bytes(s.prefix.family, s.prefix.net))
        q += " ORDER BY id"
        if limit:
            q += f" LIMIT {int(limit)}"
        rows = self.state.db.execute(q, args).fetchall()
        stats = self._stats([r[0] for r in rows]) if with_stats else None
        return [_row_to_view(r, stats) for r in rows]

    def lists(self, with_stats: bool = True) -> list[ListView]:
        rows = self.state.db.execute(
            "SELECT name, count, dir, action, comment, source, created, expires, id_base, entries FROM lists ORDER BY name"
        ).fetchall()
        out = []
        for name, count, d, action, comment, source, created, expires, base, entries in rows:
            lv = ListView(name, count, DIR_NAMES[d], ACTION_NAMES[action], comment, source, created, expires, base,
                          hashlib.sha256(entries).hexdigest())
            if with_stats and count:
                st = self._stats(list(range(base, base + count)))
                lv.packets = sum(v[0] for v in st.values())
                lv.bytes = sum(v[1] for v in st.values())
            out.append(lv)
        return out

    def _list_members(self, name: str, with_stats: bool, limit: int | None) -> list[RuleView]:
        row = self.state.db.execute(
            "SELECT dir, action, comment, source, created, expires, id_base, count, entries FROM lists WHERE name=?",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no list named {name!r}")
        d, action, comment, source, created, expires, base, count, entries = row
        n = min(count, limit) if limit else count
        stats = self._stats(list(range(base, base + n))) if with_stats else {}
        out = []
        for i, pfx in enumerate(_Members.unpack(entries).prefixes()[:n]):
            fam = pfx.family
            pk, by, last = stats.get(base + i, (0, 0, 0))
            out.append(RuleView(base + i, px.format_prefix(pfx), fam, DIR_NAMES[d],
                                ACTION_NAMES[action], None, None, comment, source, created, expires, False,
                                name, pk, by, kernel_ns_to_wall(last)))
        return out

    def _stats(self, ids: list[int]) -> dict[int, tuple[int, int, int]]:
        if not ids or not os.path.exists(os.path.join(self.ctx.settings.shared_map_dir, "xc_rule_stats")):
            return {}
        with maps.Map.from_pin(os.path.join(self.ctx.settings.shared_map_dir, "xc_rule_stats")) as m:
            kt = KernelTables(self.ctx)
            kt.maps["xc_rule_stats"] = m
            try:
                return kt.stats_for(ids)
            finally:
                kt.maps.clear()

    # ----------------------------------------------------------- helpers
    def _all_rules(self, now_wall: float, now_kns: int,
                   pending: tuple[str, dlc.RuleColumns] | None = None) -> dlc.RuleColumns:
        """Every rule, individual and list members, deduplicated by key (an
        individual rule wins over a list member at the same prefix, an
        earlier list over a later one)."""
        rules = [_row_to_rule(r, now_wall, now_kns)
                 for r in self.state.db.execute(f"SELECT {_RULE_COLS} FROM rules")]
        lists = self._list_rules(now_wall, now_kns, skip=pending[0] if pending else None)
        if pending is not None:
            lists.append(pending[1])  # a list being imported, not stored yet
        if not lists:
            return dlc.RuleColumns.of(rules)
        seen = {(r.family, r.dir, r.plen, r.net) for r in rules if r.proto is None}
        parts = [dlc.RuleColumns.of(rules)]
        for i, cols in enumerate(lists):
            if seen:
                ids, fams, nets, plens, dirs = cols.cols[:5]
                keys = list(zip(fams, dirs, plens, nets))
                keep = bytes(k not in seen for k in keys)
                if keep.count(1) != len(keep):
                    cols = dlc.RuleColumns(*[list(compress(c, keep)) if not isinstance(c, bytes)
                                             else bytes(compress(c, keep)) for c in cols.cols])
                    keys = list(compress(keys, keep))
                if i + 1 < len(lists):
                    seen.update(keys)
            elif i + 1 < len(lists):
                ids, fams, nets, plens, dirs = cols.cols[:5]
                seen.update(zip(fams, dirs, plens, nets))
            parts.append(cols)
        return dlc.RuleColumns.concat(parts)

    def _list_rules(self, now_wall: float, now_kns: int, skip: str | None = None) -> list[dlc.RuleColumns]:
        out: list[dlc.RuleColumns] = []
        for name, d, action, expires, base, count, entries in self.state.db.execute(
            "SELECT name, dir, action, expires, id_base, count, entries FROM lists ORDER BY name"
        ):
            if name == skip:
                continue
            exp = wall_to_kernel_ns(expires, now_wall, now_kns)
            out.append(_Members.unpack(entries).columns(base, d, action, exp))
        return out

    def _lists_index_get(self) -> dict:
        if self._lists_index is None:
            now_wall, now_kns = time.time(), kernel_ns()
            idx: dict = {}
            for cols in self._list_rules(now_wall, now_kns):
                for t in cols:
                    idx.setdefault((t[1], t[4], t[3], t[2]), dlc.Rule(*t))
            self._lists_index = idx
        return self._lists_index

    def _flags(self) -> int:
        db = self.state.db
        flags = 0
        if db.execute("SELECT 1 FROM rules WHERE dir=1 AND proto=0 LIMIT 1").fetchone() or \
                db.execute("SELECT 1 FROM lists WHERE dir=1 AND count>0 LIMIT 1").fetchone():
            flags |= int(abi.CfgFlag.HAVE_DST)
        if db.execute("SELECT 1 FROM rules WHERE proto<>0 LIMIT 1").fetchone():
            flags |= int(abi.CfgFlag.HAVE_PORT)
        trie_lens = [p for p in range(129) if dlc.band_of(6, p) is None]
        marks = ",".join(str(p) for p in trie_lens)
        if db.execute(f"SELECT 1 FROM rules WHERE family=6 AND proto=0 AND plen IN ({marks}) LIMIT 1").fetchone():
            flags |= int(abi.CfgFlag.HAVE_V6TRIE)
        for (f,) in db.execute("SELECT flags FROM lists"):
            flags |= f
        return flags

    def _finish(self, kt: KernelTables) -> int:
        rev = self.state.bump_revision()
        kt.write_config(POLICIES[self.policy()], self._flags(), rev)
        return rev

    def _overlap(self, s: RuleSpec):
        """An L4 rule for any address covers the /0 rules of both families
        (and the reverse): the kernel holds one entry for each, so they
        cannot coexist."""
        if s.proto is None or (s.prefix is not None and s.prefix.plen != 0):
            return None
        if s.prefix is None:
            q = "SELECT id FROM rules WHERE dir=? AND proto=? AND port=? AND anyaddr=0 AND plen=0"
        else:
            q = "SELECT id FROM rules WHERE dir=? AND proto=? AND port=? AND anyaddr=1"
        row = self.state.db.execute(q, (s.dir, s.proto, s.port)).fetchone()
        return row[0] if row else None

    def _existing(self, s: RuleSpec):
        return self.state.db.execute(
            f"SELECT {_RULE_COLS} FROM rules WHERE family=? AND dir=? AND proto=? AND port=? AND anyaddr=? "
            f"AND plen=? AND addr=?",
            s.key(),
        ).fetchone()

    # ----------------------------------------------------------- writes
    def add(self, specs: list[RuleSpec], expected_revision: int | None = None, source: str = "cli",
            update: bool = False) -> ChangeResult:
        """Add rules (all or nothing). With ``update`` an existing rule with
        the same match gets the new action, comment and TTL instead of an error."""
        if not specs:
            raise ValidationError("no rules given")
        seen: dict[tuple, int] = {}
        for i, s in enumerate(specs):
            k = s.key()
            if k in seen:
                raise ValidationError(f"{s.describe()} is given twice (items {seen[k] + 1} and {i + 1})")
            seen[k] = i
        l4_zero: dict[tuple, tuple[int, RuleSpec]] = {}
        for i, s in enumerate(specs):
            if s.proto is not None and (s.prefix is None or s.prefix.plen == 0):
                fams = (4, 6) if s.prefix is None else (s.prefix.family,)
                for f in fams:
                    k = (s.dir, s.proto, s.port, f)
                    if k in l4_zero:
                        j, other = l4_zero[k]
                        raise ValidationError(f"{s.describe()} overlaps {other.describe()} "
                                              f"(items {j + 1} and {i + 1})")
                    l4_zero[k] = (i, s)
        self._expire_pending()
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            now = time.time()
            new_specs, upd_specs = [], []
            for s in specs:
                row = self._existing(s)
                ov = self._overlap(s) if row is None else None
                if ov is not None:
                    raise Conflict(f"{s.describe()} overlaps rule {ov} (an L4 rule for any address holds "
                                   f"the /0 entries of both families); remove it first")
                if row is None:
                    new_specs.append(s)
                elif update:
                    upd_specs.append((s, row))
                else:
                    v = _row_to_view(row)
                    raise Conflict(f"{s.describe()} already exists as rule {v.id} ({v.action}); "
                                   f"use update to change it")
            ids = state.free_ids(len(new_specs), kt["xc_rule_stats"].max_entries) if new_specs else []
            rows = []
            for rid, s in zip(ids, new_specs):
                expires = now + s.ttl if s.ttl else None
                fam = s.prefix.family if s.prefix else 0
                rows.append((rid, fam, _addr_bytes(fam, s.prefix.net) if s.prefix else b"",
                             s.prefix.plen if s.prefix else 0, s.dir, s.action, s.proto or 0, s.port or 0,
                             0 if s.prefix else 1, int(s.mgmt), s.comment, source, now, expires))
            for s, row in upd_specs:
                expires = now + s.ttl if s.ttl else None
                state.db.execute("UPDATE rules SET action=?, comment=?, expires=?, mgmt=? WHERE id=?",
                                 (s.action, s.comment, expires, int(s.mgmt), row[0]))
            state.db.executemany(f"INSERT INTO rules({_RULE_COLS}) VALUES ({','.join('?' * 14)})", rows)
            changed_ids = ids + [row[0] for _s, row in upd_specs]
            kt.zero_stats(ids)
            self._write_changes(kt, added_ids=changed_ids, removed=[])
            rev = self._finish(kt)
            views = {r[0]: _row_to_view(r) for r in self._rows_by_ids(changed_ids)}
            return ChangeResult(rev, added=[views[i] for i in ids],
                                updated=[views[row[0]] for _s, row in upd_specs])

    def _rows_by_ids(self, ids: list[int]):
        out = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += self.state.db.execute(
                f"SELECT {_RULE_COLS} FROM rules WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return out

    def _write_changes(self, kt: KernelTables, added_ids: list[int], removed: list[dlc.Rule]) -> None:
        """Write the kernel for rules just inserted/updated (by id) and rules
        just deleted from the database; full compile for large changes."""
        if len(added_ids) + len(removed) > BULK_THRESHOLD:
            self._full_sync(kt)
            return
        now_wall, now_kns = time.time(), kernel_ns()
        index = SqlRuleIndex(self.state, self._lists_index_get() if self._has_lists() else None)
        plan = dlc.Plan()
        for r in removed:
            index.prepare(r)
            plan.merge(dlc.plan_remove(r, index))
        for row in self._rows_by_ids(added_ids):
            r = _row_to_rule(row, now_wall, now_kns)
            index.prepare(r)
            plan.merge(dlc.plan_add(r, index))
        kt.apply(plan)

    def _has_lists(self) -> bool:
        return self.state.db.execute("SELECT 1 FROM lists LIMIT 1").fetchone() is not None

    def _full_sync(self, kt: KernelTables, progress=None) -> SyncReport:
        now_wall, now_kns = time.time(), kernel_ns()
        return kt.sync_to(self._compile(self._all_rules(now_wall, now_kns)), progress)

    @staticmethod
    def _compile(rules) -> dlc.Compiled:
        try:
            return dlc.compile_full(rules)
        except dlc.RuleError as exc:  # pragma: no cover - inputs are validated
            raise ValidationError(f"rule set does not compile: {exc}") from None

    def remove(self, specs: list[RuleSpec] | None = None, ids: list[int] | None = None,
               expected_revision: int | None = None) -> ChangeResult:
        """Remove individually managed rules by match or by id (all or nothing)."""
        specs, ids = specs or [], ids or []
        if not specs and not ids:
            raise ValidationError("nothing to remove: give prefixes or rule ids")
        self._expire_pending()
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            rows = []
            for s in specs:
                row = self._existing(s)
                if row is None:
                    in_list = self._find_in_lists(s)
                    if in_list:
                        raise Conflict(f"{s.describe()} is a member of list {in_list!r}; re-import the list "
                                       f"without it, remove the list, or add an allow rule")
                    raise NotFound(f"no rule matches {s.describe()}")
                rows.append(row)
            for rid in ids:
                r = self._rows_by_ids([rid])
                if not r:
                    raise NotFound(f"no rule with id {rid}")
                rows.append(r[0])
            uniq = {r[0]: r for r in rows}
            rows = list(uniq.values())
            self._delete_rows(state, kt, rows)
            rev = self._finish(kt)
            return ChangeResult(rev, removed=[_row_to_view(r) for r in rows])

    def _delete_rows(self, state, kt: KernelTables, rows) -> None:
        now_wall, now_kns = time.time(), kernel_ns()
        rules = [_row_to_rule(r, now_wall, now_kns) for r in rows]
        ids = [r[0] for r in rows]
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            state.db.execute(f"DELETE FROM rules WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        self._write_changes(kt, added_ids=[], removed=rules)
        kt.zero_stats(ids)

    def _find_in_lists(self, s: RuleSpec) -> str | None:
        if s.prefix is None or s.proto is not None:
            return None
        for name, d, entries in self.state.db.execute("SELECT name, dir, entries FROM lists"):
            if d == s.dir and s.prefix in set(_Members.unpack(entries).prefixes()):
                return name
        return None

    def set_policy(self, policy: str, expected_revision: int | None = None) -> int:
        if policy not in POLICIES:
            raise ValidationError(f"unknown policy {policy!r}; expected allow or deny")
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            state.set_meta("policy", policy)
            return self._finish(kt)

    # ----------------------------------------------------------- lists
    def import_list(
        self,
        name: str,
        prefixes: list[px.Prefix],
        *,
        action: str = "deny",
        dst: bool = False,
        comment: str | None = None,
        ttl: str | int | None = None,
        source: str | None = None,
        expected_revision: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ChangeResult:
        """Create or atomically replace a named list."""
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
            raise ValidationError(f"invalid list name {name!r}: use 1-64 letters, digits, '-', '_' or '.'")
        act = {"deny": DENY, "allow": ALLOW}.get(action)
        if act is None:
            raise ValidationError(f"unknown action {action!r}; expected deny or allow")
        try:
            t = px.parse_duration(ttl) if ttl not in (None, "", 0) else None
        except px.PrefixError as exc:
            raise ValidationError(str(exc)) from None
        d = 1 if dst else 0
        cols = _Members.of(prefixes)  # IPv4 members first: that is rule-id order
        lflags = cols.flags(dst)
        self._expire_pending()
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            old = state.db.execute("SELECT id_base, count FROM lists WHERE name=?", (name,)).fetchone()
            cap = kt["xc_rule_stats"].max_entries
            # the new range must not overlap the old one: both live during the swap
            n = cols.n4 + cols.n6
            base = state.allocate_ids(n, cap) if n else 1
            now = time.time()
            expires = now + t if t else None
            pending = cols.columns(base, d, act, wall_to_kernel_ns(expires))
            compiled = self._compile(self._all_rules(now, kernel_ns(), pending=(name, pending)))
            # The kernel write (mostly in the kernel, without the GIL) runs
            # while this thread packs and stores the list; a failure on either
            # side rolls back both.
            box: dict = {}

            def write() -> None:
                try:
                    box["report"] = kt.sync_to(compiled, progress)
                except BaseException as exc:  # re-raised below
                    box["error"] = exc

            th = threading.Thread(target=write, name="xdpctl-map-write")
            th.start()
            try:
                entries = cols.pack()
                state.db.execute("DELETE FROM lists WHERE name=?", (name,))
                state.db.execute(
                    "INSERT INTO lists(name, dir, action, comment, source, created, expires, id_base, count, "
                    "entries, flags) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (name, d, act, comment, source, now, expires, base, n, entries, lflags),
                )
            finally:
                th.join()
            if "error" in box:
                raise box["error"]
            report = box["report"]
            self._lists_index = None
            if old:
                kt.zero_stats(range(old[0], old[0] + old[1]))
            rev = self._finish(kt)
            res = ChangeResult(rev)
            res.notes.append(
                f"list {name}: {n} prefixes, rule ids {base}..{base + max(n, 1) - 1}; "
                f"{report.written} map entries written, {report.deleted} deleted"
            )
            return res

    def remove_list(self, name: str, expected_revision: int | None = None) -> ChangeResult:
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            row = state.db.execute("SELECT id_base, count FROM lists WHERE name=?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no list named {name!r}")
            state.db.execute("DELETE FROM lists WHERE name=?", (name,))
            self._lists_index = None
            self._full_sync(kt)
            kt.zero_stats(range(row[0], row[0] + row[1]))
            rev = self._finish(kt)
            res = ChangeResult(rev)
            res.notes.append(f"removed list {name} ({row[1]} prefixes)")
            return res

    def export(self) -> list[str]:
        """Individually managed rules as CLI-style lines, then lists."""
        lines = [f"# xdpctl export, revision {self.revision()}, policy {self.policy()}"]
        for r in self.rules(with_stats=False):
            parts = ["allow" if r.action == "allow" else "block", r.prefix or "any"]
            if r.dir == "dst":
                parts.append("--dst")
            if r.proto:
                parts += ["--proto", r.proto, "--port", str(r.port)]
            if r.expires:
                parts += ["--ttl", f"{max(1, int(r.expires - time.time()))}s"]
            if r.mgmt:
                parts.append("--mgmt")
            if r.comment:
                parts += ["--comment", repr(r.comment)]
            lines.append(" ".join(parts))
        for lv in self.lists(with_stats=False):
            lines.append(f"# list {lv.name}: {lv.count} prefixes, {lv.action} {lv.dir}")
            for m in self._list_members(lv.name, False, None):
                lines.append(m.prefix)
        return lines

    # ----------------------------------------------------------- expiry, sync
    def _expire_pending(self) -> None:
        """Reap expired rules in their own transaction, before a change."""
        now = time.time()
        db = self.state.db
        if db.execute("SELECT 1 FROM rules WHERE expires IS NOT NULL AND expires <= ? LIMIT 1", (now,)).fetchone() \
                or db.execute("SELECT 1 FROM lists WHERE expires IS NOT NULL AND expires <= ? LIMIT 1",
                              (now,)).fetchone():
            self.expire()

    def next_expiry(self) -> float | None:
        """Wall-clock time of the next rule or list expiry, or None."""
        db = self.state.db
        a = db.execute("SELECT MIN(expires) FROM rules WHERE expires IS NOT NULL").fetchone()[0]
        b = db.execute("SELECT MIN(expires) FROM lists WHERE expires IS NOT NULL").fetchone()[0]
        vals = [v for v in (a, b) if v is not None]
        return min(vals) if vals else None

    def expire(self) -> list[RuleView]:
        nxt = self.next_expiry()
        if nxt is None or nxt > time.time():
            return []  # nothing due: no lock, no maps
        with self.ctx.writer(), KernelTables(self.ctx) as kt:
            removed = self._expire_locked(kt)
            if removed:
                self._finish(kt)
            return removed

    def _expire_locked(self, kt: KernelTables) -> list[RuleView]:
        now = time.time()
        rows = self.state.db.execute(
            f"SELECT {_RULE_COLS} FROM rules WHERE expires IS NOT NULL AND expires <= ?", (now,)).fetchall()
        removed = [_row_to_view(r) for r in rows]
        if rows:
            self._delete_rows(self.state, kt, rows)
        lists = self.state.db.execute(
            "SELECT name, id_base, count FROM lists WHERE expires IS NOT NULL AND expires <= ?", (now,)).fetchall()
        if lists:
            for name, base, count in lists:
                self.state.db.execute("DELETE FROM lists WHERE name=?", (name,))
                kt.zero_stats(range(base, base + count))
            self._lists_index = None
            self._full_sync(kt)
        return removed

    def sync(self, progress=None) -> SyncReport:
        """Rebuild the maps from the database, repairing any drift."""
        with self.ctx.writer(), KernelTables(self.ctx) as kt:
            self._expire_locked(kt)
            report = self._full_sync(kt, progress)
            policy, flags, gen = kt.read_config()
            want_policy, want_flags = POLICIES[self.policy()], self._flags()
            if (policy, flags, gen) != (want_policy, want_flags, self.revision()):
                kt.write_config(want_policy, want_flags, self.revision())
                report.written += 1
            report.revision = self.revision()
            return report


# A list's members, columnar so that a million pack and unpack with array
# operations: header (u32 n4, u32 n6), n4 prefix lengths, n4 IPv4 networks
# (big-endian), n6 prefix lengths, n6 IPv6 networks (16 bytes each). Rule
# ids follow that order (IPv4 members first).
_MEMBERS_HDR = struct.Struct("=II")


class _Members:
    """A list's members as columns, IPv4 ones first (rule-id order)."""

    def __init__(self, nets4: list, plens4: bytes, nets6: list, plens6: bytes):
        self.nets4, self.plens4, self.nets6, self.plens6 = nets4, plens4, nets6, plens6
        self.n4, self.n6 = len(nets4), len(nets6)

    @classmethod
    def of(cls, prefixes: list[px.Prefix]) -> "_Members":
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

    def flags(self, dst: bool) -> int:
        flags = int(abi.CfgFlag.HAVE_DST) if dst and (self.n4 or self.n6) else 0
        if any(dlc.band_of(6, p) is None for p in set(self.plens6)):
            flags |= int(abi.CfgFlag.HAVE_V6TRIE)
        return flags

    @classmethod
    def unpack(cls, blob: bytes) -> "_Members":
        """The inverse of pack()."""
        n4, n6 = _MEMBERS_HDR.unpack_from(blob)
        o = _MEMBERS_HDR.size
        plens4 = blob[o:o + n4]
        o += n4
        nets4 = array("I", blob[o:o + 4 * n4])
        if sys.byteorder == "little":
            nets4.byteswap()
        o += 4 * n4
        plens6 = blob[o:o + n6]
        o += n6
        nets6 = [int.from_bytes(blob[o + 16 * i:o + 16 * i + 16], "big") for i in range(n6)]
        return cls(nets4.tolist(), plens4, nets6, plens6)

    def prefixes(self) -> list[px.Prefix]:
        """Members in rule-id order."""
        return [px.Prefix(4, n, p) for n, p in zip(self.nets4, self.plens4)] + \
               [px.Prefix(6, n, p) for n, p in zip(self.nets6, self.plens6)]

    def columns(self, base: int, d: int, action: int, expires_ns: int) -> dlc.RuleColumns:
        """Members as compiler input, rule ids from base."""
        n = self.n4 + self.n6
        none = [None] * n
        return dlc.RuleColumns(
            array("I", range(base, base + n)), b"\x04" * self.n4 + b"\x06" * self.n6,
            self.nets4 + self.nets6, self.plens4 + self.plens6, bytes([d]) * n, bytes([action]) * n,
            none, none, [expires_ns] * n)

    def pack(self) -> bytes:
        """The stored blob: header, IPv4 lengths, IPv4 networks (big-endian),
        IPv6 lengths, IPv6 networks."""
        nets4 = array("I", self.nets4)
        if sys.byteorder == "little":
            nets4.byteswap()
        return b"".join((
            _MEMBERS_HDR.pack(self.n4, self.n6),
            self.plens4,
            nets4.tobytes(),
            self.plens6,
            b"".join(n.to_bytes(16, "big") for n in self.nets6),
        ))
