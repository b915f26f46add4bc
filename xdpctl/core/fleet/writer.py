"""The fleet's rule set in etcd, with DropList's method names and views.

In fleet mode the front ends get this object instead of the local DropList
(xdpctl.core.fleet.mode): every change is one etcd transaction conditional
on the cluster revision (xdpctl.core.fleet.store), answered with the same
view a local change answers, its revision the cluster revision. Reads answer
the desired set at one etcd revision; rules and list members carry their
position in that set as their id (fleet rules have no host's ids) and no
hit counters (those are each host's: ``xdpctl rules`` without --etcd). A
list is written as chunks first, then switched by one transaction on its
manifest that also deletes the previous version's chunks.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Iterator

from .. import prefixes as px
from ..errors import NotFound, RevisionConflict, ValidationError
from ..rules import validate
from ..rules.members import Members
from ..rules.validate import RuleSpec
from ..views import (ChangeView, ListChangeView, ListDetailView, ListsView, ListView, PolicyView, RevisionView,
                     RulesView, RuleView)
from .layout import Manifest, cut, members_of, pack_members, rule_name, rule_of, rule_value
from .status import fleet_status
from .store import FleetStore, Need, delete, put
from .views import FleetStatusView

MAX_TXN_RULES = 120  # etcd allows 128 operations in one transaction by default
NO_TTL = "fleet rules do not expire: every host would judge the expiry by its own clock"


def _rule_view(pos: int, s: RuleSpec, extra: dict, list_name: str | None = None) -> RuleView:
    return RuleView(id=pos, prefix=px.format_prefix(s.prefix) if s.prefix is not None else None,
                    family=s.prefix.family if s.prefix is not None else 0, dir=validate.DIR_NAMES[s.dir],
                    action=validate.ACTION_NAMES[s.action], proto=px.proto_name(s.proto) if s.proto else None,
                    port=s.port or None, comment=s.comment, source=extra.get("source", "fleet"),
                    created=extra.get("created", 0.0), expires=None, mgmt=s.mgmt, list=list_name)


def _list_view(name: str, man: Manifest, created: float) -> ListView:
    return ListView(name=name, count=man.count, dir="dst" if man.dst else "src", action=man.action,
                    comment=man.comment, source="fleet", created=created, expires=None, id_base=1,
                    sha256=man.sha256)


class Fleet(FleetStore):
    """The fleet's drop list: DropList's changes and reads, kept in etcd."""

    # ----------------------------------------------------------- reads
    def policy(self) -> str:
        kv = self.etcd.get(self.layout.policy)
        return kv.value.decode() if kv else "allow"

    def _rules(self, kvs) -> list[tuple[RuleSpec, dict]]:
        return [(rule_of(kv.value), json.loads(kv.value)) for kv in sorted(kvs, key=lambda kv: kv.key)]

    def rules(self, with_stats: bool = True, list_name: str | None = None, limit: int | None = None,
              prefix: str | None = None, after: int | None = None) -> list[RuleView]:
        """The fleet's rules (or a list's members) in key order, ids their positions."""
        if list_name is not None:
            return self._members(list_name, limit, after)
        snap = self.snapshot(self.layout.k("set", "rules", ""))
        out = [_rule_view(i + 1, s, extra) for i, (s, extra) in enumerate(self._rules(snap.kvs))]
        out = [r for r in out if (prefix is None or r.prefix == prefix) and r.id > (after or 0)]
        return out[:limit] if limit else out

    def rules_view(self, with_stats: bool = True, list_name: str | None = None, limit: int | None = None,
                   prefix: str | None = None, after: int | None = None) -> RulesView:
        if prefix is not None and list_name is not None:
            raise ValidationError("give either a prefix or a list, not both", field="list", value=list_name)
        rev, policy = self.revision(), self.policy()
        rules = self.rules(with_stats, list_name, limit + 1 if limit else None, prefix, after)
        more = bool(limit) and len(rules) > limit
        rules = rules[:limit] if limit else rules
        return RulesView(revision=rev, policy=policy, rules=rules, next=rules[-1].id if more else None)

    def _manifest(self, name: str) -> tuple[Manifest, float]:
        kv = self.etcd.get(self.layout.manifest(name))
        if kv is None:
            raise NotFound(f"the fleet has no list named {name!r}", field="name", value=name)
        return Manifest.decode(kv.value), json.loads(kv.value).get("created", 0.0)

    def _member_prefixes(self, name: str, man: Manifest) -> list[px.Prefix]:
        _r, kvs = self.etcd.range(self.layout.chunks(name, man.version))
        return members_of(man, b"".join(kv.value for kv in sorted(kvs, key=lambda kv: kv.key)))

    def _members(self, name: str, limit: int | None, after: int | None) -> list[RuleView]:
        man, created = self._manifest(name)
        start = after or 0
        span = self._member_prefixes(name, man)[start:start + limit if limit else None]
        action = validate.action_of(man.action)
        return [_rule_view(start + i + 1, RuleSpec(p, dir=int(man.dst), action=action, comment=man.comment),
                           {"created": created}, name) for i, p in enumerate(span)]

    def lists(self, with_stats: bool = True) -> list[ListView]:
        _r, kvs = self.etcd.range(self.layout.k("set", "lists", ""))
        return [_list_view(self.layout.set_parts(kv.key)[1], Manifest.decode(kv.value),
                           json.loads(kv.value).get("created", 0.0))
                for kv in kvs if kv.key.endswith("/manifest")]

    def lists_view(self, with_stats: bool = True) -> ListsView:
        rev = self.revision()
        return ListsView(revision=rev, lists=self.lists(with_stats))

    def get_list(self, name: str, with_stats: bool = True) -> ListView:
        return _list_view(name, *self._manifest(name))

    def list_detail(self, name: str, limit: int | None = None, with_stats: bool = True,
                    after: int | None = None) -> ListDetailView:
        rev, lv = self.revision(), self.get_list(name)
        members = self._members(name, limit, after)
        more = bool(members) and members[-1].id < lv.count
        return ListDetailView(revision=rev, list=lv, members=members, truncated=lv.count > len(members),
                              next=members[-1].id if more else None)

    def list_text(self, name: str, chunk: int = 10000) -> Iterator[str]:
        man, _created = self._manifest(name)
        yield (f"# xdpctl list {name}: {man.count} prefixes, {man.action} {'dst' if man.dst else 'src'}, "
               f"fleet revision {self.revision()}\n")
        members = self._member_prefixes(name, man)
        for i in range(0, len(members), chunk):
            yield "".join(px.format_prefix(p) + "\n" for p in members[i:i + chunk])

    def policy_view(self) -> PolicyView:
        return PolicyView(policy=self.policy(), revision=self.revision())

    def revision_view(self) -> RevisionView:
        return RevisionView(revision=self.revision())

    def status(self) -> FleetStatusView:
        return fleet_status(self)

    # ----------------------------------------------------------- changes
    @staticmethod
    def _check_size(specs: list[RuleSpec]) -> None:
        if not specs:
            raise ValidationError("no rules given", field="rules")
        if len(specs) > MAX_TXN_RULES:
            raise ValidationError(f"more than {MAX_TXN_RULES} rules in one change", field="rules",
                                  value=len(specs), hint="import them as a list with {action:import}")
        validate.check_unique(specs)

    def add(self, specs: list[RuleSpec], expected_revision: int | None = None, source: str = "cli",
            update: bool = False) -> ChangeView:
        """Add rules (with ``update``, replace those with the same match)."""
        self._check_size(specs)
        if any(s.ttl for s in specs):
            raise ValidationError(NO_TTL, field="ttl", hint="remove them when done")
        names = [rule_name(s) for s in specs]
        old = {n for n in names if self.etcd.get(self.layout.rule(n)) is not None} if update else set()
        now = time.time()
        ops = [put(self.layout.rule(n), _stored(s, source, now)) for n, s in zip(names, specs)]
        needs = [] if update else [Need(self.layout.rule(n), f"rule matching {s.describe()}", "prefix",
                                        s.describe(), present=False, hint="give {field:update} to replace it")
                                   for n, s in zip(names, specs)]
        rev = self.commit(ops, expected_revision, needs)
        views = [_rule_view(0, s, {"source": source, "created": now}) for s in specs]
        return ChangeView(revision=rev, added=[v for n, v in zip(names, views) if n not in old],
                          updated=[v for n, v in zip(names, views) if n in old])

    def remove(self, specs: list[RuleSpec] | None = None, ids: list[int] | None = None,
               expected_revision: int | None = None) -> ChangeView:
        if ids:
            raise ValidationError("fleet rules have no ids: remove them by match", field="ids", value=ids[0])
        specs = specs or []
        self._check_size(specs)
        got = [self.etcd.get(self.layout.rule(rule_name(s))) for s in specs]
        needs = [Need(self.layout.rule(rule_name(s)), f"rule matching {s.describe()}", "prefix", s.describe())
                 for s in specs]
        rev = self.commit([delete(n.key) for n in needs], expected_revision, needs)
        return ChangeView(revision=rev, removed=[_rule_view(0, rule_of(kv.value), json.loads(kv.value))
                                                 for kv in got if kv is not None])

    def set_policy(self, policy: str, expected_revision: int | None = None) -> PolicyView:
        validate.policy(policy)
        changed = self.policy() != policy
        rev = self.commit([put(self.layout.policy, policy)], expected_revision)
        return PolicyView(policy=policy, revision=rev, changed=changed)

    def import_list(self, name: str, prefixes: list[px.Prefix] | Members, *, action: str = "deny",
                    dst: bool = False, comment: str | None = None, ttl: str | None = None, source: str | None = None,
                    expected_revision: int | None = None, progress=None) -> ListChangeView:
        """Write the members as chunks of a new version, then switch the manifest."""
        validate.list_name(name)
        validate.action_of(action)
        if ttl:
            raise ValidationError(NO_TTL, field="ttl", hint="remove the list when done")
        blob = pack_members(prefixes)
        chunks = cut(blob)
        version = self.etcd.revision()
        base = self.layout.chunks(name, version)
        for i, chunk in enumerate(chunks):
            self.etcd.put(f"{base}{i:06d}", chunk)
            if progress:
                progress(len(prefixes) * (i + 1) // len(chunks), len(prefixes))
        old = self.etcd.get(self.layout.manifest(name))
        man = Manifest(version, len(prefixes), len(chunks), action, dst, comment, hashlib.sha256(blob).hexdigest(),
                       "members")
        now = time.time()
        ops = [put(self.layout.manifest(name), json.dumps({**man.__dict__, "created": now}, sort_keys=True))]
        if old is not None:
            ops.append(delete(self.layout.chunks(name, Manifest.decode(old.value).version), prefix=True))
        try:
            rev = self.commit(ops, expected_revision)
        except RevisionConflict:
            self.etcd.delete_prefix(base)
            raise
        return ListChangeView(revision=rev, created=old is None, list=_list_view(name, man, now),
                              notes=[f"{len(chunks)} chunks"])

    def remove_list(self, name: str, expected_revision: int | None = None) -> ChangeView:
        validate.list_name(name)
        man = self.layout.manifest(name)
        rev = self.commit([delete(man), delete(self.layout.chunks(name), prefix=True)], expected_revision,
                          [Need(man, f"list named {name!r}", "name", name)])
        return ChangeView(revision=rev, notes=[f"removed list {name}"])


def _stored(s: RuleSpec, source: str, created: float) -> bytes:
    """A rule as its key holds it: the match and action, who wrote it, when."""
    return json.dumps({**json.loads(rule_value(s)), "source": source, "created": created}, sort_keys=True).encode()
