"""Small helpers the routers share: ETags and bulk item validation."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

from fastapi import Response

from xdpctl.core.droplist import RuleSpec
from xdpctl.core.errors import ValidationError

from ..deps import ApiError

T = TypeVar("T")


def etag(response: Response, revision: int) -> None:
    """Expose the revision as an ETag, the value If-Match expects."""
    response.headers["ETag"] = f'"{revision}"'


def specs_of(field: str, items: Iterable[T], make: Callable[[T], RuleSpec], unique: bool = False) -> list[RuleSpec]:
    """Validate every item with the core before anything is written; the
    first bad one (or, with ``unique``, the first repeat of a match) is a
    422 naming its index."""
    out: list[RuleSpec] = []
    seen: dict[tuple, int] = {}
    for i, item in enumerate(items):
        try:
            s = make(item)
        except ValidationError as exc:
            raise ApiError(422, "validation_error", f"{field}[{i}]: {exc}", index=i) from None
        if unique:
            first = seen.setdefault(s.key(), i)
            if first != i:
                raise ApiError(422, "validation_error",
                               f"{field}[{i}]: {s.describe()} is the same match as {field}[{first}]", index=i)
        out.append(s)
    return out
