"""GET /v1/fleet: every node of the fleet, its applied revision and lag.

Fleet mode comes from the service's settings (``xdpctl serve --etcd``,
$XDPCTL_ETCD), or is configured on the app with :func:`configure`; without
either the route answers 404 fleet_not_configured.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from xdpctl.core.errors import FleetNotConfigured
from xdpctl.core.fleet.kv import Etcd, EtcdOptions
from xdpctl.core.fleet.mode import fleet_of
from xdpctl.core.fleet.views import FleetStatusView
from xdpctl.core.fleet.writer import Fleet

from ..models import error_responses

router = APIRouter(prefix="/v1", tags=["fleet"])


def configure(app, opts: EtcdOptions, prefix: str) -> None:
    """Serve the fleet kept under ``prefix`` in the etcd of ``opts``."""
    app.state.fleet = (opts, prefix)


@router.get("/fleet", response_model=FleetStatusView, responses=error_responses(401, 403, 404, 503))
def get_fleet(request: Request) -> FleetStatusView:
    """Every node ever seen: in-sync, behind (lag = cluster revision minus its
    applied revision) or gone (its agent's lease expired)."""
    conf = getattr(request.app.state, "fleet", None)
    fleet = Fleet(Etcd(conf[0]), conf[1]) if conf else fleet_of(request.app.state.xdpctl.settings)
    if fleet is None:
        raise FleetNotConfigured("fleet mode is not configured on this service", field="etcd")
    return fleet.status()
