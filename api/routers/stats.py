"""Packet and byte counters per hook, read live from the kernel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from xdpctl.core import counters

from ..deps import Service, get_service
from ..models import Count, HookStats, NetnsName, ProtoCount, StatsOut

router = APIRouter(prefix="/v1", tags=["stats"])


def hook_stats(hc: counters.HookCounters) -> HookStats:
    pk, by = hc.total()
    return HookStats(
        netns=hc.hook.netns, ifname=hc.hook.ifname, hook=hc.hook.hook, total=Count(packets=pk, bytes=by),
        protocols=[ProtoCount(l3=l3, l4=l4, packets=p, bytes=b) for (l3, l4), (p, b) in sorted(hc.proto.items())],
        verdicts={k: Count(packets=p, bytes=b) for k, (p, b) in sorted(hc.verdicts.items())},
    )


@router.get("/stats", response_model=StatsOut)
def get_stats(
    ifname: str | None = Query(None, description="only this interface"),
    netns: NetnsName | None = Query(None, description="only this namespace"),
    svc: Service = Depends(get_service),
) -> StatsOut:
    """Counters of every hook xdpctl manages (summed over CPUs): protocol
    classes of the counter stage, verdicts of the drop-list stage."""
    # Counter maps only, no database: no need to wait for a writer.
    hcs = counters.read_all(svc.ctx, netns=netns, ifname=ifname)
    return StatsOut(hooks=[hook_stats(h) for h in hcs])
