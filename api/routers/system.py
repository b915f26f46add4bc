"""Maintenance: reconcile the kernel to the database, reap expired rules."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from xdpctl.core.restore import restore as core_restore
from xdpctl.core.views import ExpireView, RestoreView

from ..deps import Service, get_service
from ..models import error_responses
from .common import etag

router = APIRouter(prefix="/v1", tags=["maintenance"])


@router.post("/restore", response_model=RestoreView, responses=error_responses(401))
def restore(response: Response, svc: Service = Depends(get_service)) -> RestoreView:
    """Rebuild map contents and re-attach every recorded attachment from the
    state database (after a reboot, or when pins were removed); repairs
    drift. Per-attachment failures are listed in ``errors``."""
    out = svc.run(core_restore)
    etag(response, out.revision)
    return out


@router.post("/expire", response_model=ExpireView, responses=error_responses(401))
def expire(response: Response, svc: Service = Depends(get_service)) -> ExpireView:
    """Remove rules and lists whose TTL has passed now (the service also does
    this by itself every few seconds)."""
    out = svc.droplist(lambda d: d.expire())
    etag(response, out.revision)
    return out
