"""Request and response bodies of the REST API (pydantic 2).

The models only shape JSON: every value a person can get wrong (prefixes,
actions, protocols, ports, durations, hooks, modes, policies) is checked by
the core (xdpctl.core), so the API and the CLI reject the same input with
the same words. Pydantic checks only types and JSON structure; request
models forbid unknown fields, so a misspelt field is a 422 instead of being
ignored.

Times are Unix timestamps in seconds (float); ``None`` means "never" or
"not yet".
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema


def _number_or_text(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a number or a string, not {type(value).__name__} {value!r}")
    return value


# Values the core parses itself (protocol, port, duration): a number or a
# string, handed over as they are.
NumberOrText = Annotated[int | str, PlainValidator(_number_or_text),
                         WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]})]
Proto = NumberOrText
Port = NumberOrText
Duration = NumberOrText
Revision = Annotated[int, Field(ge=0, le=2**63 - 1, description="the rule set revision this change expects")]
RuleId = Annotated[int, Field(ge=1, le=2**32 - 1)]
IfName = Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[^/\s:]+$",
                              description="interface name (at most 15 characters)", examples=["eth0"])]
NetnsName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\x00]+$",
                                 description="named network namespace (`ip netns`); omit for the host",
                                 examples=["blue"])]


PAGE_DEFAULT = 1000   # rules or list members per page unless a limit is given
PAGE_MAX = 10_000     # the largest limit
ITEMS_MAX = 10_000    # items of one JSON bulk request (big sets: a list)
BIG_SETS = ("send big sets of prefixes as a list: PUT /v1/lists/{name} with {\"prefixes\": [...]} as "
            "application/json or a block list as text/plain")
_BIG_SETS = f"at most {ITEMS_MAX} items; {BIG_SETS}"

# A rule names a prefix, or a protocol and a port (an L4 rule on any address).
_PREFIX_OR_L4 = {"anyOf": [
    {"required": ["prefix"], "properties": {"prefix": {"type": "string", "minLength": 1}}},
    {"required": ["proto", "port"], "properties": {"proto": {"not": {"type": "null"}},
                                                   "port": {"not": {"type": "null"}}}},
]}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
class FieldError(BaseModel):
    loc: str = Field(description="where: e.g. rules[2].prefix, query limit, header If-Match")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer."""

    error: str = Field(description="kind of error, e.g. validation_error, conflict, not_found, unauthorized")
    detail: str = Field(description="one line for people")
    field: str | None = Field(None, description="the request field the error is about")
    value: str | None = Field(None, description="the offending value as given (cut to 80 characters)")
    hint: str | None = Field(None, description="what to do about it")
    index: int | None = Field(None, description="bulk requests: index of the offending item (0-based)")
    line: int | None = Field(None, description="block-list bodies: line of the offending entry (1-based)")
    errors: list[FieldError] | None = Field(None, description="request validation: every offending field")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "validation_error", "index": 1,
         "detail": "rules[1]: '10.0.0.300' is not a valid IPv4 address: 300 is more than 255"},
        {"error": "conflict",
         "detail": "revision conflict: the rule set is at revision 7, the request expected 5; re-read and retry"},
    ]})


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error codes, all with ErrorBody."""
    what = {
        401: "missing or wrong bearer token",
        404: "no such rule, list, interface or namespace",
        409: "conflict: rule exists, program not attached by xdpctl",
        412: "revision mismatch: the rule set is not at the revision the request expected",
        415: "unsupported Content-Type",
        422: "invalid input (the detail names the field or item)",
        503: "the kernel or the state database is not usable",
        507: "a kernel map is full",
    }
    return {c: {"model": ErrorBody, "description": what.get(c, "error")} for c in codes}


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------
class RuleIn(_In):
    """One rule: a prefix (source, or destination with ``dst``), optionally
    narrowed to a protocol and destination port; or an L4 rule on any
    address (no prefix, ``proto`` and ``port``)."""

    prefix: str | None = Field(None, description="IPv4/IPv6 prefix or address; null or 'any' for an L4 rule "
                                                 "on any address", examples=["203.0.113.0/24"])
    action: str = Field("deny", description="deny | allow", examples=["deny"])
    dst: bool = Field(False, description="match the destination address instead of the source")
    proto: Proto | None = Field(None, description="tcp | udp | sctp (or 6, 17, 132); with port: an L4 rule")
    port: Port | None = Field(None, description="destination port 1-65535; with proto")
    ttl: Duration | None = Field(None, description="expire after: seconds, or 30s, 10m, 2h, 7d, 1h30m")
    comment: str | None = Field(None, description="free text, at most 512 characters")
    mgmt: bool = Field(False, description="a management prefix (allow rules only): never locked out by "
                                          "policy deny")

    model_config = ConfigDict(extra="forbid", json_schema_extra=_PREFIX_OR_L4)


class RulesAdd(_In):
    rules: list[RuleIn] = Field(min_length=1, max_length=ITEMS_MAX, description="applied all or nothing; "
                                                                                 + _BIG_SETS)
    update: bool = Field(False, description="existing rules with the same match get the new action, TTL "
                                            "and comment instead of a 409")
    revision: Revision | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "rules": [
            {"prefix": "203.0.113.0/24", "action": "deny", "comment": "scanner"},
            {"prefix": "203.0.113.8/29", "action": "allow"},
            {"prefix": None, "proto": "tcp", "port": 23, "action": "deny"},
            {"prefix": "2001:db8:dead::/48", "ttl": "2h"},
        ],
        "update": False,
        "revision": None,
    }]})


class PrefixesIn(_In):
    """Convenience form of POST /v1/rules: one action for many prefixes."""

    prefixes: list[str] = Field(default_factory=list, max_length=ITEMS_MAX,
                                description="prefixes or addresses; empty with proto and port: an L4 rule on "
                                            "any address; " + _BIG_SETS)
    dst: bool = False
    proto: Proto | None = None
    port: Port | None = None
    ttl: Duration | None = None
    comment: str | None = None
    update: bool = False
    revision: Revision | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prefixes": ["198.51.100.0/24", "2001:db8:bad::/48"], "ttl": "1h", "comment": "incident 42"},
    ]})


class AllowIn(PrefixesIn):
    mgmt: bool = Field(False, description="management prefixes: never locked out by policy deny")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prefixes": ["192.0.2.10"], "mgmt": True, "comment": "bastion"},
    ]})


class RuleMatch(_In):
    """Which rule to remove: the same match it was added with."""

    prefix: str | None = Field(None, examples=["203.0.113.0/24"])
    dst: bool = False
    proto: Proto | None = None
    port: Port | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra=_PREFIX_OR_L4)


class RulesDelete(_In):
    rules: list[RuleMatch] = Field(default_factory=list, max_length=ITEMS_MAX)
    ids: list[RuleId] = Field(default_factory=list, max_length=ITEMS_MAX)
    revision: Revision | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"rules": [{"prefix": "203.0.113.0/24"}], "ids": [17]}],
        "anyOf": [{"required": ["rules"], "properties": {"rules": {"minItems": 1}}},
                  {"required": ["ids"], "properties": {"ids": {"minItems": 1}}}],
    })


# ---------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------
class ListPrefixes(_In):
    """JSON form of PUT /v1/lists/{name}. The fields other than prefixes may
    also be given as query parameters (not both with different values)."""

    prefixes: list[str] = Field(description="the members, one prefix or address each; as many as the body "
                                            "limit for lists holds (XDPCTL_API_MAX_BODY, as for text/plain)")
    action: str | None = Field(None, description="deny (default) | allow")
    dst: bool | None = None
    ttl: Duration | None = None
    comment: str | None = None
    revision: Revision | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prefixes": ["198.51.100.0/24", "203.0.113.7"], "comment": "feed X"},
    ]})


# ---------------------------------------------------------------------------
# Policy, revision, maintenance
# ---------------------------------------------------------------------------
class PolicyIn(_In):
    policy: str = Field(description="allow: pass what no rule denies | deny: allow-list mode",
                        examples=["deny"])
    revision: Revision | None = None


# ---------------------------------------------------------------------------
# Attachments and status
# ---------------------------------------------------------------------------
class AttachIn(_In):
    ifname: IfName
    netns: NetnsName | None = None
    program: str = Field("counter", description="counter | droplist")
    hook: str = Field("xdp", description="xdp | tc-ingress | tc-egress")
    mode: str | None = Field(None, description="XDP only: generic | native | offload | auto (default)")
    force: bool = Field(False, description="replace a program xdpctl did not attach")
    revision: Revision | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"ifname": "eth0", "program": "droplist", "hook": "xdp", "mode": "native"},
        {"ifname": "veth1", "netns": "blue", "program": "counter", "hook": "tc-ingress"},
    ]})


class ProbeIn(_In):
    ifname: IfName
    netns: NetnsName | None = None
