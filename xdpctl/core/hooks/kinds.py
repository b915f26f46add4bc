"""The attach kind of each hook."""

from __future__ import annotations

from .base import HOOKS, AttachKind, check_hook
from .tc import TC_HOOKS, TcKind
from .xdp import XdpKind

KINDS: dict[str, AttachKind] = {"xdp": XdpKind(), **{h: TcKind(h) for h in TC_HOOKS}}
assert tuple(KINDS) == HOOKS


def kind(hook: str) -> AttachKind:
    """The attach kind of a hook (ValidationError for an unknown hook)."""
    return KINDS[check_hook(hook)]
