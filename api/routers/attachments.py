"""Attachments: what runs on which hook (read from the kernel), attach,
detach, probe."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from xdpctl.core import hooks
from xdpctl.core.context import Context
from xdpctl.core.views import AttachView, DetachView, ProbeView, StatusView

from ..deps import Service, expected_revision, get_service, if_match
from ..models import AttachIn, IfName, NetnsName, ProbeIn, error_responses
from .common import etag

router = APIRouter(prefix="/v1", tags=["attachments"])


@router.get("/status", response_model=StatusView, responses=error_responses(404))
def status(
    response: Response,
    netns: NetnsName | None = Query(None, description="only this namespace (default: the host and every "
                                                      "namespace with hooks xdpctl manages)"),
    all_interfaces: bool = Query(False, alias="all", description="include interfaces with nothing attached"),
    svc: Service = Depends(get_service),
) -> StatusView:
    """Every interface with what is attached to it, as the kernel reports it:
    hook, mode, program ids, owner (xdpctl or other) and xdpctl's chain;
    the recorded attachments; namespaces with pins that no longer exist."""
    out = svc.run(lambda ctx: hooks.status(ctx, netns, all_interfaces))
    etag(response, out.revision)
    return out


@router.post("/attachments", status_code=201, response_model=AttachView,
             responses=error_responses(401, 404, 409, 412, 422))
def attach(body: AttachIn, response: Response, header_rev: int | None = Depends(if_match),
           svc: Service = Depends(get_service)) -> AttachView:
    """Attach a classifier to a hook: adds it to the hook's chain, or
    replaces it atomically if it is there. A program xdpctl did not attach
    is never replaced without ``force`` (409)."""
    rev = expected_revision(body.revision, header_rev)

    def change(ctx: Context) -> AttachView:
        return hooks.attach(ctx, body.ifname, body.program, body.hook, body.mode, body.netns, body.force,
                            expected_revision=rev)

    out = svc.run(change)
    etag(response, out.revision)
    return out


@router.delete("/attachments", response_model=DetachView, responses=error_responses(401, 404, 409, 412, 422))
def detach(
    response: Response,
    ifname: IfName = Query(description="interface"),
    netns: NetnsName | None = Query(None),
    program: str | None = Query(None, description="stage to remove (default: every xdpctl stage)"),
    hook: str | None = Query(None, description="xdp | tc-ingress | tc-egress (default: every hook)"),
    revision: int | None = Query(None, ge=0, le=2**63 - 1),
    header_rev: int | None = Depends(if_match),
    svc: Service = Depends(get_service),
) -> DetachView:
    """Remove a stage (or every xdpctl stage) from an interface's hooks; a
    hook left without stages loses xdpctl's root program too."""
    rev = expected_revision(revision, header_rev)
    out = svc.run(lambda ctx: hooks.detach(ctx, ifname, program, hook, netns, expected_revision=rev))
    etag(response, out.revision)
    return out


@router.post("/probe", response_model=ProbeView, responses=error_responses(401, 404))
def probe(body: ProbeIn, svc: Service = Depends(get_service)) -> ProbeView:
    """Which hooks and modes work on an interface, and why not. Each free
    hook gets a pass-through program attached and removed again (hence a
    POST); the interface is left exactly as found."""
    return svc.run(lambda ctx: hooks.probe(ctx, body.ifname, body.netns))
