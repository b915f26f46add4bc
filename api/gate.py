"""The gate in front of every route: the token, then the body's size.

Both are checked before a byte of the body is read, so a request without
a token, or one that says it is larger than allowed, costs the service
nothing but its headers. A body that turns out larger than allowed while
it streams in is cut off with a 413 too. Answers that leave a body unread
close the connection.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import ApiError, Service, required_access, token_error
from .models import BIG_SETS
from .session import cookie_reads

TEXT_LIST_TYPES = ("text/plain",)
JSON_LIST_TYPES = ("application/json",)


def body_limit(method: str, path: str, content_type: str, svc: Service) -> tuple[int, str]:
    """(bytes, what they are) a request body may have: a list's members
    (PUT /v1/lists/{name}, text or JSON) and a rule-set file up to the
    big limit, any other body up to the JSON limit."""
    ctype = content_type.split(";")[0].strip().lower()
    if method == "PUT" and path.startswith("/v1/lists/") and ctype in TEXT_LIST_TYPES + JSON_LIST_TYPES:
        return svc.options.max_body, "a list's members"
    if ctype in TEXT_LIST_TYPES and method == "POST" and path == "/v1/apply":
        return svc.options.max_body, "a text/plain rule set"
    return svc.options.max_json_body, "a JSON body"


def too_large(limit: int, what: str) -> str:
    hint = f"; {BIG_SETS}" if what == "a JSON body" else ""
    return f"request body larger than {limit} bytes, the limit for {what}{hint}"


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


async def _answer(send: Send, err: ApiError, close: bool) -> None:
    body = json.dumps({"error": err.error, "detail": err.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (err.headers or {}).items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """ASGI middleware: authentication and body limits before the routes."""

    def __init__(self, app: ASGIApp, svc: Service) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        access = required_access(method, path, self.svc.options)
        if access is not None:
            err = token_error(headers.get("authorization"), self.svc, access)
            if err is not None and access == "read" and cookie_reads(headers, self.svc):
                err = None  # the dashboard's session cookie (api.session)
            if err is not None:
                await _answer(send, err, _has_body(headers))
                return
        limit, what = body_limit(method, path, headers.get("content-type", ""), self.svc)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or len(length) > 18 or int(length) > limit):
            await _answer(send, ApiError(413, "too_large", too_large(limit, what)), True)
            return
        await self._pass(scope, receive, send, limit, what)

    async def _pass(self, scope: Scope, receive: Receive, send: Send, limit: int, what: str) -> None:
        seen = 0
        cut_off = False

        async def counted() -> Message:
            nonlocal seen, cut_off
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    cut_off = True
                    raise HTTPException(413, too_large(limit, what))
            return msg

        async def closing(msg: Message) -> None:
            if msg["type"] == "http.response.start" and cut_off:
                msg = {**msg, "headers": [*msg.get("headers", []), (b"connection", b"close")]}
            await send(msg)

        await self.app(scope, counted, closing)
