"""Named lists: bulk rule sets (block-list files) replaced as a whole."""

from __future__ import annotations

import json

import pydantic
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from xdpctl.core import prefixes as px
from xdpctl.core.errors import cut
from xdpctl.core.rules.members import Members
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.validate import LIST_NAME_PATTERN, list_members
from xdpctl.core.views import ChangeView, ListChangeView, ListDetailView, ListsView

from ..deps import ApiError, Service, describe_errors, expected_revision, get_service, if_match
from ..models import PAGE_DEFAULT, PAGE_MAX, ListPrefixes, error_responses
from .common import etag

router = APIRouter(prefix="/v1", tags=["lists"])

ListName = Path(description="1-64 ASCII letters, digits, '-', '_' or '.', not starting with '.'",
                pattern=LIST_NAME_PATTERN, examples=["spamhaus-drop"])

SOURCE = "api"
_TEXT_TYPES = ("text/plain",)
_JSON_TYPES = ("application/json",)


@router.get("/lists", response_model=ListsView, responses=error_responses(422))
def get_lists(response: Response,
              stats: bool = Query(True, description="include hit counters summed over the members (reads every "
                                                    "member's counter: slow for lists of millions)"),
              svc: Service = Depends(get_service)) -> ListsView:
    """Every list: size, action, direction, digest, hits."""
    out = svc.read_set(lambda d: d.lists_view(with_stats=stats))
    etag(response, out.revision)
    return out


@router.get("/lists/{name}", response_model=ListDetailView, responses=error_responses(404, 422))
def get_list(response: Response, name: str = ListName,
             limit: int = Query(PAGE_DEFAULT, ge=1, le=PAGE_MAX, description=f"at most this many members "
                                                                             f"(at most {PAGE_MAX})"),
             after: int | None = Query(None, ge=0, le=2**32 - 1, description="only members with ids above "
                                                                            "this: the previous page's next"),
             stats: bool = Query(True), svc: Service = Depends(get_service)) -> ListDetailView:
    """One list and its members (as rules, with their ids and hits), a page
    at a time: ``next`` is the ``after`` of the next page."""
    out = svc.read_set(lambda d: d.list_detail(name, limit, with_stats=stats, after=after))
    etag(response, out.revision)
    return out


@router.get("/lists/{name}/members.txt", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "the list as a block-list file, one prefix per line"},
                       **error_responses(404, 422)})
def get_list_text(name: str = ListName, svc: Service = Depends(get_service)) -> StreamingResponse:
    """Every member of a list as a block-list file (one prefix per line,
    a `#` header), streamed: the body PUT /v1/lists/{name} takes back."""
    lines = svc.read_set(lambda d: d.list_text(name))
    first = next(lines)  # a missing list is a 404 before the stream starts
    return StreamingResponse(_chain_first(first, lines), media_type="text/plain; charset=utf-8")


def _chain_first(first: str, rest):
    yield first
    yield from rest


def _json_error(exc: pydantic.ValidationError) -> ApiError:
    detail, errors, index = describe_errors(exc.errors(), root="body")
    return ApiError(422, "validation_error", detail, errors=errors, index=index)


def _merge(field: str, query, body):
    if query is not None and body is not None and str(query) != (body if isinstance(body, str) else query):
        raise ApiError(422, "validation_error", f"{field} is given in the query and in the body with different "
                                                f"values; give it once", field=field)
    return body if body is not None else query


