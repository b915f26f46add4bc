"""The load balancer: VIPs, their backends, counters. Changes take the
revision as If-Match (or a ``revision`` field / query parameter) like every
other change; each answers the LbChangeView the CLI prints with --json."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from xdpctl.core.fleet.mode import load_balancer
from xdpctl.core.lb.health import HealthChecker
from xdpctl.core.views import BackendsView, LbChangeView, LbHealthView, LbStatsView, VipsView

from ..deps import Service, expected_revision, get_service, if_match
from ..models import error_responses
from .common import etag

router = APIRouter(prefix="/v1/lb", tags=["load balancer"])

_CHANGE = error_responses(401, 404, 409, 412, 422, 507)
Revision = Field(None, ge=0, le=2**63 - 1, description="only apply if the state is at this revision")
HashField = Field(None, description="flow hash: l4 (addresses, protocol, ports; default) | l3 (addresses and "
                                    "protocol: every fragment and every flow of a client to one backend)")


class CheckIn(BaseModel):
    """A VIP's health check; a field left out keeps its value (its default
    for a new VIP)."""

    check: str | None = Field(None, description="tcp (connect) | udp (any answer) | none (default)")
    check_port: int | None = Field(None, description="port probed on each backend; 0: the VIP's port")
    interval: float | None = Field(None, description="seconds between checks (default 5)")
    timeout: float | None = Field(None, description="seconds a check waits (default 1)")
    rise: int | None = Field(None, description="successes in a row that bring a backend up (default 2)")
    fall: int | None = Field(None, description="failures in a row that take a backend down (default 3)")

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in CheckIn.model_fields}


class VipIn(CheckIn):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"address": "192.0.2.10", "proto": "tcp", "port": 443, "check": "tcp", "interval": 2}]})
    address: str = Field(description="IPv4 or IPv6 address")
    proto: str = Field(description="tcp | udp")
    port: int = Field(description="1-65535, or 0: every port")
    table_size: int | None = Field(None, description="Maglev table slots, a prime (default 65537)")
    hash: str | None = HashField
    revision: int | None = Revision


class VipPatch(CheckIn):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"proto": "tcp", "port": 443, "check": "tcp", "rise": 3}]})
    proto: str = Field(description="tcp | udp")
    port: int = Field(description="1-65535, or 0: every port")
    hash: str | None = HashField
    revision: int | None = Revision


class BackendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"address": "10.0.0.5", "vip": "192.0.2.10", "proto": "tcp", "port": 443, "mac": "02:00:00:00:00:05"}]})
    address: str
    vip: str = Field(description="the VIP's address")
    proto: str
    port: int
    weight: int = Field(1, description="share of new flows, 0-1000")
    mac: str | None = Field(None, description="the backend's MAC; without one it gets no flows")
    revision: int | None = Revision


class BackendPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"vip": "192.0.2.10", "proto": "tcp", "port": 443, "state": "draining"}]})
    vip: str
    proto: str
    port: int
    weight: int | None = Field(None, description="a new weight (or give a state)")
    state: str | None = Field(None, description="active | draining | down (or give a weight)")
    revision: int | None = Revision


def _read(svc: Service, response: Response, fn):
    out = fn(load_balancer(svc.read_context()))
    etag(response, out.revision)
    return out


def _change(svc: Service, response: Response, fn) -> LbChangeView:
    out = svc.run(lambda ctx: fn(load_balancer(ctx)))
    etag(response, out.revision)
    return out


# ------------------------------------------------------------------ VIPs
@router.get("/vips", response_model=VipsView)
def get_vips(response: Response, svc: Service = Depends(get_service)) -> VipsView:
    """Every VIP (`xdpctl lb vip list --json`)."""
    return _read(svc, response, lambda lb: lb.vips_view())


@router.post("/vips", status_code=201, response_model=LbChangeView, responses=_CHANGE)
def add_vip(body: VipIn, response: Response, header_rev: int | None = Depends(if_match),
            svc: Service = Depends(get_service)) -> LbChangeView:
    """Add a VIP; without backends its traffic passes."""
    rev = expected_revision(body.revision, header_rev)
    return _change(svc, response, lambda lb: lb.add_vip(body.address, body.proto, body.port, body.table_size,
                                                        expected_revision=rev, hash=body.hash, **body.settings()))


@router.patch("/vips/{address}", response_model=LbChangeView, responses=_CHANGE)
def set_vip(body: VipPatch, response: Response, address: str = Path(description="the VIP's address"),
            header_rev: int | None = Depends(if_match), svc: Service = Depends(get_service)) -> LbChangeView:
    """Change a VIP's flow hash or health check (`xdpctl lb vip set`);
    unless only the hash is given, its backends' health starts again from
    unknown."""
    rev = expected_revision(body.revision, header_rev)
    return _change(svc, response, lambda lb: lb.set_vip(address, body.proto, body.port, expected_revision=rev,
                                                        hash=body.hash, **body.settings()))


@router.delete("/vips/{address}", response_model=LbChangeView, responses=_CHANGE)
def delete_vip(response: Response, address: str = Path(description="the VIP's address"),
               proto: str = Query(description="tcp | udp"), port: int = Query(ge=0, le=65535),
               revision: int | None = Query(None, ge=0, le=2**63 - 1),
               header_rev: int | None = Depends(if_match), svc: Service = Depends(get_service)) -> LbChangeView:
    """Remove a VIP and its backends."""
    rev = expected_revision(revision, header_rev)
    return _change(svc, response, lambda lb: lb.delete_vip(address, proto, port, expected_revision=rev))


# ------------------------------------------------------------------ backends
@router.get("/backends", response_model=BackendsView)
def get_backends(response: Response, svc: Service = Depends(get_service)) -> BackendsView:
    """Every backend of every VIP with its share of the table (`xdpctl lb
    backend list --json`)."""
    return _read(svc, response, lambda lb: lb.backends_view())


@router.post("/backends", status_code=201, response_model=LbChangeView, responses=_CHANGE)
def add_backend(body: BackendIn, response: Response, header_rev: int | None = Depends(if_match),
                svc: Service = Depends(get_service)) -> LbChangeView:
    """Add an active backend to a VIP; its table is rebuilt and switched."""
    rev = expected_revision(body.revision, header_rev)
    return _change(svc, response, lambda lb: lb.add_backend(body.address, body.vip, body.proto, body.port,
                                                            body.weight, body.mac, expected_revision=rev))


@router.patch("/backends/{address}", response_model=LbChangeView, responses=_CHANGE)
def set_backend(body: BackendPatch, response: Response, address: str = Path(description="the backend's address"),
                header_rev: int | None = Depends(if_match), svc: Service = Depends(get_service)) -> LbChangeView:
    """Change a backend's weight or its state (draining: established flows
    stay, no new ones; down: nothing)."""
    rev = expected_revision(body.revision, header_rev)
    return _change(svc, response, lambda lb: lb.set_backend(address, body.vip, body.proto, body.port, body.weight,
                                                            body.state, expected_revision=rev))


@router.delete("/backends/{address}", response_model=LbChangeView, responses=_CHANGE)
def delete_backend(response: Response, address: str = Path(description="the backend's address"),
                   vip: str = Query(description="the VIP's address"), proto: str = Query(description="tcp | udp"),
                   port: int = Query(ge=0, le=65535), revision: int | None = Query(None, ge=0, le=2**63 - 1),
                   header_rev: int | None = Depends(if_match),
                   svc: Service = Depends(get_service)) -> LbChangeView:
    """Remove a backend; its flows move to the others."""
    rev = expected_revision(revision, header_rev)
    return _change(svc, response, lambda lb: lb.delete_backend(address, vip, proto, port, expected_revision=rev))


# ------------------------------------------------------------------ counters
@router.get("/stats", response_model=LbStatsView)
def get_stats(response: Response, svc: Service = Depends(get_service)) -> LbStatsView:
    """Packets, bytes and new flows per VIP and per backend (`xdpctl lb
    stats --json`)."""
    return _read(svc, response, lambda lb: lb.stats_view())


# ------------------------------------------------------------------ health
@router.post("/health", response_model=LbHealthView, responses=error_responses(401, 507))
def run_health(response: Response, svc: Service = Depends(get_service)) -> LbHealthView:
    """Check every backend once now and resolve missing MACs (`xdpctl lb
    health --json`); a backend's health changes as by the service's checks."""
    out = svc.run(lambda ctx: HealthChecker(ctx).round(force=True))
    etag(response, out.revision)
    return out
