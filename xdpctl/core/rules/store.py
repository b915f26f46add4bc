"""Desired state in SQLite: attachments, rules, lists, policy, revision.

The kernel is a cache of this database: `xdpctl restore` rebuilds programs,
attachments and map contents from it. Writers hold the pin-directory lock
and one SQLite transaction, so the CLI and the service can run side by side.

Every SQL statement of xdpctl is in this module.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from ..errors import CapacityError, RevisionConflict

SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    netns   TEXT NOT NULL DEFAULT '',
    ifname  TEXT NOT NULL,
    hook    TEXT NOT NULL,
    program TEXT NOT NULL,
    mode    TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (netns, ifname, hook, program)
);
CREATE TABLE IF NOT EXISTS rules (
    id       INTEGER PRIMARY KEY,
    family   INTEGER NOT NULL,          -- 4 or 6
    addr     BLOB    NOT NULL,          -- network address, 4 or 16 bytes
    plen     INTEGER NOT NULL,
    dir      INTEGER NOT NULL,          -- 0 source, 1 destination
    action   INTEGER NOT NULL,          -- 1 deny, 2 allow
    proto    INTEGER NOT NULL DEFAULT 0,-- 0: any (address rule)
    port     INTEGER NOT NULL DEFAULT 0,
    anyaddr  INTEGER NOT NULL DEFAULT 0,-- 1: L4 rule without a prefix
    mgmt     INTEGER NOT NULL DEFAULT 0,-- 1: management prefix (allow)
    comment  TEXT,
    source   TEXT,
    created  REAL NOT NULL,
    expires  REAL                       -- wall clock; NULL = never
);
-- A list: a bulk rule set (a block list file) stored as one packed blob and
-- replaced as a whole. Members get rule ids id_base .. id_base+count-1, in
-- the order of the blob (IPv4 members first).
CREATE TABLE IF NOT EXISTS lists (
    name     TEXT PRIMARY KEY,
    dir      INTEGER NOT NULL,
    action   INTEGER NOT NULL,
    comment  TEXT,
    source   TEXT,
    created  REAL NOT NULL,
    expires  REAL,
    id_base  INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    entries  BLOB NOT NULL,             -- see xdpctl.core.rules.members
    flags    INTEGER NOT NULL DEFAULT 0 -- xc_cfg flags the members need
);
-- A list's members sorted by match, one column per family, so that a change
-- finds a member by bisection: see xdpctl.core.rules.listindex.
CREATE TABLE IF NOT EXISTS list_keys (
    name     TEXT PRIMARY KEY REFERENCES lists(name) ON DELETE CASCADE,
    v4       BLOB NOT NULL,
    v6       BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS rules_match
    ON rules (family, dir, proto, port, anyaddr, plen, addr);
CREATE INDEX IF NOT EXISTS rules_expires ON rules (expires) WHERE expires IS NOT NULL;
-- The config flags every change computes, answered without a scan of the rules.
CREATE INDEX IF NOT EXISTS rules_dst ON rules (id) WHERE dir=1 AND proto=0;
CREATE INDEX IF NOT EXISTS rules_port ON rules (id) WHERE proto<>0;
CREATE INDEX IF NOT EXISTS rules_mgmt ON rules (id) WHERE mgmt<>0;
""" + """
-- The load balancer: VIPs and their backends. A VIP's Maglev table lives in
-- the ring region [ring_base, ring_base + ring_size) of xc_lb_ring.
CREATE TABLE IF NOT EXISTS lb_vips (
    id         INTEGER PRIMARY KEY,     -- vip_id in the kernel, 1..
    family     INTEGER NOT NULL,
    addr       TEXT    NOT NULL,        -- canonical text
    proto      INTEGER NOT NULL,
    port       INTEGER NOT NULL,
    table_size INTEGER NOT NULL,
    ring_base  INTEGER NOT NULL DEFAULT 0,
    ring_size  INTEGER NOT NULL DEFAULT 0,  -- 0: no table written
    created    REAL    NOT NULL,
    UNIQUE (addr, proto, port)
);
CREATE TABLE IF NOT EXISTS lb_backends (
    id      INTEGER PRIMARY KEY,        -- backend id in the kernel, 1..
    vip     INTEGER NOT NULL REFERENCES lb_vips(id) ON DELETE CASCADE,
    family  INTEGER NOT NULL,
    addr    TEXT    NOT NULL,
    weight  INTEGER NOT NULL,
    state   TEXT    NOT NULL,           -- active | draining | down
    mac     TEXT,
    created REAL    NOT NULL,
    UNIQUE (vip, addr)
);
"""

