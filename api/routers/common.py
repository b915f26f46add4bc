"""Small helpers the routers share: ETags and bulk item errors."""

from __future__ import annotations

from typing import Callable, TypeVar

from fastapi import Response

from xdpctl.core.errors import render_text
from xdpctl.core.rules.validate import ItemError

from ..deps import ApiError

T = TypeVar("T")


def etag(response: Response, revision: int) -> None:
    """Expose the revision as an ETag, the value If-Match expects."""
    response.headers["ETag"] = f'"{revision}"'


def _words(text: str | None) -> str | None:
    """A core message or hint in REST's words (field names, REST calls)."""
    from ..app import rest_action, rest_field  # the app imports the routers

    return render_text(text, rest_field, rest_action) if text else None


def item_field(bulk: str, index: int, field: str | None, item_is: str | None = None) -> str:
    """Where a bulk item's error is, in the request body: ``rules[2].prefix``;
    for a list of plain values (``item_is`` names what each item is, e.g.
    prefixes: prefix) the item itself, ``prefixes[2]``, or the shared field."""
    if item_is is not None:
        return f"{bulk}[{index}]" if field in (None, item_is) else field
    return f"{bulk}[{index}]" + (f".{field}" if field else "")


def bulk(field: str, build: Callable[[], T], item_is: str | None = None) -> T:
    """Run the core's validation of a bulk request; a bad item is a 422
    naming its index (``rules[2]: ...``), with the core's field (as a body
    path), value and hint."""
    try:
        return build()
    except ItemError as exc:
        detail = f"{field}[{exc.index}]: {_words(exc.message)}"
        if exc.other is not None:
            detail += f" (see {field}[{exc.other}])"
        if exc.hint:
            detail += f"; {_words(exc.hint)}"
        raise ApiError(422, exc.kind, detail, field=item_field(field, exc.index, exc.field, item_is),
                       value=exc.value, hint=_words(exc.hint), index=exc.index) from None
