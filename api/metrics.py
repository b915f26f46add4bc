"""GET /metrics: Prometheus text, collected live from the kernel and the database.

Nothing is cached: every scrape reads the per-hook counter maps, the rule
hit counters and the revision through the core. Series:

    xdpctl_packets_total{netns,ifname,hook,l3,l4}       counter stage, per protocol class
    xdpctl_bytes_total{netns,ifname,hook,l3,l4}
    xdpctl_vlan_packets_total{netns,ifname,hook,tags}   tagged frames (also in the above)
    xdpctl_droplist_verdicts_total{netns,ifname,hook,reason}
    xdpctl_droplist_verdict_bytes_total{netns,ifname,hook,reason}
    xdpctl_rule_hits_total{id,prefix,action,dir,l4}     individually managed rules with hits,
    xdpctl_rule_hit_bytes_total{...}                    the most hit first, at most
                                                        rule_metrics_limit of them
    xdpctl_rule_hits_omitted                            rules with hits left out by that cap
    xdpctl_list_hits_total{list,action}                 hits summed over a list's members (only
    xdpctl_list_hit_bytes_total{list,action}            with list_hit_metrics: the core reads
                                                        the whole rule-stats map for a list of
                                                        more than 20000 members, seconds per scrape)
    xdpctl_rules{kind}                                  deny, allow (rules); list_deny, list_allow (members)
    xdpctl_lists                                        number of lists
    xdpctl_policy{policy}                               1 for the current default policy
    xdpctl_revision                                     revision of the desired state
    xdpctl_kernel_revision                              revision the kernel's active rule set holds
    xdpctl_kernel_standby_synced                        1 when the standby set holds it too
    xdpctl_host_table_trusted                           1 when the active set's IPv4 hosts are answered
                                                        from its host table (xc_v4_oa), 0 during a rebuild
    xdpctl_host_table_dead_slots                        its slots turned dead and buckets overflowed
    xdpctl_host_table_overflowed_buckets                since it was last rebuilt; the next change
    xdpctl_host_table_rebuild_at                        rebuilds it once their sum reaches rebuild_at
    xdpctl_lb_vip_packets_total{vip,proto,port}         load balancer, per VIP: packets, bytes,
    xdpctl_lb_vip_bytes_total{...}                      new flows balanced
    xdpctl_lb_vip_new_flows_total{...}
    xdpctl_lb_backend_packets_total{vip,proto,port,backend}   the same per backend
    xdpctl_lb_backend_bytes_total{...}
    xdpctl_lb_backend_new_flows_total{...}
    xdpctl_lb_backend_up{vip,proto,port,backend}        1 unless its health check found it down
    xdpctl_lb_backend_health_transitions_total{...}     health changes
    xdpctl_lb_packets_total{netns,ifname,hook,reason}   per hook: balanced (fwd_*) or passed on
    xdpctl_lb_bytes_total{netns,ifname,hook,reason}     (pass_*) by xc_lb_cnt reason
    xdpctl_state_checkpoints_total{mode}                checkpoints of the state database's log
    xdpctl_state_checkpoints_blocked_total              by the service's thread (api.checkpoint):
    xdpctl_state_checkpoint_pages_total                 passive | truncate; those left for the next
    xdpctl_state_checkpoint_seconds_total               round; pages copied; time spent
    xdpctl_state_wal_bytes                              size of the log file now
    xdpctl_scrape_error{part}                           1 when that part could not be read

``netns`` is "" for the host's namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xdpctl.core import counters
from xdpctl.core.lb.service import LoadBalancer
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import kernel_health

from .deps import Service, get_service

log = logging.getLogger("xdpctl.api")

HOOK_LABELS = ["netns", "ifname", "hook"]
RULE_LABELS = ["id", "prefix", "action", "dir", "l4"]


class XdpctlCollector(Collector):
    def __init__(self, svc: Service):
        self.svc = svc

    def describe(self) -> list[Metric]:
        return []  # collect only on scrape, not at registration

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily("xdpctl_scrape_error", "1 when a part of the scrape could not be read",
                                   labels=["part"])
        for part, fn in (("counters", self._counters), ("rules", self._rules), ("kernel", self._kernel),
                         ("lb", self._lb), ("checkpoints", self._checkpoints)):
            try:
                families = list(fn())
            except Exception as exc:  # a scrape must not fail as a whole
                log.warning("metrics: reading %s failed: %s", part, exc)
                errors.add_metric([part], 1)
                continue
            errors.add_metric([part], 0)
            yield from families
        yield errors

    # -- kernel counters, per hook (no database: no need to wait for writers)
    def _counters(self) -> Iterator[Metric]:
        pk = CounterMetricFamily("xdpctl_packets", "Frames seen by the counter stage, by protocol class",
                                 labels=HOOK_LABELS + ["l3", "l4"])
        by = CounterMetricFamily("xdpctl_bytes", "Bytes seen by the counter stage, by protocol class",
                                 labels=HOOK_LABELS + ["l3", "l4"])
        vlan = CounterMetricFamily("xdpctl_vlan_packets", "VLAN-tagged frames (also counted by class)",
                                   labels=HOOK_LABELS + ["tags"])
        vp = CounterMetricFamily("xdpctl_droplist_verdicts", "Drop-list verdicts (packets) by reason",
                                 labels=HOOK_LABELS + ["reason"])
        vb = CounterMetricFamily("xdpctl_droplist_verdict_bytes", "Drop-list verdicts (bytes) by reason",
                                 labels=HOOK_LABELS + ["reason"])
        for h in counters.stats(self.svc.ctx).hooks:
            where = [h.netns or "", h.ifname, h.hook]
            for p in h.protocols:
                if p.l3 == "vlan":
                    vlan.add_metric(where + [p.l4], p.packets)
                    continue
                pk.add_metric(where + [p.l3, p.l4], p.packets)
                by.add_metric(where + [p.l3, p.l4], p.bytes)
            for reason, c in h.verdicts.items():
                vp.add_metric(where + [reason], c.packets)
                vb.add_metric(where + [reason], c.bytes)
        yield from (pk, by, vlan, vp, vb)

    # -- rules, lists, revision (database + rule hit counters)
    def _rules(self) -> Iterator[Metric]:
        list_hits = self.svc.options.list_hit_metrics

        def read(d: DropList):
            return d.rules(with_stats=True), d.lists(with_stats=list_hits), d.revision(), d.policy()

        rules, lists, revision, policy = self.svc.read(read)
        count = GaugeMetricFamily("xdpctl_rules", "Rules in the desired state", labels=["kind"])
        kinds = {"deny": 0, "allow": 0, "list_deny": 0, "list_allow": 0}
        for r in rules:
            kinds[r.action] += 1
        for lv in lists:
            kinds["list_" + lv.action] += lv.count
        for k, n in kinds.items():
            count.add_metric([k], n)
        yield count
        yield GaugeMetricFamily("xdpctl_lists", "Lists in the desired state", value=len(lists))

        hit = sorted((r for r in rules if r.packets), key=lambda r: (-r.packets, r.id))
        limit = max(0, self.svc.options.rule_metrics_limit)
        hp = CounterMetricFamily("xdpctl_rule_hits", "Packets that matched a rule", labels=RULE_LABELS)
        hb = CounterMetricFamily("xdpctl_rule_hit_bytes", "Bytes that matched a rule", labels=RULE_LABELS)
        for r in hit[:limit]:
            labels = [str(r.id), r.prefix or "any", r.action, r.dir, f"{r.proto}/{r.port}" if r.proto else ""]
            hp.add_metric(labels, r.packets)
            hb.add_metric(labels, r.bytes)
        yield from (hp, hb)
        yield GaugeMetricFamily("xdpctl_rule_hits_omitted",
                                "Rules with hits not in xdpctl_rule_hits_total (cardinality cap)",
                                value=max(0, len(hit) - limit))

        if list_hits:
            lp = CounterMetricFamily("xdpctl_list_hits", "Packets that matched a list member",
                                     labels=["list", "action"])
            lb = CounterMetricFamily("xdpctl_list_hit_bytes", "Bytes that matched a list member",
                                     labels=["list", "action"])
            for lv in lists:
                lp.add_metric([lv.name, lv.action], lv.packets)
                lb.add_metric([lv.name, lv.action], lv.bytes)
            yield from (lp, lb)

        pol = GaugeMetricFamily("xdpctl_policy", "The drop list's default policy", labels=["policy"])
        for p in ("allow", "deny"):
            pol.add_metric([p], 1 if p == policy else 0)
        yield pol
        yield GaugeMetricFamily("xdpctl_revision", "Revision of the desired state", value=revision)

    # -- the kernel's rule sets (pinned maps only: no need to wait for writers)
    def _kernel(self) -> Iterator[Metric]:
        h = kernel_health(self.svc.ctx)
        if h.kernel_revision is None:
            return
        yield GaugeMetricFamily("xdpctl_kernel_revision", "Revision the kernel's active rule set holds",
                                value=h.kernel_revision)
        yield GaugeMetricFamily("xdpctl_kernel_standby_synced",
                                "1 when the standby rule set holds the active one's revision too",
                                value=int(bool(h.standby_synced)))
        yield GaugeMetricFamily("xdpctl_host_table_trusted",
                                "1 when IPv4 hosts of the active rule set are answered from its host table",
                                value=int(bool(h.host_table)))
        if h.host_table_wear is not None:
            yield GaugeMetricFamily("xdpctl_host_table_dead_slots",
                                    "Slots of the active host table turned dead since its last rebuild",
                                    value=h.host_table_dead_slots)
            yield GaugeMetricFamily("xdpctl_host_table_overflowed_buckets",
                                    "Buckets of the active host table that overflowed since its last rebuild",
                                    value=h.host_table_overflowed_buckets)
            yield GaugeMetricFamily("xdpctl_host_table_rebuild_at",
                                    "Dead slots + overflowed buckets at which the next change rebuilds the table",
                                    value=h.host_table_rebuild_at)

    # -- the state database's log (api.checkpoint)
    def _checkpoints(self) -> Iterator[Metric]:
        ck = self.svc.checkpointer
        if ck is None:
            return
        c = ck.counts
        runs = CounterMetricFamily("xdpctl_state_checkpoints", "Checkpoints of the state database's log",
                                   labels=["mode"])
        for mode, n in c.runs.items():
            runs.add_metric([mode], n)
        yield runs
        yield CounterMetricFamily("xdpctl_state_checkpoints_blocked",
                                  "Checkpoints left for the next round (a connection was busy)", value=c.blocked)
        yield CounterMetricFamily("xdpctl_state_checkpoint_pages", "Log pages copied into the database file",
                                  value=c.pages)
        yield CounterMetricFamily("xdpctl_state_checkpoint_seconds", "Time spent checkpointing", value=c.seconds)
        yield GaugeMetricFamily("xdpctl_state_wal_bytes", "Size of the state database's log file",
                                value=ck.wal_bytes())

    # -- load balancer (database + shared and per-hook LB counters)
    def _lb(self) -> Iterator[Metric]:
        view = LoadBalancer(self.svc.read_context()).stats_view()
        vip_l, be_l = ["vip", "proto", "port"], ["vip", "proto", "port", "backend"]
        what = (("packets", "Packets"), ("bytes", "Bytes"), ("new_flows", "New flows"))
        vf = {k: CounterMetricFamily(f"xdpctl_lb_vip_{k}", f"{t} balanced to a VIP", labels=vip_l) for k, t in what}
        bf = {k: CounterMetricFamily(f"xdpctl_lb_backend_{k}", f"{t} balanced to a backend", labels=be_l)
              for k, t in what}
        up = GaugeMetricFamily("xdpctl_lb_backend_up", "1 unless the VIP's health check found the backend down",
                               labels=be_l)
        tr = CounterMetricFamily("xdpctl_lb_backend_health_transitions", "Health changes of a backend",
                                 labels=be_l)
        for vs in view.vips:
            for k in vf:
                vf[k].add_metric([vs.vip, vs.proto, str(vs.port)], getattr(vs, k))
        for b in view.backends:
            labels = [b.vip, b.proto, str(b.port), b.backend]
            for k in bf:
                bf[k].add_metric(labels, getattr(b, k))
            up.add_metric(labels, 0 if b.health == "down" else 1)
            tr.add_metric(labels, b.health_transitions)
        hook_l = HOOK_LABELS + ["reason"]
        rp = CounterMetricFamily("xdpctl_lb_packets", "Packets of the LB stage by reason", labels=hook_l)
        rb = CounterMetricFamily("xdpctl_lb_bytes", "Bytes of the LB stage by reason", labels=hook_l)
        for h in view.hooks:
            for reason, c in h.reasons.items():
                rp.add_metric([h.netns or "", h.ifname, h.hook, reason], c.packets)
                rb.add_metric([h.netns or "", h.ifname, h.hook, reason], c.bytes)
        yield from (*vf.values(), *bf.values(), up, tr, rp, rb)


def make_registry(svc: Service) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(XdpctlCollector(svc))
    ProcessCollector(registry=reg)
    return reg


router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(svc: Service = Depends(get_service)) -> Response:
    """Prometheus metrics (text exposition format), read live."""
    return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)
