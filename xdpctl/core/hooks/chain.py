"""The stages of a hook: its root program and the per-hook program array
``xc_chain`` that the root tail-calls through, one slot per stage.

Adding, replacing or removing a stage is one map update; the root stays.
"""

from __future__ import annotations

import os

from ... import abi
from ...kernel import bpffs, maps, objects
from ..context import Context
from ..views import StageView
from .base import ROOT_PROG, STAGES, HookRef, Stage, pin_path_for

CHAIN_MAP = "xc_chain"


def load_root(ctx: Context, ref: HookRef, object_name: str) -> objects.Loaded:
    """Load a root object for the hook, its maps and program pinned in the
    hook's directory (created if missing). The caller closes it."""
    hdir = ref.dir(ctx)
    bpffs.makedirs(hdir)
    return objects.load(
        objects.object_path(object_name),
        pin_path=pin_path_for(ctx, hdir),
        pin_progs={ROOT_PROG: ref.pin(ctx, "root")},
    )


def install_stage(ctx: Context, ref: HookRef, st: Stage) -> tuple[int, bool]:
    """Load a stage and put it in its chain slot (atomically replacing the
    one there); returns (program id, whether it replaced one)."""
    prog_pin = ref.pin(ctx, st.name)
    replaced = os.path.exists(prog_pin)
    loaded = objects.load(
        objects.object_path(st.object_name(ref.hook)),
        pin_path=pin_path_for(ctx, ref.dir(ctx)),
        max_entries=abi.with_sets(ctx.settings.capacity),
    )
    try:
        fd = loaded.prog_fd(st.prog)
        with maps.Map.from_pin(ref.pin(ctx, CHAIN_MAP)) as chain:
            chain.update_fd(st.slot, fd)  # atomic: the old program runs until this
        if replaced:
            os.unlink(prog_pin)
        maps.obj_pin(fd, prog_pin)
        return maps.prog_info(fd).id, replaced
    finally:
        loaded.close()


def remove_stage(ctx: Context, ref: HookRef, st: Stage) -> bool:
    """Empty the stage's slot and drop its pin; False if it was not there."""
    prog_pin = ref.pin(ctx, st.name)
    if not os.path.exists(prog_pin):
        return False
    chain_pin = ref.pin(ctx, CHAIN_MAP)
    if os.path.exists(chain_pin):
        with maps.Map.from_pin(chain_pin) as chain:
            chain.delete(st.slot.to_bytes(4, "little"))
    os.unlink(prog_pin)
    return True


def pinned_stages(ctx: Context, ref: HookRef) -> list[str]:
    """Names of the stages pinned on the hook."""
    return [s for s in STAGES if os.path.exists(ref.pin(ctx, s))]


def read_stages(ctx: Context, ref: HookRef) -> list[StageView]:
    """What the hook's chain holds, slot by slot, as the kernel reports it."""
    chain_pin = ref.pin(ctx, CHAIN_MAP)
    out: list[StageView] = []
    if not os.path.exists(chain_pin):
        return out
    with maps.Map.from_pin(chain_pin) as chain:
        for st in sorted(STAGES.values(), key=lambda s: s.slot):
            raw = chain.lookup(st.slot.to_bytes(4, "little"))
            if raw is None:
                continue
            pid = int.from_bytes(raw[:4], "little")
            info = maps.prog_info_by_id(pid)
            out.append(StageView(slot=st.slot, program=st.name, id=pid, tag=info.tag if info else None))
    return out
