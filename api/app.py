"""The xdpctl REST service: application factory and server entry point.

    create_app(settings, token)        a FastAPI app over one core Context
    serve(settings, host, port, token) run it with uvicorn (loopback by default)

At start the service checks the kernel side (root, bpffs, pin directory),
reconciles the kernel to the state database (as `xdpctl restore` does) and
starts the expiry task; at shutdown it stops the task and closes the
database. Run it directly with ``python -m xdpctl.api.app --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import logging
import time
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from xdpctl import __version__
from xdpctl.core import arenas
from xdpctl.config import Settings, load_settings
from xdpctl.core.context import Context
from xdpctl.core.lb.health import HealthThread
from xdpctl.core.restore import restore as core_restore
from xdpctl.core.errors import ValidationError, XdpctlError
from xdpctl.core.fleet.agent import Agent

from . import metrics, openapi
from .checkpoint import Checkpointer
from .deps import ApiError, Options, Service, ServiceContext, describe_errors, load_token, require_token
from .gate import Gate
from .routers import attachments, fleet, health, lb, lists, ops, policy, rules, stats, system, ui

log = logging.getLogger("xdpctl.api")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8077

DESCRIPTION = """\
Control XDP and TC classifiers: protocol counters and drop lists.

* Every request that changes state needs `Authorization: Bearer <token>`.
* Every change answers with the new `revision` (also as an `ETag`). Send it
  back as `If-Match: <revision>` or a `revision` field to apply a change only
  if nothing changed in between (412 otherwise).
* Bulk changes are all or nothing; a bad item is a 422 naming its index.
* Errors are `{"error": kind, "detail": one line}`.
"""


# Operations a core error's hint may name ({action:x}), as REST calls.
REST_ACTIONS = {
    "restore": "POST /v1/restore",
    "expire": "POST /v1/expire",
    "detach": "DELETE /v1/attachments",
    "attach": "POST /v1/attachments",
}


def rest_field(field: str) -> str:
    return field


def rest_action(action: str) -> str:
    return REST_ACTIONS.get(action, action)


_STATUS_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
                 415: "unsupported_media_type", 422: "validation_error"}


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None,
           **extra: object) -> JSONResponse:
    body: dict[str, object] = {"error": error, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(XdpctlError)
    async def core_error(request: Request, exc: XdpctlError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        body = exc.as_dict(rest_field, rest_action)
        return _error(exc.http_status, body.pop("error"), body.pop("detail"), **body)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = list(exc.errors())
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if (ctype != "application/json" and len(errs) == 1 and tuple(errs[0].get("loc", ())) == ("body",)
                and errs[0].get("type") == "model_attributes_type"):
            got = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
            return _error(422, "validation_error",
                          f"body: expected a JSON object sent as application/json ({got})")
        detail, errors, index = describe_errors(errs)
        return _error(422, "validation_error", detail, errors=errors, index=index)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            return _error(422, "validation_error", "body: not valid JSON (or not UTF-8)")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        return _error(exc.status_code, _STATUS_KINDS.get(exc.status_code, "http_error"), detail,
                      getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}: {exc}); see the service log")


# ---------------------------------------------------------------------------
# Start, background expiry, stop
# ---------------------------------------------------------------------------
def _start(svc: Service) -> None:
    with svc.lock:
        svc.ctx.kernel_ready()  # no root or no bpffs: the service cannot work, do not start
        if not svc.options.restore_on_start:
            return
        svc.restore_ran = time.time()
        try:
            rep = core_restore(svc.ctx)
        except XdpctlError as exc:
            svc.restore_error = str(exc)
            log.error("restore at start failed: %s", exc)
            return
        svc.restore_report = rep
        for line in rep.log:
            log.info("restore: %s", line)


def _expire_once(svc: Service) -> None:
    def run(d):
        removed = d.expire().removed
        if removed:
            log.info("expired %d rules: %s", len(removed), ", ".join(str(r.id) for r in removed[:20]))

    svc.droplist(run)


async def _expiry_loop(svc: Service) -> None:
    interval = svc.options.expire_interval
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(_expire_once, svc)
            svc.expiry_last_error = None
        except Exception as exc:  # keep reaping; report in /healthz
            svc.expiry_last_error = f"{type(exc).__name__}: {exc}"
            log.warning("expiry failed: %s", svc.expiry_last_error)
        svc.expiry_last_run = time.time()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    svc: Service = app.state.xdpctl
    await run_in_threadpool(_start, svc)
    svc.checkpointer = Checkpointer(svc.settings.db_path, delay=svc.options.checkpoint_delay,
                                    idle=svc.options.checkpoint_idle)
    svc.checkpointer.start()
    # Everything made so far (modules, routes, schemas) lives as long as the
    # process: out of the collector's sight, a full collection walks only
    # what requests leave behind and pauses a request for far less.
    gc.collect()
    gc.freeze()
    task = None
    if svc.options.expire_interval > 0:
        task = asyncio.create_task(_expiry_loop(svc), name="xdpctl-expiry")
    checks = None
    if svc.options.lb_health_tick > 0:
        checks = HealthThread(ServiceContext(svc.settings), svc.options.lb_health_tick)
        checks.start()
    try:
        yield
    finally:
        if checks is not None:
            await run_in_threadpool(checks.stop)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(svc.close)
        await run_in_threadpool(svc.checkpointer.stop)


# ---------------------------------------------------------------------------
# The factory
# ---------------------------------------------------------------------------
def create_app(
    settings: Settings | None = None,
    token: str | None = None,
    *,
    protect_reads: bool | None = None,
    protect_metrics: bool | None = None,
    expire_interval: float | None = None,
    restore_on_start: bool = True,
    rule_metrics_limit: int = 100,
    list_hit_metrics: bool = False,
    lb_health_tick: float = 0.1,
    checkpoint_delay: float = 1.0,
    checkpoint_idle: float = 5.0,
) -> FastAPI:
    """A FastAPI app over the core.

    token: the bearer token; default ``settings.api_token``
      ($XDPCTL_API_TOKEN), else the file ``settings.api_token_file`` names,
      else the file ``api-token`` in the state directory (generated, mode
      0600, if missing). ``settings.api_read_token`` may only read.
    protect_reads / protect_metrics: require a token for GETs under /v1 /
      for /metrics (default: ``settings.api_protect_reads`` /
      ``settings.api_protect_metrics``, both true).
    expire_interval: seconds between expiry runs (default
      ``settings.api_expire_interval``); 0 disables the task.
    restore_on_start: reconcile the kernel to the database at start.
    rule_metrics_limit: most rules exported in xdpctl_rule_hits_total.
    list_hit_metrics: export hits per list too (costly with large lists).
    lb_health_tick: seconds between the load balancer's health rounds (each
      VIP is checked at its own interval); 0 disables the checks.
    checkpoint_delay / checkpoint_idle: seconds after a change until the
      state database's log is checkpointed / after the last change until
      it is emptied (api.checkpoint).
    """
    settings = settings or load_settings()
    if expire_interval is None:
        expire_interval = settings.api_expire_interval
    if expire_interval < 0:
        raise ValueError("expire_interval must be >= 0")
    options = Options(
        protect_reads=settings.api_protect_reads if protect_reads is None else protect_reads,
        protect_metrics=settings.api_protect_metrics if protect_metrics is None else protect_metrics,
        expire_interval=expire_interval,
        restore_on_start=restore_on_start,
        rule_metrics_limit=rule_metrics_limit,
        list_hit_metrics=list_hit_metrics,
        lb_health_tick=lb_health_tick,
        checkpoint_delay=checkpoint_delay,
        checkpoint_idle=checkpoint_idle,
        max_body=settings.api_max_body,
        max_json_body=settings.api_max_json_body,
    )
    value, source = load_token(settings, token)
    svc = Service(settings, value, source, options, read_token=settings.api_read_token)
    svc.registry = metrics.make_registry(svc)

    app = FastAPI(
        title="xdpctl",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # /docs from the package's own Swagger UI (routers.ui), /redoc off
        redoc_url=None,
        openapi_tags=[
            {"name": "rules", "description": "drop-list rules, added and removed individually"},
            {"name": "lists", "description": "bulk lists (block-list files), replaced as a whole"},
            {"name": "policy", "description": "default policy and revision"},
            {"name": "attachments", "description": "classifiers on interfaces"},
            {"name": "stats", "description": "counters"},
            {"name": "maintenance", "description": "restore and expiry"},
            {"name": "load balancer", "description": "VIPs, backends and their counters"},
        ],
    )
    app.state.xdpctl = svc
    app.add_middleware(Gate, svc=svc)
    install_error_handlers(app)
    auth = [Depends(require_token)]
    for r in (rules.router, lists.router, policy.router, attachments.router, stats.router, system.router,
              fleet.router, lb.router, ops.router, ui.router):
        app.include_router(r, dependencies=auth)
    ui.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    openapi.install(app)
    return app


def _agent(settings: Settings, node: str) -> Agent:
    """This host's fleet agent, run beside the service (its own context)."""
    from xdpctl.core.fleet.mode import etcd_options

    opts = etcd_options(settings)
    if opts is None:
        raise ValidationError("the agent needs fleet mode", field="etcd", hint="give {field:etcd} URL")
    return Agent(Context(settings), opts, settings.etcd_prefix, node, log=logging.getLogger("xdpctl.agent").info)


