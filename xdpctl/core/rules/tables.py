"""The shared drop-list maps: created on first use, written with rollback.

The maps are shared by every hook that runs the drop list; they are a cache
of the database (xdpctl.core.rules.store). A write that fails puts every
touched entry back, so a change is all or nothing in the kernel too.
"""

from __future__ import annotations

import os
import sys
from array import array
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ... import abi
from ...kernel import bpffs, maps, objects
from .. import dlcompile as dlc
from ..context import Context
from ..errors import CapacityError
from ..hooks import PER_HOOK_MAPS, check_shared_pins

SHARED_DL_MAPS = tuple(abi.RULE_MAPS) + ("xc_cfg", "xc_rule_stats")
VAL_SIZE = abi.RULE_VAL.size

Progress = Callable[[int, int], None]


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
            check_shared_pins(self.ctx, missing)
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

    def _current(self, name: str, table: dlc.Table) -> dict[bytes, bytes] | None:
        """A map's entries; None when it already equals the image (the
        ARRAY xc_v4_l16 is compared raw)."""
        mo = self.maps[name]
        if name == dlc.L16:
            cur = b"".join(v[:VAL_SIZE] for _i, v in mo.lookup_range(0, mo.max_entries))
            if cur == table.values:
                return None
            return {abi.U32.pack(i): cur[i * VAL_SIZE:(i + 1) * VAL_SIZE] for i in range(len(cur) // VAL_SIZE)}
        return self.read(name) if mo.has_entries() else {}

    def _sync_map(self, name: str, table: dlc.Table, undo: list) -> tuple[int, int]:
        """Make one map equal its image; record how to undo it. Returns
        (entries written, entries deleted)."""
        mo = self.maps[name]
        current = self._current(name, table)
        if current is None:
            return 0, 0
        if not current and table.count:
            _check_capacity(mo, table.count)
            mo.update_batch(table.keys, table.values, table.count)
            undo.append((name, {}, (table.keys, table.count)))
            return table.count, 0
        want = _table_dict(table, mo.key_size)
        upd = {k: v for k, v in want.items() if current.get(k) != v}
        dels = [] if name == dlc.L16 else [k for k in current if k not in want]
        _check_capacity(mo, len(want))
        old_vals = {k: current[k] for k in upd if k in current}
        old_vals.update({k: current[k] for k in dels})
        if upd:
            mo.update_batch(b"".join(upd), b"".join(upd.values()), len(upd))
        new_keys = [k for k in upd if k not in current]
        undo.append((name, old_vals, (b"".join(new_keys), len(new_keys))))
        if dels:
            mo.delete_batch(b"".join(dels), len(dels))
        return len(upd), len(dels)

    def sync_to(self, compiled: dlc.Compiled, progress: Progress | None = None) -> SyncReport:
        """Make every rule map equal the compiled image; rollback on failure."""
        report = SyncReport(revision=0)
        undo: list[tuple[str, dict[bytes, bytes], tuple[bytes, int]]] = []
        total = sum(compiled[m].count for m in abi.RULE_MAPS)
        done = 0
        try:
            for name in abi.RULE_MAPS:
                written, deleted = self._sync_map(name, compiled[name], undo)
                report.per_map[name] = (written, deleted)
                report.written += written
                report.deleted += deleted
                done += compiled[name].count
                if progress:
                    progress(done, total)
        except BaseException:
            self._undo(undo)
            raise
        return report

    def _undo(self, undo) -> None:
        for name, old_vals, (new_keys, n_new) in reversed(undo):
            mo = self.maps[name]
            try:
                if n_new:
                    mo.delete_batch(new_keys, n_new)
                if old_vals:
                    mo.update_batch(b"".join(old_vals), b"".join(old_vals.values()), len(old_vals))
            except Exception:  # pragma: no cover
                pass

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


def rule_stats(ctx: Context, ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """(packets, bytes, last hit) per rule id, read without creating any
    map: {} when the shared maps do not exist yet."""
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
            f"map {m.name} would need {need} entries but holds {m.max_entries}; nothing was changed",
            value=need,
            hint="raise the map's capacity in the settings, remove the pinned drop-list maps and run "
                 "{action:restore}: it creates them at the new size and refills them")
