"""Rule hits as the views show them: per hook kind, and added up over a
list's members. Kept apart from core.counters so a rule change does not
load the hook and netlink machinery."""

from __future__ import annotations

from collections.abc import Iterable

from ... import abi
from ..views import HitsView


_NONE = HitsView(packets=0, bytes=0)


def hits_by_hook(h: abi.RuleHits) -> dict[str, HitsView]:
    """A rule's (or list's) hits per hook kind, as the views' ``hits``. A
    rule that has counted nothing (every rule a change adds, most of a
    page of rules) shares one zero view: a bulk add of 10,000 rules made
    30,000 of them."""
    if not h.packets and not h.bytes:
        return dict.fromkeys(abi.HOOK_KINDS, _NONE)
    return {name: HitsView(packets=h.hooks[k][0], bytes=h.hooks[k][1])
            for name, k in abi.HOOK_KINDS.items()}


def sum_hits(hits: Iterable[abi.RuleHits]) -> abi.RuleHits:
    """The hits of several rules (a list's members) added up, hook kind by
    hook kind; the latest last hit."""
    hs = list(hits)
    hooks = tuple((sum(h.hooks[k][0] for h in hs), sum(h.hooks[k][1] for h in hs)) for k in range(abi.RULE_HOOKS))
    return abi.RuleHits(sum(p for p, _ in hooks), sum(b for _, b in hooks),
                        max((h.last_hit_ns for h in hs), default=0), hooks)
