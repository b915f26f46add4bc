"""Operator tools: which rule decides an address, the rule set as a file
(export), making the rule set a file's (apply), and clearing packet
sampling flags whose listener is gone."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from xdpctl.core.rules.lookup import lookup
from xdpctl.core.ruleset_io import apply, export_text
from xdpctl.core.views import ApplyView, LookupView, SamplingClearView

from ..deps import ApiError, Service, expected_revision, get_service, if_match
from ..models import error_responses
from .common import etag

router = APIRouter(prefix="/v1", tags=["rules"])


@router.get("/lookup", response_model=LookupView, responses=error_responses(422))
def get_lookup(response: Response,
               address: str = Query(..., description="an IPv4 or IPv6 address"),
               dst: bool = Query(False, description="the address is the packet's destination (default: source)"),
               proto: str | None = Query(None, description="tcp | udp | sctp (or another protocol: no ports)"),
               port: int | None = Query(None, description="destination port, with proto tcp, udp or sctp"),
               svc: Service = Depends(get_service)) -> LookupView:
    """The drop list's verdict for a packet with this address, and the rule
    or list member that decides it, as the data path decides (longest
    prefix, allow holes, L4 rules, management prefixes, policy). GET
    /v1/rules?prefix= finds only a rule on exactly that prefix."""
    out = svc.read(lambda d: lookup(d, address, dst=dst, proto=proto, port=port))
    etag(response, out.revision)
    return out


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "the rule set as a file POST /v1/apply reads"}})
def get_export(svc: Service = Depends(get_service)) -> StreamingResponse:
    """The rule set (policy, rules, lists with their members) as text,
    streamed: the body POST /v1/apply takes back."""
    return StreamingResponse(svc.read(export_text), media_type="text/plain; charset=utf-8")


_APPLY_BODY = {"requestBody": {"required": True, "description": "text/plain: a rule-set file (GET /v1/export)",
                               "content": {"text/plain": {"schema": {"type": "string"},
                                                          "example": "policy allow\nblock 203.0.113.0/24\n"}}}}


@router.post("/apply", response_model=ApplyView, openapi_extra=_APPLY_BODY,
             responses=error_responses(401, 412, 413, 415, 422))
async def post_apply(request: Request, response: Response,
                     dry_run: bool = Query(False, description="answer the changes, change nothing"),
                     revision: int | None = Query(None, ge=0, le=2**63 - 1),
                     header_rev: int | None = Depends(if_match),
                     svc: Service = Depends(get_service)) -> ApplyView:
    """Make the rule set the body's: rules, lists and policy, all or
    nothing, as one revision (none when nothing changes). A bad line
    changes nothing and is named (``line``)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/plain":
        got = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
        raise ApiError(415, "unsupported_media_type", f"{got}: send a rule-set file as text/plain")
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "validation_error", "body: not UTF-8 text") from None
    rev = expected_revision(revision, header_rev)
    if dry_run:
        out = await run_in_threadpool(svc.read, lambda d: apply(d, text, dry_run=True, expected_revision=rev))
    else:
        out = await run_in_threadpool(svc.droplist, lambda d: apply(d, text, expected_revision=rev))
    etag(response, out.revision)
    return out


@router.delete("/sampling", response_model=SamplingClearView, responses=error_responses(401, 404))
def delete_sampling(ifname: str | None = Query(None, description="only this interface's hooks"),
                    netns: str | None = Query(None, description="the interface's network namespace"),
                    svc: Service = Depends(get_service)) -> SamplingClearView:
    """Clear the packet sampling flags whose listener is gone (`xdpctl dump
    --clear`); a hook a live listener samples is left alone. GET /v1/status
    lists the flags (``sampling``)."""
    from xdpctl.core.dump import clear_stale

    return svc.run(lambda ctx: clear_stale(ctx, ifname, netns))
