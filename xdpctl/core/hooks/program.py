"""The hook program: one per hook (``xdp_hook`` / ``tc_hook``), running the
stages whose bit is set in its per-hook map ``xc_stages``.

xdpctl knows its own programs by what it loaded, never by a pin: the
program's name, and its ``xc_stages`` map carrying the magic and the owner
(the instance's pin directory). Pins are a way to reach the maps; when they
are gone, the maps of the running program are found through its map ids and
pinned again.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

from ... import abi
from ...kernel import bpffs, maps, objects
from ..context import Context
from ..errors import KernelObjectsLost
from ..views import StageView
from .base import HOOK_PROG, STAGES, HookRef, pin_path_for

STAGES_MAP = "xc_stages"
_KEY0 = abi.U32.pack(0)


def object_name(hook: str) -> str:
    """The compiled object of a hook: xdp_hook or tc_hook."""
    return f"{hook.split('-', 1)[0]}_hook"


def owner_id(ctx: Context) -> int:
    """The owner mark of this instance's programs: its pin directory."""
    return zlib.crc32(os.path.realpath(ctx.settings.pin_dir).encode())


def bits_of(names) -> int:
    out = 0
    for n in names:
        out |= abi.stage_bit(STAGES[n].slot)
    return out


def names_of(bits: int) -> list[str]:
    return [n for n, s in STAGES.items() if bits & abi.stage_bit(s.slot)]


@dataclass
class HookProg:
    """A program the kernel runs, seen through its maps."""

    id: int
    name: str
    tag: str
    maps: dict[str, int] = field(default_factory=dict)  # map name -> map id
    magic: int = 0
    owner: int = 0
    stages: int = 0
    hook: int = 0  # enum xc_hook_kind, as written at load

    def ours(self, ctx: Context) -> bool:
        return (self.name == HOOK_PROG and self.magic == abi.HOOK_MAGIC
                and STAGES_MAP in self.maps and self.owner == owner_id(ctx))

    def stage_views(self) -> list[StageView]:
        return [StageView(slot=STAGES[n].slot, program=n, id=self.id, tag=self.tag) for n in names_of(self.stages)]

    def set_stages(self, ctx: Context, bits: int) -> None:
        """Switch stages on or off: one update of the program's own map."""
        with maps.Map.from_id(self.maps[STAGES_MAP]) as m:
            m.update(_KEY0, abi.pack_stages(owner_id(ctx), bits, self.hook))
        self.stages = bits


def inspect(prog_id: int) -> HookProg | None:
    """The program with this id and its maps; None if it is gone."""
    info = maps.prog_info_by_id(prog_id)
    if info is None:
        return None
    hp = HookProg(prog_id, info.name, info.tag)
    if info.name != HOOK_PROG:
        return hp
    for mid in info.map_ids:
        try:
            m = maps.Map.from_id(mid)
        except Exception:
            continue
        with m:
            name = abi.map_name(m.name) or m.name
            hp.maps[name] = mid
            if name == STAGES_MAP and m.value_size == abi.STAGES.size:
                raw = m.lookup(_KEY0)
                if raw:
                    hp.magic, hp.owner, hp.stages, hp.hook = abi.STAGES.unpack(raw[:abi.STAGES.size])
    return hp


def load(ctx: Context, ref: HookRef, bits: int) -> objects.Loaded:
    """Load the hook program with its maps pinned for the hook (reusing
    pins that exist) and its stages set; not attached. The caller closes it."""
    hdir = ref.dir(ctx)
    bpffs.makedirs(hdir)
    loaded = objects.load(objects.object_path(object_name(ref.hook)), pin_path=pin_path_for(ctx, hdir),
                          max_entries=abi.with_sets(ctx.settings.capacity),
                          map_flags=abi.prealloc_flags(ctx.settings.prealloc))
    try:
        with loaded.map(STAGES_MAP) as m:
            m.update(_KEY0, abi.pack_stages(owner_id(ctx), bits, abi.HOOK_KINDS[ref.hook]))
    except BaseException:
        loaded.close()
        raise
    return loaded


def pin_paths(ctx: Context, ref: HookRef, hp: HookProg) -> dict[str, str]:
    """Where each map of a program of the hook is pinned."""
    pin = pin_path_for(ctx, ref.dir(ctx))
    return {name: pin(name) for name in hp.maps}


def mismatched(ctx: Context, ref: HookRef, hp: HookProg) -> list[str]:
    """Maps the program reads whose pin is missing or holds another map."""
    return sorted(n for n, p in pin_paths(ctx, ref, hp).items() if maps.pinned_id(p) != hp.maps[n])


def adopt(ctx: Context, ref: HookRef, hp: HookProg) -> list[str]:
    """Pin the maps of a running program where pins are missing, so that
    writes reach the maps it reads; returns the names pinned. A pin that
    holds another map is left alone (see :func:`mismatched`)."""
    done = []
    for name, path in pin_paths(ctx, ref, hp).items():
        if os.path.exists(path):
            continue
        bpffs.makedirs(os.path.dirname(path))
        with maps.Map.from_id(hp.maps[name]) as m:
            maps.obj_pin(m.fd, path)
        done.append(name)
    return sorted(done)


def same_program(ctx: Context, ref: HookRef, hp: HookProg) -> bool:
    """Is the running program the one xdpctl would load now: same tag and
    reading the maps that are pinned?"""
    if mismatched(ctx, ref, hp):
        return False
    with load(ctx, ref, hp.stages) as fresh:
        return maps.prog_info(fresh.prog_fd(HOOK_PROG)).tag == hp.tag


def lost(ctx: Context, ref: HookRef, hp: HookProg) -> KernelObjectsLost:
    names = ", ".join(mismatched(ctx, ref, hp))
    return KernelObjectsLost(f"kernel objects lost: the program on {ref.label()} reads maps that are not the "
                             f"pinned ones ({names})", value=ref.label(), hint="run {action:restore}")


def read_pinned_stages(ctx: Context, ref: HookRef) -> list[StageView]:
    """The stages recorded in a hook's pinned xc_stages (a hook whose program
    the kernel no longer runs)."""
    path = ref.pin(ctx, STAGES_MAP)
    if not os.path.exists(path):
        return []
    with maps.Map.from_pin(path) as m:
        raw = m.lookup(_KEY0)
    if not raw:
        return []
    _magic, _owner, bits, _hook = abi.STAGES.unpack(raw[:abi.STAGES.size])
    return [StageView(slot=STAGES[n].slot, program=n, id=None, tag=None) for n in names_of(bits)]
