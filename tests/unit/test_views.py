"""The views (xdpctl.core.views): the document the CLI's ``--json`` prints
(``to_json``) is the one the REST service answers (pydantic's serializer,
which FastAPI runs over the same dataclass), for nested views, dicts of
views, excluded fields and defaults; the shared constructor refuses what a
dataclass's would."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from xdpctl.core import views as v
from xdpctl.core.fleet.views import FleetNodeView, FleetStatusView


def _rule(rid: int, **kw) -> v.RuleView:
    base = dict(id=rid, prefix=f"192.0.2.{rid}/32", family=4, dir="src", action="deny", proto=None, port=None,
                comment=None, source="cli", created=1700000000.5, expires=None, mgmt=False)
    return v.RuleView(**{**base, **kw})


SAMPLES = [
    v.ChangeView(revision=7, added=[_rule(1, hits={"xdp": v.HitsView(packets=3, bytes=180)}, packets=3,
                                          bytes=180, last_hit=1700000001.25)],
                 removed=[_rule(2, list="big", expires=1700000100.0, expired=True)], notes=["a note"]),
    v.PolicyView(policy="deny", revision=3, changed=False),  # `changed` is not part of the document
    v.StatsView(hooks=[v.HookStatsView(
        netns="lab", ifname="veth0", hook="xdp", total=v.CountView(packets=10, bytes=640),
        protocols=[v.ProtoCountView(l3="ipv4", l4="udp", packets=10, bytes=640)],
        verdicts={"drop_src": v.CountView(packets=4, bytes=256)},
        rates=v.HookRatesView(total=v.RateView(packets_per_s=2.5, bits_per_s=1280.0), protocols=[]))],
        time=1700000002.0, seconds=1.0),
    v.LbStatsView(revision=1, vips=[], backends=[]),  # a default list made for it
    v.LookupView(address="2001:db8::1", dir="src", proto="tcp", port=443, revision=9, policy="allow",
                 verdict="pass", reason="pass_nomatch", decided_by="policy", rule=None),
    FleetStatusView(prefix="/xdpctl/default", revision=4, etcd_revision=40, nodes=[
        FleetNodeView(name="n1", state="in-sync", applied_revision=4, lag=0, attachments=["lab/veth0 xdp"])]),
]


@pytest.mark.parametrize("view", SAMPLES, ids=lambda view: type(view).__name__)
def test_the_cli_document_is_the_rest_document(view) -> None:
    rest = TypeAdapter(type(view)).dump_python(view, mode="json")
    assert view.to_json() == rest


def test_an_excluded_field_stays_on_the_view() -> None:
    policy = SAMPLES[1]
    assert policy.changed is False and policy.to_json() == {"policy": "deny", "revision": 3}


def test_the_constructor_refuses_unknown_and_missing_fields() -> None:
    with pytest.raises(TypeError, match=r"CountView: unknown fields \['pkts'\]; missing fields \['packets'\]"):
        v.CountView(pkts=1, bytes=2)
    with pytest.raises(TypeError, match=r"missing fields \['revision'\]"):
        v.ChangeView()


def test_defaults_are_not_shared_and_frozen_views_stay_frozen() -> None:
    a, b = v.ChangeView(revision=1), v.ChangeView(revision=1)
    a.notes.append("only a")
    assert b.notes == [] and a != b and v.ChangeView(revision=1) == b
    with pytest.raises(AttributeError):
        v.HitsView(packets=1, bytes=1).packets = 2  # type: ignore[misc]
    assert repr(v.CountView(packets=1, bytes=2)) == "CountView(packets=1, bytes=2)"
