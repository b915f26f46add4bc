"""The one shape of each resource, shared by every front end.

The core returns these typed views; the CLI prints them with ``--json``
(``model_dump(mode="json")``) and the REST service answers them as the body
of the matching GET, so ``xdpctl X --json`` and ``GET /v1/X`` are the same
document. Watch modes print one view per line (NDJSON).

Times are Unix timestamps in seconds (float); ``None`` means "never" or "not
yet" (never a placeholder string).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True, defer_build=True)

    def to_json(self) -> dict:
        """The JSON document (what REST sends and ``--json`` prints)."""
        return self.model_dump(mode="json")


class HitsView(View):
    """Packets and bytes one hook kind counted for a rule (or a list).
    Frozen: views of rules that have counted nothing share one instance."""

    model_config = ConfigDict(frozen=True)

    packets: int = 0
    bytes: int = 0

HITS_DOC = "per hook kind (xdp, tc-ingress, tc-egress); packets and bytes are their sum"

class RuleView(View):
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
    hits: dict[str, HitsView] = Field(default_factory=dict, description=HITS_DOC)
    last_hit: float | None = None
    expired: bool = Field(False, description="past its TTL, not yet removed (the next change or the "
                                             "service's reaper removes it)")

class RulesView(View):
    revision: int
    policy: str
    rules: list[RuleView]
    next: int | None = Field(None, description="more follow: ask again with after=next (null: this is the end)")

class ChangeView(View):
    """What a change did. ``revision`` is the rule set's new revision."""

    revision: int
    added: list[RuleView] = Field(default_factory=list)
    updated: list[RuleView] = Field(default_factory=list)
    removed: list[RuleView] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

class ListView(View):
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
    hits: dict[str, HitsView] = Field(default_factory=dict, description=HITS_DOC)

class ListsView(View):
    revision: int
    lists: list[ListView]

class ListDetailView(View):
    revision: int
    list: ListView
    members: list[RuleView]
    truncated: bool = Field(description="true when limit cut the member list short")
    next: int | None = Field(None, description="more members follow: ask again with after=next (null: the end)")

class ListChangeView(View):
    revision: int
    created: bool = Field(description="true: the list is new; false: it replaced a list of that name")
    list: ListView
    map_entries_written: int = Field(0, description="kernel map entries the change wrote")
    map_entries_deleted: int = Field(0, description="kernel map entries the change deleted")
    notes: list[str] = Field(default_factory=list)

class PolicyView(View):
    policy: str
    revision: int
    changed: bool = Field(True, exclude=True,
                          description="false: the policy already had this value (the revision did not move); "
                                      "not part of the document")

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
    removed_lists: list[str] = Field(default_factory=list, description="names of the lists that expired")

class AttachView(View):
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
    id: int | None = Field(description="id of the program attached to the hook; null: xdpctl's chain is "
                                       "pinned but the kernel does not run it (restore re-attaches it)")
    name: str | None
    tag: str | None
    owner: str = Field(description="xdpctl | other | xdpctl (pinned, not attached)")
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
    attached: bool = Field(description="the kernel runs this stage on the hook now; false: restore "
                                       "re-attaches it")

class SamplingView(View):
    """A hook whose packet sampling flag is set (xc_smp_cfg names a listener)."""
    netns: str | None
    ifname: str
    hook: str
    pid: int = Field(description="the listener's process id")
    listener_alive: bool = Field(description="false: the listener is gone, the flag is stale")
    rate: int = Field(description="1 in rate qualifying packets is sampled")
    cap: int = Field(description="samples per second per CPU at most")
    note: str = Field(description="what the flag costs and how it ends")


class SamplingClearView(View):
    cleared: list[SamplingView] = Field(description="the stale flags cleared (their listeners were gone)")


class StatusView(View):
    revision: int
    interfaces: list[InterfaceView] = Field(description="what the kernel runs")
    recorded: list[AttachmentView] = Field(description="the desired state (what restore re-attaches)")
    unreachable: list[str] = Field(default_factory=list,
                                   description="namespaces with pinned hooks that no longer exist")
    sampling: list[SamplingView] = Field(default_factory=list,
                                         description="hooks whose packet sampling flag is set, with its listener")

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
    protocols: list[ProtoRateView] = Field(description="same rows as the hook's protocols")

class HookStatsView(View):
    netns: str | None
    ifname: str
    hook: str
    total: CountView = Field(description="every frame the counter stage saw (VLAN slots not added again)")
    protocols: list[ProtoCountView] = Field(description="l3 'vlan' rows count tagged frames in addition")
    verdicts: dict[str, CountView] = Field(description="drop-list verdicts by reason")
    rates: HookRatesView | None = Field(None, description="watch mode: rates since the previous sample")

class StatsView(View):
    hooks: list[HookStatsView]
    time: float | None = Field(None, description="watch mode: when this sample was read")
    seconds: float | None = Field(None, description="watch mode: seconds since the previous sample")

# ---------------------------------------------------------------- probe
class ProbeResultView(View):
    hook: str
    mode: str | None
    ok: bool | None = Field(description="true: works; false: does not; null: not tested (see detail)")
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
    shared_maps: bool = Field(description="the drop list's shared maps are pinned")
    kernel_revision: int | None = Field(None, description="the revision the kernel's active rule set holds")
    db_revision: int | None = Field(None, description="the database's revision")
    in_sync: bool | None = Field(None, description="the kernel holds the database's revision in both rule sets")
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
    status: str = Field(description="ok | degraded")
    kernel: KernelHealthView
    db: DbHealthView
    revision: int | None
    expiry: TaskHealthView
    restore: TaskHealthView = Field(description="the reconcile run at service start")


