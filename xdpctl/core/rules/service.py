"""DropList: the drop list's reads and changes, answered as core views.

Reads return the views of xdpctl.core.views (RulesView, ListsView, ...),
the documents every front end shows. Changes validate everything first,
then run in one transaction under the pin-directory lock and write the
kernel with rollback (xdpctl.core.rules.tables); each bumps the revision
and writes it, with the policy and the lookup flags, to the config entry.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Callable, Iterator

from ... import abi
from .. import dlcompile as dlc
from .. import prefixes as px
from ..background import Background
from ..context import Context
from ..errors import Conflict, NotFound, ValidationError
from ..views import (ChangeView, ExpireView, ListChangeView, ListDetailView, ListsView, ListView, PolicyView,
                     RevisionView, RulesView, RuleView)
from . import listdelta, listindex, ruleset, validate
from .clock import Clock, clock_pair, kernel_ns_to_wall, wall_to_kernel_ns
from .index import SqlRuleIndex, row_to_rule
from .hits import hits_by_hook, sum_hits
from .members import Members
from .store import ListRow, RuleRow, State
from .tables import KernelTables, SyncReport, rule_stats, run_catch_up
from .validate import ACTION_NAMES, DIR_NAMES, POLICIES, RuleSpec

BULK_THRESHOLD = 2000  # more rules than this in one change: full compile + diff
# A bigger list change is still a delta (listdelta) when at most BULK_THRESHOLD of its
# members need the planner. When the old version has a deadline, its alone hosts are
# planned one by one too: then only for at most LIST_DELTA_MAX members, with everything
# else loaded at least LIST_DELTA_RATIO times the members it changes (a whole image
# costs about as much per entry loaded as such a delta per member changed, times the ratio).
LIST_DELTA_MAX = 250_000
LIST_DELTA_RATIO = 4
DETAIL_LIMIT = 1000  # members shown with one list unless a limit is given

Stats = dict[int, abi.RuleHits]


def rule_view(row: RuleRow, stats: Stats | None = None) -> RuleView:
    pfx = None if row.anyaddr else px.format_prefix(px.Prefix(row.family, int.from_bytes(row.addr, "big"), row.plen))
    h = (stats or {}).get(row.id, abi.NO_HITS)
    return RuleView(
        id=row.id, prefix=pfx, family=row.family, dir=DIR_NAMES[row.dir], action=ACTION_NAMES[row.action],
        proto=px.proto_name(row.proto) if row.proto else None, port=row.port or None, comment=row.comment,
        source=row.source, created=row.created, expires=row.expires, mgmt=bool(row.mgmt), list=None,
        packets=h.packets, bytes=h.bytes, hits=hits_by_hook(h), last_hit=kernel_ns_to_wall(h.last_hit_ns),
        expired=_past(row.expires))


def _past(expires: float | None) -> bool:
    """Past its expiry (the reaper has not removed it yet)."""
    return expires is not None and expires <= time.time()


def list_view(row: ListRow, stats: Stats | None = None) -> ListView:
    h = sum_hits((stats or {}).values())
    return ListView(
        name=row.name, count=row.count, dir=DIR_NAMES[row.dir], action=ACTION_NAMES[row.action],
        comment=row.comment, source=row.source, created=row.created, expires=row.expires, id_base=row.id_base,
        sha256=hashlib.sha256(row.entries).hexdigest(), packets=h.packets, bytes=h.bytes, hits=hits_by_hook(h))


def member_span(row: ListRow, limit: int | None, after: int | None = None) -> range:
    """Indexes of the members a page shows: those with ids above ``after``,
    at most ``limit``."""
    start = min(max(0, after - row.id_base + 1), row.count) if after is not None else 0
    return range(start, min(row.count, start + limit) if limit else row.count)


def member_views(row: ListRow, span: range, stats: Stats) -> list[RuleView]:
    """A list's members in ``span`` as rules (ids from id_base)."""
    prefixes = Members.unpack(row.entries).prefixes()
    return [list_member_view(row, row.id_base + i, prefixes[i], stats) for i in span]


