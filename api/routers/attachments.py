"""Attachments: what runs on which hook (read from the kernel), attach, detach."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from xdpctl.core.context import Context
from xdpctl.core.hooks import Hooks
from xdpctl.core.errors import NotFound

from ..deps import Service, expected_revision, get_service, if_match
from ..models import (AttachIn, AttachmentRecord, AttachOut, Detached, DetachOut, IfName, NetnsName, StatusOut,
                      error_responses)
from .common import etag

router = APIRouter(prefix="/v1", tags=["attachments"])


@router.get("/status", response_model=StatusOut, responses=error_responses(404))
def status(
    response: Response,
    netns: NetnsName | None = Query(None, description="only this namespace (default: the host and every "
                                                      "namespace with hooks xdpctl manages)"),
    all_interfaces: bool = Query(False, alias="all", description="include interfaces with nothing attached"),
    svc: Service = Depends(get_service),
) -> StatusOut:
    """Every interface with what is attached to it, as the kernel reports it:
    hook, mode, program ids, owner (xdpctl or other) and xdpctl's chain."""

    def read(ctx: Context) -> StatusOut:
        hooks = Hooks(ctx)
        if netns is not None:
            spaces: list[str | None] = [netns]
        else:
            spaces = hooks.managed_netns()
        rows, gone = [], []
        for ns in spaces:
            try:
                rows += hooks.interfaces_status([ns])
            except NotFound:
                if netns is not None:
                    raise
                gone.append(ns)  # removed while its pins remain
        if not all_interfaces:
            rows = [r for r in rows if r["hooks"]]
        recorded = [AttachmentRecord(netns=a.netns, ifname=a.ifname, hook=a.hook, program=a.program, mode=a.mode)
                    for a in ctx.state.attachments()]
        return StatusOut(revision=ctx.state.revision, interfaces=rows, recorded=recorded, unreachable=gone)

    out = svc.run(read)
    etag(response, out.revision)
    return out


@router.post("/attachments", status_code=201, response_model=AttachOut,
             responses=error_responses(401, 404, 409, 422))
def attach(body: AttachIn, response: Response, header_rev: int | None = Depends(if_match),
           svc: Service = Depends(get_service)) -> AttachOut:
    """Attach a classifier to a hook: adds it to the hook's chain, or
    replaces it atomically if it is there. A program xdpctl did not attach
    is never replaced without ``force`` (409)."""
    rev = expected_revision(body.revision, header_rev)

    def change(ctx: Context) -> AttachOut:
        res = Hooks(ctx).attach(body.ifname, body.program, body.hook, body.mode, body.netns, body.force,
                                expected_revision=rev)
        return AttachOut(netns=body.netns, ifname=body.ifname, hook=res.hook.hook, program=res.program,
                         mode=res.mode, prog_id=res.prog_id, root_id=res.root_id, replaced=res.replaced,
                         notes=res.notes, revision=ctx.state.revision)

    out = svc.run(change)
    etag(response, out.revision)
    return out


@router.delete("/attachments", response_model=DetachOut, responses=error_responses(401, 404, 409, 422))
def detach(
    response: Response,
    ifname: IfName = Query(description="interface"),
    netns: NetnsName | None = Query(None),
    program: str | None = Query(None, description="stage to remove (default: every xdpctl stage)"),
    hook: str | None = Query(None, description="xdp | tc-ingress | tc-egress (default: every hook)"),
    revision: int | None = Query(None, ge=0, le=2**63 - 1),
    header_rev: int | None = Depends(if_match),
    svc: Service = Depends(get_service),
) -> DetachOut:
    """Remove a stage (or every xdpctl stage) from an interface's hooks; a
    hook left without stages loses xdpctl's root program too."""
    rev = expected_revision(revision, header_rev)

    def change(ctx: Context) -> DetachOut:
        removed = Hooks(ctx).detach(ifname, program, hook, netns, expected_revision=rev)
        return DetachOut(removed=[Detached(netns=r.netns, ifname=r.ifname, hook=r.hook, program=name)
                                  for r, name in removed], revision=ctx.state.revision)

    out = svc.run(change)
    etag(response, out.revision)
    return out