# Columns added after a table was first created: (table, column, declaration).
# A database of an older schema gets them at open (ALTER TABLE ADD COLUMN),
# then its schema_version is raised.
MIGRATIONS = (
    # schema 2: health checks of a VIP's backends, health state, resolved MACs
    ("lb_vips", "check_kind", "TEXT NOT NULL DEFAULT 'none'"),  # tcp | udp | none
    ("lb_vips", "check_port", "INTEGER NOT NULL DEFAULT 0"),  # 0: the VIP's port
    ("lb_vips", "interval", "REAL NOT NULL DEFAULT 5"),
    ("lb_vips", "timeout", "REAL NOT NULL DEFAULT 1"),
    ("lb_vips", "rise", "INTEGER NOT NULL DEFAULT 2"),
    ("lb_vips", "fall", "INTEGER NOT NULL DEFAULT 3"),
    ("lb_backends", "health", "TEXT NOT NULL DEFAULT 'unknown'"),  # up | down | unknown
    ("lb_backends", "streak", "INTEGER NOT NULL DEFAULT 0"),  # > 0 successes, < 0 failures in a row
    ("lb_backends", "transitions", "INTEGER NOT NULL DEFAULT 0"),
    ("lb_backends", "reason", "TEXT"),  # of the last health transition
    ("lb_backends", "mac_given", "INTEGER NOT NULL DEFAULT 0"),  # 1: --mac, never resolved
    # schema 3: a VIP's flow hash
    ("lb_vips", "hash", "TEXT NOT NULL DEFAULT 'l4'"),  # l4 | l3 (XC_LB_VIP_HASH_L3)
)

RULE_COLS = "id, family, addr, plen, dir, action, proto, port, anyaddr, mgmt, comment, source, created, expires"
LIST_COLS = "name, count, dir, action, comment, source, created, expires, id_base, entries, flags"
_ADDRESS_RULE = "family=? AND dir=? AND proto=0 AND port=0 AND anyaddr=0"
# What makes a rule (or a list) need a config flag, each in a partial index
_DST_RULE, _DST_LIST = "dir=1 AND proto=0", "dir=1 AND count>0"
_PORT_RULE = "proto<>0"
_MGMT_RULE = "mgmt<>0 AND anyaddr=0 AND proto=0"
# Lookups by match name their index. Left to choose, SQLite plans such a
# statement again on every run: a bound value compared with a column that a
# partial index's WHERE names (``dir=?`` against rules_dst's ``dir=1``) may
# make that index usable, so the plan is redone for each binding. That took
# 40-85 us of a 10 us lookup (single changes make several; a bulk add one
# per rule).
_BY_MATCH = " INDEXED BY rules_match"
_CHUNK = 500  # ids per IN (...) statement
_BUSY_MS = 30_000  # how long a statement waits for another connection's lock


VIP_COLS = ("id, family, addr, proto, port, table_size, ring_base, ring_size, created, check_kind, check_port, "
            "interval, timeout, rise, fall, hash")
BACKEND_COLS = "id, vip, family, addr, weight, state, mac, created, health, streak, transitions, reason, mac_given"


class RuleRow(NamedTuple):
    id: int
    family: int
    addr: bytes
    plen: int
    dir: int
    action: int
    proto: int
    port: int
    anyaddr: int
    mgmt: int
    comment: str | None
    source: str | None
    created: float
    expires: float | None


