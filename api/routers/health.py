"""GET /healthz: can the service do its job? No token needed."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends, Response

from xdpctl.core.errors import render_text
from xdpctl.core.rules.tables import KernelHealth, kernel_health
from xdpctl.core.views import DbHealthView, HealthView, KernelHealthView, TaskHealthView

from ..deps import Service, get_service

router = APIRouter(tags=["health"])

DB_WAIT = 2.0  # seconds to wait for a writer before reporting "busy"


def _kernel(h: KernelHealth) -> KernelHealthView:
    from ..app import rest_action, rest_field  # the app imports this module first

    detail = render_text(h.detail, rest_field, rest_action) if h.detail else None
    return KernelHealthView(ok=h.ok, pin_dir=h.pin_dir, bpffs=h.bpffs,
                            shared_maps=h.bpffs and not h.missing_maps, kernel_revision=h.kernel_revision,
                            db_revision=h.db_revision, in_sync=h.in_sync, host_table=h.host_table,
                            host_table_dead_slots=h.host_table_dead_slots,
                            host_table_overflowed_buckets=h.host_table_overflowed_buckets,
                            host_table_rebuild_at=h.host_table_rebuild_at, detail=detail)


def _db(svc: Service) -> tuple[DbHealthView, int | None, KernelHealth]:
    """The database and, while no change runs, the kernel's revision
    against it (mid-change the two differ by design)."""
    path = svc.settings.db_path
    if not svc.lock.acquire(timeout=DB_WAIT):
        return (DbHealthView(ok=True, path=path, detail="busy: a change is being applied"), svc.last_revision,
                kernel_health(svc.ctx))
    try:
        svc.settle()  # a change's deferred catch-up is part of that change
        rev = svc.ctx.state.revision
        svc.last_revision = rev
        return DbHealthView(ok=True, path=path), rev, kernel_health(svc.ctx, rev)
    except (sqlite3.Error, OSError) as exc:
        return DbHealthView(ok=False, path=path, detail=f"{type(exc).__name__}: {exc}"), None, kernel_health(svc.ctx)
    finally:
        svc.lock.release()


@router.get("/healthz", response_model=HealthView,
            responses={503: {"model": HealthView, "description": "degraded"}})
def healthz(response: Response, svc: Service = Depends(get_service)) -> HealthView:
    """Kernel side (bpffs, pin directory, shared maps, the kernel at the
    database's revision), database, revision,
    and the background tasks. 200 when everything works, 503 otherwise."""
    db, rev, kh = _db(svc)
    kernel = _kernel(kh)
    o = svc.options
    expiry = TaskHealthView(interval=o.expire_interval or None, last_run=svc.expiry_last_run,
                        last_error=svc.expiry_last_error,
                        detail=None if o.expire_interval else "disabled")
    failed = svc.restore_report.errors if svc.restore_report else []
    restore = TaskHealthView(last_run=svc.restore_ran, last_error=svc.restore_error,
                         detail="disabled" if not o.restore_on_start else
                         (f"{len(failed)} recorded attachments not restored: {'; '.join(failed)}" if failed else None))
    ok = kernel.ok and db.ok and svc.restore_error is None
    response.status_code = 200 if ok else 503
    return HealthView(status="ok" if ok else "degraded", kernel=kernel, db=db, revision=rev, expiry=expiry,
                  restore=restore)