# ---------------------------------------------------------------- load balancer
class LbCheckView(View):
    kind: str = Field(description="tcp | udp | none")
    port: int = Field(description="port probed on each backend (the VIP's unless configured)")
    interval: float = Field(description="seconds between checks")
    timeout: float = Field(description="seconds a check waits")
    rise: int = Field(description="successes in a row that bring a backend up")
    fall: int = Field(description="failures in a row that take a backend down")


class VipView(View):
    id: int = Field(description="vip_id in the kernel (per-VIP counters)")
    address: str
    family: int
    proto: str = Field(description="tcp | udp")
    port: int
    table_size: int = Field(description="slots of the Maglev table (prime)")
    backends: int = Field(description="backends of the VIP, in any state")
    in_table: int = Field(description="backends the table holds: active, with a MAC, weight above 0")
    created: float
    hash: str = Field("l4", description="flow hash: l4 (addresses, protocol, ports) | l3 (addresses and protocol: "
                                        "every fragment and every flow of a client to one backend)")
    check: LbCheckView | None = Field(None, description="the health check of its backends")


class VipsView(View):
    revision: int
    vips: list[VipView]


class BackendView(View):
    id: int = Field(description="backend id in the kernel")
    address: str
    family: int
    vip: str = Field(description="the VIP's address")
    proto: str
    port: int
    weight: int
    state: str = Field(description="active | draining | down (set by the operator)")
    health: str = Field("unknown", description="up | down | unknown (found by the VIP's health check)")
    health_transitions: int = Field(0, description="health changes so far")
    health_reason: str | None = Field(None, description="why its health last changed")
    mac: str | None = Field(description="null: not known, the backend gets no flows")
    mac_state: str = Field("given", description="given | resolved (neighbour table) | unresolved")
    slots: int = Field(0, description="slots of the VIP's table it holds")
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
    reasons: dict[str, CountView] = Field(description="fwd_conn, fwd_new, fwd_icmp: balanced; pass_off, "
                                          "pass_notip, pass_novip, pass_fragment, pass_nobackend, "
                                          "pass_ringmiss: passed on")


class LbStatsView(View):
    revision: int
    vips: list[LbVipStatsView]
    backends: list[LbBackendStatsView]
    hooks: list[LbHookStatsView] = []


class LbProbeView(View):
    """One backend's check in a health round."""

    vip: str
    proto: str
    port: int
    backend: str
    check: str = Field(description="tcp | udp | none")
    ok: bool | None = Field(description="null: not checked")
    detail: str | None = None
    probe_netns: str | None = Field(None, description="the network namespace the probe left from: the balancer's "
                                                      "attachment on the backend's subnet, else its first; null: "
                                                      "the host's (or not checked)")
    health: str = Field(description="after this round")
    transition: str | None = Field(None, description="'old -> new' when the health changed in this round")
    mac: str | None
    mac_state: str


class LbHealthView(View):
    """A health and MAC-resolution round."""

    revision: int
    checked: float
    probes: list[LbProbeView]


# --- dashboard (GET /v1/dashboard: the page at /ui polls this one document) ---
class DashboardView(View):
    time: float = Field(description="when the counters were read (rates: difference of two samples over time)")
    revision: int
    policy: str
    stats: StatsView
    status: StatusView
    rules: int = Field(description="individually managed rules")
    top_rules: list[RuleView] = Field(description="rules with hits, most packets first")
    lists: list[ListView]
    vips: list[VipView]
    backends: list[BackendView]
    lb_stats: LbStatsView
    fleet: bool = Field(description="fleet mode is configured: GET /v1/fleet answers the nodes")




# ---- operator tools: lookup, apply (docs/operator-tools.md)

class LookupView(View):
    """Which rule decides a packet with ``address`` on side ``dir``."""

    address: str
    dir: str = Field(description="src | dst: the side of the packet the address is on")
    proto: str | None
    port: int | None
    revision: int
    policy: str
    verdict: str = Field(description="drop | pass")
    reason: str = Field(description="the data path's reason (as in stats verdicts)")
    decided_by: str = Field(description="mgmt | src | dst | port_src | port_dst | policy")
    rule: RuleView | None = Field(description="the rule or list member that decides (null: the policy)")


class ListDiffView(View):
    """A list apply creates or replaces."""

    name: str
    count: int = Field(description="members in the file")
    was: int | None = Field(description="members before (null: a new list)")
    dir: str
    action: str


class ApplyView(View):
    """What apply changed (or, with dry_run, would change). ``revision`` is
    the new one; unchanged when nothing changed."""

    revision: int
    dry_run: bool
    changed: bool
    added: list[RuleView] = Field(description="rules added (id 0 in a dry run: none is allocated)")
    updated: list[RuleView] = Field(description="rules whose action, comment, expiry or mgmt flag change")
    removed: list[RuleView]
    lists: list[ListDiffView] = Field(description="lists created or replaced")
    lists_removed: list[str]
    policy: str | None = Field(description="the new policy, or null when it stays")
