"""The drop list's default policy, and the rule set revision."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from xdpctl.core.views import PolicyView, RevisionView

from ..deps import Service, expected_revision, get_service, if_match
from ..models import PolicyIn, error_responses
from .common import etag

router = APIRouter(prefix="/v1", tags=["policy"])


@router.get("/policy", response_model=PolicyView)
def get_policy(response: Response, svc: Service = Depends(get_service)) -> PolicyView:
    """allow: pass what no rule denies; deny: drop what no rule allows."""
    out = svc.read_set(lambda d: d.policy_view())
    etag(response, out.revision)
    return out


@router.put("/policy", response_model=PolicyView, responses=error_responses(401, 412, 422))
def put_policy(body: PolicyIn, response: Response, header_rev: int | None = Depends(if_match),
               svc: Service = Depends(get_service)) -> PolicyView:
    """Set the default policy (takes effect on every hook at once)."""
    rev = expected_revision(body.revision, header_rev)
    out = svc.rule_set(lambda d: d.set_policy(body.policy, expected_revision=rev))
    etag(response, out.revision)
    return out


@router.get("/revision", response_model=RevisionView)
def get_revision(response: Response, svc: Service = Depends(get_service)) -> RevisionView:
    """The revision of the desired state; every change increments it. Send
    it back as If-Match (or a revision field) to make a change conditional."""
    out = svc.read_set(lambda d: d.revision_view())
    etag(response, out.revision)
    return out
