"""The fleet's views: what `xdpctl fleet ... --json` prints and /v1/fleet answers."""

from __future__ import annotations

import dataclasses

from ..views import View, doc


class FleetNodeView(View):
    name: str
    state: str = doc("in-sync | behind | gone (its lease expired: the agent is not running)")
    applied_revision: int | None
    lag: int | None = doc("cluster revision minus applied revision")
    local_revision: int | None = doc("the node's own rule-set revision", None)
    health: str | None = doc("ok | error: the node's last apply", None)
    error: str | None = None
    attachments: list[str] = dataclasses.field(default_factory=list)
    updated: float | None = doc("when the node last reported (unix time)", None)


class FleetStatusView(View):
    prefix: str
    revision: int = doc("the rule set's cluster revision")
    etcd_revision: int
    nodes: list[FleetNodeView]
