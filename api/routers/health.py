"""GET /healthz: can the service do its job? No token needed."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends, Response

from xdpctl.core.rules.tables import kernel_health

from ..deps import Service, get_service
from ..models import DbHealth, Health, KernelHealth, TaskHealth

router = APIRouter(tags=["health"])

DB_WAIT = 2.0  # seconds to wait for a writer before reporting "busy"


def _kernel(svc: Service) -> KernelHealth:
    h = kernel_health(svc.ctx)
    detail = h.detail.replace("a restore rebuilds them", "POST /v1/restore rebuilds them") if h.detail else None
    return KernelHealth(ok=h.ok, pin_dir=h.pin_dir, bpffs=h.bpffs,
                        shared_maps=h.bpffs and not h.missing_maps, detail=detail)


def _db(svc: Service) -> tuple[DbHealth, int | None]:
    path = svc.settings.db_path
    if not svc.lock.acquire(timeout=DB_WAIT):
        return DbHealth(ok=True, path=path, detail="busy: a change is being applied"), svc.last_revision
    try:
        rev = svc.ctx.state.revision
        svc.last_revision = rev
        return DbHealth(ok=True, path=path), rev
    except (sqlite3.Error, OSError) as exc:
        return DbHealth(ok=False, path=path, detail=f"{type(exc).__name__}: {exc}"), None
    finally:
        svc.lock.release()


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "degraded"}})
def healthz(response: Response, svc: Service = Depends(get_service)) -> Health:
    """Kernel side (bpffs, pin directory, shared maps), database, revision,
    and the background tasks. 200 when everything works, 503 otherwise."""
    kernel = _kernel(svc)
    db, rev = _db(svc)
    o = svc.options
    expiry = TaskHealth(interval=o.expire_interval or None, last_run=svc.expiry_last_run,
                        last_error=svc.expiry_last_error,
                        detail=None if o.expire_interval else "disabled")
    failed = svc.restore_report.errors if svc.restore_report else []
    restore = TaskHealth(last_run=svc.restore_ran, last_error=svc.restore_error,
                         detail="disabled" if not o.restore_on_start else
                         (f"{len(failed)} recorded attachments not restored: {'; '.join(failed)}" if failed else None))
    ok = kernel.ok and db.ok and svc.restore_error is None
    response.status_code = 200 if ok else 503
    return Health(status="ok" if ok else "degraded", kernel=kernel, db=db, revision=rev, expiry=expiry,
                  restore=restore)
