"""The dashboard's session cookie: a read-only credential for a browser.

A browser cannot send ``Authorization: Bearer`` when it opens /ui, so the
page's login (``/ui?token=...`` or the form at /ui) answers with a cookie
instead. The cookie holds no token: its value is an HMAC of a fixed label
keyed with the token given (the service's or the read-only one), so it
grants reads only (a change still needs the bearer header), is worthless
once the service's tokens change, and is HttpOnly and SameSite=Strict (no
script reads it, no other site's page sends it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import CookieError, SimpleCookie

from starlette.datastructures import Headers
from starlette.responses import Response

from .deps import Service, token_error

COOKIE = "xdpctl_read"
_LABEL = b"xdpctl dashboard read session"


def _value(token: str) -> str:
    return hmac.new(token.encode(), _LABEL, hashlib.sha256).hexdigest()


def token_reads(svc: Service, token: str) -> bool:
    """``token`` is one the service accepts for reads."""
    return token_error(f"Bearer {token}", svc, "read") is None


def set_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE, _value(token), httponly=True, samesite="strict", path="/")


def cookie_reads(headers: Headers, svc: Service) -> bool:
    """A request without an Authorization header whose session cookie was
    made from one of the service's tokens."""
    if "authorization" in headers or "cookie" not in headers:
        return False
    try:
        jar = SimpleCookie(headers["cookie"])
    except CookieError:
        return False
    given = jar[COOKIE].value if COOKIE in jar else ""
    tokens = [t for t in (svc.token, svc.read_token) if t]
    return bool(given) and any(secrets.compare_digest(given, _value(t)) for t in tokens)
