"""The one shape of each resource, shared by every front end.

The core returns these typed views; the CLI prints them with ``--json``
(``to_json()``) and the REST service answers them as the body of the
matching GET, so ``xdpctl X --json`` and ``GET /v1/X`` are the same
document. Watch modes print one view per line (NDJSON).

Views are plain dataclasses, so a CLI run never imports pydantic (its
import and the models' classes were 0.1 s of each run's start). The REST
service hands them to FastAPI as response models: pydantic builds their
schema from the annotations and reads each field's description from its
metadata (``doc``), so the OpenAPI document describes them as before.

Times are Unix timestamps in seconds (float); ``None`` means "never" or "not
yet" (never a placeholder string).
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any, Callable, NamedTuple, dataclass_transform


def doc(description: str, default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
        exclude: bool = False) -> Any:
    """A field with its description (the OpenAPI schema's); ``exclude``:
    not part of the JSON document."""
    metadata = {"description": description, **({"exclude": True} if exclude else {})}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass_transform(kw_only_default=True, field_specifiers=(doc, dataclasses.field))
class View:
    """Each subclass is a keyword-only dataclass (``frozen=True`` in its
    class line makes it immutable). Its constructor, repr and equality are
    this class's, shared: the code dataclasses would generate for each of
    some 55 classes took 20 ms of every CLI run's start."""

    def __init_subclass__(cls, frozen: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls, init=False, repr=False, eq=False, kw_only=True, frozen=frozen)

    def __init__(self, **values: Any) -> None:
        shape = _shape(type(self))
        if not values.keys() <= shape.names or not shape.required <= values.keys():
            unknown, missing = sorted(values.keys() - shape.names), sorted(shape.required - values.keys())
            raise TypeError(f"{type(self).__name__}: " + "; ".join(
                [f"unknown fields {unknown}"] * bool(unknown) + [f"missing fields {missing}"] * bool(missing)))
        fields = self.__dict__
        fields.update(shape.defaults)
        for name, make in shape.factories:
            if name not in values:
                fields[name] = make()
        fields.update(values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in _shape(type(self)).order)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def to_json(self) -> dict:
        """The JSON document (what REST sends and ``--json`` prints)."""
        shape, fields = _shape(type(self)), self.__dict__
        out = {name: fields[name] for name in shape.shown}
        for name in shape.nested:
            out[name] = _json(out[name])
        return out


class _Shape(NamedTuple):
    order: tuple[str, ...]          # every field, in declaration order
    names: frozenset[str]
    required: frozenset[str]
    defaults: dict[str, Any]
    factories: tuple[tuple[str, Callable[[], Any]], ...]
    shown: tuple[str, ...]          # the fields the JSON document holds
    nested: tuple[str, ...]         # those of them that may hold views, lists or dicts


@cache
def _shape(cls: type) -> _Shape:
    fields = dataclasses.fields(cls)
    missing = dataclasses.MISSING
    return _Shape(
        order=tuple(f.name for f in fields), names=frozenset(f.name for f in fields),
        required=frozenset(f.name for f in fields if f.default is missing and f.default_factory is missing),
        defaults={f.name: f.default for f in fields if f.default is not missing},
        factories=tuple((f.name, f.default_factory) for f in fields if f.default_factory is not missing),
        shown=tuple(f.name for f in fields if not f.metadata.get("exclude")),
        nested=tuple(f.name for f in fields if not f.metadata.get("exclude") and f.type not in _SCALARS))


# Annotations (text: the module uses postponed annotations) of fields whose
# value goes into the document as it is.
_SCALARS = frozenset({"int", "float", "str", "bool", "int | None", "float | None", "str | None", "bool | None"})


def _json(value: Any) -> Any:
    if isinstance(value, View):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


class HitsView(View, frozen=True):
    """Packets and bytes one hook kind counted for a rule (or a list).
    Frozen: views of rules that have counted nothing share one instance."""

    packets: int = 0
    bytes: int = 0

HITS_DOC = "per hook kind (xdp, tc-ingress, tc-egress); packets and bytes are their sum"

class RuleView(View):
    id: int
    prefix: str | None = doc("null: an L4 rule on any address")
    family: int = doc("4, 6, or 0 for an L4 rule on any address")
    dir: str = doc("src | dst")
    action: str = doc("deny | allow")
    proto: str | None
    port: int | None
    comment: str | None
    source: str | None = doc("who added it: api, cli, or a list's source")
    created: float
    expires: float | None
    mgmt: bool
    list: str | None = doc("the list this rule is a member of", None)
    packets: int = 0
    bytes: int = 0
    hits: dict[str, HitsView] = doc(HITS_DOC, default_factory=dict)
    last_hit: float | None = None
    expired: bool = doc("past its TTL, not yet removed (the next change or the "
                        "service's reaper removes it)", False)

class RulesView(View):
    revision: int
    policy: str
    rules: list[RuleView]
    next: int | None = doc("more follow: ask again with after=next (null: this is the end)", None)

class ChangeView(View):
    """What a change did. ``revision`` is the rule set's new revision."""

    revision: int
    added: list[RuleView] = dataclasses.field(default_factory=list)
    updated: list[RuleView] = dataclasses.field(default_factory=list)
    removed: list[RuleView] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

class ListView(View):
    name: str
    count: int
    dir: str
    action: str
    comment: str | None
    source: str | None
    created: float
    expires: float | None
    id_base: int = doc("members have rule ids id_base .. id_base+count-1")
    sha256: str | None = doc("digest of the stored members", None)
    packets: int = 0
    bytes: int = 0
    hits: dict[str, HitsView] = doc(HITS_DOC, default_factory=dict)

class ListsView(View):
    revision: int
    lists: list[ListView]

class ListDetailView(View):
    revision: int
    list: ListView
    members: list[RuleView]
    truncated: bool = doc("true when limit cut the member list short")
    next: int | None = doc("more members follow: ask again with after=next (null: the end)", None)

class ListChangeView(View):
    revision: int
    created: bool = doc("true: the list is new; false: it replaced a list of that name")
    list: ListView
    map_entries_written: int = doc("kernel map entries the change wrote", 0)
    map_entries_deleted: int = doc("kernel map entries the change deleted", 0)
    notes: list[str] = dataclasses.field(default_factory=list)

class PolicyView(View):
    policy: str
    revision: int
    changed: bool = doc("false: the policy already had this value (the revision did not move); "
                        "not part of the document", True, exclude=True)

class RevisionView(View):
    revision: int

class RestoreView(View):
    revision: int
    map_entries_written: int
    map_entries_deleted: int
    errors: list[str]
    log: list[str]

class ExpireView(View):
    revision: int
    removed: list[RuleView]
    removed_lists: list[str] = doc("names of the lists that expired", default_factory=list)

class AttachView(View):
    netns: str | None
    ifname: str
    hook: str
    program: str
    mode: str | None
    prog_id: int
    root_id: int
    replaced: bool = doc("true: the stage was already attached and was replaced atomically")
    notes: list[str]
    revision: int

class DetachedView(View):
    netns: str | None
    ifname: str
    hook: str
    program: str

class DetachView(View):
    removed: list[DetachedView]
    revision: int

class StageView(View):
    slot: int
    program: str
    id: int | None
    tag: str | None

class HookStatusView(View):
    hook: str
    mode: str | None
    id: int | None = doc("id of the program attached to the hook; null: xdpctl's chain is "
                         "pinned but the kernel does not run it (restore re-attaches it)")
    name: str | None
    tag: str | None
    owner: str = doc("xdpctl | other | xdpctl (pinned, not attached)")
    pref: int | None = None
    stages: list[StageView]

class InterfaceView(View):
    netns: str | None
    ifname: str
    ifindex: int
    up: bool
    driver: str | None
    hooks: list[HookStatusView]

class AttachmentView(View):
    netns: str | None
    ifname: str
    hook: str
    program: str
    mode: str | None
    attached: bool = doc("the kernel runs this stage on the hook now; false: restore "
                         "re-attaches it")

class SamplingView(View):
    """A hook whose packet sampling flag is set (xc_smp_cfg names a listener)."""
    netns: str | None
    ifname: str
    hook: str
    pid: int = doc("the listener's process id")
    listener_alive: bool = doc("false: the listener is gone, the flag is stale")
    rate: int = doc("1 in rate qualifying packets is sampled")
    cap: int = doc("samples per second per CPU at most")
    note: str = doc("what the flag costs and how it ends")


class SamplingClearView(View):
    cleared: list[SamplingView] = doc("the stale flags cleared (their listeners were gone)")


class StatusView(View):
    revision: int
    interfaces: list[InterfaceView] = doc("what the kernel runs")
    recorded: list[AttachmentView] = doc("the desired state (what restore re-attaches)")
    unreachable: list[str] = doc("namespaces with pinned hooks that no longer exist", default_factory=list)
    sampling: list[SamplingView] = doc("hooks whose packet sampling flag is set, with its listener",
                                       default_factory=list)

class CountView(View):
    packets: int
    bytes: int

class ProtoCountView(View):
    l3: str
    l4: str
    packets: int
    bytes: int

class RateView(View):
    packets_per_s: float
    bits_per_s: float

class ProtoRateView(RateView):
    l3: str
    l4: str

class HookRatesView(View):
    total: RateView
    protocols: list[ProtoRateView] = doc("same rows as the hook's protocols")

class HookStatsView(View):
    netns: str | None
    ifname: str
    hook: str
    total: CountView = doc("every frame the counter stage saw (VLAN slots not added again)")
    protocols: list[ProtoCountView] = doc("l3 'vlan' rows count tagged frames in addition")
    verdicts: dict[str, CountView] = doc("drop-list verdicts by reason")
    rates: HookRatesView | None = doc("watch mode: rates since the previous sample", None)

class StatsView(View):
    hooks: list[HookStatsView]
    time: float | None = doc("watch mode: when this sample was read", None)
    seconds: float | None = doc("watch mode: seconds since the previous sample", None)

# ---------------------------------------------------------------- probe
class ProbeResultView(View):
    hook: str
    mode: str | None
    ok: bool | None = doc("true: works; false: does not; null: not tested (see detail)")
    detail: str

class ProbeView(View):
    netns: str | None
    ifname: str
    ifindex: int
    driver: str
    results: list[ProbeResultView]

# ---------------------------------------------------------------- health
class KernelHealthView(View):
    ok: bool
    pin_dir: str
    bpffs: bool
    shared_maps: bool = doc("the drop list's shared maps are pinned")
    kernel_revision: int | None = doc("the revision the kernel's active rule set holds", None)
    db_revision: int | None = doc("the database's revision", None)
    in_sync: bool | None = doc("the kernel holds the database's revision in both rule sets", None)
    host_table: bool | None = doc("IPv4 hosts of the active rule set are answered from its host table "
                                  "(xc_v4_oa); false while a catch-up rebuilds it, when the kernel's hash "
                                  "answers them", None)
    host_table_dead_slots: int | None = doc("slots of the active set's host table turned dead (deleted or "
                                            "changed hosts) since it was last rebuilt", None)
    host_table_overflowed_buckets: int | None = doc("buckets of the active set's host table that overflowed "
                                                    "since it was last rebuilt (their hosts are answered by the "
                                                    "kernel's hash)", None)
    host_table_rebuild_at: int | None = doc("dead slots + overflowed buckets at which the next change rebuilds "
                                            "the table", None)
    detail: str | None = None

class DbHealthView(View):
    ok: bool
    path: str
    detail: str | None = None

class TaskHealthView(View):
    interval: float | None = None
    last_run: float | None = None
    last_error: str | None = None
    detail: str | None = None

class HealthView(View):
    status: str = doc("ok | degraded")
    kernel: KernelHealthView
    db: DbHealthView
    revision: int | None
    expiry: TaskHealthView
    restore: TaskHealthView = doc("the reconcile run at service start")


# ---------------------------------------------------------------- load balancer
class LbCheckView(View):
    kind: str = doc("tcp | udp | none")
    port: int = doc("port probed on each backend (the VIP's unless configured)")
    interval: float = doc("seconds between checks")
    timeout: float = doc("seconds a check waits")
    rise: int = doc("successes in a row that bring a backend up")
    fall: int = doc("failures in a row that take a backend down")


class VipView(View):
    id: int = doc("vip_id in the kernel (per-VIP counters)")
    address: str
    family: int
    proto: str = doc("tcp | udp")
    port: int
    table_size: int = doc("slots of the Maglev table (prime)")
    backends: int = doc("backends of the VIP, in any state")
    in_table: int = doc("backends the table holds: active, with a MAC, weight above 0")
    created: float
    hash: str = doc("flow hash: l4 (addresses, protocol, ports) | l3 (addresses and protocol: "
                    "every fragment and every flow of a client to one backend)", "l4")
    check: LbCheckView | None = doc("the health check of its backends", None)


class VipsView(View):
    revision: int
    vips: list[VipView]


class BackendView(View):
    id: int = doc("backend id in the kernel")
    address: str
    family: int
    vip: str = doc("the VIP's address")
    proto: str
    port: int
    weight: int
    state: str = doc("active | draining | down (set by the operator)")
    health: str = doc("up | down | unknown (found by the VIP's health check)", "unknown")
    health_transitions: int = doc("health changes so far", 0)
    health_reason: str | None = doc("why its health last changed", None)
    mac: str | None = doc("null: not known, the backend gets no flows")
    mac_state: str = doc("given | resolved (neighbour table) | unresolved", "given")
    slots: int = doc("slots of the VIP's table it holds", 0)
    created: float


class BackendsView(View):
    revision: int
    backends: list[BackendView]


class LbChangeView(View):
    """What a load-balancer change did; ``revision`` is the new revision."""

    revision: int
    vip: VipView | None = None
    backend: BackendView | None = None
    removed: bool = False


class LbCounterView(View):
    packets: int
    bytes: int
    new_flows: int


class LbVipStatsView(LbCounterView):
    vip: str
    proto: str
    port: int


class LbBackendStatsView(LbCounterView):
    backend: str
    vip: str
    proto: str
    port: int
    health: str = "unknown"
    health_transitions: int = 0


class LbHookStatsView(View):
    """Why a hook's packets were or were not balanced (xc_lb_cnt)."""

    netns: str | None
    ifname: str
    hook: str
    reasons: dict[str, CountView] = doc("fwd_conn, fwd_new, fwd_icmp: balanced; pass_off, "
                                        "pass_notip, pass_novip, pass_fragment, pass_nobackend, "
                                        "pass_ringmiss: passed on")


class LbStatsView(View):
    revision: int
    vips: list[LbVipStatsView]
    backends: list[LbBackendStatsView]
    hooks: list[LbHookStatsView] = dataclasses.field(default_factory=list)


class LbProbeView(View):
    """One backend's check in a health round."""

    vip: str
    proto: str
    port: int
    backend: str
    check: str = doc("tcp | udp | none")
    ok: bool | None = doc("null: not checked")
    detail: str | None = None
    probe_netns: str | None = doc("the network namespace the probe left from: the balancer's "
                                  "attachment on the backend's subnet, else its first; null: "
                                  "the host's (or not checked)", None)
    health: str = doc("after this round")
    transition: str | None = doc("'old -> new' when the health changed in this round", None)
    mac: str | None
    mac_state: str


class LbHealthView(View):
    """A health and MAC-resolution round."""

    revision: int
    checked: float
    probes: list[LbProbeView]


# --- dashboard (GET /v1/dashboard: the page at /ui polls this one document) ---
class DashboardView(View):
    time: float = doc("when the counters were read (rates: difference of two samples over time)")
    revision: int
    policy: str
    stats: StatsView
    status: StatusView
    rules: int = doc("individually managed rules")
    top_rules: list[RuleView] = doc("rules with hits, most packets first")
    lists: list[ListView]
    vips: list[VipView]
    backends: list[BackendView]
    lb_stats: LbStatsView
    fleet: bool = doc("fleet mode is configured: GET /v1/fleet answers the nodes")




# ---- operator tools: lookup, apply (docs/operator-tools.md)

class LookupView(View):
    """Which rule decides a packet with ``address`` on side ``dir``."""

    address: str
    dir: str = doc("src | dst: the side of the packet the address is on")
    proto: str | None
    port: int | None
    revision: int
    policy: str
    verdict: str = doc("drop | pass")
    reason: str = doc("the data path's reason (as in stats verdicts)")
    decided_by: str = doc("mgmt | src | dst | port_src | port_dst | policy")
    rule: RuleView | None = doc("the rule or list member that decides (null: the policy)")


class ListDiffView(View):
    """A list apply creates or replaces."""

    name: str
    count: int = doc("members in the file")
    was: int | None = doc("members before (null: a new list)")
    dir: str
    action: str


class ApplyView(View):
    """What apply changed (or, with dry_run, would change). ``revision`` is
    the new one; unchanged when nothing changed."""

    revision: int
    dry_run: bool
    changed: bool
    added: list[RuleView] = doc("rules added (id 0 in a dry run: none is allocated)")
    updated: list[RuleView] = doc("rules whose action, comment, expiry or mgmt flag change")
    removed: list[RuleView]
    lists: list[ListDiffView] = doc("lists created or replaced")
    lists_removed: list[str]
    policy: str | None = doc("the new policy, or null when it stays")
