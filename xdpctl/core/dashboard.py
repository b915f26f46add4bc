"""The dashboard: one document with what an operator watches at a glance.

Counters per hook, what runs where, the drop list's busiest rules and its
lists, the load balancer's VIPs and backends. The page at /ui polls it once
per interval instead of asking every resource on its own; rates are the
difference of two samples over their ``time``.
"""

from __future__ import annotations

import time

from . import counters
from .context import Context
from .hooks import status
from .lb.service import LoadBalancer
from .rules.service import DropList
from .views import DashboardView, RuleView

TOP_RULES = 10


def top_rules(rules: list[RuleView], limit: int = TOP_RULES) -> list[RuleView]:
    """Rules that matched packets, most packets first (then by id)."""
    return sorted((r for r in rules if r.packets), key=lambda r: (-r.packets, r.id))[:limit]


def dashboard(ctx: Context, fleet: bool = False, limit: int = TOP_RULES) -> DashboardView:
    now = time.time()
    stats = counters.stats(ctx)
    stats.time = now
    dl = DropList(ctx)
    rules = dl.rules(with_stats=True)
    lb = LoadBalancer(ctx)
    return DashboardView(
        time=now, revision=dl.revision(), policy=dl.policy(), stats=stats, status=status(ctx),
        rules=len(rules), top_rules=top_rules(rules, limit), lists=dl.lists(with_stats=True),
        vips=lb.vips_view().vips, backends=lb.backends_view().backends, lb_stats=lb.stats_view(),
        fleet=fleet)
