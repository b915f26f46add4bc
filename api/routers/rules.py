"""Drop-list rules: list, add (bulk, all or nothing), remove; block/allow."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Response

from xdpctl.core.droplist import ChangeResult, DropList, RuleSpec, spec

from ..deps import ApiError, Service, expected_revision, get_service, if_match
from ..models import (AllowIn, ChangeOut, PrefixesIn, RuleIn, RuleMatch, RulesAdd, RulesDelete, RulesOut,
                      error_responses)
from .common import etag, specs_of

router = APIRouter(prefix="/v1", tags=["rules"])

SOURCE = "api"


def _change(response: Response, res: ChangeResult, created_status: bool = False) -> ChangeOut:
    etag(response, res.revision)
    if created_status:
        response.status_code = 201 if res.added else 200
    return ChangeOut.model_validate(res)


@router.get("/rules", response_model=RulesOut, responses=error_responses(404, 422))
def get_rules(
    response: Response,
    prefix: str | None = Query(None, description="only rules on exactly this prefix", examples=["10.0.0.0/8"]),
    list_name: str | None = Query(None, alias="list", description="members of this list instead of rules"),
    limit: int | None = Query(None, ge=1, le=10_000_000, description="at most this many"),
    stats: bool = Query(True, description="include hit counters"),
    svc: Service = Depends(get_service),
) -> RulesOut:
    """Individually managed rules with their hit counters (or a list's members)."""
    if prefix is not None and list_name is not None:
        raise ApiError(422, "validation_error", "give either prefix or list, not both")

    def read(d: DropList) -> RulesOut:
        rules = d.rules(with_stats=stats, list_name=list_name, limit=limit, prefix=prefix)
        return RulesOut(revision=d.revision(), policy=d.policy(),
                        rules=[r.as_dict() for r in rules])

    out = svc.droplist(read)
    etag(response, out.revision)
    return out


def _rule_spec(r: RuleIn) -> RuleSpec:
    return spec(r.prefix, action=r.action, dst=r.dst, proto=r.proto, port=r.port, comment=r.comment,
                ttl=r.ttl, mgmt=r.mgmt)


def _add(svc: Service, specs: list[RuleSpec], update: bool, revision: int | None) -> ChangeResult:
    return svc.droplist(lambda d: d.add(specs, expected_revision=revision, source=SOURCE, update=update))


@router.post("/rules", status_code=201, response_model=ChangeOut,
             responses={200: {"model": ChangeOut, "description": "only updates (update: true)"},
                        **error_responses(401, 409, 422, 507)})
def add_rules(body: RulesAdd, response: Response, header_rev: int | None = Depends(if_match),
              svc: Service = Depends(get_service)) -> ChangeOut:
    """Add rules, all or nothing: one bad item (422, naming its index), an
    existing rule without ``update`` or a revision mismatch (409) and
    nothing changes."""
    rev = expected_revision(body.revision, header_rev)
    specs = specs_of("rules", body.rules, _rule_spec, unique=True)
    return _change(response, _add(svc, specs, body.update, rev), created_status=True)


def _prefix_specs(body: PrefixesIn, action: str, mgmt: bool = False) -> list[RuleSpec]:
    if not body.prefixes and body.proto is None and body.port is None:
        raise ApiError(422, "validation_error",
                       "prefixes: give at least one prefix, or proto and port for an L4 rule on any address")
    items: list[str | None] = list(body.prefixes) or [None]
    return specs_of("prefixes", items, lambda p: spec(
        p, action=action, dst=body.dst, proto=body.proto, port=body.port, comment=body.comment,
        ttl=body.ttl, mgmt=mgmt), unique=True)


@router.post("/block", status_code=201, response_model=ChangeOut,
             responses={200: {"model": ChangeOut, "description": "only updates (update: true)"},
                        **error_responses(401, 409, 422, 507)})
def block(body: PrefixesIn, response: Response, header_rev: int | None = Depends(if_match),
          svc: Service = Depends(get_service)) -> ChangeOut:
    """Deny traffic from prefixes (to them with ``dst``; to a port with
    ``proto`` and ``port``)."""
    rev = expected_revision(body.revision, header_rev)
    specs = _prefix_specs(body, "deny")
    return _change(response, _add(svc, specs, body.update, rev), created_status=True)


@router.post("/allow", status_code=201, response_model=ChangeOut,
             responses={200: {"model": ChangeOut, "description": "only updates (update: true)"},
                        **error_responses(401, 409, 422, 507)})
def allow(body: AllowIn, response: Response, header_rev: int | None = Depends(if_match),
          svc: Service = Depends(get_service)) -> ChangeOut:
    """Allow prefixes: a hole in a deny (longest prefix wins), or admission
    under policy deny."""
    rev = expected_revision(body.revision, header_rev)
    specs = _prefix_specs(body, "allow", body.mgmt)
    return _change(response, _add(svc, specs, body.update, rev), created_status=True)


@router.delete("/rules/{id}", response_model=ChangeOut, responses=error_responses(401, 404, 409, 422))
def delete_rule(
    response: Response,
    id: int = Path(ge=1, le=2**32 - 1, description="rule id"),  # noqa: A002 (the path says id)
    revision: int | None = Query(None, ge=0, le=2**63 - 1),
    header_rev: int | None = Depends(if_match),
    svc: Service = Depends(get_service),
) -> ChangeOut:
    """Remove one individually managed rule by id."""
    rev = expected_revision(revision, header_rev)
    return _change(response, svc.droplist(lambda d: d.remove(ids=[id], expected_revision=rev)))


def _match_spec(m: RuleMatch) -> RuleSpec:
    return spec(m.prefix, dst=m.dst, proto=m.proto, port=m.port)


@router.post("/rules/delete", response_model=ChangeOut, responses=error_responses(401, 404, 409, 422))
def delete_rules(body: RulesDelete, response: Response, header_rev: int | None = Depends(if_match),
                 svc: Service = Depends(get_service)) -> ChangeOut:
    """Remove rules by match and/or by id, all or nothing."""
    rev = expected_revision(body.revision, header_rev)
    specs = specs_of("rules", body.rules, _match_spec)
    return _change(response, svc.droplist(lambda d: d.remove(specs, ids=list(body.ids), expected_revision=rev)))