def list_member_view(row: ListRow, rid: int, pfx: px.Prefix, stats: Stats) -> RuleView:
    """One member of a list (rule id ``rid``, prefix ``pfx``) as a rule."""
    h = stats.get(rid, abi.NO_HITS)
    return RuleView(
        id=rid, prefix=px.format_prefix(pfx), family=pfx.family, dir=DIR_NAMES[row.dir],
        action=ACTION_NAMES[row.action], proto=None, port=None, comment=row.comment, source=row.source,
        created=row.created, expires=row.expires, mgmt=False, list=row.name, packets=h.packets, bytes=h.bytes,
        hits=hits_by_hook(h), last_hit=kernel_ns_to_wall(h.last_hit_ns), expired=_past(row.expires))


class DropList:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @property
    def state(self) -> State:
        return self.ctx.state

    # ----------------------------------------------------------- reads
    def policy(self) -> str:
        return self.state.get_meta("policy", "allow") or "allow"

    def revision(self) -> int:
        return self.state.revision

    def _stats(self, ids: list[int]) -> Stats:
        return rule_stats(self.ctx, ids)

    def rules(self, with_stats: bool = True, list_name: str | None = None, limit: int | None = None,
              prefix: str | None = None, after: int | None = None) -> list[RuleView]:
        """Individually managed rules in id order (only those on exactly
        ``prefix``), or the members of list ``list_name``; with ``after``
        only ids above it."""
        if list_name is not None:
            row = self._list_row(list_name)
            span = member_span(row, limit, after)
            stats = self._stats([row.id_base + i for i in span]) if with_stats else {}
            return member_views(row, span, stats)
        match = None
        if prefix is not None:
            p = validate.spec(prefix).prefix
            match = (p.family, p.plen, validate.addr_bytes(p.family, p.net))
        rows = self.state.rule_rows(match, limit, after)
        stats = self._stats([r.id for r in rows]) if with_stats else None
        return [rule_view(r, stats) for r in rows]

    def _list_row(self, name: str) -> ListRow:
        row = self.state.list_row(name)
        if row is None:
            raise NotFound(f"no list named {name!r}", field="name", value=name)
        return row

    def _list_stats(self, row: ListRow, with_stats: bool) -> Stats | None:
        if not with_stats or not row.count:
            return None
        return self._stats(list(range(row.id_base, row.id_base + row.count)))

    def lists(self, with_stats: bool = True) -> list[ListView]:
        return [list_view(row, self._list_stats(row, with_stats)) for row in self.state.list_rows()]

    def get_list(self, name: str, with_stats: bool = True) -> ListView:
        row = self._list_row(name)
        return list_view(row, self._list_stats(row, with_stats))

    def rules_view(self, with_stats: bool = True, list_name: str | None = None, limit: int | None = None,
                   prefix: str | None = None, after: int | None = None) -> RulesView:
        """GET /v1/rules, `xdpctl rules --json`: a page of at most ``limit``
        rules with ids above ``after``; ``next`` is the cursor of the next."""
        if prefix is not None and list_name is not None:
            raise ValidationError("give either a prefix or a list, not both", field="list", value=list_name)
        rules = self.rules(with_stats, list_name, limit + 1 if limit else None, prefix, after)
        more = bool(limit) and len(rules) > limit
        rules = rules[:limit] if limit else rules
        return RulesView(revision=self.revision(), policy=self.policy(), rules=rules,
                         next=rules[-1].id if more else None)

    def lists_view(self, with_stats: bool = True) -> ListsView:
        """GET /v1/lists, `xdpctl lists --json`."""
        return ListsView(revision=self.revision(), lists=self.lists(with_stats))

    def list_detail(self, name: str, limit: int | None = None, with_stats: bool = True,
                    after: int | None = None) -> ListDetailView:
        """GET /v1/lists/{name}, `xdpctl lists NAME --json`: the list and
        at most ``limit`` members with ids above ``after``; ``next`` is the
        cursor of the next page."""
        lv = self.get_list(name, with_stats)
        members = self.rules(with_stats, list_name=name, limit=limit, after=after)
        more = bool(members) and members[-1].id < lv.id_base + lv.count - 1
        return ListDetailView(revision=self.revision(), list=lv, members=members,
                              truncated=lv.count > len(members), next=members[-1].id if more else None)

    def list_text(self, name: str, chunk: int = 10000) -> Iterator[str]:
        """A list's members as a block-list file (the format `import` and
        PUT /v1/lists/{name} read), in pieces of ``chunk`` lines: the members
        are taken from one snapshot of the list and formatted a piece at a
        time, so a list of millions is never held as text or as objects."""
        row = self._list_row(name)
        m = Members.unpack(row.entries)
        yield (f"# xdpctl list {row.name}: {row.count} prefixes, {ACTION_NAMES[row.action]} "
               f"{DIR_NAMES[row.dir]}, revision {self.revision()}\n")
        for family, nets, plens in ((4, m.nets4, m.plens4), (6, m.nets6, m.plens6)):
            for i in range(0, len(nets), chunk):
                yield "".join(px.format_prefix(px.Prefix(family, n, p)) + "\n"
                              for n, p in zip(nets[i:i + chunk], plens[i:i + chunk]))

    def policy_view(self) -> PolicyView:
        return PolicyView(policy=self.policy(), revision=self.revision())

    def revision_view(self) -> RevisionView:
        return RevisionView(revision=self.revision())

    # ----------------------------------------------------------- kernel writes
    def _finish(self, kt: KernelTables) -> int:
        """Bump the revision and make it the kernel's (xc_cfg flips to the
        set just written, then the other set catches up: at once, or, in a
        context that defers it (the service's), once the change has been
        answered, by catch_up())."""
        rev = self.state.bump_revision()
        kt.commit(POLICIES[self.policy()], ruleset.config_flags(self.state), rev, defer=self.ctx.defer_catch_up)
        if kt.deferred is not None:
            self.ctx.pending_catch_up = kt.deferred
        return rev

    def catch_up(self) -> bool:
        """Write the other set of the last whole-image change this context
        deferred (Context.pending_catch_up), under the writer lock; False
        when there was none, or a later writer made it moot."""
        job, self.ctx.pending_catch_up = self.ctx.pending_catch_up, None
        if job is None:
            return False
        with self.ctx.writer():
            return run_catch_up(self.ctx, job)

    def bump_revision(self) -> int:
        """Bump the revision for a change outside the drop list (the caller
        holds the writer lock) and make it the kernel's, as every change does."""
        with KernelTables(self.ctx) as kt:
            return self._finish(kt)

    def _full_sync(self, kt: KernelTables, progress=None, repair: bool = False) -> SyncReport:
        self.ctx.long_write()
        return kt.sync_to(ruleset.compile_stored(self.state), progress, repair)

    def _small(self, kt: KernelTables, n: int) -> bool:
        """May a change of ``n`` rules or list members (old and new) be
        written as a delta? Only into sets that hold the stored revision."""
        return n <= BULK_THRESHOLD and kt.at_revision(self.state.revision)

    def _write_split(self, kt: KernelTables, sp: listdelta.Split, clock: Clock,
                     store: Callable[[], ListRow] | None = None) -> tuple[SyncReport, ListRow | None]:
        """Write a list change taken apart (listdelta): its alone hosts as
        columns (beside ``store``, the database side, when given) and then
        the other members planned one by one, or all of it as one plan when
        the old version's entries are not known to the byte. ``store`` runs
        before any planning: the planner's index reads the stored state."""
        row = None
        if not sp.columnar:
            row = store() if store else None
            return self._write_delta(kt, _members(sp.removed), _members(sp.added), clock, sp.plan()), row
        cols = sp.columns()
        report = SyncReport(self.state.revision)
        if cols and store:
            report, row = _beside(lambda: kt.write_columns(cols, sp.dead_ids()), store)
        else:
            row = store() if store else None
            if cols:
                report = kt.write_columns(cols, sp.dead_ids())
        if sp.removed or sp.added:
            rest = self._write_delta(kt, _members(sp.removed), _members(sp.added), clock)
            report.written, report.deleted = report.written + rest.written, report.deleted + rest.deleted
        return report, row

    def _split(self, kt: KernelTables, name: str, n: int, clock: Clock, members: Members | None = None,
               new: Callable[[], listdelta.Version] | None = None) -> listdelta.Split | None:
        """A change of list ``name`` past the small delta's size (``n``
        members, old and new) taken apart (listdelta), or None: a whole
        image. ``members`` and ``new``: the new version (None: the list is
        removed), as columns and (made only if needed) as a Version."""
        if not kt.at_revision(self.state.revision):
            return None
        if members is not None and listdelta.non_hosts(members) > BULK_THRESHOLD:
            return None  # known before anything is sorted
        was = listdelta.stored_version(self.state, name, *clock)
        if not self._list_delta_ok(was, n):
            return None
        return listdelta.split(self.state, name, was, new() if new else None, BULK_THRESHOLD)

    def _list_delta_ok(self, was: listdelta.Version | None, n: int) -> bool:
        """May a list change of ``n`` members (old and new), from the stored
        version ``was``, be tried as a delta (listdelta) rather than a whole
        image (into sets that hold the stored revision)? Always when its
        alone hosts can go as columns (no deadline on the old version: the
        batches a whole image writes, without its compile of everything
        loaded, its read and its diff; a fresh list beside nothing costs
        the same either way, docs/internals.md); else, every member planned
        one by one, only when the change is small beside what is loaded."""
        if listdelta.exact(was):
            return True
        loaded = self.state.loaded_count()
        return n <= LIST_DELTA_MAX and n * LIST_DELTA_RATIO <= loaded

    def _write_changes(self, kt: KernelTables, added_ids: list[int], removed: list[dlc.Rule],
                       clock: Clock) -> None:
        """Write the kernel for rules just inserted/updated (by id) and rules
        just deleted from the database; full compile for large changes."""
        if not self._small(kt, len(added_ids) + len(removed)):
            self._full_sync(kt)
            return
        added = [(row_to_rule(row, *clock), bool(row.mgmt)) for row in self.state.rules_by_ids(added_ids)]
        self._write_delta(kt, [(r, False) for r in removed], added, clock)

    def _write_delta(self, kt: KernelTables, removed: list[tuple[dlc.Rule, bool | None]],
                     added: list[tuple[dlc.Rule, bool | None]], clock: Clock,
                     plan: dlc.Plan | None = None) -> SyncReport:
        """Write the kernel for rules and list members just taken out of
        (``removed``) and put into (``added``) the database, each with its
        management flag (None: a list member, which has no xc_mgmt entry).
        Each is planned with the SQL index over the stored state, so its
        keys get what the full compile gives them; an added address rule
        that does not hold its match (a rule or an earlier list's member has
        the same prefix) changes nothing. ``clock``: the (wall, kernel) time
        pair every deadline of the change was converted with; the index
        converts with it too, so two equal wall deadlines stay equal (a
        fallback must outlive its rule, as in the full compile). ``plan``:
        entries already planned (a list's alone hosts, listdelta), merged first."""
        index = SqlRuleIndex(self.state, *clock)
        plan = dlc.Plan() if plan is None else plan
        try:
            for r, mgmt in removed:
                index.prepare(r)
                plan.merge(dlc.plan_remove(r, index))
                if mgmt is not None:
                    _plan_mgmt(plan, r, mgmt)
            for r, mgmt in added:
                index.prepare(r)
                if r.proto is None and r.family:
                    holder = index.best_covering(r.family, r.dir, r.net, r.plen, r.plen, -1)
                    if holder is None or holder.id != r.id:
                        continue
                plan.merge(dlc.plan_add(r, index))
                if mgmt is not None:
                    _plan_mgmt(plan, r, mgmt)
        finally:
            index.close()
        kt.apply(plan)
        return SyncReport(self.state.revision, sum(len(mp.updates) for mp in plan.values()),
                          sum(len(mp.deletes) for mp in plan.values()))

    def _delete_rows(self, kt: KernelTables, rows: list[RuleRow]) -> None:
        clock = clock_pair()
        rules = [row_to_rule(r, *clock) for r in rows]
        ids = [r.id for r in rows]
        self.state.delete_rules(ids)
        self._write_changes(kt, added_ids=[], removed=rules, clock=clock)
        kt.zero_stats(ids)

    # ----------------------------------------------------------- rules
    def _check_new(self, s: RuleSpec, row: RuleRow | None, update: bool) -> None:
        """A rule that may not be added: it exists (without ``update``), or
        it holds a kernel entry another L4 rule holds."""
        if row is not None:
            if not update:
                v = rule_view(row)
                raise Conflict(f"{s.describe()} already exists as rule {v.id} ({v.action})", field="prefix",
                               value=v.prefix or "any", hint="use {field:update} to change it")
            return
        if s.proto is None or (s.prefix is not None and s.prefix.plen != 0):
            return
        ov = self.state.l4_zero_rule(s.dir, s.proto, s.port, anyaddr=s.prefix is not None)
        if ov is not None:
            raise Conflict(f"{s.describe()} overlaps rule {ov} (an L4 rule for any address holds the /0 entries "
                           f"of both families)", field="prefix", value=s.describe(), hint="remove it first")

    def add(self, specs: list[RuleSpec], expected_revision: int | None = None, source: str = "cli",
            update: bool = False) -> ChangeView:
        """Add rules (all or nothing). With ``update`` an existing rule with
        the same match gets the new action, comment and TTL instead of an error."""
        if not specs:
            raise ValidationError("no rules given", field="rules")
        validate.check_unique(specs)
        self._expire_pending()
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            clock = clock_pair()
            now = clock[0]
            new_specs, upd = [], []
            for s in specs:
                row = state.rule_by_key(s.key())
                self._check_new(s, row, update)
                if row is None:
                    new_specs.append(s)
                else:
                    upd.append((s, row.id))
            ids = state.free_ids(len(new_specs), kt.max_entries("xc_rule_stats")) if new_specs else []
            state.insert_rules([_new_row(rid, s, source, now) for rid, s in zip(ids, new_specs)])
            for s, rid in upd:
                state.update_rule(rid, s.action, s.comment, now + s.ttl if s.ttl else None, s.mgmt)
            changed_ids = ids + [rid for _s, rid in upd]
            kt.zero_stats(ids)
            self._write_changes(kt, added_ids=changed_ids, removed=[], clock=clock)
            rev = self._finish(kt)
            views = {r.id: rule_view(r) for r in state.rules_by_ids(changed_ids)}
            return ChangeView(revision=rev, added=[views[i] for i in ids], updated=[views[rid] for _s, rid in upd])

    def _find_in_lists(self, s: RuleSpec) -> str | None:
        if s.prefix is None or s.proto is not None:
            return None
        lists = listindex.ListsIndex(self.state, *clock_pair())
        try:
            hit = lists.lookup(s.prefix.family, s.dir, s.prefix.plen, s.prefix.net)
        finally:
            lists.close()
        return hit[0] if hit else None

    def _rows_to_remove(self, specs: list[RuleSpec], ids: list[int]) -> list[RuleRow]:
        rows = []
        for s in specs:
            row = self.state.rule_by_key(s.key())
            if row is None:
                in_list = self._find_in_lists(s)
                if in_list:
                    raise Conflict(f"{s.describe()} is a member of list {in_list!r}", field="prefix",
                                   value=s.describe(), hint="re-import the list without it, remove the list, "
                                                            "or add an allow rule")
                raise NotFound(f"no rule matches {s.describe()}", field="prefix", value=s.describe())
            rows.append(row)
        for rid in ids:
            r = self.state.rules_by_ids([rid])
            if not r:
                raise NotFound(f"no rule with id {rid}", field="ids", value=rid)
            rows.append(r[0])
        return list({r.id: r for r in rows}.values())

    def remove(self, specs: list[RuleSpec] | None = None, ids: list[int] | None = None,
               expected_revision: int | None = None) -> ChangeView:
        """Remove individually managed rules by match or by id (all or nothing)."""
        specs, ids = specs or [], ids or []
        if not specs and not ids:
            raise ValidationError("nothing to remove: give prefixes or rule ids", field="ids")
        self._expire_pending()
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            rows = self._rows_to_remove(specs, ids)
            self._delete_rows(kt, rows)
            rev = self._finish(kt)
            return ChangeView(revision=rev, removed=[rule_view(r) for r in rows])

    def set_policy(self, policy: str, expected_revision: int | None = None) -> PolicyView:
        validate.policy(policy)
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            if policy == self.policy():
                return PolicyView(policy=policy, revision=state.revision, changed=False)
            state.set_meta("policy", policy)
            if not kt.at_revision(state.revision):
                self._full_sync(kt)
            return PolicyView(policy=policy, revision=self._finish(kt))

    # ----------------------------------------------------------- lists
    def import_list(
        self,
        name: str,
        prefixes: list[px.Prefix] | Members,
        *,
        action: str = "deny",
        dst: bool = False,
        comment: str | None = None,
        ttl: str | int | None = None,
        source: str | None = None,
        expected_revision: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ListChangeView:
        """Create or atomically replace a named list."""
        validate.list_name(name)
        act, t = validate.action_of(action), validate.duration(ttl)
        cols = Members.of(prefixes)  # IPv4 members first: that is rule-id order
        self._expire_pending()
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            old = state.list_span(name)
            n = cols.n4 + cols.n6
            # the new range must not overlap the old one: both live during the swap
            base = state.allocate_ids(n, kt.max_entries("xc_rule_stats")) if n else 1
            clock = clock_pair()  # every deadline of this change is converted with this one pair
            now, kns = clock
            expires = now + t if t else None
            d = 1 if dst else 0

            def pending() -> dlc.RuleColumns:  # the members as rules (one path asks, once): a delta needs none
                return cols.columns(base, d, act, wall_to_kernel_ns(expires, now, kns))

            @functools.cache
            def blob() -> tuple[bytes, tuple[bytes, bytes]]:  # the members blob and its key columns, made once
                entries = cols.pack()
                return entries, listindex.sorted_keys(entries, cols.order4)

            def store() -> ListRow:
                entries, keys = blob()
                row = ListRow(name, n, d, act, comment, source, now, expires, base, entries, cols.flags(dst))
                state.replace_list(row, keys)
                return row

            changed = n + (old[1] if old else 0)
            small = self._small(kt, changed)  # a delta, whatever else is loaded
            sp = None if small else self._split(
                kt, name, changed, clock, cols,
                lambda: listdelta.Version(blob()[1], base, d, act, wall_to_kernel_ns(expires, now, kns)))
            how = "as a delta"
            if sp is not None:  # a big list change, still a delta: its hosts alone, the rest planned
                report, row = self._write_split(kt, sp, clock, store)
                how = f"as a delta ({sp.alone} hosts directly)"
            elif small:
                gone = _members(ruleset.member_columns(state.list_row(name), now, kns)) if old else []
                row = store()
                report = self._write_delta(kt, gone, _members(pending()), clock)
            else:
                how = "as a whole rule set"
                compiled = ruleset.compile_rules(ruleset.all_rules(state, now, kns, pending=(name, pending())),
                                                 ruleset.mgmt_rules(state, now, kns))
                report, row = _beside(lambda: kt.sync_to(compiled, progress), store)
            if old:
                kt.zero_stats(range(old[0], old[0] + old[1]))
            rev = self._finish(kt)
            note = (f"list {name}: {n} prefixes, rule ids {base}..{base + max(n, 1) - 1}; "
                    f"{report.written} map entries written, {report.deleted} deleted, {how}")
            return ListChangeView(revision=rev, created=old is None, list=list_view(row),
                                  map_entries_written=report.written, map_entries_deleted=report.deleted,
                                  notes=[note])

    def remove_list(self, name: str, expected_revision: int | None = None) -> ChangeView:
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            state.check_revision(expected_revision)
            span = state.list_span(name)
            if span is None:
                raise NotFound(f"no list named {name!r}", field="name", value=name)
            small = self._small(kt, span[1])
            clock = clock_pair()
            sp = None if small else self._split(kt, name, span[1], clock)
            gone = _members(ruleset.member_columns(state.list_row(name), *clock)) if small else []
            state.delete_list(name)
            if sp is not None:
                self._write_split(kt, sp, clock)
            elif small:
                self._write_delta(kt, gone, [], clock)
            else:
                self._full_sync(kt)
            kt.zero_stats(range(span[0], span[0] + span[1]))
            rev = self._finish(kt)
            return ChangeView(revision=rev, notes=[f"removed list {name} ({span[1]} prefixes)"])

    # ----------------------------------------------------------- expiry, sync
    def _expire_pending(self) -> None:
        """Reap expired rules in their own transaction, before a change."""
        if self.state.anything_expired(time.time()):
            self.expire()

    def next_expiry(self) -> float | None:
        """Wall-clock time of the next rule or list expiry, or None."""
        return self.state.next_expiry()

    def expire(self) -> ExpireView:
        """Remove rules and lists whose TTL has passed."""
        nxt = self.next_expiry()
        if nxt is None or nxt > time.time():
            return ExpireView(revision=self.revision(), removed=[])  # nothing due: no lock, no maps
        with self.ctx.writer(), KernelTables(self.ctx) as kt:
            removed, lists = self._expire_locked(kt)
            rev = self._finish(kt) if removed or lists else self.revision()
            return ExpireView(revision=rev, removed=removed, removed_lists=lists)

    def _expire_locked(self, kt: KernelTables) -> tuple[list[RuleView], list[str]]:
        """Delete what has expired: (the rules, the names of the lists)."""
        now = time.time()
        rows = self.state.expired_rules(now)
        if rows:
            self._delete_rows(kt, rows)
        lists = self.state.expired_lists(now)
        for name, base, count in lists:
            self.state.delete_list(name)
            kt.zero_stats(range(base, base + count))
        if lists:
            self._full_sync(kt)
        return [rule_view(r) for r in rows], [name for name, _b, _c in lists]

    def sync(self, progress=None) -> SyncReport:
        """Rebuild both rule sets from the database, repairing any drift: a
        kernel at another revision, a standby set a writer left half written."""
        with self.ctx.writer() as state, KernelTables(self.ctx) as kt:
            found = kt.found
            for name in state.lists_without_keys():  # stored by an older version
                state.set_list_keys(name, listindex.sorted_keys(state.list_row(name).entries))
            self._expire_locked(kt)
            report = self._full_sync(kt, progress, repair=True)
            want = abi.Config(POLICIES[self.policy()], ruleset.config_flags(self.state), self.revision())
            other = kt.commit(*want[:3])
            if other is not None:  # entries one set lacked: the larger repair of the two
                report.written = max(report.written, other.written)
                report.deleted = max(report.deleted, other.deleted)
            if found[:3] != want[:3] or found.synced != found.generation:
                report.written += 1
            report.revision = self.revision()
            return report


def _members(cols: dlc.RuleColumns) -> list[tuple[dlc.Rule, None]]:
    """List members for DropList._write_delta (no management entries)."""
    return [(dlc.Rule._make(t), None) for t in cols]


def _plan_mgmt(plan: dlc.Plan, r: dlc.Rule, mgmt: bool) -> None:
    """The xc_mgmt entry of an address rule: written for a management rule,
    else deleted (a rule updated without --mgmt, or removed)."""
    if r.proto is not None or r.family == 0:
        return
    key, val = dlc.mgmt_entry(r._replace(action=abi.Action.ALLOW))
    if mgmt:
        plan.put(dlc.MGMT, key, val)
    else:
        plan.delete(dlc.MGMT, key)


def _new_row(rid: int, s: RuleSpec, source: str, now: float) -> RuleRow:
    fam = s.prefix.family if s.prefix else 0
    return RuleRow(rid, fam, validate.addr_bytes(fam, s.prefix.net) if s.prefix else b"",
                   s.prefix.plen if s.prefix else 0, s.dir, s.action, s.proto or 0, s.port or 0,
                   0 if s.prefix else 1, int(s.mgmt), s.comment, source, now, now + s.ttl if s.ttl else None)


def _beside(kernel: Callable[[], SyncReport], db: Callable[[], ListRow]) -> tuple[SyncReport, ListRow]:
    """Run the kernel write (mostly in the kernel, without the GIL) in a
    thread while this thread does the database side. Either failure is
    raised once both have finished: the caller's transaction then rolls the
    database back; a failed kernel write has undone itself."""
    write = Background(kernel, "xdpctl-map-write")
    try:
        row = db()
    finally:
        write.wait()
    return write.result(), row

