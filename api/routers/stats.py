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
