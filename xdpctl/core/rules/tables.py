"""The shared drop-list maps: created on first use, written double-buffered.

The maps are shared by every hook that runs the drop list; they are a cache
of the database (xdpctl.core.rules.store). The rule tables exist twice (set
A and set B, abi.RULE_MAPS and their _b twins); xc_cfg names the active set
together with the generation (the revision it holds), in one map update. A
change writes the standby set, flips xc_cfg to it, then writes the same
change into the other set and records that both agree (xc_config.synced).
At any instant the data path sees the tables of one revision; a writer that
dies before the flip leaves the old revision active, after it the new one.
A write that fails before the flip is undone in the standby set; if even
that fails, the error says so and the standby set stays marked stale.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from array import array
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

from ... import abi
from ...kernel import bpffs, maps
from .. import dlcompile as dlc
from ..context import Context
from ..errors import BpfError, CapacityError
from ..shared import PinsGone, SharedMaps, check_layout
from . import builder, hosts4, presence

SET_MAPS = tuple(abi.set_map(m, s) for s in (0, 1) for m in abi.SET_TABLES)
SHARED_DL_MAPS = SET_MAPS + ("xc_cfg", "xc_rule_stats")
STALE = (1 << 64) - 1  # xc_config.synced: the standby set holds no known generation
DEFERRED = STALE - 1   # stale too, untouched since the flip: its catch-up is the flipping writer's (CatchUp)
SET_NAMES = ("A", "B")
ZERO_IN_KERNEL = 4096  # ids of a range from which zero_stats loads the builder rather than writing zeros
DEFER_PLAN_MIN = 2000  # entries of a change's one plan from which its catch-up may be deferred, as an image's
DEFER_BANDS = ("xc_v4_l32", "xc_v6_l128")  # host bands whose deletes may be left past the flip (xc_config dead ids)

Progress = Callable[[int, int], None]
Undo = list  # (map, old keys, old values, count, new keys, count), packed: how to put a map back
log = logging.getLogger("xdpctl")


@dataclass
class SyncReport:
    """What a full sync wrote: entries written and deleted, per map too."""

    revision: int
    written: int = 0
    deleted: int = 0
    per_map: dict = field(default_factory=dict)

    @property
    def drift(self) -> int:
        return self.written + self.deleted


class CatchUp(NamedTuple):
    """What the set that stood by before a flip takes to hold ``revision``
    too: ``wrote``, the change's plans and whole images, each image as
    (compiled, the standby set's writes to replay, or None: compare entry
    by entry), columns (write_columns) as (None, their writes: no image to
    compare with); ``held``, the revision it held before. ``dead``: the
    deletes the flip left in the set it made active, (map name, keys,
    count), entries of the dead ids xc_cfg names (KernelTables.write_columns)."""

    revision: int
    rule_set: int
    held: int
    wrote: list
    dead: tuple = ()

    def images(self) -> "CatchUp | None":
        """The same catch-up comparing the set with each image entry by
        entry (for a set that may hold anything), or None when a write has
        no image (a plan, columns): only a replay can write it."""
        if any(isinstance(w, dlc.Plan) or w[0] is None for w in self.wrote):
            return None
        return self._replace(wrote=[(compiled, None) for compiled, _writes in self.wrote])


class KernelTables(SharedMaps):
    """The shared drop-list maps, created (by loading the drop-list object
    once) if bpffs does not have them yet; one change at a time (the
    caller holds the writer lock), as a context manager."""

    NAMES = SHARED_DL_MAPS

    def __init__(self, ctx: Context, create: bool = True):
        super().__init__(ctx, create)
        self.cfg = abi.Config(0, 0, 0)   # xc_cfg as it is
        self.found = self.cfg            # xc_cfg as this change found it (flags: those the rules ask for)
        self._empty = 0                  # the active set's empty-band flags as found
        self._wrote: list = []           # what this change wrote to the standby set (plans, images)
        self._undo: Undo = []            # how to put the standby set back until the flip
        self._late: tuple | None = None  # deletes the first write left past the flip: (dead ids, {map: Diff})
        self.catch_up_error: str | None = None
        self.deferred: CatchUp | None = None  # the catch-up a commit left to catch_up()
        self._keep: dict[int, hosts4.Mirrored] = {}  # sets whose host table follows their band's writes

    def object_name(self) -> str:
        return "xdp_droplist"

    def ensure(self, early: bool = False) -> "KernelTables":
        super().ensure(early)
        self.cfg = abi.Config(0, 0, 0) if self.being_made("xc_cfg") else self.read_config()  # a new one is zeros
        self.found = self.cfg._replace(flags=self.cfg.flags & ~abi.SET_FLAGS)  # as the rule set asks for it
        bands = int(abi.SET_FLAGS & ~abi.TRUST_FLAGS)
        # the active set's empty bands: as the last settle wrote them; all when no set was ever written
        self._empty = bands if self.cfg.generation == 0 else self.cfg.flags & bands
        return self

    def __enter__(self) -> "KernelTables":
        return self.ensure(early=True)  # a first change compiles while its maps are made

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None and self._undo:
                self._roll_back(exc)
        finally:
            self.close()

    # -- the sets
    @property
    def standby(self) -> int:
        return 1 - self.cfg.active

    def table(self, name: str, rule_set: int) -> maps.Map:
        if name == hosts4.BAND and rule_set in self._keep:
            return self._keep[rule_set]  # type: ignore[return-value]
        return self.maps[abi.set_map(name, rule_set)]

    def _follow(self, rule_set: int, held: int) -> None:
        """Writes into the set's band go to its host table too from now on,
        when the table mirrors what the set held (revision ``held``)."""
        self._keep.pop(rule_set, None)
        if held not in (STALE, DEFERRED) and hosts4.mark(self, rule_set) == held:
            self._keep[rule_set] = hosts4.Mirrored(self.maps[abi.set_map(hosts4.BAND, rule_set)], self, rule_set)

    def _unfollow(self, rule_set: int) -> None:
        """The set's host table stops following (a whole image or columns:
        rebuilt in the catch-up instead); marked as mirroring nothing first."""
        if self._keep.pop(rule_set, None) is not None or hosts4.mark(self, rule_set) != hosts4.UNTRUSTED:
            hosts4.set_mark(self, rule_set, hosts4.UNTRUSTED)

    def _settle_hosts(self, rule_set: int, revision: int, held: int | None = None) -> int:
        """The set's host table after this change's writes: marked as
        mirroring ``revision`` when it followed every write (or, given the
        revision the set ``held`` and no write, mirrored that) and is not
        worn out (then HAVE_OA4), else as mirroring nothing (0)."""
        if held is None:
            keep = self._keep.pop(rule_set, None) is not None
        else:
            keep = held not in (STALE, DEFERRED) and hosts4.mark(self, rule_set) == held
        ok = keep and hosts4.wear(self, rule_set) < hosts4.WEAR_MAX
        hosts4.set_mark(self, rule_set, revision if ok else hosts4.UNTRUSTED)
        return int(abi.CfgFlag.HAVE_OA4) if ok else 0

    def at_revision(self, revision: int) -> bool:
        """Does the active set hold ``revision`` and the standby set mirror
        it (as found when this change began)? Then a change may be written
        as a delta; else only as a whole image."""
        return self.found.generation == revision and self.found.synced == revision

    def _begin_write(self) -> None:
        """Before the first write to the standby set: mark it stale, so a
        writer that dies mid-write leaves that on record."""
        if not self._wrote:
            self._follow(self.standby, self.found.synced)
        if not self._wrote and self.cfg.synced != STALE:
            self._write_cfg(self.cfg._replace(synced=STALE))

    # -- writing the standby set
    def apply(self, plan: dlc.Plan) -> None:
        """Write a small plan (a delta from the database's revision) into
        the standby set; undone if this change fails before commit."""
        self._begin_write()
        self._wrote.append(plan)
        _apply_plan(self, plan, self.standby, self._undo)

    def sync_to(self, compiled: dlc.Compiled, progress: Progress | None = None,
                repair: bool = False) -> SyncReport:
        """Make the standby set equal the compiled image; undone if this
        change fails before commit. The other set gets the same writes at
        commit when it mirrored the standby set; with ``repair`` (or when it
        did not mirror it) it is compared with the image entry by entry."""
        self._begin_write()
        self._unfollow(self.standby)
        writes: list | None = None if repair else []
        first = not self._wrote
        self._wrote.append((compiled, writes))
        return _sync_set(self, compiled, self.standby, self._undo, progress, writes, fresh=first)

    def write_columns(self, diffs: dict, dead_ids: range | None = None) -> SyncReport:
        """Write diffs computed without reading the standby set, from what
        it is known to hold (a list's alone hosts, listdelta.Split.columns):
        {map name: Diff}. Batches (Map.replace_batch: never more entries
        than before or after); undone if this change
        fails before commit, replayed into the other set at commit like an
        image's writes. The written keys' presence bits are set.

        ``dead_ids``: every entry the diffs delete belongs to a rule id of
        this range, which no entry the change writes uses (a replaced or
        removed list's old version). Then, as the first write of a change,
        the deletes of a host band allocated on insert are left past the
        flip: xc_cfg names the range with it, the data path reads those
        entries as absent, and the catch-up deletes them (CatchUp.dead).
        The command pays the writes only. A band that cannot hold both
        versions at once takes its deletes first after all."""
        for name, d in diffs.items():  # before any write; at least this: the kernel refuses what else overflows
            _check_capacity(self.table(name, self.standby), d.n_upd)
        defer = bool(dead_ids) and not self._wrote  # the first write: nothing before it put a key it deletes
        self._begin_write()
        self._unfollow(self.standby)
        writes: list = []
        self._wrote.append((None, writes))  # no image: a catch-up replays the writes, or leaves the set
        report = SyncReport(revision=0)
        left: dict = {}
        for name, d in diffs.items():
            mo = self.table(name, self.standby)
            late = defer and d.n_del > 0 and name in DEFER_BANDS and not mo.preallocated
            written, deleted = report.per_map[name] = _write_diff(mo, name, d, self._undo, writes, late)
            if late and not deleted:
                left[name] = d
            report.written += written
            report.deleted += deleted
        if left:
            self._late = (dead_ids, left)
        presence.add_keys(self, self.standby, {name: (d.upd_keys, d.n_upd) for name, d in diffs.items()})
        return report

    def commit(self, policy: int, flags: int, revision: int, defer: bool = False) -> SyncReport | None:
        """Make ``revision`` the kernel's: flip xc_cfg to the standby set
        (with policy, flags and generation, one update), then write the same
        change into the other set and mark both in sync. A failed catch-up
        does not undo the change: the set stays marked stale (health reports
        it, the next change or a restore rewrites it). Returns what the
        catch-up wrote (None when nothing was written). ``defer``: a change
        that wrote a whole image or columns (write_columns), or plans of at
        least DEFER_PLAN_MIN entries in all (a big list's delta), leaves its
        catch-up in ``deferred`` (for catch_up(), later, under the writer
        lock) and returns None once the flip is done. Deletes that
        write_columns left go into the job too (CatchUp.dead), their ids
        named in xc_cfg with the flip."""
        old = self.cfg
        if not self._wrote:  # nothing written: the active set's bands are as found (dead entries too)
            synced = revision if old.synced == old.generation else STALE
            flags |= presence.settle(self, old.active, old.generation, revision, self._empty)
            flags |= self._settle_hosts(old.active, revision, old.generation)
            if synced == revision:
                presence.settle(self, self.standby, old.synced, revision, self._empty)
                self._settle_hosts(self.standby, revision, old.synced)
            self._write_cfg(old._replace(policy=policy, flags=flags, generation=revision, synced=synced))
            return None
        # The standby set mirrored the active one when this change began
        # (found in sync): the bands this change did not write are as found.
        mirrored = self.found.synced == self.found.generation
        empty = presence.empty_bands(self, self.standby, self._empty if mirrored else None, *_touched(self._wrote))
        flags |= presence.settle(self, self.standby, self.found.synced, revision, empty)
        flags |= self._settle_hosts(self.standby, revision)
        defer = defer and sum(w.size() if isinstance(w, dlc.Plan) else DEFER_PLAN_MIN
                              for w in self._wrote) >= DEFER_PLAN_MIN
        dead, ids = _left_dead(self._wrote, self._late)
        self._write_cfg(abi.Config(policy, flags, revision, self.standby, DEFERRED if defer else STALE,
                                   ids.start, len(ids)))
        self._undo, self._late = [], None
        wrote, self._wrote = self._wrote, []
        # the standby set's writes replay on its twin when it mirrored it
        job = CatchUp(revision, old.active, old.generation,
                      [w if isinstance(w, dlc.Plan) else (w[0], w[1] if mirrored else None) for w in wrote], dead)
        if defer:
            self.deferred = job
            return None
        report, done = self._catch_up(job)
        if done:
            self._empty = empty
        return report

    def catch_up(self, job: CatchUp) -> bool:
        """Run a catch-up a commit deferred: replaying the standby set's
        writes when nothing touched the set since the flip (xc_cfg.synced
        still DEFERRED), else comparing it with the image entry by entry
        (a writer that died in between marked it STALE and may have left
        anything in it). Only while xc_cfg is at that revision with that
        set standing by: any later change rewrote the set itself (False).
        A plan, or columns (write_columns), replays onto an untouched set
        only: on a STALE one nothing is written (False), and the next change
        writes the set whole."""
        cfg = self.cfg
        if (cfg.generation, cfg.active) != (job.revision, 1 - job.rule_set) or cfg.synced not in (DEFERRED, STALE):
            return False
        if cfg.synced == STALE:
            job = job.images()
        return job is not None and self._catch_up(job)[1]

    def _catch_up(self, job: CatchUp) -> tuple[SyncReport, bool]:
        """Write a flipped change into the other set and mark both in sync.
        A failure does not undo the change: the set is left marked STALE
        (health reports it, the next change or a restore rewrites it).
        Returns what was written, and whether it all was."""
        report = SyncReport(job.revision)
        try:
            waited = _reuses_elements(self, job.rule_set, job.wrote)
            if waited:
                maps.wait_for_programs()  # no packet still reads the set the catch-up rewrites
            if all(isinstance(w, dlc.Plan) for w in job.wrote):
                self._follow(job.rule_set, job.held)
            else:
                self._unfollow(job.rule_set)
            for w in job.wrote:
                if isinstance(w, dlc.Plan):
                    _apply_plan(self, w, job.rule_set, None)
                else:
                    rep = _sync_set(self, w[0], job.rule_set, None, None, None, w[1])
                    report.written, report.deleted = report.written + rep.written, report.deleted + rep.deleted
            presence.settle(self, job.rule_set, job.held, job.revision, 0)  # flags unused: the set is not made active
            kept = self._settle_hosts(job.rule_set, job.revision)
            for name, keys, n in job.dead:  # entries the data path reads as absent already: no wait
                self.table(name, 1 - job.rule_set).delete_batch(keys, n)
        except Exception as exc:
            self.catch_up_error = (f"set {SET_NAMES[job.rule_set]} of the rule tables was not brought to "
                                   f"revision {job.revision}: {exc}")
            log.warning("%s", self.catch_up_error)
            if self.cfg.synced != STALE:
                self._write_cfg(self.cfg._replace(synced=STALE))
            return report, False
        flags = self._rebuild_hosts(job, kept, waited)
        self._write_cfg(self.cfg._replace(flags=flags, synced=job.revision, dead_base=0, dead_count=0))
        return report, True

    def _rebuild_hosts(self, job: CatchUp, kept: int, waited: bool) -> int:
        """After a catch-up: rebuild the host tables that mirror nothing
        from their bands; the flags for xc_cfg, HAVE_OA4 once the active
        set's table mirrors it. The active set's table is rebuilt while its
        HAVE_OA4 is off (no packet reads it); the other set, whose band now
        holds the same entries, takes a copy of it, after wait_for_programs
        (packets read that set until the flip a moment ago). A failure
        leaves the flag off (the data path asks the band itself)."""
        active = 1 - job.rule_set
        flags = self.cfg.flags
        try:
            if not flags & abi.CfgFlag.HAVE_OA4:
                hosts4.rebuild(self, active, self.cfg.generation)
                flags |= abi.CfgFlag.HAVE_OA4
            if not kept:  # both sets' bands hold the same entries now: the active set's table fits the other
                if not waited:
                    maps.wait_for_programs()
                hosts4.copy(self, active, job.rule_set, job.revision)
        except Exception as exc:
            log.warning("the IPv4 host table was not rebuilt (the band is looked up instead): %s", exc)
        return flags

    def _roll_back(self, cause: BaseException) -> None:
        """Undo what this change wrote to the standby set; then it mirrors
        the active set again. A failure here is raised, naming what could
        not be undone; the set stays marked stale."""
        image = any(not isinstance(w, dlc.Plan) for w in self._wrote)  # its bitmap was rebuilt
        undo, self._undo, self._wrote, self._late = self._undo, [], [], None
        self._keep.clear()  # the undo writes below go through the band objects the writes used
        failed = []
        for mo, old_keys, old_vals, n_old, new_keys, n_new in reversed(undo):
            try:
                if n_new:
                    mo.delete_batch(new_keys, n_new)  # skips keys the failed write did not reach
                if n_old:
                    mo.update_batch(old_keys, old_vals() if callable(old_vals) else old_vals, n_old)
            except Exception as exc:
                failed.append((f"{n_new + n_old} entries of {mo.name}", exc))
        if image and not failed:
            try:  # the keys put back need their bits again
                presence.repair(self, self.standby)
            except Exception as exc:
                failed.append((f"the presence bitmap of set {SET_NAMES[self.standby]}", exc))
        if not failed:
            self._write_cfg(self.cfg._replace(synced=self.found.synced))
            return
        what = "; ".join(f"{name} ({exc})" for name, exc in failed)
        err = next((e.errno for _n, e in failed if isinstance(e, BpfError)), errno.EIO)
        raise BpfError(f"a failed change could not be undone in the standby rule set: {what}", err,
                       hint="the active set is unchanged; {action:restore} rewrites the standby set") from cause

    # -- config
    def _write_cfg(self, cfg: abi.Config) -> None:
        self.maps["xc_cfg"].update(abi.U32.pack(0), abi.pack_config(*cfg))
        self.cfg = cfg

    def write_config(self, policy: int, flags: int, generation: int) -> None:
        """Write policy, flags and generation, keeping the sets as they are."""
        self._write_cfg(self.cfg._replace(policy=policy, flags=flags, generation=generation))

    def read_config(self) -> abi.Config:
        raw = self["xc_cfg"].lookup(abi.U32.pack(0))
        return abi.unpack_config(raw) if raw else abi.Config(0, 0, 0)

    def read(self, name: str) -> dict[bytes, bytes]:
        return dict(self.maps[name].items())

    def zero_stats(self, ids: Iterable[int]) -> None:
        """Zero the hits of rules ``ids``: a long range of ids in the kernel
        (builder.zero_stats: one pass, no copy of zero bytes), else in one
        update_batch."""
        if isinstance(ids, range) and ids.step == 1 and len(ids) >= ZERO_IN_KERNEL:
            builder.zero_stats(self, ids.start, len(ids))
            return
        ids = list(ids)
        if not ids:
            return
        m = self.maps["xc_rule_stats"]
        zero = bytes(abi.RULE_STATS.size)
        ks = array("I", ids)
        if sys.byteorder != "little":
            ks.byteswap()
        m.update_batch(ks.tobytes(), zero * len(ids), len(ids))

    def stats_for(self, ids: list[int]) -> dict[int, abi.RuleHits]:
        m = self.maps["xc_rule_stats"]
        out = {}
        if len(ids) > 256:
            lo, hi = min(ids), max(ids)
            if hi - lo < 4 * len(ids):  # dense (a list's id range): one batch over the range
                for i, v in m.lookup_range(lo, hi - lo + 1):
                    out[i] = abi.unpack_rule_stats(v)
                return {i: out.get(i, abi.NO_HITS) for i in ids}
        for i in ids:
            raw = m.lookup(abi.U32.pack(i))
            if raw:
                out[i] = abi.unpack_rule_stats(raw)
        return out


def _reuses_elements(kt: KernelTables, rule_set: int, wrote: list) -> bool:
    """Would writing ``wrote`` into the set just made inactive free an
    element of a preallocated band (a delete, or a new value for a key it
    holds)? A preallocated hash hands a freed element to the next insert at
    once, and a packet that read xc_cfg before the flip may still be
    reading it: the catch-up first waits for such packets to finish."""
    for w in wrote:
        if isinstance(w, dlc.Plan):
            for name, mp in w.items():
                mo = kt.table(name, rule_set)
                if mo.preallocated and (mp.deletes or any(mo.lookup(k) is not None for k in mp.updates)):
                    return True
            continue
        writes = w[1]  # a whole image: any write into a preallocated band counts
        names = abi.RULE_MAPS if writes is None else [x[0] for x in writes if x[3] or x[5]]
        if any(kt.table(n, rule_set).preallocated for n in names):
            return True
    return False


def _touched(wrote: list) -> tuple[set[str] | None, set[str]]:
    """The maps a change's plans wrote (None when it wrote a whole image),
    and those of them that hold a key for sure: the last plan that wrote
    the map put a key into it (a plan's puts follow its deletes)."""
    out: set[str] = set()
    filled: set[str] = set()
    for w in wrote:
        if not isinstance(w, dlc.Plan):
            return None, set()
        for name, mp in w.items():
            out.add(name)
            if mp.updates:
                filled.add(name)
            else:
                filled.discard(name)
    return out, filled


def _apply_plan(kt: KernelTables, plan: dlc.Plan, rule_set: int, undo: Undo | None) -> None:
    """Write a plan into one set, recording in ``undo`` how to put it back."""
    presence.set_bits(kt, rule_set, plan)
    for name, mp in plan.items():
        mo = kt.table(name, rule_set)
        old_vals: dict[bytes, bytes] = {}
        new_keys: list[bytes] = []
        if undo is not None:
            undo.append((mo, b"", b"", 0, b"", 0))
        try:
            for k in mp.deletes:  # first: the map never holds more than the plan leaves in it
                old = mo.lookup(k)
                if old is not None:
                    mo.delete(k)
                    old_vals.setdefault(k, old)
            for k, v in mp.updates.items():
                old = mo.lookup(k)
                mo.update(k, v)
                if old is None:
                    new_keys.append(k)
                else:
                    old_vals.setdefault(k, old)
        finally:  # a write that fails part way (a full map) is undone as far as it got
            if undo is not None:
                undo[-1] = (mo, b"".join(old_vals), b"".join(old_vals.values()), len(old_vals),
                            b"".join(new_keys), len(new_keys))


def _sync_map(mo: maps.Map, name: str, table: dlc.Table, undo: Undo | None,
              writes: list | None, zeros: bool = False) -> tuple[int, int]:
    """Make one map equal its image; record how to undo it, and (in
    ``writes``) what was written and deleted. ``zeros``: the map holds
    what it was made with (an array: zeros, compared without reading it).
    Returns (entries written, entries deleted)."""
    if name != dlc.L16 and not mo.has_entries():
        if table.count:
            _check_capacity(mo, table.count)
            if undo is not None:
                undo.append((mo, b"", b"", 0, table.keys, table.count))
            mo.update_batch(table.keys, table.values, table.count)
        if writes is not None:
            writes.append((name, table.keys, table.values, table.count, b"", 0))
        return table.count, 0
    _check_capacity(mo, table.count)
    cur = (table.keys, bytes(table.count * mo.value_size), table.count) if zeros and name == dlc.L16 else mo.dump()
    d = diff_entries(cur, table, mo.key_size, mo.value_size)
    if name == dlc.L16:  # an array: every slot is in the image, none is deleted
        d = d._replace(dels=b"", n_del=0)
    return _write_diff(mo, name, d, undo, writes)


def _write_diff(mo: maps.Map, name: str, d: "Diff", undo: Undo | None, writes: list | None,
                late: bool = False) -> tuple[int, int]:
    """Write a map's diff (Map.replace_batch: never more entries than
    before or after), recording how to undo it and what was written (its
    deletes included). ``late``: the writes only, the deletes left to the
    caller, unless the map cannot hold both (then as without it).
    Returns (entries written, entries deleted)."""
    if undo is not None:
        undo.append((mo, d.old_keys, d.old_vals, d.n_old, d.new_keys, d.n_new))
    if writes is not None:
        writes.append((name, d.upd_keys, d.upd_vals, d.n_upd, d.dels, d.n_del))
    if late:
        try:
            mo.update_batch(d.upd_keys, d.upd_vals, d.n_upd)
            return d.n_upd, 0
        except CapacityError:  # full before all were written: the deletes make room, the writes go again
            log.info("%s cannot hold both versions of the list: its deletes go before the flip", name)
    mo.replace_batch(d.dels, d.n_del, d.upd_keys, d.upd_vals, d.n_upd)
    return d.n_upd, d.n_del


def _left_dead(wrote: list, late: tuple | None) -> tuple[tuple, range]:
    """The deletes the change's first write (write_columns) left past the
    flip, as CatchUp.dead, and their ids (empty: none); without the keys a
    later write of the change put back (a plan's, a later diff's), or none
    after a whole image (it compared the set entry by entry: nothing is
    left)."""
    none = ((), range(0))
    if late is None:
        return none
    import numpy as np

    ids, diffs = late
    later = wrote[1:]
    if any(not isinstance(w, dlc.Plan) and w[0] is not None for w in later):
        return none
    out = []
    for name, d in diffs.items():
        ks = len(d.dels) // d.n_del
        put = _put_keys(later, name, ks)
        keys = d.dels
        if len(put):
            gone = np.frombuffer(d.dels, f"V{ks}", d.n_del)
            keys = gone[~np.isin(gone, put)].tobytes()
        if keys:
            out.append((name, keys, len(keys) // ks))
    return (tuple(out), ids) if out else none


def _put_keys(later: list, name: str, ks: int):
    """Keys of map ``name`` that the writes in ``later`` put (plans' updates,
    columns' writes), as an array of ks-byte items."""
    import numpy as np

    parts = []
    for w in later:
        if isinstance(w, dlc.Plan):
            mp = w.get(name)
            if mp is not None and mp.updates:
                parts.append(b"".join(mp.updates))
        else:
            parts += [upd for n, upd, _v, cnt, _d, _nd in w[1] if n == name and cnt]
    return np.frombuffer(b"".join(parts), f"V{ks}")


def _replay(kt: "KernelTables", rule_set: int, writes: list) -> SyncReport:
    """Write into one set what a full write did to its twin (which held the
    same entries before): no read, no comparison."""
    report = SyncReport(revision=0)
    for name, upd_keys, upd_vals, n_upd, dels, n_del in writes:
        mo = kt.table(name, rule_set)
        mo.replace_batch(dels, n_del, upd_keys, upd_vals, n_upd)
        report.per_map[name] = (n_upd, n_del)
        report.written += n_upd
        report.deleted += n_del
    return report


class Diff(NamedTuple):
    upd_keys: bytes   # entries to write (new keys first, then changed ones)
    upd_vals: bytes
    n_upd: int
    new_keys: bytes   # keys the map does not hold yet
    n_new: int
    old_keys: bytes   # entries the write changes or deletes, as they are
    old_vals: bytes | Callable[[], bytes]  # or what makes them: read only to undo the write
    n_old: int
    dels: bytes       # keys the image does not have
    n_del: int


def _rows(buf: bytes, size: int, n: int):
    """n packed records of ``size`` bytes as an (n, size) byte array."""
    import numpy as np

    return np.frombuffer(buf, np.uint8, n * size).reshape(n, size)


def diff_entries(cur: tuple[bytes, bytes, int], table: dlc.Table, ks: int, vs: int) -> Diff:
    """A map's entries (packed keys, values, count) against its image, as
    columns: sorts and binary searches, no object per entry. Keys are
    unique on each side."""
    import numpy as np

    ck, cv, wk, wv = _rows(cur[0], ks, cur[2]), _rows(cur[1], vs, cur[2]), \
        _rows(table.keys, ks, table.count), _rows(table.values, vs, table.count)
    words = (ks + 7) // 8
    if words == 1:
        ci, wi, gone, new = _pair_words(ck, wk)
    else:
        ci, wi, gone, new = _pair_rows(ck, wk, words)
    if vs % 8 == 0:  # compared as 64-bit words: an eighth of the comparison's booleans
        cv, wv = cv.view(np.uint64), wv.view(np.uint64)
    changed = (cv[ci] != wv[wi]).any(axis=1)
    # writes: the image's new keys and changed values; the undo record: the map's entries those
    # replace or delete. Indexes ascending (from masks): every row in order is the bytes as they came
    upd_mask = np.zeros(len(wk), bool)
    upd_mask[new] = upd_mask[wi[changed]] = True
    old_mask = np.zeros(len(ck), bool)
    old_mask[gone] = old_mask[ci[changed]] = True
    upd, old = np.flatnonzero(upd_mask), np.flatnonzero(old_mask)
    n, m = table.count, cur[2]
    return Diff(pick(table.keys, ks, n, upd), pick(table.values, vs, n, upd), len(upd), pick(table.keys, ks, n, new),
                len(new), pick(cur[0], ks, m, old), pick(cur[1], vs, m, old), len(old), pick(cur[0], ks, m, gone),
                len(gone))


def pick(raw: bytes, size: int, n: int, which) -> bytes:
    """The packed records of ``size`` bytes among the first ``n`` of
    ``raw`` that ``which`` selects (a bool column, or ascending indexes):
    all of them (a replace), the bytes as they are; one run of indexes in
    order (a list beside rules), a slice; else gathered as one item each (a
    column of ``size``-byte items: a fifth to a half of what gathering rows
    of bytes costs)."""
    import numpy as np

    mask = which.dtype == bool
    if which.all() if mask else len(which) == n:
        return raw if len(raw) == n * size else raw[:n * size]
    if not mask and len(which) > 1 and (np.diff(which) == 1).all():
        return raw[which[0] * size:(which[-1] + 1) * size]
    return np.frombuffer(raw, f"V{size}", n)[which].tobytes()


def _as_words(rows):
    """Keys of at most 8 bytes as one uint64 each (zero-padded)."""
    import numpy as np

    if rows.shape[1] == 8:
        return rows.view(np.uint64)[:, 0]
    out = np.zeros((len(rows), 8), np.uint8)
    out[:, :rows.shape[1]] = rows
    return out.view(np.uint64)[:, 0]


def _pair_words(ck, wk):
    """Keys of at most 8 bytes: each side sorted once, the image's keys
    found in the map's by binary search. Returns (map index, image index)
    of the keys both have, the map's indexes of keys only it has, the
    image's indexes of keys only it has."""
    import numpy as np

    c, w = _as_words(ck), _as_words(wk)
    oc, ow = np.argsort(c), np.argsort(w)
    sc, sw = c[oc], w[ow]
    pos = np.searchsorted(sc, sw)  # sorted needles: the search walks forward
    pos[pos == len(sc)] = 0
    found = sc[pos] == sw if len(sc) else np.zeros(len(w), bool)
    ci, wi = oc[pos[found]], ow[found]
    held, taken = np.zeros(len(c), bool), np.zeros(len(w), bool)
    held[ci] = True
    taken[wi] = True
    # the keys of one side only, in their own order: the rows they pick are read in order
    return ci, wi, np.flatnonzero(~held), np.flatnonzero(~taken)


def _pair_rows(ck, wk, words: int):
    """Like _pair_words for longer keys: one sort of both key sets."""
    import numpy as np

    n1 = len(ck)
    ks = ck.shape[1]
    both = np.zeros((n1 + len(wk), words * 8), np.uint8)
    both[:n1, :ks], both[n1:, :ks] = ck, wk
    cols = both.view(np.uint64)
    order = np.lexsort(cols.T[::-1])
    srt = cols[order]
    pair = np.flatnonzero((srt[1:] == srt[:-1]).all(axis=1))  # a key on both sides: the map's, the image's
    ci, wi = np.minimum(order[pair], order[pair + 1]), np.maximum(order[pair], order[pair + 1]) - n1
    alone = np.ones(len(order), bool)
    alone[pair] = alone[pair + 1] = False
    single = order[alone]
    gone, new = single[single < n1], single[single >= n1] - n1
    return ci, wi, gone, new


def _sync_set(kt: KernelTables, compiled: dlc.Compiled, rule_set: int, undo: Undo | None,
              progress: Progress | None, writes: list | None = None, replay: list | None = None,
              fresh: bool = False) -> SyncReport:
    """Make every rule map of one set equal the compiled image: compared
    map by map (what was done goes to ``writes``), or, given ``replay``,
    by repeating its twin's writes. ``fresh``: nothing wrote the set in
    this change before (a map made by it still holds what it was made with)."""
    if replay is not None:
        report = _replay(kt, rule_set, replay)
        presence.copy(kt, 1 - rule_set, rule_set)  # the twin's keys, so the twin's bits
        return report
    report = SyncReport(revision=0)
    total = sum(compiled[m].count for m in abi.RULE_MAPS)
    done = 0
    for name in abi.RULE_MAPS:
        made = fresh and kt.made_here(abi.set_map(name, rule_set))
        written, deleted = _sync_map(kt.table(name, rule_set), name, compiled[name], undo, writes, made)
        report.per_map[name] = (written, deleted)
        report.written += written
        report.deleted += deleted
        done += compiled[name].count
        if progress:
            progress(done, total)
    presence.rebuild(kt, rule_set, compiled)
    return report


def run_catch_up(ctx: Context, job: CatchUp) -> bool:
    """Run a deferred catch-up (the caller holds the writer lock): the
    service's after its answer, the child an xdpctl command leaves. Creates
    nothing: when the shared maps' pins are gone since the change, or go
    while it opens them, there is no set to catch up here (restore pins
    the running maps again and rewrites both sets). False when nothing was written (KernelTables.catch_up)."""
    try:
        with KernelTables(ctx, create=False) as kt:
            return kt.catch_up(job)
    except PinsGone:
        return False


def rule_stats(ctx: Context, ids: list[int]) -> dict[int, abi.RuleHits]:
    """Hits per rule id (the total and each hook kind's, last hit), read
    without creating any map: {} when the shared maps do not exist yet."""
    path = os.path.join(ctx.settings.shared_map_dir, "xc_rule_stats")
    if not ids or not os.path.exists(path):
        return {}
    with maps.Map.from_pin(path) as m:
        kt = KernelTables(ctx)
        kt.maps["xc_rule_stats"] = m
        try:
            return kt.stats_for(ids)
        finally:
            kt.maps.clear()


@dataclass
class KernelHealth:
    pin_dir: str
    bpffs: bool
    missing_maps: list[str]
    detail: str | None
    kernel_revision: int | None = None  # xc_cfg's generation: the revision the active set holds
    db_revision: int | None = None
    standby_synced: bool | None = None  # the standby set mirrors the active one
    host_table: bool | None = None  # the active set's IPv4 host table is trusted (HAVE_OA4)
    host_table_wear: tuple[int, int] | None = None  # its slots turned dead, buckets overflowed since a rebuild

    @property
    def host_table_dead_slots(self) -> int | None:
        return None if self.host_table_wear is None else self.host_table_wear[0]

    @property
    def host_table_overflowed_buckets(self) -> int | None:
        return None if self.host_table_wear is None else self.host_table_wear[1]

    @property
    def host_table_rebuild_at(self) -> int | None:
        """Dead slots + overflowed buckets at which the next change rebuilds the table."""
        return None if self.host_table_wear is None else hosts4.WEAR_MAX

    @property
    def in_sync(self) -> bool | None:
        """The kernel holds the database's revision in both sets (None:
        not known, e.g. no revision to compare with)."""
        if self.kernel_revision is None or self.db_revision is None:
            return None
        return self.kernel_revision == self.db_revision and bool(self.standby_synced)

    @property
    def ok(self) -> bool:
        return self.bpffs and not self.missing_maps and self.in_sync is not False


def kernel_health(ctx: Context, db_revision: int | None = None) -> KernelHealth:
    """Is the pin directory on bpffs, are the shared maps pinned, and (given
    the database's revision) does the kernel hold that revision in both
    rule sets? Reads only; the service's /healthz and any monitoring use it."""
    pin = ctx.settings.pin_dir
    try:
        on = bpffs.is_bpffs(pin)
    except OSError as exc:
        return KernelHealth(pin, False, list(SHARED_DL_MAPS), str(exc))
    if not on:
        why = "does not exist" if not os.path.isdir(pin) else "is not on a bpffs mount"
        return KernelHealth(pin, False, list(SHARED_DL_MAPS), f"pin directory {pin} {why}")
    missing = [m for m in SHARED_DL_MAPS if not os.path.exists(os.path.join(ctx.settings.shared_map_dir, m))]
    if missing:
        return KernelHealth(pin, True, missing,
                            f"shared maps missing ({', '.join(missing)}): {{action:restore}} rebuilds them")
    cfg = read_pinned_config(ctx)
    h = KernelHealth(pin, True, [], None, cfg.generation, db_revision, cfg.synced == cfg.generation,
                     bool(cfg.flags & abi.CfgFlag.HAVE_OA4), _host_table_wear(ctx, cfg.active))
    if h.in_sync is False:
        if cfg.generation != db_revision:
            h.detail = (f"the kernel is at revision {cfg.generation}, the database at {db_revision}: "
                        "{action:restore} repairs it")
        elif cfg.synced == DEFERRED:
            h.detail = (f"the standby rule set (set {SET_NAMES[1 - cfg.active]}) is not at revision "
                        f"{cfg.generation} yet: the process that made the change (the service, or the child "
                        "an xdpctl command left) is catching it up; if it has stopped, the next change "
                        "or {action:restore} rewrites it")
        else:
            h.detail = (f"the standby rule set (set {SET_NAMES[1 - cfg.active]}) is not at revision "
                        f"{cfg.generation}: a write did not finish; {{action:restore}} repairs it")
    return h


def _host_table_wear(ctx: Context, rule_set: int) -> tuple[int, int] | None:
    """(slots turned dead, buckets overflowed) in the set's IPv4 host table
    since its last rebuild, from its mark bucket (None: not pinned)."""
    path = os.path.join(ctx.settings.shared_map_dir, abi.set_map(abi.OA4_MAP, rule_set))
    try:
        with maps.Map.from_pin(path) as m:
            return hosts4.mark_wear(hosts4.read_mark(m))
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def read_pinned_config(ctx: Context) -> abi.Config:
    """xc_cfg of the shared maps, read without creating anything."""
    path = os.path.join(ctx.settings.shared_map_dir, "xc_cfg")
    with maps.Map.from_pin(path) as m:
        check_layout(m, path)
        raw = m.lookup(abi.U32.pack(0))
    return abi.unpack_config(raw) if raw else abi.Config(0, 0, 0)


def _check_capacity(m: maps.Map, need: int) -> None:
    if m.type not in maps.ARRAY_TYPES and need > m.max_entries:
        raise CapacityError(
            f"map {m.name} would need {need} entries but holds {m.max_entries}; nothing was changed",
            value=need,
            hint="raise the map's capacity in the settings, remove the pinned drop-list maps and run "
                 "{action:restore}: it creates them at the new size and refills them")
