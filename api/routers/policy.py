"""The drop list's default policy, and the rule set revision."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from xdpctl.core.droplist import DropList

from ..deps import Service, expected_revision, get_service, if_match
from ..models import PolicyIn, PolicyOut, RevisionOut, error_responses
from .common import etag

router = APIRouter(prefix="/v1", tags=["policy"])


@router.get("/policy", response_model=PolicyOut)
def get_policy(response: Response, svc: Service = Depends(get_service)) -> PolicyOut:
    """allow: pass what no rule denies; deny: drop what no rule allows."""
    out = svc.droplist(lambda d: PolicyOut(policy=d.policy(), revision=d.revision()))
    etag(response, out.revision)
    return out


@router.put("/policy", response_model=PolicyOut, responses=error_responses(401, 409, 422))
def put_policy(body: PolicyIn, response: Response, header_rev: int | None = Depends(if_match),
               svc: Service = Depends(get_service)) -> PolicyOut:
    """Set the default policy (takes effect on every hook at once)."""
    rev = expected_revision(body.revision, header_rev)

    def change(d: DropList) -> PolicyOut:
        new = d.set_policy(body.policy, expected_revision=rev)
        return PolicyOut(policy=d.policy(), revision=new)

    out = svc.droplist(change)
    etag(response, out.revision)
    return out


@router.get("/revision", response_model=RevisionOut)
def get_revision(response: Response, svc: Service = Depends(get_service)) -> RevisionOut:
    """The revision of the desired state; every change increments it. Send
    it back as If-Match (or a revision field) to make a change conditional."""
    out = RevisionOut(revision=svc.revision())
    etag(response, out.revision)
    return out
