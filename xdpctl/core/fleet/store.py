"""What every fleet writer shares: conditional transactions on the rule
set's revision key, and consistent reads of part of the desired set.

Every write is one etcd transaction that also touches PREFIX/set/rev, so the
cluster revision is that key's mod_revision; a write given an expected
revision compares it first (RevisionConflict otherwise, nothing changed).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Conflict, NotFound, RevisionConflict
from .kv import Etcd, KeyValue, enc, prefix_end
from .layout import Layout


def put(key: str, value: bytes | str) -> dict:
    return {"request_put": {"key": enc(key), "value": enc(value)}}


def delete(key: str, *, prefix: bool = False) -> dict:
    body = {"key": enc(key)}
    if prefix:
        body["range_end"] = prefix_end(key)
    return {"request_delete_range": body}


@dataclass(frozen=True)
class Need:
    """A key a write needs present (NotFound) or absent (Conflict)."""

    key: str
    what: str
    field: str
    value: object = None
    present: bool = True
    hint: str | None = None


@dataclass
class Snapshot:
    """Keys under one prefix and the cluster revision, read at one etcd revision."""

    revision: int
    kvs: list[KeyValue]


class FleetStore:
    """One fleet's keys in one etcd."""

    def __init__(self, etcd: Etcd, prefix: str):
        self.etcd = etcd
        self.layout = Layout(prefix)

    def revision(self) -> int:
        kv = self.etcd.get(self.layout.rev)
        return kv.mod_revision if kv else 0

    def snapshot(self, prefix: str) -> Snapshot:
        at, kvs = self.etcd.range(prefix)
        kv = self.etcd.get(self.layout.rev, revision=at)
        return Snapshot(kv.mod_revision if kv else 0, kvs)

    def commit(self, ops: list[dict], expected: int | None, needs: list[Need] = ()) -> int:
        """Run ``ops`` (and touch the rev key) if the rev key is at
        ``expected`` and every ``needs`` holds; the new cluster revision."""
        cmp = [{"key": enc(n.key), "result": "GREATER" if n.present else "EQUAL", "target": "VERSION",
                "version": "0"} for n in needs]
        if expected is not None:
            cmp.append({"key": enc(self.layout.rev), "result": "EQUAL", "target": "MOD",
                        "mod_revision": str(expected)})
        ok, rev = self.etcd.txn(cmp, ops + [put(self.layout.rev, b"")])
        if ok:
            return rev
        for n in needs:
            if (self.etcd.get(n.key) is not None) != n.present:
                cls = NotFound if n.present else Conflict
                raise cls(f"the fleet {'has no' if n.present else 'already has a'} {n.what}", field=n.field,
                          value=n.value, hint=n.hint)
        raise RevisionConflict(f"revision conflict: the fleet rule set is at revision {self.revision()}, "
                               f"the request expected {expected}", field="revision", value=expected,
                               hint="re-read and retry")
