"""The fleet's views: what `xdpctl fleet ... --json` prints and /v1/fleet answers."""

from __future__ import annotations

from pydantic import Field

from ..views import View


class FleetNodeView(View):
    name: str
    state: str = Field(description="in-sync | behind | gone (its lease expired: the agent is not running)")
    applied_revision: int | None
    lag: int | None = Field(description="cluster revision minus applied revision")
    local_revision: int | None = Field(None, description="the node's own rule-set revision")
    health: str | None = Field(None, description="ok | error: the node's last apply")
    error: str | None = None
    attachments: list[str] = Field(default_factory=list)
    updated: float | None = Field(None, description="when the node last reported (unix time)")


class FleetStatusView(View):
    prefix: str
    revision: int = Field(description="the rule set's cluster revision")
    etcd_revision: int
    nodes: list[FleetNodeView]
