"""The operator's pages: the live dashboard at /ui and the API docs at /docs.

Everything they load ships in the package (api/static: the page, uPlot,
Swagger UI), so both work on a host without internet.

    GET  /v1/dashboard   the one document the page polls (core.dashboard)
    GET  /ui             the page; protected like every read (bearer header
                         or the session cookie of api.session), else a login
                         form (401)
    GET  /ui?token=T     checks T, sets the session cookie, redirects to /ui
    POST /ui/login       the login form (field ``token``), the same
    GET  /docs           Swagger UI from /static/vendor/swagger-ui
    /static/...          the static files (open: nothing in them is secret)
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from xdpctl.core.dashboard import dashboard
from xdpctl.core.views import DashboardView

from ..deps import Service, get_service, token_error
from ..models import error_responses
from ..session import cookie_reads, set_cookie, token_reads

STATIC = Path(__file__).resolve().parent.parent / "static"
SWAGGER = "/static/vendor/swagger-ui"
# The page loads its own files and talks to this service only.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
               "frame-ancestors 'none'; form-action 'self'")
NO_STORE = {"Cache-Control": "no-store", "Content-Security-Policy": PAGE_POLICY}

router = APIRouter(prefix="/v1", tags=["stats"])
pages = APIRouter(include_in_schema=False)


@router.get("/dashboard", response_model=DashboardView, responses=error_responses(401))
def get_dashboard(request: Request, svc: Service = Depends(get_service)) -> DashboardView:
    """Counters of every hook, what runs where, the busiest rules, lists,
    the load balancer's VIPs, backends and counters, and whether fleet mode
    is configured: what the page at /ui shows, in one read."""
    fleet = getattr(request.app.state, "fleet", None) is not None
    return svc.run(lambda ctx: dashboard(ctx, fleet=fleet))


def _login_page(message: str) -> HTMLResponse:
    text = (STATIC / "ui" / "login.html").read_text().replace("{message}", html.escape(message))
    return HTMLResponse(text, status_code=401, headers=NO_STORE)


def _logged_in(svc: Service, token: str) -> Response:
    if not token_reads(svc, token):
        return _login_page("That token is not one of the service's tokens.")
    response = RedirectResponse("/ui", status_code=303, headers=NO_STORE)
    set_cookie(response, token)
    return response


@pages.get("/ui")
def ui(request: Request, token: str | None = None, svc: Service = Depends(get_service)) -> Response:
    if token is not None:
        return _logged_in(svc, token)
    allowed = (not svc.options.protect_reads or cookie_reads(request.headers, svc)
               or token_error(request.headers.get("authorization"), svc, "read") is None)
    if not allowed:
        return _login_page("Reads need a token: the service's token or its read-only token.")
    return FileResponse(STATIC / "ui" / "index.html", headers=NO_STORE)


@pages.post("/ui/login")
async def login(request: Request, svc: Service = Depends(get_service)) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    return _logged_in(svc, (form.get("token") or [""])[0].strip())


@pages.get("/docs")
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=request.app.openapi_url, title=f"{request.app.title} API",
                               swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
                               swagger_css_url=f"{SWAGGER}/swagger-ui.css",
                               swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png")


def install(app: FastAPI) -> None:
    """The pages and the static files (the app is made with docs_url=None)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages)
