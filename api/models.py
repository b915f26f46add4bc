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
        409: "conflict: revision mismatch, rule exists, program not attached by xdpctl",
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


class RulesAdd(_In):
    rules: list[RuleIn] = Field(min_length=1, description="applied all or nothing")
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

    prefixes: list[str] = Field(default_factory=list, description="prefixes or addresses; empty with proto "
                                                                  "and port: an L4 rule on any address")
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


class RulesDelete(_In):
    rules: list[RuleMatch] = Field(default_factory=list)
    ids: list[RuleId] = Field(default_factory=list)
    revision: Revision | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"rules": [{"prefix": "203.0.113.0/24"}], "ids": [17]},
    ]})


class RuleOut(_Out):
    id: int
    prefix: str | None = Field(description="null: an L4 rule on any address")
    family: int = Field(description="4, 6, or 0 for an L4 rule on any address")
    dir: str = Field(description="src | dst")
    action: str = Field(description="deny | allow")
    proto: str | None
    port: int | None
    comment: str | None
    source: str | None = Field(description="who added it: api, cli, or a list's source")
    created: float
    expires: float | None
    mgmt: bool
    list: str | None = Field(None, description="the list this rule is a member of")
    packets: int = 0
    bytes: int = 0
    last_hit: float | None = None


class RulesOut(BaseModel):
    revision: int
    policy: str
    rules: list[RuleOut]


class ChangeOut(_Out):
    """What a change did. ``revision`` is the rule set's new revision."""

    revision: int
    added: list[RuleOut] = Field(default_factory=list)
    updated: list[RuleOut] = Field(default_factory=list)
    removed: list[RuleOut] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------
class ListOut(_Out):
    name: str
    count: int
    dir: str
    action: str
    comment: str | None
    source: str | None
    created: float
    expires: float | None
    id_base: int = Field(description="members have rule ids id_base .. id_base+count-1")
    sha256: str | None = Field(None, description="digest of the stored members")
    packets: int = 0
    bytes: int = 0


class ListsOut(BaseModel):
    revision: int
    lists: list[ListOut]


class ListDetailOut(BaseModel):
    revision: int
    list: ListOut
    members: list[RuleOut]
    truncated: bool = Field(description="true when limit cut the member list short")


class ListPrefixes(_In):
    """JSON form of PUT /v1/lists/{name}. The fields other than prefixes may
    also be given as query parameters (not both with different values)."""

    prefixes: list[str]
    action: str | None = Field(None, description="deny (default) | allow")
    dst: bool | None = None
    ttl: Duration | None = None
    comment: str | None = None
    revision: Revision | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prefixes": ["198.51.100.0/24", "203.0.113.7"], "comment": "feed X"},
    ]})


class ListChangeOut(BaseModel):
    revision: int
    created: bool = Field(description="true: the list is new; false: it replaced a list of that name")
    list: ListOut
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# Policy, revision, maintenance
# ---------------------------------------------------------------------------
class PolicyIn(_In):
    policy: str = Field(description="allow: pass what no rule denies | deny: allow-list mode",
                        examples=["deny"])
    revision: Revision | None = None


class PolicyOut(BaseModel):
    policy: str
    revision: int


class RevisionOut(BaseModel):
    revision: int


class RestoreOut(BaseModel):
    revision: int
    map_entries_written: int
    map_entries_deleted: int
    errors: list[str]
    log: list[str]


class ExpireOut(BaseModel):
    revision: int
    removed: list[RuleOut]


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


class AttachOut(BaseModel):
    netns: str | None
    ifname: str
    hook: str
    program: str
    mode: str | None
    prog_id: int
    root_id: int
    replaced: bool = Field(description="true: the stage was already attached and was replaced atomically")
    notes: list[str]
    revision: int


class Detached(BaseModel):
    netns: str | None
    ifname: str
    hook: str
    program: str


class DetachOut(BaseModel):
    removed: list[Detached]
    revision: int


class StageStatus(BaseModel):
    slot: int
    program: str
    id: int
    tag: str | None


class HookStatus(BaseModel):
    hook: str
    mode: str | None
    id: int = Field(description="id of the program attached to the hook")
    name: str | None
    tag: str | None
    owner: str = Field(description="xdpctl | other")
    pref: int | None = None
    stages: list[StageStatus]


class InterfaceStatus(BaseModel):
    netns: str | None
    ifname: str
    ifindex: int
    up: bool
    driver: str | None
    hooks: list[HookStatus]


class AttachmentRecord(BaseModel):
    netns: str | None
    ifname: str
    hook: str
    program: str
    mode: str | None


class StatusOut(BaseModel):
    revision: int
    interfaces: list[InterfaceStatus] = Field(description="what the kernel runs")
    recorded: list[AttachmentRecord] = Field(description="the desired state (what restore re-attaches)")
    unreachable: list[str] = Field(default_factory=list,
                                   description="namespaces with pinned hooks that no longer exist")


# ---------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------
class Count(BaseModel):
    packets: int
    bytes: int


class ProtoCount(BaseModel):
    l3: str
    l4: str
    packets: int
    bytes: int


class HookStats(BaseModel):
    netns: str | None
    ifname: str
    hook: str
    total: Count = Field(description="every frame the counter stage saw (VLAN slots not added again)")
    protocols: list[ProtoCount] = Field(description="l3 'vlan' rows count tagged frames in addition")
    verdicts: dict[str, Count] = Field(description="drop-list verdicts by reason")


class StatsOut(BaseModel):
    hooks: list[HookStats]


# ---------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------
class KernelHealth(BaseModel):
    ok: bool
    pin_dir: str
    bpffs: bool
    shared_maps: bool = Field(description="the drop list's shared maps are pinned")
    detail: str | None = None


class DbHealth(BaseModel):
    ok: bool
    path: str
    detail: str | None = None


class TaskHealth(BaseModel):
    interval: float | None = None
    last_run: float | None = None
    last_error: str | None = None
    detail: str | None = None


class Health(BaseModel):
    status: str = Field(description="ok | degraded")
    kernel: KernelHealth
    db: DbHealth
    revision: int | None
    expiry: TaskHealth
    restore: TaskHealth = Field(description="the reconcile run at service start")
