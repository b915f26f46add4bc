"""Hooks and their stages: the attach model.

    base.py     hook references, stages, pins, typed results, the AttachKind interface
    xdp.py      the XDP attach kind (modes, atomic replace, offload refusal)
    tc.py       the TC attach kind (clsact, xdpctl's filter priority)
    kinds.py    which kind serves which hook
    program.py  the hook program: load, recognise, stage bits, maps pinned again
    service.py  Hooks: attach, detach, repair, read back; attach()/detach() views
    status.py   status(): what runs on every interface, recorded attachments
    probe.py    probe(): which hooks and modes work on an interface
"""

from __future__ import annotations

from .base import (HOOK_PROG, HOOKS, PER_HOOK_MAPS, STAGES, XDP_MODES, AttachResult, HookRef, HookState,
                   Stage, check_hook, pin_path_for, pinned_hooks, stage)
from .kinds import KINDS, kind
from .probe import probe
from .service import Hooks, attach, check_shared_pins, detach, on_hook
from .status import status

__all__ = [
    "HOOK_PROG", "HOOKS", "KINDS", "PER_HOOK_MAPS", "STAGES", "XDP_MODES", "AttachResult", "HookRef",
    "HookState", "Hooks", "Stage", "attach", "check_hook", "check_shared_pins", "detach", "kind", "on_hook",
    "pin_path_for", "pinned_hooks", "probe", "stage", "status",
]
