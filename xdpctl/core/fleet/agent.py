"""The per-host agent: makes this host's drop list follow the fleet's.

It watches PREFIX/set/ and applies each etcd revision through DropList, one
revision at a time, in order; the last applied cluster revision is kept in
the state's meta table (``fleet.revision``), so a restarted agent resumes
the watch right after it. With no applied revision yet, or when etcd has
compacted the history it needs, it resyncs: it reads the whole set at one
revision and makes the local rule set equal to it. While etcd is down the
kernel keeps enforcing the last applied set; the agent retries with backoff.

A second thread keeps the node registered: PREFIX/nodes/<node> under a
lease (gone when the agent stops or dies) and PREFIX/members/<node> (kept),
both holding the node's report.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from etcd3gw import exceptions as etcd_exc

from ..context import Context
from ..errors import EtcdUnavailable, XdpctlError
from ..hooks import pinned_hooks
from ..rules.service import DropList
from ..rules.validate import RuleSpec, spec
from .kv import Compacted, Etcd, EtcdOptions, Event, KeyValue, enc
from .layout import Layout, Manifest, members_of, rule_name, rule_of, rule_value
from .lbapply import apply_lb
from .lbset import LbDesired
from .status import report

META_REVISION = "fleet.revision"
META_LIST = "fleet.list."
BACKOFF = (0.2, 5.0)


@dataclass
class Desired:
    """The rule set as one revision's keys describe it (a resync's target)."""

    rules: dict[str, RuleSpec] = field(default_factory=dict)
    policy: str | None = None
    lists: dict[str, Manifest] = field(default_factory=dict)

    @classmethod
    def of(cls, layout: Layout, kvs: list[KeyValue]) -> "Desired":
        d = cls()
        for kv in kvs:
            p = layout.set_parts(kv.key)
            if p[0] == "rules":
                d.rules[p[1]] = rule_of(kv.value)
            elif p[0] == "policy":
                d.policy = kv.value.decode()
            elif p[0] == "lists" and p[-1] == "manifest":
                d.lists[p[1]] = Manifest.decode(kv.value)
        return d


def _spec_of(r) -> RuleSpec:
    return spec(r.prefix, action=r.action, dst=r.dir == "dst", proto=r.proto, port=r.port, comment=r.comment,
                mgmt=r.mgmt)


class Agent:
    def __init__(self, ctx: Context, opts: EtcdOptions, prefix: str, node: str, ttl: int = 10,
                 log: Callable[[str], None] = lambda s: None):
        self.ctx, self.opts, self.node, self.ttl, self.log = ctx, opts, node, ttl, log
        self.etcd = Etcd(opts)
        self.layout = Layout(prefix)
        self.health, self.error = "ok", None
        self.local_revision: int | None = None
        self._last_applied = 0  # what the registration thread reports
        self._wake = threading.Event()
        self._stop = threading.Event()

    # ------------------------------------------------------------ state
    @property
    def applied(self) -> int:
        return int(self.ctx.state.get_meta(META_REVISION, "0") or 0)

    def _set_meta(self, key: str, value: str) -> None:
        with self.ctx.writer() as st:
            st.set_meta(key, value)

    def _done(self, rev: int) -> None:
        self._set_meta(META_REVISION, str(rev))
        self._last_applied = rev
        self.local_revision = DropList(self.ctx).revision()
        self._wake.set()

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        """Apply changes until stop(); etcd outages are waited out."""
        reg = threading.Thread(target=self._register_loop, name="fleet-register", daemon=True)
        self.local_revision = DropList(self.ctx).revision()
        self._last_applied = self.applied
        reg.start()
        delay = BACKOFF[0]
        try:
            while not self._stop.is_set():
                try:
                    self.cycle()
                except (EtcdUnavailable, etcd_exc.Etcd3Exception) as exc:
                    self.log(f"etcd: {exc}; retrying in {delay:g}s")
                    self._stop.wait(delay)
                    delay = min(delay * 2, BACKOFF[1])
                    continue
                delay = BACKOFF[0]
        finally:
            self._stop.set()
            self._wake.set()
            reg.join(timeout=self.opts.timeout)

    def stop(self) -> None:
        self._stop.set()

    def start(self) -> threading.Thread:
        """Run in a thread of this process (the REST service's own agent)."""
        t = threading.Thread(target=self.run, name="fleet-agent", daemon=True)
        t.start()
        return t

    def cycle(self) -> None:
        """Resync if needed, then follow the watch until it breaks."""
        if self.applied == 0:
            self.resync()
        try:
            for events in self.etcd.watch(self.layout.set, self.applied + 1):
                for rev, group in _by_revision(events):
                    if rev > self.applied:
                        self.apply(rev, group)
                if self._stop.is_set():
                    return
        except Compacted as exc:
            self.log(f"history compacted at {exc.compact_revision}: full resync")
            self.resync()

    # ------------------------------------------------------------ applying
    def apply(self, rev: int, events: list[Event]) -> None:
        """One cluster revision -> one local change (writes make one kind each)."""
        d = DropList(self.ctx)
        adds, dels, drops, imports, policy = [], [], [], {}, None
        for e in events:
            p = self.layout.set_parts(e.kv.key)
            if p[0] == "rules":
                if e.type == "PUT":
                    adds.append(rule_of(e.kv.value))
                elif e.prev is not None:
                    dels.append(rule_of(e.prev.value))
            elif p[0] == "policy" and e.type == "PUT":
                policy = e.kv.value.decode()
            elif p[0] == "lists" and p[-1] == "manifest":
                if e.type == "PUT":
                    imports[p[1]] = Manifest.decode(e.kv.value)
                else:
                    drops.append(p[1])
        lb = any(self.layout.set_parts(e.kv.key)[0] == "lb" for e in events)
        try:
            self._apply_rules(d, adds, dels)
            if policy is not None and policy != d.policy():
                d.set_policy(policy)
            for name in drops:
                self._remove_list(d, name)
            for name, man in imports.items():
                self._import(d, name, man, rev)
            if lb:
                self._sync_lb(rev)
            self.health, self.error = "ok", None
        except XdpctlError as exc:
            self.health, self.error = "error", f"revision {rev}: {exc}"
            self.log(self.error)
        self._done(rev)

    def _apply_rules(self, d: DropList, adds: list[RuleSpec], dels: list[RuleSpec]) -> None:
        present = [s for s in dels if d.state.rule_by_key(s.key()) is not None]
        if present:
            d.remove(present)
        if adds:
            d.add(adds, source="fleet", update=True)

    def _remove_list(self, d: DropList, name: str) -> None:
        if d.state.list_span(name) is not None:
            d.remove_list(name)
        self._set_meta(META_LIST + name, "")

    def _import(self, d: DropList, name: str, man: Manifest, rev: int) -> None:
        if self.ctx.state.get_meta(META_LIST + name) == str(man.version) and d.state.list_span(name):
            return
        _r, kvs = self.etcd.range(self.layout.chunks(name, man.version), revision=rev)
        blob = b"".join(kv.value for kv in sorted(kvs, key=lambda kv: kv.key))
        if len(kvs) != man.chunks:
            raise XdpctlError(f"list {name} version {man.version}: {len(kvs)} of {man.chunks} chunks present",
                              field="name", value=name)
        prefixes = members_of(man, blob)
        d.import_list(name, prefixes, action=man.action, dst=man.dst, comment=man.comment, source="fleet")
        self._set_meta(META_LIST + name, str(man.version))

    def _sync_lb(self, rev: int) -> None:
        """The load balancer as the fleet's keys hold it at ``rev``."""
        _r, kvs = self.etcd.range(self.layout.lb, revision=rev)
        apply_lb(self.ctx, LbDesired.of(self.layout, kvs))

    def resync(self) -> None:
        """Make the local set equal to the fleet's at the current revision."""
        rev, kvs = self.etcd.range(self.layout.set)
        want = Desired.of(self.layout, kvs)
        d = DropList(self.ctx)
        have = {rule_name(s): s for s in (_spec_of(r) for r in d.rules(with_stats=False) if r.list is None)}
        dels = [s for k, s in have.items() if k not in want.rules]
        adds = [s for k, s in want.rules.items() if k not in have or rule_value(have[k]) != rule_value(s)]
        try:
            self._apply_rules(d, adds, dels)
            if want.policy is not None and want.policy != d.policy():
                d.set_policy(want.policy)
            for lv in d.lists(with_stats=False):
                if lv.name not in want.lists:
                    self._remove_list(d, lv.name)
            for name, man in want.lists.items():
                self._import(d, name, man, rev)
            self._sync_lb(rev)
            self.health, self.error = "ok", None
        except XdpctlError as exc:
            self.health, self.error = "error", f"resync at {rev}: {exc}"
            self.log(self.error)
        self.log(f"resynced at revision {rev}")
        self._done(rev)

    # ------------------------------------------------------------ registration
    def _report(self, etcd: Etcd, lease: int) -> None:
        try:
            attachments = [h.label() for h in pinned_hooks(self.ctx)]
        except OSError:
            attachments = []
        value = report(self._last_applied, self.local_revision, self.health, self.error, attachments)
        etcd.txn([], [{"request_put": {"key": enc(self.layout.node(self.node)), "value": enc(value),
                                       "lease": lease}},
                      {"request_put": {"key": enc(self.layout.member(self.node)), "value": enc(value)}}])

    def _register_loop(self) -> None:
        etcd, lease = Etcd(self.opts), 0
        while not self._stop.is_set():
            try:
                if not lease:
                    lease = etcd.grant(self.ttl)
                elif etcd.keepalive(lease) <= 0:
                    lease = 0
                    continue
                self._report(etcd, lease)
            except (EtcdUnavailable, etcd_exc.Etcd3Exception, KeyError):
                lease = 0
            except Exception as exc:  # a report must never end the registration
                self.log(f"registration: {type(exc).__name__}: {exc}")
            self._wake.wait(self.ttl / 3)
            self._wake.clear()
        if lease:
            try:
                etcd.revoke(lease)
            except (EtcdUnavailable, etcd_exc.Etcd3Exception):
                pass


def _by_revision(events: list[Event]) -> list[tuple[int, list[Event]]]:
    out: dict[int, list[Event]] = {}
    for e in events:
        out.setdefault(e.kv.mod_revision, []).append(e)
    return sorted(out.items())
