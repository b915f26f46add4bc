"""Desired state in SQLite: attachments, rules, policy, revision.

The kernel is a cache of this database: `xdpctl restore` rebuilds programs,
attachments and map contents from it. Writers hold the pin-directory lock
and one SQLite transaction, so the CLI and the service can run side by side.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .errors import RevisionConflict

SCHEMA_VERSION = 1

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
    entries  BLOB NOT NULL,             -- see droplist._pack_members
    flags    INTEGER NOT NULL DEFAULT 0 -- xc_cfg flags the members need
);
CREATE UNIQUE INDEX IF NOT EXISTS rules_match
    ON rules (family, dir, proto, port, anyaddr, plen, addr);
CREATE INDEX IF NOT EXISTS rules_expires ON rules (expires) WHERE expires IS NOT NULL;
"""


@dataclass(frozen=True)
class Attachment:
    netns: str | None
    ifname: str
    hook: str
    program: str
    mode: str | None


class State:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        with self.tx():
            self.db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('revision', '0')")
            self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('policy', 'allow')")

    def close(self) -> None:
        self.db.close()

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

    def allocate_ids(self, n: int, capacity: int, reserved: list[tuple[int, int]] = ()) -> int:
        """First id of a free run of n ids in [1, capacity); raises when full."""
        from .errors import CapacityError

        spans = sorted(list(self.used_id_ranges()) + list(reserved))
        cur = 1
        for a, b in spans:
            if a - cur >= n:
                return cur
            cur = max(cur, b)
        if capacity - cur >= n:
            return cur
        raise CapacityError(
            f"no room for {n} more rules: the rule table holds {capacity - 1} "
            f"(xc_rule_stats capacity); remove rules or raise the capacity"
        )

    def free_ids(self, n: int, capacity: int) -> list[int]:
        """n free rule ids (lowest first, gaps included); raises when full."""
        from .errors import CapacityError

        out: list[int] = []
        cur = 1
        for a, b in self.used_id_ranges() + [(capacity, capacity)]:
            while cur < a and len(out) < n:
                out.append(cur)
                cur += 1
            if len(out) == n:
                return out
            cur = max(cur, b)
        raise CapacityError(
            f"no room for {n} more rules: the rule table holds {capacity - 1} "
            f"(xc_rule_stats capacity); remove rules or raise the capacity"
        )

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
