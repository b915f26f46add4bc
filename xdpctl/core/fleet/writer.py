"""Fleet writes and fleet status.

Every write is one etcd transaction that also touches PREFIX/rev, so the
rule set's cluster revision is that key's mod_revision, and a write given an
expected revision is conditional on it (RevisionConflict otherwise). A list
is written as chunks first, then switched by one transaction on its
manifest that also deletes the previous version's chunks.
"""

from __future__ import annotations

import hashlib
import json
import time

from .. import prefixes as px
from ..errors import NotFound, RevisionConflict, ValidationError
from ..rules import validate
from ..rules.validate import RuleSpec
from .kv import Etcd, enc, prefix_end
from .layout import Layout, Manifest, chunk_texts, rule_name, rule_value
from .views import FleetChangeView, FleetNodeView, FleetStatusView

MAX_TXN_RULES = 120  # etcd allows 128 operations in one transaction by default


def _put(key: str, value: bytes | str) -> dict:
    return {"request_put": {"key": enc(key), "value": enc(value)}}


def _delete(key: str, *, prefix: bool = False) -> dict:
    body = {"key": enc(key)}
    if prefix:
        body["range_end"] = prefix_end(key)
    return {"request_delete_range": body}


class Fleet:
    """Writes to, and reads of, one fleet's desired rule set."""

    def __init__(self, etcd: Etcd, prefix: str):
        self.etcd = etcd
        self.layout = Layout(prefix)

    def revision(self) -> int:
        kv = self.etcd.get(self.layout.rev)
        return kv.mod_revision if kv else 0

    def _commit(self, ops: list[dict], expected: int | None, exists: dict[str, str] | None = None) -> int:
        """Run ``ops`` (and touch the rev key) if the rev key is at ``expected``
        and every key of ``exists`` (key -> what it is) is present."""
        exists = exists or {}
        cmp = [{"key": enc(k), "result": "GREATER", "target": "VERSION", "version": "0"} for k in exists]
        if expected is not None:
            cmp.append({"key": enc(self.layout.rev), "result": "EQUAL", "target": "MOD",
                        "mod_revision": str(expected)})
        ok, rev = self.etcd.txn(cmp, ops + [_put(self.layout.rev, b"")])
        if ok:
            return rev
        for k, what in exists.items():
            if self.etcd.get(k) is None:
                field = "name" if k.endswith("/manifest") else "prefix"
                raise NotFound(f"the fleet has no {what}", field=field, value=what)
        raise RevisionConflict(f"revision conflict: the fleet rule set is at revision {self.revision()}, "
                               f"the request expected {expected}", field="revision", value=expected,
                               hint="re-read and retry")

    @staticmethod
    def _check_size(specs: list[RuleSpec]) -> None:
        if not specs:
            raise ValidationError("no rules given", field="rules")
        if len(specs) > MAX_TXN_RULES:
            raise ValidationError(f"more than {MAX_TXN_RULES} rules in one change", field="rules",
                                  value=len(specs), hint="import them as a list with {action:import}")
        validate.check_unique(specs)

    def add(self, specs: list[RuleSpec], expected_revision: int | None = None) -> FleetChangeView:
        """Add or update rules (the rule with the same match is replaced)."""
        self._check_size(specs)
        if any(s.ttl for s in specs):
            raise ValidationError("fleet rules do not expire", field="ttl", hint="remove them when done")
        ops = [_put(self.layout.rule(rule_name(s)), rule_value(s)) for s in specs]
        rev = self._commit(ops, expected_revision)
        return FleetChangeView(revision=rev, operation="add", rules=[rule_name(s) for s in specs])

    def remove(self, specs: list[RuleSpec], expected_revision: int | None = None) -> FleetChangeView:
        self._check_size(specs)
        keys = {self.layout.rule(rule_name(s)): f"rule matching {s.describe()}" for s in specs}
        rev = self._commit([_delete(k) for k in keys], expected_revision, exists=keys)
        return FleetChangeView(revision=rev, operation="remove", rules=[rule_name(s) for s in specs])

    def set_policy(self, policy: str, expected_revision: int | None = None) -> FleetChangeView:
        validate.policy(policy)
        rev = self._commit([_put(self.layout.policy, policy)], expected_revision)
        return FleetChangeView(revision=rev, operation="policy", policy=policy)

    def import_list(self, name: str, prefixes: list[px.Prefix], *, action: str = "deny", dst: bool = False,
                    comment: str | None = None, expected_revision: int | None = None) -> FleetChangeView:
        """Write the members as chunks of a new version, then switch the manifest."""
        validate.list_name(name)
        validate.action_of(action)
        texts = chunk_texts(prefixes)
        version = self.etcd.revision()
        base = self.layout.chunks(name, version)
        for i, text in enumerate(texts):
            self.etcd.put(f"{base}{i:06d}", text)
        old = self.etcd.get(self.layout.manifest(name))
        digest = hashlib.sha256(b"".join(texts)).hexdigest()
        man = Manifest(version, len(prefixes), len(texts), action, dst, comment, digest)
        ops = [_put(self.layout.manifest(name), man.encode())]
        if old is not None:
            ops.append(_delete(self.layout.chunks(name, Manifest.decode(old.value).version), prefix=True))
        try:
            rev = self._commit(ops, expected_revision)
        except RevisionConflict:
            self.etcd.delete_prefix(base)
            raise
        return FleetChangeView(revision=rev, operation="import", name=name, count=len(prefixes),
                               chunks=len(texts))

    def remove_list(self, name: str, expected_revision: int | None = None) -> FleetChangeView:
        validate.list_name(name)
        man = self.layout.manifest(name)
        rev = self._commit([_delete(man), _delete(self.layout.chunks(name), prefix=True)], expected_revision,
                           exists={man: f"list named {name!r}"})
        return FleetChangeView(revision=rev, operation="remove-list", name=name)

    def status(self) -> FleetStatusView:
        """Every agent ever seen: in-sync, behind (with its lag) or gone."""
        rev = self.revision()
        etcd_rev, live = self.etcd.range(self.layout.k("nodes", ""))
        _r, members = self.etcd.range(self.layout.k("members", ""))
        alive = {self.layout.parts(kv.key)[-1]: kv for kv in live}
        nodes = []
        for kv in members:
            name = self.layout.parts(kv.key)[-1]
            rep = json.loads((alive[name] if name in alive else kv).value)
            applied = rep.get("applied_revision")
            lag = max(rev - applied, 0) if applied is not None else None
            state = "gone" if name not in alive else ("in-sync" if lag == 0 else "behind")
            nodes.append(FleetNodeView(name=name, state=state, applied_revision=applied, lag=lag,
                                       local_revision=rep.get("local_revision"), health=rep.get("health"),
                                       error=rep.get("error"), attachments=rep.get("attachments", []),
                                       updated=rep.get("updated")))
        return FleetStatusView(prefix=self.layout.prefix, revision=rev, etcd_revision=etcd_rev, nodes=nodes)


def report(applied: int, local_revision: int | None, health: str, error: str | None,
           attachments: list[str]) -> bytes:
    """A node's report as its agent writes it."""
    return json.dumps({"applied_revision": applied, "local_revision": local_revision, "health": health,
                       "error": error, "attachments": attachments, "updated": time.time()}).encode()
