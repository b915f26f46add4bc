"""The OpenAPI document says what the service does.

FastAPI documents its own validation body (HTTPValidationError) for 422;
this service answers every error with ErrorBody. ``install`` rewrites the
generated document once: ErrorBody for 422 everywhere, 401/403 where a
token is needed, 413 where a body is read, and no HTTPValidationError.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .deps import Options, required_access

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_WHAT = {
    401: "missing or wrong bearer token",
    403: "a read-only token was sent for a change",
    413: "the request body is larger than the service accepts",
    422: "invalid input (the detail names the field or item)",
}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _error(code: int) -> dict[str, Any]:
    return {"description": _WHAT[code], "content": {"application/json": {"schema": ERROR_REF}}}


def _fix(path: str, method: str, op: dict[str, Any], options: Options) -> None:
    responses = op.setdefault("responses", {})
    responses["422"] = _error(422)
    access = required_access(method.upper(), path, options)
    if access is not None:
        responses.setdefault("401", _error(401))
    if access == "write":
        responses.setdefault("403", _error(403))
    if "requestBody" in op:
        responses.setdefault("413", _error(413))


def build(app: FastAPI, options: Options) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes, tags=app.openapi_tags)
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                _fix(path, method, item[method], options)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, app.state.xdpctl.options)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