class ListRow(NamedTuple):
    name: str
    count: int
    dir: int
    action: int
    comment: str | None
    source: str | None
    created: float
    expires: float | None
    id_base: int
    entries: bytes
    flags: int


class VipRow(NamedTuple):
    id: int
    family: int
    addr: str
    proto: int
    port: int
    table_size: int
    ring_base: int
    ring_size: int
    created: float
    check_kind: str  # the health check (xdpctl.core.lb.validate.Check)
    check_port: int
    interval: float
    timeout: float
    rise: int
    fall: int
    hash: str = "l4"  # the flow hash (xdpctl.core.lb.validate.hash_mode)


class BackendRow(NamedTuple):
    id: int
    vip: int
    family: int
    addr: str
    weight: int
    state: str
    mac: str | None
    created: float
    health: str = "unknown"
    streak: int = 0
    transitions: int = 0
    reason: str | None = None
    mac_given: int = 0


@dataclass(frozen=True)
class Attachment:
    netns: str | None
    ifname: str
    hook: str
    program: str
    mode: str | None


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _full(capacity: int, n: int) -> CapacityError:
    return CapacityError(
        f"no room for {n} more rules: the rule table holds {capacity - 1} (xc_rule_stats capacity)",
        value=n, hint="remove rules or raise the capacity")


def _free_run(spans: list[tuple[int, int]], lo: int, hi: int, n: int) -> int | None:
    """First id of n free ids in a row within [lo, hi), or None."""
    cur = lo
    for a, b in spans + [(hi, hi)]:
        if b <= cur:
            continue
        if min(a, hi) - cur >= n:
            return cur
        cur = max(cur, b)
    return None


def _free_in(spans: list[tuple[int, int]], lo: int, hi: int, n: int) -> list[int]:
    """Up to n free ids within [lo, hi), lowest first."""
    out: list[int] = []
    cur = lo
    for a, b in spans + [(hi, hi)]:
        while cur < min(a, hi) and len(out) < n:
            out.append(cur)
            cur += 1
        if len(out) == n or cur >= hi:
            break
        cur = max(cur, b)
    return out