def _json_body(raw: bytes) -> tuple[ListPrefixes, list]:
    """A JSON list body: its other fields (validated by the model) and its
    items, left to the core's columnar parser (a million strings are parsed
    by the json module once; no model is made per item)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None  # not JSON: the model's parser names the error
    if not isinstance(doc, dict):
        try:
            ListPrefixes.model_validate_json(raw)
        except pydantic.ValidationError as exc:
            raise _json_error(exc) from None
        raise ApiError(422, "validation_error", "body: expected a JSON object")
    items = doc.get("prefixes")
    try:  # every field but the items: a missing or non-list prefixes too
        body = ListPrefixes.model_validate({**doc, "prefixes": []} if isinstance(items, list) else doc)
    except pydantic.ValidationError as exc:
        raise _json_error(exc) from None
    return body, items


def _parse_items(items: list) -> Members:
    try:
        return Members.parse_items(items)
    except px.PrefixItemError as exc:
        raise ApiError(422, "validation_error", f"{exc}; nothing was imported", field="prefixes",
                       value=cut(exc.value), index=exc.index) from None


def _parse_text(raw: bytes) -> Members:
    try:
        return Members.parse(raw)
    except px.PrefixError as exc:
        raise ApiError(422, "validation_error", f"body {exc}; nothing was imported", line=exc.lineno) from None


_PUT_BODY = {
    "requestBody": {
        "required": True,
        "description": "text/plain: a block-list file (one prefix per line; '#' and ';' start comments). "
                       "application/json: {\"prefixes\": [...]} with optional action, dst, ttl, comment, "
                       "revision.",
        "content": {
            "text/plain": {"schema": {"type": "string"},
                           "example": "# feed X\n198.51.100.0/24\n203.0.113.7 ; scanner\n2001:db8:bad::/48\n"},
            "application/json": {"schema": ListPrefixes.model_json_schema()},
        },
    }
}


@router.put("/lists/{name}", response_model=ListChangeView, openapi_extra=_PUT_BODY,
            responses={201: {"model": ListChangeView, "description": "the list was created"},
                       **error_responses(401, 412, 415, 422, 507)})
async def put_list(
    request: Request,
    response: Response,
    name: str = ListName,
    action: str | None = Query(None, description="deny (default) | allow"),
    dst: bool | None = Query(None, description="members match the destination address"),
    ttl: str | None = Query(None, description="the whole list expires after: 30s, 10m, 2h, 7d, 1h30m"),
    comment: str | None = Query(None),
    revision: int | None = Query(None, ge=0, le=2**63 - 1),
    allow_empty: bool = Query(False, description="an empty body empties (or creates) the list on purpose"),
    header_rev: int | None = Depends(if_match),
    svc: Service = Depends(get_service),
) -> ListChangeView:
    """Create or atomically replace a list: the kernel switches from the old
    members to the new ones in one sync; a bad line changes nothing."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype in _JSON_TYPES:
        body, items = await run_in_threadpool(_json_body, raw)  # megabytes: not on the event loop
        action = _merge("action", action, body.action)
        dst = _merge("dst", dst, body.dst)
        ttl = _merge("ttl", ttl, body.ttl)
        comment = _merge("comment", comment, body.comment)
        revision = _merge("revision", revision, body.revision)
        held = [items]  # a million strings: let go once they are columns, before the import's peak
        del items
        parse = lambda: _parse_items(held.pop())  # noqa: E731
    elif ctype in _TEXT_TYPES:
        parse = lambda: _parse_text(raw)  # noqa: E731
    else:
        got = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
        raise ApiError(415, "unsupported_media_type",
                       f"{got}: send a block list as text/plain or {{\"prefixes\": [...]}} as application/json")
    rev = expected_revision(revision, header_rev)

    def work() -> ListChangeView:
        prefixes = Members.of(list_members(parse(), allow_empty))  # the prefix objects go here

        def change(d: DropList) -> ListChangeView:
            return d.import_list(name, prefixes, action=action or "deny", dst=bool(dst), comment=comment,
                                 ttl=ttl, source=SOURCE, expected_revision=rev)

        return svc.rule_set(change)

    out = await run_in_threadpool(work)
    etag(response, out.revision)
    response.status_code = 201 if out.created else 200
    return out


@router.delete("/lists/{name}", response_model=ChangeView, responses=error_responses(401, 404, 412, 422))
def delete_list(response: Response, name: str = ListName,
                revision: int | None = Query(None, ge=0, le=2**63 - 1),
                header_rev: int | None = Depends(if_match),
                svc: Service = Depends(get_service)) -> ChangeView:
    """Remove a whole list."""
    rev = expected_revision(revision, header_rev)
    res = svc.rule_set(lambda d: d.remove_list(name, expected_revision=rev))
    etag(response, res.revision)
    return res
