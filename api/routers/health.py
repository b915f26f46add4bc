"""GET /healthz: can the service do its job? No token needed."""

from __future__ import annotations

import os
import sqlite3

from fastapi import APIRouter, Depends, Response

from xdpctl.core.droplist import SHARED_DL_MAPS
from xdpctl.kernel import bpffs

from ..deps import Service, get_service
from ..models import DbHealth, Health, KernelHealth, TaskHealth

router = APIRouter(tags=["health"])

DB_WAIT = 2.0  # seconds to wait for a writer before reporting "busy"


def _kernel(svc: Service) -> KernelHealth:
    s = svc.settings
    pin = s.pin_dir
    try:
        on_bpffs = os.path.isdir(pin) and bpffs.fs_type(pin) == bpffs.BPF_FS_MAGIC
    except OSError as exc:
        return KernelHealth(ok=False, pin_dir=pin, bpffs=False, shared_maps=False, detail=str(exc))
    if not on_bpffs:
        why = "does not exist" if not os.path.isdir(pin) else "is not on a bpffs mount"
        return KernelHealth(ok=False, pin_dir=pin, bpffs=False, shared_maps=False,
                            detail=f"pin directory {pin} {why}")
    missing = [m for m in SHARED_DL_MAPS if not os.path.exists(os.path.join(s.shared_map_dir, m))]
    detail = None
    if missing:
        detail = f"shared maps missing ({', '.join(missing)}): POST /v1/restore rebuilds them"
    return KernelHealth(ok=not missing, pin_dir=pin, bpffs=True, shared_maps=not missing, detail=detail)


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
    failed = (svc.restore_report or {}).get("errors") or []
    restore = TaskHealth(last_run=svc.restore_ran, last_error=svc.restore_error,
                         detail="disabled" if not o.restore_on_start else
                         (f"{len(failed)} recorded attachments not restored: {'; '.join(failed)}" if failed else None))
    ok = kernel.ok and db.ok and svc.restore_error is None
    response.status_code = 200 if ok else 503
    return Health(status="ok" if ok else "degraded", kernel=kernel, db=db, revision=rev, expiry=expiry,
                  restore=restore)
