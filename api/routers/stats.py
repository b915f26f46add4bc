"""Packet and byte counters per hook, read live from the kernel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from xdpctl.core import counters
from xdpctl.core.views import StatsView

from ..deps import Service, get_service
from ..models import IfName, NetnsName, error_responses

router = APIRouter(prefix="/v1", tags=["stats"])


@router.get("/stats", response_model=StatsView, responses=error_responses(404))
def get_stats(
    ifname: IfName | None = Query(None, description="only this interface"),
    netns: NetnsName | None = Query(None, description="only this namespace"),
    svc: Service = Depends(get_service),
) -> StatsView:
    """Counters of every hook xdpctl manages (summed over CPUs): protocol
    classes of the counter stage, verdicts of the drop-list stage. A
    namespace or interface that does not exist is a 404."""
    # Counter maps only, no database: no need to wait for a writer.
    return counters.stats(svc.ctx, netns, ifname)


@router.post("/stats/reset", response_model=StatsView, responses=error_responses(404, 422))
def reset_stats(
    ifname: IfName | None = Query(None, description="only this interface"),
    netns: NetnsName | None = Query(None, description="only this namespace"),
    hook: str | None = Query(None, description="only this hook: xdp, tc-ingress or tc-egress"),
    rules: bool = Query(False, description="zero every rule's hit counter too"),
    svc: Service = Depends(get_service),
) -> StatsView:
    """Zero the counters of the hooks selected (and, with rules, every
    rule's hit counter); answers their stats just after. A packet counted
    on another CPU while its slot is zeroed may be counted before or after
    the zero (docs: `xdpctl stats --reset`)."""
    return counters.reset(svc.ctx, netns, ifname, hook, rules)
