"""Maintenance: reconcile the kernel to the database, reap expired rules."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from xdpctl.core.restore import restore as core_restore

from ..deps import Service, get_service
from ..models import ExpireOut, RestoreOut, error_responses
from .common import etag

router = APIRouter(prefix="/v1", tags=["maintenance"])


@router.post("/restore", response_model=RestoreOut, responses=error_responses(401))
def restore(response: Response, svc: Service = Depends(get_service)) -> RestoreOut:
    """Rebuild map contents and re-attach every recorded attachment from the
    state database (after a reboot, or when pins were removed); repairs
    drift. Per-attachment failures are listed in ``errors``."""
    out = RestoreOut.model_validate(svc.run(core_restore))
    etag(response, out.revision)
    return out


@router.post("/expire", response_model=ExpireOut, responses=error_responses(401))
def expire(response: Response, svc: Service = Depends(get_service)) -> ExpireOut:
    """Remove rules and lists whose TTL has passed now (the service also does
    this by itself every few seconds)."""

    def run(d) -> ExpireOut:
        removed = d.expire()
        return ExpireOut(revision=d.revision(), removed=[r.as_dict() for r in removed])

    out = svc.droplist(run)
    etag(response, out.revision)
    return out