def serve(settings: Settings | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          token: str | None = None, agent_node: str | None = None, **options: object) -> None:
    """Run the service with uvicorn until SIGINT/SIGTERM (blocks); with
    ``agent_node``, this host's fleet agent runs in the same process."""
    arenas.limit()  # before the server's threads (xdpctl.core.arenas)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings or load_settings()
    agent = _agent(settings, agent_node) if agent_node else None
    app = create_app(settings, token, **options)  # type: ignore[arg-type]
    svc: Service = app.state.xdpctl
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning("listening on %s, not on loopback: the API is reachable from the network "
                    "(%s)", host, "reads need a token" if svc.options.protect_reads else "GETs need no token")
    log.info("xdpctl API on http://%s:%d (docs at /docs); token from %s", host, port, svc.token_source)
    import uvicorn

    if agent is not None:
        agent.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                    loop="uvloop", http="httptools")
    finally:
        if agent is not None:
            agent.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m xdpctl.api.app", description="Run the xdpctl REST service.")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--pin-dir", default=None)
    p.add_argument("--state-dir", default=None)
    p.add_argument("--open-reads", action="store_true", help="GETs under /v1 need no token")
    p.add_argument("--open-metrics", action="store_true", help="/metrics needs no token")
    p.add_argument("--expire-interval", type=float, default=None, help="seconds between expiry runs (0: off)")
    p.add_argument("--no-restore", action="store_true", help="do not reconcile the kernel at start")
    a = p.parse_args(argv)
    try:
        s = load_settings()
    except XdpctlError as exc:
        p.error(str(exc))
    if a.pin_dir:
        s.pin_dir = a.pin_dir
    if a.state_dir:
        s.state_dir = a.state_dir
    serve(s, a.host, a.port, protect_reads=False if a.open_reads else None,
          protect_metrics=False if a.open_metrics else None,
          expire_interval=a.expire_interval, restore_on_start=not a.no_restore)


if __name__ == "__main__":
    main()
