"""The API driving real traffic: attach over REST to a veth in a lab
namespace, send frames with scapy from the peer, and check what arrived,
what /metrics and /v1/stats counted, and that blocking and unblocking
over REST takes effect on the wire."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from api_helpers import Running
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.inet import IP, UDP
from scapy.packet import Packet, Raw
from traffic import SPOOFED_IPV4, Capture, count_kinds, ether, marker, payload, send_frames

from xdpctl.lab import Endpoint, TwoHostLab


@pytest.fixture
def mark() -> bytes:
    return marker()


@pytest.fixture
def attach(client: httpx.Client, lab: TwoHostLab) -> Iterator[Callable[..., dict]]:
    """attach(endpoint, program, hook="xdp") over REST; everything attached
    is detached over REST after the test."""
    done: set[tuple[str, str]] = set()

    def do(ep: Endpoint, program: str, hook: str = "xdp") -> dict:
        r = client.post("/v1/attachments",
                        json={"ifname": ep.ifname, "netns": ep.netns, "program": program, "hook": hook})
        assert r.status_code == 201, r.text
        done.add((ep.ifname, ep.netns))
        return r.json()

    yield do
    for ifname, netns in done:
        r = client.delete("/v1/attachments", params={"ifname": ifname, "netns": netns})
        assert r.status_code in (200, 404), r.text


def udp_frame(src: Endpoint, dst: Endpoint, src_ip: str, mark: bytes, kind: str, seq: int) -> Packet:
    return ether(src, dst) / IP(src=src_ip, dst=dst.ipv4) / UDP(sport=40000 + seq, dport=7) / Raw(
        payload(mark, kind, pad=20))


def send_and_count(lab: TwoHostLab, frames: list[Packet], mark: bytes) -> dict[str, int]:
    """Send frames from a to b; what b received (after XDP), by kind."""
    with Capture(lab.b, mark) as cap:
        send_frames(lab.a, frames)
        got = cap.finish(via=lab.a)
    return dict(count_kinds(got, mark))


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(metrics: dict, name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def test_metrics_and_stats_count_frames_through_an_attached_droplist(
        client: httpx.Client, server: Running, lab: TwoHostLab, attach, mark: bytes) -> None:
    a, b = lab.a, lab.b
    counter = attach(b, "counter")
    droplist = attach(b, "droplist")
    assert counter["root_id"] == droplist["root_id"] and droplist["replaced"] is False

    # what the kernel runs, as /v1/status reports it
    st = client.get("/v1/status", params={"netns": b.netns}).json()
    (iface,) = [i for i in st["interfaces"] if i["ifname"] == b.ifname]
    (hook,) = iface["hooks"]
    assert hook["hook"] == "xdp" and hook["owner"] == "xdpctl" and hook["id"] == droplist["root_id"]
    assert [(s["program"], s["id"]) for s in hook["stages"]] == [("counter", counter["prog_id"]),
                                                                 ("droplist", droplist["prog_id"])]
    assert {(x["program"], x["netns"]) for x in st["recorded"]} >= {("counter", b.netns), ("droplist", b.netns)}
    assert b.netns in {x["netns"] for x in client.get("/v1/status").json()["interfaces"]}

    r = client.post("/v1/block", json={"prefixes": ["198.18.7.0/24"], "comment": "metrics test"})
    assert r.status_code == 201, r.text
    rid = r.json()["added"][0]["id"]
    r = client.put("/v1/lists/lab-feed", content="198.18.8.8\n", headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text

    spoofed = [udp_frame(a, b, "198.18.7.7", mark, "spoofed", i) for i in range(3)]
    listed_src = [udp_frame(a, b, "198.18.8.8", mark, "listed", i) for i in range(2)]
    legit = [udp_frame(a, b, a.ipv4, mark, "legit", i) for i in range(5)]
    assert send_and_count(lab, spoofed + listed_src + legit, mark) == {"legit": 5}
    rule_bytes = sum(len(bytes(f)) for f in spoofed)
    list_bytes = sum(len(bytes(f)) for f in listed_src)
    drop_bytes = rule_bytes + list_bytes
    all_bytes = drop_bytes + sum(len(bytes(f)) for f in legit)

    m = scrape(client)
    where = {"netns": b.netns, "ifname": b.ifname, "hook": "xdp"}
    assert sample(m, "xdpctl_droplist_verdicts_total", **where, reason="drop_src") == 5
    assert sample(m, "xdpctl_droplist_verdict_bytes_total", **where, reason="drop_src") == drop_bytes
    # the five legitimate frames and the capture's sentinel (not IP)
    assert sample(m, "xdpctl_droplist_verdicts_total", **where, reason="pass_nomatch") == 6
    assert sample(m, "xdpctl_packets_total", **where, l3="ipv4", l4="udp") == 10
    assert sample(m, "xdpctl_bytes_total", **where, l3="ipv4", l4="udp") == all_bytes
    assert sample(m, "xdpctl_packets_total", **where, l3="other", l4="-") == 1
    rule = {"id": str(rid), "prefix": "198.18.7.0/24", "action": "deny", "dir": "src", "l4": ""}
    assert sample(m, "xdpctl_rule_hits_total", **rule) == 3
    assert sample(m, "xdpctl_rule_hit_bytes_total", **rule) == rule_bytes
    assert sample(m, "xdpctl_rule_hits_omitted") == 0
    assert sample(m, "xdpctl_list_hits_total", list="lab-feed", action="deny") == 2
    assert sample(m, "xdpctl_list_hit_bytes_total", list="lab-feed", action="deny") == list_bytes

    rules = client.get("/v1/rules", params={"stats": False}).json()
    assert sample(m, "xdpctl_revision") == rules["revision"]
    assert sample(m, "xdpctl_rules", kind="deny") == sum(x["action"] == "deny" for x in rules["rules"])
    assert sample(m, "xdpctl_policy", policy="allow") == 1
    assert sample(m, "xdpctl_scrape_error", part="counters") == 0
    assert sample(m, "xdpctl_scrape_error", part="rules") == 0

    # the same numbers over /v1/stats and /v1/rules
    stats = client.get("/v1/stats", params={"netns": b.netns, "ifname": b.ifname}).json()["hooks"]
    (hs,) = stats
    assert hs["verdicts"]["drop_src"] == {"packets": 5, "bytes": drop_bytes}
    assert {"l3": "ipv4", "l4": "udp", "packets": 10, "bytes": all_bytes} in hs["protocols"]
    (listed,) = client.get("/v1/rules", params={"prefix": "198.18.7.0/24"}).json()["rules"]
    assert (listed["packets"], listed["bytes"]) == (3, rule_bytes) and listed["last_hit"] is not None
    (member,) = client.get("/v1/rules", params={"list": "lab-feed"}).json()["rules"]
    assert (member["prefix"], member["packets"], member["bytes"]) == ("198.18.8.8/32", 2, list_bytes)
    (lv,) = [x for x in client.get("/v1/lists").json()["lists"] if x["name"] == "lab-feed"]
    assert (lv["packets"], lv["bytes"]) == (2, list_bytes)

    # detach one stage over REST: the chain keeps the other
    r = client.delete("/v1/attachments", params={"ifname": b.ifname, "netns": b.netns, "program": "droplist"})
    assert r.status_code == 200, r.text
    assert r.json()["removed"] == [{"netns": b.netns, "ifname": b.ifname, "hook": "xdp", "program": "droplist"}]
    st = client.get("/v1/status", params={"netns": b.netns}).json()
    (iface,) = [i for i in st["interfaces"] if i["ifname"] == b.ifname]
    assert [s["program"] for s in iface["hooks"][0]["stages"]] == ["counter"]
    assert client.delete(f"/v1/rules/{rid}").status_code == 200
    assert client.delete("/v1/lists/lab-feed").status_code == 200


def test_block_and_unblock_over_rest_stops_and_restarts_traffic(
        client: httpx.Client, server: Running, lab: TwoHostLab, attach, mark: bytes) -> None:
    a, b = lab.a, lab.b

    # a stale revision attaches nothing
    rev = client.get("/v1/revision").json()["revision"]
    r = client.post("/v1/attachments", json={"ifname": b.ifname, "netns": b.netns, "program": "droplist"},
                    headers={"If-Match": str(rev + 7)})
    assert r.status_code == 412, r.text
    assert r.json()["error"] == "revision_conflict"
    assert not client.get("/v1/status", params={"netns": b.netns}).json()["interfaces"]

    attach(b, "droplist")

    def phase(name: str) -> dict[str, int]:
        frames = [udp_frame(a, b, SPOOFED_IPV4, mark, f"spoofed-{name}", i) for i in range(4)]
        frames += [udp_frame(a, b, a.ipv4, mark, f"legit-{name}", i) for i in range(2)]
        return send_and_count(lab, frames, mark)

    assert phase("before") == {"spoofed-before": 4, "legit-before": 2}

    r = client.post("/v1/block", json={"prefixes": ["203.0.113.0/24"], "comment": "spoofed"})
    assert r.status_code == 201, r.text
    rid = r.json()["added"][0]["id"]
    try:
        assert phase("blocked") == {"legit-blocked": 2}
    finally:
        r = client.delete(f"/v1/rules/{rid}")
    assert r.status_code == 200, r.text

    assert phase("after") == {"spoofed-after": 4, "legit-after": 2}


def test_stats_reset_zeroes_a_hooks_counters_and_with_rules_the_hits(
        client: httpx.Client, lab: TwoHostLab, attach, mark: bytes) -> None:
    a, b = lab.a, lab.b
    attach(b, "counter")
    attach(b, "droplist")
    r = client.post("/v1/block", json={"prefixes": ["198.18.9.0/24"], "comment": "reset test"})
    assert r.status_code == 201, r.text
    frames = [udp_frame(a, b, "198.18.9.9", mark, "spoofed", i) for i in range(2)]
    frames.append(udp_frame(a, b, a.ipv4, mark, "legit", 0))
    where = {"netns": b.netns, "ifname": b.ifname}

    def counted() -> tuple[dict, int]:
        (hs,) = client.get("/v1/stats", params=where).json()["hooks"]
        (rule,) = client.get("/v1/rules", params={"prefix": "198.18.9.0/24"}).json()["rules"]
        return hs, rule["packets"]

    assert send_and_count(lab, frames, mark) == {"legit": 1}
    hs, hits = counted()
    assert hs["verdicts"]["drop_src"]["packets"] == 2 and hits == 2

    # a hook that does not exist: 422 naming the field, nothing zeroed
    r = client.post("/v1/stats/reset", params={**where, "hook": "xdp-egress"})
    assert r.status_code == 422 and r.json()["field"] == "hook", r.text
    assert counted() == (hs, 2)

    # the hook's counters, not the rule hits; the answer is the stats just after
    r = client.post("/v1/stats/reset", params=where)
    assert r.status_code == 200, r.text
    (z,) = r.json()["hooks"]
    assert (z["hook"], z["total"], z["protocols"], z["verdicts"]) == ("xdp", {"packets": 0, "bytes": 0}, [], {})
    assert counted() == (z, 2)

    # with rules: every rule's hit counter too; counting starts again from zero
    assert client.post("/v1/stats/reset", params={**where, "rules": True}).status_code == 200
    assert counted() == (z, 0)
    assert send_and_count(lab, frames, mark) == {"legit": 1}
    hs, hits = counted()
    assert hs["verdicts"]["drop_src"]["packets"] == 2 and hits == 2
