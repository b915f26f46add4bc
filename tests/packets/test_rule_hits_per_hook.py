"""Rule hits per hook kind: one rule hit on an XDP hook and on a TC ingress
hook (the real hook programs over the same shared maps, BPF_PROG_TEST_RUN)
is counted apart for each, its total is their sum in every view that shows
it, and `stats --reset --rules` zeroes them all."""

from __future__ import annotations

from tests.support.frames import udp4
from tests.support.progs import ProgramBench
from xdpctl import abi
from xdpctl.core import counters
from xdpctl.core import prefixes as px
from xdpctl.core.rules.lookup import lookup
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import rule_stats
from xdpctl.core.rules.validate import spec

SRC = "198.51.100.7"
XDP_RUNS, TC_RUNS = 3, 5


def test_hits_per_hook_and_their_sum(ctx) -> None:
    frame = udp4(SRC, "192.0.2.1")
    with ProgramBench(ctx, "xdp", ("droplist",), name="hx") as xdp, \
            ProgramBench(ctx, "tc", ("droplist",), name="ht", hook="tc-ingress") as tc:
        d = DropList(ctx)
        d.add([spec(f"{SRC}/32")])
        d.import_list("l", [px.parse_prefix("203.0.113.0/24")])
        (rule,) = d.rules(with_stats=False)
        for bench, runs in ((xdp, XDP_RUNS), (tc, TC_RUNS)):
            for _ in range(runs):
                assert bench.dropped(bench.run(frame).retval)
        tc_bytes = TC_RUNS * len(frame)
        want = abi.RuleHits(XDP_RUNS + TC_RUNS, (XDP_RUNS + TC_RUNS) * len(frame), 0,
                            ((XDP_RUNS, XDP_RUNS * len(frame)), (TC_RUNS, tc_bytes), (0, 0)))
        got = rule_stats(ctx, [rule.id])[rule.id]
        assert got._replace(last_hit_ns=0) == want and got.last_hit_ns > 0

        (view,) = d.rules()
        assert (view.packets, view.bytes) == (want.packets, want.bytes)
        assert view.to_json()["hits"] == {
            "xdp": {"packets": XDP_RUNS, "bytes": XDP_RUNS * len(frame)},
            "tc-ingress": {"packets": TC_RUNS, "bytes": tc_bytes},
            "tc-egress": {"packets": 0, "bytes": 0}}
        assert lookup(d, SRC).rule.to_json()["hits"] == view.to_json()["hits"]

        member = udp4("203.0.113.9", "192.0.2.1")
        assert xdp.dropped(xdp.run(member).retval)
        (lv,) = d.lists()
        assert (lv.packets, lv.hits["xdp"].packets, lv.hits["tc-ingress"].packets) == (1, 1, 0)

        counters.reset(ctx, rules=True)
        assert rule_stats(ctx, [rule.id, lv.id_base]) == {rule.id: abi.NO_HITS, lv.id_base: abi.NO_HITS}