class State:
    """The state database; ``db`` is its one connection."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        with self.tx():
            self._migrate()
            self.db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('revision', '0')")
            self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('policy', 'allow')")

    def close(self) -> None:
        self.db.close()

    # -- the write-ahead log
    def defer_checkpoints(self) -> None:
        """This connection's commits never checkpoint the log: a long-lived
        process (the service) checkpoints it in a thread of its own."""
        self.db.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self, truncate: bool = False) -> tuple[bool, int, int]:
        """Copy the log's committed pages into the database file (PASSIVE:
        waits for no one), or with ``truncate`` also empty the log file
        (TRUNCATE: only when no writer or reader is busy). Neither waits for
        a lock, so neither holds the writer's lock while waiting for readers.
        Returns (blocked, pages in the log, pages checkpointed)."""
        if not truncate:
            busy, log, done = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return bool(busy), log, done
        self.db.execute("PRAGMA busy_timeout=0")
        try:
            busy, log, done = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        return bool(busy), log, done

    def _migrate(self) -> None:
        """Add the columns of :data:`MIGRATIONS` a table lacks; record the schema version."""
        for table, column, decl in MIGRATIONS:
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self.db.execute("UPDATE meta SET value=? WHERE key='schema_version' AND CAST(value AS INTEGER) < ?",
                        (str(SCHEMA_VERSION), SCHEMA_VERSION))

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: committed on success, rolled back on error."""
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    # -- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key=?", (key,))

    @property
    def revision(self) -> int:
        return int(self.get_meta("revision", "0") or 0)

    def check_revision(self, expected: int | None) -> None:
        if expected is not None and expected != self.revision:
            raise RevisionConflict(
                f"revision conflict: the rule set is at revision {self.revision}, "
                f"the request expected {expected}", field="revision", value=expected,
                hint="re-read and retry")

    def bump_revision(self) -> int:
        rev = self.revision + 1
        self.set_meta("revision", str(rev))
        return rev

    # -- rule ids
    def used_id_ranges(self) -> list[tuple[int, int]]:
        """Sorted, merged [start, end) ranges of rule ids in use."""
        spans = [(r[0], r[0] + r[1]) for r in self.db.execute("SELECT id_base, count FROM lists")]
        ids = [r[0] for r in self.db.execute("SELECT id FROM rules ORDER BY id")]
        start = prev = None
        for i in ids:
            if start is None:
                start = prev = i
            elif i == prev + 1:
                prev = i
            else:
                spans.append((start, prev + 1))
                start = prev = i
        if start is not None:
            spans.append((start, prev + 1))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        return merged

    def _id_mark(self) -> int:
        """The last rule id written (rules and lists record it): ids are
        handed out above it until they wrap at the capacity."""
        mark = self.get_meta("rule_id_mark")
        if mark is not None:
            return int(mark)
        spans = self.used_id_ranges()
        return spans[-1][1] - 1 if spans else 0

    def allocate_ids(self, n: int, capacity: int, reserved: list[tuple[int, int]] = ()) -> int:
        """First id of a free run of n ids in [1, capacity): above the
        high-water mark, else (wrapped) the lowest such run; raises when full."""
        spans = sorted(list(self.used_id_ranges()) + list(reserved))
        mark = self._id_mark()
        for lo in (mark + 1, 1):
            base = _free_run(spans, lo, capacity, n)
            if base is not None:
                return base
        raise _full(capacity, n)

    def free_ids(self, n: int, capacity: int) -> list[int]:
        """n free rule ids: those above the high-water mark first, then
        (wrapped) the lowest free ones; raises when full."""
        mark = self._id_mark()
        lo, hi = mark + 1, mark + n  # the usual case: the ids right above the mark are free
        if hi < capacity and not self._ids_used(lo, hi):
            return list(range(lo, hi + 1))
        spans = self.used_id_ranges()
        out = _free_in(spans, mark + 1, capacity, n)
        if len(out) < n:
            out += _free_in(spans, 1, min(mark + 1, capacity), n - len(out))
        if len(out) < n:
            raise _full(capacity, n)
        return out

    def _ids_used(self, lo: int, hi: int) -> bool:
        """Is any id in [lo, hi] held by a rule or a list?"""
        return bool(self.db.execute("SELECT 1 FROM rules WHERE id BETWEEN ? AND ? LIMIT 1", (lo, hi)).fetchone()
                    or self.db.execute("SELECT 1 FROM lists WHERE id_base <= ? AND id_base + count > ? LIMIT 1",
                                       (hi, lo)).fetchone())

    # -- attachments
    def attachments(self) -> list[Attachment]:
        rows = self.db.execute(
            "SELECT netns, ifname, hook, program, mode FROM attachments ORDER BY netns, ifname, hook, program"
        ).fetchall()
        return [Attachment(r[0] or None, r[1], r[2], r[3], r[4]) for r in rows]

    def add_attachment(self, a: Attachment) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO attachments(netns, ifname, hook, program, mode, created) VALUES (?,?,?,?,?,?)",
            (a.netns or "", a.ifname, a.hook, a.program, a.mode, time.time()),
        )

    def remove_attachment(self, netns: str | None, ifname: str, hook: str, program: str) -> None:
        self.db.execute(
            "DELETE FROM attachments WHERE netns=? AND ifname=? AND hook=? AND program=?",
            (netns or "", ifname, hook, program),
        )

    # -- rules: reads
    def _rules(self, where: str = "", args: Iterable = (), index: str = "") -> list[RuleRow]:
        q = f"SELECT {RULE_COLS} FROM rules{index}" + (f" WHERE {where}" if where else "")
        return list(map(RuleRow._make, self.db.execute(q, tuple(args))))

    def _by_match(self, where: str, args: Iterable) -> list[RuleRow]:
        """Rules found through the index of their match (rules_match), named:
        see :data:`_BY_MATCH`."""
        return self._rules(where, args, _BY_MATCH)

    def rule_matches(self) -> tuple[list[int], list[int], bytes, list[tuple]]:
        """Every rule as the compiler needs it, without a row object per
        rule (a million of them made the collector walk them all): in one
        scan, the ids, (family << 24 | plen << 16 | dir << 8 | action) and
        the addresses back to back (4, 16 or 0 bytes by family), in the
        same order, that of the scan (the caller puts them in id order);
        then (id, proto, port, anyaddr, expires) of the rules where one of
        those is not the default (a port, an L4 rule on any address, a
        deadline)."""
        ids, fields, addrs = self.db.execute(
            "SELECT json_group_array(id), json_group_array((family << 24) | (plen << 16) | (dir << 8) | action), "
            "group_concat(hex(addr), '') FROM rules").fetchone()
        extra = self.db.execute("SELECT id, proto, port, anyaddr, expires FROM rules WHERE proto != 0 "
                                "OR port != 0 OR anyaddr != 0 OR expires IS NOT NULL ORDER BY id").fetchall()
        return json.loads(ids), json.loads(fields), bytes.fromhex(addrs or ""), extra

    def rule_rows(self, match: tuple[int, int, bytes] | None = None, limit: int | None = None,
                  after: int | None = None) -> list[RuleRow]:
        """Rules in id order; ``match`` (family, plen, addr): only on that
        prefix; ``after``: only ids above it."""
        where, args = ("family=? AND plen=? AND addr=?", tuple(match)) if match is not None else ("1", ())
        if after is not None:
            where, args = f"{where} AND id>?", (*args, after)
        where += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
        return self._rules(where, args)

    def rule_by_key(self, key: tuple) -> RuleRow | None:
        """The rule with this match (RuleSpec.key() order), or None."""
        rows = self._by_match("family=? AND dir=? AND proto=? AND port=? AND anyaddr=? AND plen=? AND addr=?", key)
        return rows[0] if rows else None

    def rules_by_ids(self, ids: list[int]) -> list[RuleRow]:
        out: list[RuleRow] = []
        for chunk in _chunks(ids):
            out += self._rules(f"id IN ({_marks(len(chunk))})", chunk)
        return out

    def address_rules_in(self, family: int, dir: int, plens: tuple[int, int],
                         addrs: tuple[bytes, bytes]) -> list[RuleRow]:
        """Address rules of a direction with lengths and networks in the
        given closed ranges. The lengths are listed (IN), not a range: after
        a range on plen the index could not narrow addr, and every rule of
        those lengths would be read."""
        lens = list(range(plens[0], plens[1] + 1))
        return self._by_match(f"{_ADDRESS_RULE} AND plen IN ({_marks(len(lens))}) AND addr BETWEEN ? AND ?",
                              (family, dir, *lens, *addrs))

    def address_nets(self, family: int, dir: int, plens: tuple[int, int]) -> list[tuple[int, bytes]]:
        """(plen, addr) of every address rule of a direction with a length in
        the closed range, ordered by length, then address: read off the
        index alone, no row object per rule (a list change beside 100,000
        rules made as many)."""
        return self.db.execute(f"SELECT plen, addr FROM rules{_BY_MATCH} WHERE {_ADDRESS_RULE} "
                               "AND plen BETWEEN ? AND ? ORDER BY plen, addr", (family, dir, *plens)).fetchall()

    def address_rules_at(self, family: int, dir: int, plens: list[int], addrs: list[bytes]) -> list[RuleRow]:
        """Address rules of a direction with any of these lengths and any of
        these networks (every pair: one search of the index each)."""
        return self._by_match(f"{_ADDRESS_RULE} AND plen IN ({_marks(len(plens))}) AND addr IN "
                              f"({_marks(len(addrs))})", (family, dir, *plens, *addrs))

    def address_rule(self, family: int, dir: int, plen: int, addr: bytes) -> RuleRow | None:
        rows = self._by_match(f"{_ADDRESS_RULE} AND plen=? AND addr=?", (family, dir, plen, addr))
        return rows[0] if rows else None

    def l4_zero_rule(self, dir: int, proto: int, port: int, anyaddr: bool) -> int | None:
        """Id of the L4 rule on any address (``anyaddr``) or on a /0 with
        this match, or None."""
        q = f"SELECT id FROM rules{_BY_MATCH} WHERE family IN (0, 4, 6) AND dir=? AND proto=? AND port=? AND " + \
            ("anyaddr=1" if anyaddr else "anyaddr=0 AND plen=0")
        row = self.db.execute(q, (dir, proto, port)).fetchone()
        return row[0] if row else None

    def l4_rules(self, dir: int, proto: int, port: int, family: int) -> list[RuleRow]:
        """L4 rules of a direction for (proto, port) on a prefix of
        ``family`` or on any address."""
        return self._by_match("family IN (0, ?) AND dir=? AND proto=? AND port=?", (family, dir, proto, port))

    def expired_rules(self, now: float) -> list[RuleRow]:
        return self._rules("expires IS NOT NULL AND expires <= ?", (now,))

    # -- rules: writes
    def insert_rules(self, rows: list[RuleRow]) -> None:
        self.db.executemany(f"INSERT INTO rules({RULE_COLS}) VALUES ({_marks(len(RuleRow._fields))})", rows)
        if rows:
            self.set_meta("rule_id_mark", str(rows[-1].id))

    def update_rule(self, rid: int, action: int, comment: str | None, expires: float | None, mgmt: bool) -> None:
        self.db.execute("UPDATE rules SET action=?, comment=?, expires=?, mgmt=? WHERE id=?",
                        (action, comment, expires, int(mgmt), rid))

    def delete_rules(self, ids: list[int]) -> None:
        for chunk in _chunks(ids):
            self.db.execute(f"DELETE FROM rules WHERE id IN ({_marks(len(chunk))})", chunk)

    # -- lists
    def list_rows(self) -> list[ListRow]:
        return list(map(ListRow._make, self.db.execute(f"SELECT {LIST_COLS} FROM lists ORDER BY name")))

    def list_row(self, name: str) -> ListRow | None:
        row = self.db.execute(f"SELECT {LIST_COLS} FROM lists WHERE name=?", (name,)).fetchone()
        return ListRow._make(row) if row else None

    def list_span(self, name: str) -> tuple[int, int] | None:
        """(id_base, count) of a list, or None."""
        row = self.db.execute("SELECT id_base, count FROM lists WHERE name=?", (name,)).fetchone()
        return (row[0], row[1]) if row else None

    def has_lists(self) -> bool:
        return self.db.execute("SELECT 1 FROM lists LIMIT 1").fetchone() is not None

    def loaded_count(self) -> int:
        """Rules plus list members stored: about the entries a rule set holds."""
        return self.db.execute("SELECT (SELECT COUNT(*) FROM rules) + "
                               "(SELECT COALESCE(SUM(count), 0) FROM lists)").fetchone()[0]

    def list_heads(self) -> list[tuple[str, int, int, int, float | None]]:
        """(name, dir, action, id_base, expires) of every list, by name."""
        return self.db.execute("SELECT name, dir, action, id_base, expires FROM lists ORDER BY name").fetchall()

    def open_list_keys(self, name: str) -> tuple | None:
        """A list's key columns (IPv4, IPv6) as read-only blob handles
        (empty ones as b""), or None if the list has none stored."""
        row = self.db.execute("SELECT rowid, length(v4), length(v6) FROM list_keys WHERE name=?",
                              (name,)).fetchone()
        if row is None:
            return None
        return tuple(self.db.blobopen("list_keys", col, row[0], readonly=True) if size else b""
                     for col, size in (("v4", row[1]), ("v6", row[2])))

    def lists_without_keys(self) -> list[str]:
        """Lists stored before their key columns were."""
        return [r[0] for r in self.db.execute(
            "SELECT name FROM lists WHERE name NOT IN (SELECT name FROM list_keys) ORDER BY name")]

    def set_list_keys(self, name: str, keys: tuple[bytes, bytes]) -> None:
        self.db.execute("INSERT OR REPLACE INTO list_keys(name, v4, v6) VALUES (?, ?, ?)", (name, *keys))

    def replace_list(self, row: ListRow, keys: tuple[bytes, bytes] | None = None) -> None:
        """Store a list (and its key columns), replacing any of that name."""
        self.db.execute("DELETE FROM lists WHERE name=?", (row.name,))
        self.db.execute("DELETE FROM list_keys WHERE name=?", (row.name,))
        self.db.execute(f"INSERT INTO lists({LIST_COLS}) VALUES ({_marks(len(ListRow._fields))})", row)
        if keys is not None:
            self.set_list_keys(row.name, keys)
        if row.count:
            self.set_meta("rule_id_mark", str(row.id_base + row.count - 1))

    def delete_list(self, name: str) -> None:
        self.db.execute("DELETE FROM list_keys WHERE name=?", (name,))
        self.db.execute("DELETE FROM lists WHERE name=?", (name,))

    def expired_lists(self, now: float) -> list[tuple[str, int, int]]:
        """(name, id_base, count) of every list past its expiry."""
        return self.db.execute("SELECT name, id_base, count FROM lists WHERE expires IS NOT NULL AND expires <= ?",
                               (now,)).fetchall()

    # -- expiry and config facts over both tables
    def anything_expired(self, now: float) -> bool:
        return any(self.db.execute(f"SELECT 1 FROM {t} WHERE expires IS NOT NULL AND expires <= ? LIMIT 1",
                                   (now,)).fetchone() for t in ("rules", "lists"))

    def next_expiry(self) -> float | None:
        """Wall-clock time of the next rule or list expiry, or None."""
        vals = [self.db.execute(f"SELECT MIN(expires) FROM {t} WHERE expires IS NOT NULL").fetchone()[0]
                for t in ("rules", "lists")]
        vals = [v for v in vals if v is not None]
        return min(vals) if vals else None

    def has_dst_rules(self) -> bool:
        return bool(self.db.execute(f"SELECT 1 FROM rules WHERE {_DST_RULE} LIMIT 1").fetchone()
                    or self.db.execute(f"SELECT 1 FROM lists WHERE {_DST_LIST} LIMIT 1").fetchone())

    def mgmt_rule_rows(self) -> list[RuleRow]:
        """Management prefixes (allow rules on an address)."""
        return [RuleRow(*r) for r in self.db.execute(
            f"SELECT {RULE_COLS} FROM rules WHERE {_MGMT_RULE} ORDER BY id")]

    def rule_set_facts(self, v6_plens: list[int]) -> tuple[bool, bool, bool, bool, int]:
        """What the xc_cfg flags say about the stored rule set, in one
        statement: any destination rule or list, any port rule, any IPv6
        address rule with one of ``v6_plens``, any management prefix; and
        the flags every list needs, or-ed. Each answered from an index."""
        q = (f"SELECT EXISTS(SELECT 1 FROM rules WHERE {_DST_RULE})"
             f" OR EXISTS(SELECT 1 FROM lists WHERE {_DST_LIST}),"
             f" EXISTS(SELECT 1 FROM rules WHERE {_PORT_RULE}),"
             " EXISTS(SELECT 1 FROM rules WHERE family=6 AND dir IN (0, 1) AND proto=0 AND port=0 AND anyaddr=0"
             f" AND plen IN ({_marks(len(v6_plens))})),"  # all of it in the index rules_match
             f" EXISTS(SELECT 1 FROM rules WHERE {_MGMT_RULE}),"
             " (SELECT group_concat(DISTINCT flags) FROM lists)")
        dst, port, v6, mgmt, lists = self.db.execute(q, v6_plens).fetchone()
        flags = 0
        for f in (lists or "").split(","):
            flags |= int(f) if f else 0
        return bool(dst), bool(port), bool(v6), bool(mgmt), flags

    # -- load balancer: VIPs and backends
    def lb_vips(self) -> list[VipRow]:
        return list(map(VipRow._make, self.db.execute(f"SELECT {VIP_COLS} FROM lb_vips ORDER BY id")))

    def lb_vip(self, addr: str, proto: int, port: int) -> VipRow | None:
        row = self.db.execute(f"SELECT {VIP_COLS} FROM lb_vips WHERE addr=? AND proto=? AND port=?",
                              (addr, proto, port)).fetchone()
        return VipRow._make(row) if row else None

    def lb_free_id(self, table: str, capacity: int) -> int | None:
        """The lowest id in [1, capacity) that ``table`` (lb_vips or
        lb_backends) does not use, or None."""
        assert table in ("lb_vips", "lb_backends")
        cur = 1
        for (i,) in self.db.execute(f"SELECT id FROM {table} ORDER BY id"):
            if i != cur:
                break
            cur += 1
        return cur if cur < capacity else None

    def lb_insert_vip(self, row: VipRow) -> None:
        self.db.execute(f"INSERT INTO lb_vips({VIP_COLS}) VALUES ({_marks(len(VipRow._fields))})", row)

    def lb_set_ring(self, vip_id: int, base: int, size: int) -> None:
        self.db.execute("UPDATE lb_vips SET ring_base=?, ring_size=? WHERE id=?", (base, size, vip_id))

    def lb_delete_vip(self, vip_id: int) -> None:
        self.db.execute("DELETE FROM lb_vips WHERE id=?", (vip_id,))

    def lb_backends(self, vip_id: int | None = None) -> list[BackendRow]:
        where, args = ("WHERE vip=?", (vip_id,)) if vip_id is not None else ("", ())
        return list(map(BackendRow._make, self.db.execute(
            f"SELECT {BACKEND_COLS} FROM lb_backends {where} ORDER BY vip, id", args)))

    def lb_backend(self, vip_id: int, addr: str) -> BackendRow | None:
        row = self.db.execute(f"SELECT {BACKEND_COLS} FROM lb_backends WHERE vip=? AND addr=?",
                              (vip_id, addr)).fetchone()
        return BackendRow._make(row) if row else None

    def lb_insert_backend(self, row: BackendRow) -> None:
        self.db.execute(f"INSERT INTO lb_backends({BACKEND_COLS}) VALUES ({_marks(len(BackendRow._fields))})",
                        row)

    def lb_update_backend(self, be_id: int, weight: int, state: str) -> None:
        self.db.execute("UPDATE lb_backends SET weight=?, state=? WHERE id=?", (weight, state, be_id))

    def lb_set_check(self, vip_id: int, kind: str, port: int, interval: float, timeout: float, rise: int,
                     fall: int) -> None:
        self.db.execute("UPDATE lb_vips SET check_kind=?, check_port=?, interval=?, timeout=?, rise=?, fall=? "
                        "WHERE id=?", (kind, port, interval, timeout, rise, fall, vip_id))

    def lb_set_hash(self, vip_id: int, hash_mode: str) -> None:
        self.db.execute("UPDATE lb_vips SET hash=? WHERE id=?", (hash_mode, vip_id))

    def lb_reset_health(self, vip_id: int) -> None:
        """Every backend of the VIP back to health unknown (checks changed)."""
        self.db.execute("UPDATE lb_backends SET health='unknown', streak=0 WHERE vip=?", (vip_id,))

    def lb_set_health(self, be_id: int, health: str, streak: int, transitions: int, reason: str | None) -> None:
        self.db.execute("UPDATE lb_backends SET health=?, streak=?, transitions=?, reason=? WHERE id=?",
                        (health, streak, transitions, reason, be_id))

    def lb_set_mac(self, be_id: int, mac: str | None) -> None:
        """A resolved MAC (the backend's MAC was not given)."""
        self.db.execute("UPDATE lb_backends SET mac=? WHERE id=? AND mac_given=0", (mac, be_id))

    def lb_delete_backend(self, be_id: int) -> None:
        self.db.execute("DELETE FROM lb_backends WHERE id=?", (be_id,))
