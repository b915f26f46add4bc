"""Hooks and their chains: the attach model.

    base.py     hook references, stages, pins, typed results, the AttachKind interface
    xdp.py      the XDP attach kind (modes, atomic replace, offload refusal)
    tc.py       the TC attach kind (clsact, xdpctl's filter priority)
    kinds.py    which kind serves which hook
    chain.py    the root program and the stages in the per-hook program array
    service.py  Hooks: attach, detach, read back; attach()/detach() views
    status.py   status(): what runs on every interface, recorded attachments
    probe.py    probe(): which hooks and modes work on an interface
"""

from __future__ import annotations

from .base import (HOOKS, PER_HOOK_MAPS, ROOT_PROG, STAGES, XDP_MODES, AttachResult, HookRef, HookState,
                   Stage, check_hook, pin_path_for, pinned_hooks, stage)
from .kinds import KINDS, kind
from .probe import probe
from .service import Hooks, attach, detach
from .status import status

__all__ = [
    "HOOKS", "KINDS", "PER_HOOK_MAPS", "ROOT_PROG", "STAGES", "XDP_MODES", "AttachResult", "HookRef",
    "HookState", "Hooks", "Stage", "attach", "check_hook", "detach", "kind", "pin_path_for", "pinned_hooks",
    "probe", "stage", "status",
]
