"""Drop-list rules: list, add (bulk, all or nothing), remove; block/allow."""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Depends, Path, Query, Response

from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.validate import RuleSpec, check_unique, each, spec, specs
from xdpctl.core.views import ChangeView, RulesView

from ..deps import Service, change, expected_revision, get_service, if_match
from ..models import PAGE_DEFAULT, PAGE_MAX, AllowIn, PrefixesIn, RuleIn, RuleMatch, RulesAdd, RulesDelete, error_responses
from .common import bulk, etag

router = APIRouter(prefix="/v1", tags=["rules"])

SOURCE = "api"
_ADDED = {200: {"model": ChangeView, "description": "only updates (update: true)"},
          **error_responses(401, 409, 412, 422, 507)}


def _change(response: Response, res: ChangeView, created_status: bool = False) -> ChangeView:
    etag(response, res.revision)
    if created_status:
        response.status_code = 201 if res.added else 200
    return res


@router.get("/rules", response_model=RulesView, responses=error_responses(404, 422))
def get_rules(
    response: Response,
    prefix: str | None = Query(None, description="only rules on exactly this prefix", examples=["10.0.0.0/8"]),
    list_name: str | None = Query(None, alias="list", description="members of this list instead of rules"),
    limit: int = Query(PAGE_DEFAULT, ge=1, le=PAGE_MAX, description=f"at most this many (at most {PAGE_MAX})"),
    after: int | None = Query(None, ge=0, le=2**32 - 1, description="only rules with ids above this: the "
                                                                   "previous page's next"),
    stats: bool = Query(True, description="include hit counters"),
    svc: Service = Depends(get_service),
) -> RulesView:
    """Individually managed rules with their hit counters (or a list's
    members), a page at a time: ``next`` is the ``after`` of the next page."""
    out = svc.read_set(lambda d: d.rules_view(with_stats=stats, list_name=list_name, limit=limit, prefix=prefix,
                                          after=after))
    etag(response, out.revision)
    return out


def _rule_spec(r: RuleIn) -> RuleSpec:
    return spec(r.prefix, action=r.action, dst=r.dst, proto=r.proto, port=r.port, comment=r.comment,
                ttl=r.ttl, mgmt=r.mgmt)


async def _add(svc: Service, build: Callable[[], list[RuleSpec]], items: int, update: bool,
               revision: int | None) -> ChangeView:
    """The rules ``build`` makes (it raises the 422s), added where
    deps.change runs them."""
    return await change(svc, lambda d: d.add(build(), expected_revision=revision, source=SOURCE, update=update),
                        items)


@router.post("/rules", status_code=201, response_model=ChangeView, responses=_ADDED)
async def add_rules(body: RulesAdd, response: Response, header_rev: int | None = Depends(if_match),
                    svc: Service = Depends(get_service)) -> ChangeView:
    """Add rules, all or nothing: one bad item (422, naming its index), an
    existing rule without ``update`` (409) or a revision mismatch (412) and
    nothing changes."""
    rev = expected_revision(body.revision, header_rev)

    def build() -> list[RuleSpec]:
        out = each(body.rules, _rule_spec)
        check_unique(out)
        return out

    res = await _add(svc, lambda: bulk("rules", build), len(body.rules), body.update, rev)
    return _change(response, res, created_status=True)


def _prefix_specs(body: PrefixesIn, action: str, mgmt: bool = False) -> list[RuleSpec]:
    return bulk("prefixes", lambda: specs(body.prefixes, action=action, dst=body.dst, proto=body.proto,
                                          port=body.port, comment=body.comment, ttl=body.ttl, mgmt=mgmt),
                item_is="prefix")


@router.post("/block", status_code=201, response_model=ChangeView, responses=_ADDED)
async def block(body: PrefixesIn, response: Response, header_rev: int | None = Depends(if_match),
                svc: Service = Depends(get_service)) -> ChangeView:
    """Deny traffic from prefixes (to them with ``dst``; to a port with
    ``proto`` and ``port``)."""
    rev = expected_revision(body.revision, header_rev)
    res = await _add(svc, lambda: _prefix_specs(body, "deny"), len(body.prefixes), body.update, rev)
    return _change(response, res, created_status=True)


@router.post("/allow", status_code=201, response_model=ChangeView, responses=_ADDED)
async def allow(body: AllowIn, response: Response, header_rev: int | None = Depends(if_match),
                svc: Service = Depends(get_service)) -> ChangeView:
    """Allow prefixes: a hole in a deny (longest prefix wins), or admission
    under policy deny."""
    rev = expected_revision(body.revision, header_rev)
    res = await _add(svc, lambda: _prefix_specs(body, "allow", body.mgmt), len(body.prefixes), body.update, rev)
    return _change(response, res, created_status=True)


@router.delete("/rules/{id}", response_model=ChangeView, responses=error_responses(401, 404, 412, 422))
async def delete_rule(
    response: Response,
    id: int = Path(ge=1, le=2**32 - 1, description="rule id"),  # noqa: A002 (the path says id)
    revision: int | None = Query(None, ge=0, le=2**63 - 1),
    header_rev: int | None = Depends(if_match),
    svc: Service = Depends(get_service),
) -> ChangeView:
    """Remove one individually managed rule by id."""
    rev = expected_revision(revision, header_rev)
    return _change(response, await change(svc, lambda d: d.remove(ids=[id], expected_revision=rev), 1))


def _match_spec(m: RuleMatch) -> RuleSpec:
    return spec(m.prefix, dst=m.dst, proto=m.proto, port=m.port)


@router.post("/rules/delete", response_model=ChangeView, responses=error_responses(401, 404, 409, 412, 422))
async def delete_rules(body: RulesDelete, response: Response, header_rev: int | None = Depends(if_match),
                       svc: Service = Depends(get_service)) -> ChangeView:
    """Remove rules by match and/or by id, all or nothing."""
    rev = expected_revision(body.revision, header_rev)

    def remove(d: DropList) -> ChangeView:
        matches = bulk("rules", lambda: each(body.rules, _match_spec))
        return d.remove(matches, ids=list(body.ids), expected_revision=rev)

    return _change(response, await change(svc, remove, len(body.rules) + len(body.ids)))
