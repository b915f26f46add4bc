"""Drop-list verdicts on real traffic between two lab namespaces.

Frames are built with scapy and sent from namespace a; what arrives in b is
counted exactly: with a capture on b when the drop list runs at XDP (the
capture sees frames after XDP), with a UDP socket in b when it runs at TC
ingress (a capture would still see frames TC drops), and with a capture on b
when it runs at TC egress on a. Every test has its own pin and state
directory (helpers_droplist.DlEnv).
"""

from __future__ import annotations

import contextlib
import errno
from collections import Counter

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RS,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

import traffic
from helpers_droplist import (
    BAD4,
    BAD6,
    arrivals_socket,
    arrivals_xdp,
    capture_raw,
    dl_env,  # noqa: F401  (fixture)
    marked,
    send_raw,
    udp_frame,
)
from scapy.packet import Raw
from tests.support import model
from traffic import (Capture, PastIngress, build_frame, count_kinds, ether, payload, sentinel_frame,
                     sentinel_payload, udp_send)
from xdpctl import abi
from xdpctl.core import counters
from xdpctl.core.rules.validate import spec

HOOKS = [("xdp", "generic"), ("xdp", "native"), ("tc-ingress", None)]
HOOK_IDS = ["xdp-generic", "xdp-native", "tc-ingress"]


def _expect(sources: list[str], prefix: str = "pass") -> Counter[str]:
    return Counter(f"{prefix}-{s}" for s in sources)


# --------------------------------------------------------------------------
# 1. Source deny on every ingress hook


@pytest.mark.parametrize(("hook", "mode"), HOOKS, ids=HOOK_IDS)
def test_source_deny_ipv4_and_ipv6(dl_env, mark, udp_receiver, hook, mode) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    ref = env.attach(b, hook, mode)
    env.block(BAD4, BAD6)

    blocked = ["203.0.113.1", "203.0.113.128", "203.0.113.255",
               "2001:db8:bad::1", "2001:db8:bad:ffff:ffff:ffff:ffff:fffe"]
    passing = [a.ipv4, "203.0.112.255", "203.0.114.0", "198.51.100.7",
               a.ipv6, "2001:db8:bac:ffff::1", "2001:db8:bae::1"]

    if hook == "xdp":
        frames = [udp_frame(env, s, mark, f"drop-{s}") for s in blocked] + \
                 [udp_frame(env, s, mark, f"pass-{s}") for s in passing]
        assert arrivals_xdp(env, frames, mark) == _expect(passing)
    else:
        rx4 = udp_receiver(b.netns, b.ipv4)
        rx6 = udp_receiver(b.netns, b.ipv6)

        def frame(s: str, verdict: str):
            return udp_frame(env, s, mark, f"{verdict}-{s}", dport=rx6.port if ":" in s else rx4.port)

        frames = [frame(s, "drop") for s in blocked] + [frame(s, "pass") for s in passing]
        # A capture on b sees every frame, dropped or not: TC ingress runs
        # after packet sockets. The sockets see only what TC passed.
        with Capture(b, mark) as cap:
            got4 = arrivals_socket(rx4, [f for f in frames if IP in f], mark, via=a, sentinel_from=a.ipv4)
            got6 = arrivals_socket(rx6, [f for f in frames if IPv6 in f], mark, via=a, sentinel_from=a.ipv6)
            seen = count_kinds(cap.finish(via=a), mark)
        assert got4 + got6 == _expect(passing)
        assert seen == _expect(passing) + _expect(blocked, "drop") + Counter({"sentinel": 2})

    # XDP counts data_end - data; TC counts skb->len, which at ingress
    # includes the Ethernet header again: both are the bytes on the wire.
    sizes = sum(len(f) for f in frames if kind_is_drop(f, mark))
    v = env.verdicts(ref)
    assert v["drop_src"] == (len(blocked), sizes)
    assert "drop_dst" not in v and "drop_port" not in v and "drop_policy" not in v


# --------------------------------------------------------------------------
# 2. Longest prefix wins: allows carve holes, /32 denies punch through


def test_allow_carves_hole_and_exact_deny_inside_allow(dl_env, mark) -> None:
    env = dl_env()
    env.attach(env.lab.b, "xdp", "generic")
    env.block(BAD4)
    env.allow("203.0.113.128/25")
    env.block("198.51.0.0/16")
    env.allow("198.51.100.0/24")
    env.block("198.51.100.66/32")
    env.block(BAD6)
    env.allow("2001:db8:bad:8000::/49")  # not a band length: the IPv6 trie
    env.block("2001:db8:bad:8000::66/128")

    cases = {
        "203.0.113.1": "drop", "203.0.113.127": "drop", "203.0.113.128": "pass",
        "203.0.113.200": "pass", "203.0.113.255": "pass",
        "198.51.7.7": "drop", "198.51.100.65": "pass", "198.51.100.66": "drop",
        "198.51.100.67": "pass", "198.51.101.1": "drop",
        "2001:db8:bad::1": "drop", "2001:db8:bad:7fff:ffff::1": "drop", "2001:db8:bad:8000::1": "pass",
        "2001:db8:bad:8000::66": "drop", "2001:db8:bad:8000::67": "pass", "2001:db8:bad:ffff::1": "pass",
    }
    frames = [udp_frame(env, s, mark, f"{v}-{s}") for s, v in cases.items()]
    assert arrivals_xdp(env, frames, mark) == _expect([s for s, v in cases.items() if v == "pass"])

    # Removing the hole closes it again (incremental remove, no full sync).
    env.dl.remove([spec("203.0.113.128/25")])
    cases["203.0.113.128"] = cases["203.0.113.200"] = cases["203.0.113.255"] = "drop"
    frames = [udp_frame(env, s, mark, f"{v}-{s}") for s, v in cases.items()]
    assert arrivals_xdp(env, frames, mark) == _expect([s for s, v in cases.items() if v == "pass"])


# --------------------------------------------------------------------------
# 3. Destination rules at TC egress


def _second_address_on_b(env) -> tuple[str, str]:
    """Give b 192.0.2.3 and 2001:db8::3 and teach a their MAC."""
    lab, a, b = env.lab, env.lab.a, env.lab.b
    extra4, extra6 = "192.0.2.3", "2001:db8::3"
    lab.ipr("b").addr("add", index=b.ifindex, address=extra4, prefixlen=24)
    lab.ipr("b").addr("add", index=b.ifindex, address=extra6, prefixlen=64, flags=IFA_F_NODAD)
    for addr in (extra4, extra6):
        lab.ipr("a").neigh("replace", dst=addr, lladdr=b.mac, ifindex=a.ifindex, state=0x80)
    return extra4, extra6


def test_destination_rules_on_tc_egress(dl_env, mark, udp_receiver) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    other4, other6 = _second_address_on_b(env)
    env.attach(a, "tc-egress", program="counter")
    ref = env.attach(a, "tc-egress", program="droplist")
    st = env.hooks.hook_status(ref)
    assert st.attached and [s.program for s in st.stages] == ["counter", "droplist"]
    res = env.cli("block", "--dst", f"{b.ipv4}/32", f"{b.ipv6}/128", "--json").json()
    assert [(r["prefix"], r["dir"], r["action"]) for r in res["added"]] == [
        (f"{b.ipv4}/32", "dst", "deny"), (f"{b.ipv6}/128", "dst", "deny")]

    # scapy frames leave through a's TC egress; the capture on b shows what
    # passed, and each dropped frame failed its send with ENOBUFS.
    dsts = {b.ipv4: "drop", other4: "pass", b.ipv6: "drop", other6: "pass"}
    frames = [udp_frame(env, a.ipv6 if ":" in d else a.ipv4, mark, f"{v}-{d}", dst=d) for d, v in dsts.items()]
    got, errs = capture_raw(env, frames, mark)
    assert got == _expect([d for d, v in dsts.items() if v == "pass"])
    assert errs == [errno.ENOBUFS if v == "drop" else 0 for v in dsts.values()]

    # real sockets in a: nothing sent to b's main addresses arrives
    sizes = sum(len(f) for f in frames if kind_is_drop(f, mark))
    dropped = 2
    for blocked, other, wildcard, ip_hdr in ((b.ipv4, other4, "0.0.0.0", 20), (b.ipv6, other6, "::", 40)):
        rx = udp_receiver(b.netns, wildcard)
        for i in range(3):
            udp_send(a.netns, blocked, rx.port, payload(mark, f"drop{i}"))
            sizes += 14 + ip_hdr + 8 + len(payload(mark, f"drop{i}"))
            dropped += 1
        for i in range(2):
            udp_send(a.netns, other, rx.port, payload(mark, f"pass{i}"))
        udp_send(a.netns, other, rx.port, sentinel_payload(mark))
        got = rx.recv_until(sentinel_payload(mark))
        assert sorted((m.payload, m.src) for m in got) == [
            (payload(mark, "pass0"), a.ipv6 if ":" in other else a.ipv4),
            (payload(mark, "pass1"), a.ipv6 if ":" in other else a.ipv4)]
    v = env.verdicts(ref)
    assert v["drop_dst"] == (dropped, sizes)
    assert "drop_src" not in v and "drop_port" not in v


def kind_is_drop(frame, mark: bytes) -> bool:
    return (traffic.kind_of(frame, mark) or "").startswith("drop")


# --------------------------------------------------------------------------
# 4. L4 port rules


def test_port_rules(dl_env, mark) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    ref = env.attach(b, "xdp", "generic")
    env.block(None, proto="udp", port=9999)
    env.block(BAD4, proto="tcp", port=22)

    def tcp(src: str, dport: int, kind: str):
        ip = IPv6(src=src, dst=b.ipv6) if ":" in src else IP(src=src, dst=b.ipv4)
        return ether(a, b) / ip / TCP(sport=40000, dport=dport, flags="S") / marked(mark, kind)

    cases = [
        (udp_frame(env, a.ipv4, mark, "drop-udp4-9999", dport=9999), False),
        (udp_frame(env, a.ipv6, mark, "drop-udp6-9999", dport=9999), False),
        (udp_frame(env, "203.0.113.9", mark, "drop-udp4-bad-9999", dport=9999), False),
        (udp_frame(env, a.ipv4, mark, "pass-udp4-9998", dport=9998), True),
        (udp_frame(env, a.ipv6, mark, "pass-udp6-9998", dport=9998), True),
        (udp_frame(env, a.ipv4, mark, "pass-udp4-sport9999", sport=9999, dport=9998), True),
        (tcp(a.ipv4, 9999, "pass-tcp4-9999"), True),
        (tcp(a.ipv6, 9999, "pass-tcp6-9999"), True),
        (tcp("203.0.113.9", 22, "drop-tcp4-bad-22"), False),
        (tcp("203.0.113.250", 22, "drop-tcp4-bad2-22"), False),
        (tcp("198.51.100.9", 22, "pass-tcp4-other-22"), True),
        (tcp(a.ipv4, 22, "pass-tcp4-a-22"), True),
        (tcp("203.0.113.9", 23, "pass-tcp4-bad-23"), True),
        (udp_frame(env, "203.0.113.9", mark, "pass-udp4-bad-22", dport=22), True),
    ]
    got = arrivals_xdp(env, [f for f, _ in cases], mark)
    assert got == Counter(traffic.kind_of(f, mark) for f, ok in cases if ok)
    v = env.verdicts(ref)
    assert v["drop_port"] == (5, sum(len(f) for f, ok in cases if not ok))
    hits = {(r.prefix, r.proto, r.port): (r.packets, r.bytes) for r in env.dl.rules()}
    udp_bytes = sum(len(f) for f, ok in cases[:3])
    tcp_bytes = sum(len(f) for f, ok in cases[8:10])
    assert hits == {(None, "udp", 9999): (3, udp_bytes), (BAD4, "tcp", 22): (2, tcp_bytes)}


# --------------------------------------------------------------------------
# 5. Exact per-rule and per-hook counters


@pytest.mark.parametrize("hook", ["xdp", "tc-ingress"])
def test_hit_counters_are_exact(dl_env, mark, udp_receiver, hook) -> None:
    # An IPv4-only lab sends nothing unprompted: every counted frame is ours.
    env = dl_env(ipv6=False)
    a, b = env.lab.a, env.lab.b
    ref = env.attach(b, hook, "generic" if hook == "xdp" else None)
    r_deny4 = env.block(BAD4).added[0].id
    r_allow = env.allow("203.0.113.128/25").added[0].id
    r_deny6 = env.block(BAD6).added[0].id
    r_port = env.block(None, proto="udp", port=9999).added[0].id
    r_other = env.block("198.18.0.0/15").added[0].id

    rx = udp_receiver(b.netns, b.ipv4) if hook != "xdp" else None
    dport = rx.port if rx else 7
    groups = {
        "deny4": ("203.0.113.10", 5),
        "allow": ("203.0.113.200", 3),
        "deny6": ("2001:db8:bad::10", 4),
        "none": ("198.51.100.1", 2),
    }
    frames, size = [], {}
    for kind, (src, n) in groups.items():
        f = udp_frame(env, src, mark, kind, dst="2001:db8::2" if ":" in src else b.ipv4, dport=dport)
        size[kind] = len(f)
        frames += [f] * n
    if hook == "xdp":
        got = arrivals_xdp(env, frames, mark)
        sentinel_len = len(sentinel_frame(a, mark))
    else:
        got = arrivals_socket(rx, frames, mark, via=a, sentinel_from=a.ipv4)
        sentinel_len = 14 + 20 + 8 + len(sentinel_payload(mark))
    assert got == Counter({"allow": 3, "none": 2})

    n = {k: v[1] for k, v in groups.items()}
    stats = {r.id: (r.packets, r.bytes) for r in env.dl.rules()}
    assert stats == {
        r_deny4: (n["deny4"], n["deny4"] * size["deny4"]),
        r_allow: (n["allow"], n["allow"] * size["allow"]),
        r_deny6: (n["deny6"], n["deny6"] * size["deny6"]),
        r_port: (0, 0),
        r_other: (0, 0),
    }
    last = {r.id: r.last_hit for r in env.dl.rules()}
    assert last[r_port] is None and last[r_other] is None
    assert all(last[i] is not None for i in (r_deny4, r_allow, r_deny6))

    assert env.verdicts(ref) == {
        "drop_src": (n["deny4"] + n["deny6"], n["deny4"] * size["deny4"] + n["deny6"] * size["deny6"]),
        "pass_allow": (n["allow"], n["allow"] * size["allow"]),
        "pass_nomatch": (n["none"] + 1, n["none"] * size["none"] + sentinel_len),
    }

    if hook == "xdp":  # the CLI reads the same numbers
        cli = {r["id"]: (r["packets"], r["bytes"]) for r in env.cli("rules", "--json").json()["rules"]}
        assert cli == stats


# --------------------------------------------------------------------------
# 6. One rule, every hook


def test_one_rule_applies_on_every_hook(dl_env, mark) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    xdp_b = env.attach(b, "xdp", "generic")
    egress_a = env.attach(a, "tc-egress")
    env.block(BAD4)
    bad = [udp_frame(env, f"203.0.113.{i}", mark, f"drop-{i}") for i in (1, 2, 3)]
    good = [udp_frame(env, a.ipv4, mark, "pass")]

    # Through a's TC egress: dropped there, b's XDP never sees them.
    got, errs = capture_raw(env, bad + good, mark)
    assert got == Counter({"pass": 1})
    assert errs == [errno.ENOBUFS] * 3 + [0]
    size = sum(len(f) for f in bad)
    assert env.verdicts(egress_a)["drop_src"] == (3, size)
    assert "drop_src" not in env.verdicts(xdp_b)

    # Around a's TC egress (qdisc bypass): b's XDP drops them by the same rule.
    got, errs = capture_raw(env, bad + bad + good, mark, bypass_qdisc=True)
    assert got == Counter({"pass": 1})
    assert errs == [0] * 7
    assert env.verdicts(xdp_b)["drop_src"] == (6, 2 * size)
    assert env.verdicts(egress_a)["drop_src"] == (3, size)
    (rule,) = env.dl.rules()
    assert (rule.packets, rule.bytes) == (9, 3 * size)


# --------------------------------------------------------------------------
# 8. Default deny


def test_policy_deny_passes_arp_and_nd_and_management(dl_env, mark) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    env.attach(b, "xdp", "generic")
    assert env.cli("policy", "deny").stdout.startswith("policy deny")
    assert env.dl.policy() == "deny"

    def frames() -> list:
        nd_dst = "ff02::1:ff00:2"
        return [
            udp_frame(env, a.ipv4, mark, "udp4-a"),
            udp_frame(env, "203.0.113.5", mark, "udp4-bad"),
            ether(a, b) / IP(src=a.ipv4, dst=b.ipv4) / ICMP() / marked(mark, "icmp4-a"),
            udp_frame(env, a.ipv6, mark, "udp6-a"),
            ether(a, b) / IPv6(src=a.ipv6, dst=b.ipv6) / ICMPv6EchoRequest(data=payload(mark, "echo6-a")),
            Ether(src=a.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=a.mac, psrc=a.ipv4, pdst=b.ipv4)
            / marked(mark, "arp-request"),
            ether(a, b) / ARP(op=2, hwsrc=a.mac, psrc=a.ipv4, hwdst=b.mac, pdst=b.ipv4) / marked(mark, "arp-reply"),
            Ether(src=a.mac, dst="33:33:ff:00:00:02") / IPv6(src=a.ipv6, dst=nd_dst, hlim=255)
            / ICMPv6ND_NS(tgt=b.ipv6) / ICMPv6NDOptSrcLLAddr(lladdr=a.mac) / marked(mark, "nd-ns"),
            ether(a, b) / IPv6(src=a.ipv6, dst=b.ipv6, hlim=255) / ICMPv6ND_NA(tgt=a.ipv6, R=0, S=1, O=1)
            / marked(mark, "nd-na"),
            Ether(src=a.mac, dst="33:33:00:00:00:02") / IPv6(src=a.ipv6, dst="ff02::2", hlim=255) / ICMPv6ND_RS()
            / marked(mark, "nd-rs"),
            build_frame("ipv4-trunc", a, b, mark),
        ]

    always = {"arp-request": 1, "arp-reply": 1, "nd-ns": 1, "nd-na": 1, "nd-rs": 1}
    assert arrivals_xdp(env, frames(), mark) == Counter(always)

    env.cli("allow", "--mgmt", "192.0.2.0/24")
    (mgmt,) = env.dl.rules()
    assert (mgmt.prefix, mgmt.action, mgmt.mgmt) == ("192.0.2.0/24", "allow", True)
    assert arrivals_xdp(env, frames(), mark) == Counter(always) + Counter({"udp4-a": 1, "icmp4-a": 1})

    env.dl.set_policy("allow")
    everything = Counter(traffic.kind_of(f, mark) for f in frames())
    assert arrivals_xdp(env, frames(), mark) == everything


MGMT_NET = "192.0.0.0/16"  # the lab's 192.0.2.0/24 and more
MGMT_GROUPS = {  # kind: (source, frames)
    "client": ("192.0.2.1", 3),     # a itself: under the mgmt prefix and its own /32 block
    "lan": ("192.0.2.50", 2),       # under the mgmt prefix only
    "outside": ("203.0.113.5", 2),  # no rule: the policy
    "denied": ("198.51.100.5", 2),  # a plain block
}


def _mgmt_round(env, mark: bytes, rx, sentinel_from: str | None) -> tuple[Counter[str], dict[str, int]]:
    """Send MGMT_GROUPS from a to b; (kinds that arrived, frame size by kind)."""
    a, b = env.lab.a, env.lab.b
    frames, size = [], {}
    for kind, (src, n) in MGMT_GROUPS.items():
        f = udp_frame(env, src, mark, kind, dst=b.ipv4, dport=rx.port if rx else 7)
        size[kind] = len(f)
        frames += [f] * n
    if rx is None:
        return arrivals_xdp(env, frames, mark), size
    return arrivals_socket(rx, frames, mark, via=a, sentinel_from=sentinel_from), size


@pytest.mark.parametrize("hook", ["xdp", "tc-ingress"])
def test_management_prefix_passes_under_deny_and_over_longer_blocks(dl_env, mark, udp_receiver, hook) -> None:
    # An IPv4-only lab sends nothing unprompted: every counted frame is ours.
    env = dl_env(ipv6=False)
    a, b = env.lab.a, env.lab.b
    assert a.ipv4 == MGMT_GROUPS["client"][0]
    ref = env.attach(b, hook, "generic" if hook == "xdp" else None)
    env.cli("policy", "deny")
    env.cli("allow", "--mgmt", MGMT_NET)
    r_client = env.block(f"{a.ipv4}/32").added[0].id
    r_denied = env.block("198.51.100.0/24").added[0].id
    (r_mgmt,) = [r.id for r in env.dl.rules() if r.mgmt]
    rx = udp_receiver(b.netns, b.ipv4) if hook != "xdp" else None
    n = {k: v[1] for k, v in MGMT_GROUPS.items()}

    got, size = _mgmt_round(env, mark, rx, a.ipv4)
    assert got == Counter({"client": n["client"], "lan": n["lan"]})
    if hook == "xdp":  # the non-IP sentinel frame passes whatever the policy
        sentinel = {"pass_always": (1, len(sentinel_frame(a, mark)))}
        mgmt_hits = n["client"] + n["lan"]
    else:  # the sentinel datagram comes from a: the management prefix lets it in
        sentinel = {}
        mgmt_hits = n["client"] + n["lan"] + 1
    bytes_ = {k: n[k] * size[k] for k in n}
    v1 = env.verdicts(ref)
    pass_allow = (n["client"] + n["lan"], bytes_["client"] + bytes_["lan"])
    if hook != "xdp":
        pass_allow = (pass_allow[0] + 1, pass_allow[1] + 14 + 20 + 8 + len(sentinel_payload(mark)))
    assert v1 == {"pass_allow": pass_allow, "drop_policy": (n["outside"], bytes_["outside"]),
                  "drop_src": (n["denied"], bytes_["denied"]), **sentinel}
    stats = {r.id: r.packets for r in env.dl.rules()}
    assert stats == {r_mgmt: mgmt_hits, r_client: 0, r_denied: n["denied"]}

    # Without the management prefix the deny takes effect: a's own /32 block
    # and the policy. (TC: the sentinel now comes from an address of a that
    # a plain allow lets in, outside the blocks.)
    env.dl.remove(ids=[r_mgmt])
    assert [r.mgmt for r in env.dl.rules()] == [False, False]
    extra = "192.0.2.9"
    if rx is not None:
        env.lab.ipr("a").addr("add", index=a.ifindex, address=extra, prefixlen=24)
        env.allow(f"{extra}/32")
    got, _ = _mgmt_round(env, mark, rx, extra)
    assert got == Counter()
    v2 = _delta(env.verdicts(ref), v1)
    assert v2 == {"drop_src": (n["client"] + n["denied"], bytes_["client"] + bytes_["denied"]),
                  "drop_policy": (n["outside"] + n["lan"], bytes_["outside"] + bytes_["lan"]),
                  **({"pass_allow": (1, 14 + 20 + 8 + len(sentinel_payload(mark)))} if rx else sentinel)}
    stats = {r.id: r.packets for r in env.dl.rules() if r.id in (r_client, r_denied)}
    assert stats == {r_client: n["client"], r_denied: 2 * n["denied"]}


# --------------------------------------------------------------------------
# 9. VLAN tags, IPv4-mapped IPv6, IPv6 extension headers


@pytest.mark.parametrize("mode", ["generic", "native"])
def test_vlan_mapped_and_extension_headers(dl_env, mark, mode) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    ref = env.attach(b, "xdp", mode)
    env.block(BAD4)
    env.block(None, proto="udp", port=9999)

    def v4(src: str, kind: str, *tags, dport: int = 7):
        e = ether(a, b)
        for t in tags:
            e = e / t
        return e / IP(src=src, dst=b.ipv4) / UDP(sport=40000, dport=dport) / marked(mark, kind)

    def v6(src: str, kind: str, *ext, dport: int = 7):
        p = ether(a, b) / IPv6(src=src, dst=b.ipv6)
        for h in ext:
            p = p / h
        return p / UDP(sport=40000, dport=dport) / marked(mark, kind)

    cases = [
        (v4("203.0.113.5", "drop-dot1q", Dot1Q(vlan=10)), False),
        (v4("203.0.113.5", "drop-qinq", Dot1AD(vlan=100), Dot1Q(vlan=10)), False),
        (v4("203.0.113.5", "drop-q-in-q-8100", Dot1Q(vlan=100), Dot1Q(vlan=10)), False),
        (v4(a.ipv4, "pass-dot1q", Dot1Q(vlan=10)), True),
        (v4(a.ipv4, "pass-qinq", Dot1AD(vlan=100), Dot1Q(vlan=10)), True),
        (v4(a.ipv4, "drop-dot1q-port", Dot1Q(vlan=10), dport=9999), False),
        (v4(a.ipv4, "drop-qinq-port", Dot1AD(vlan=100), Dot1Q(vlan=10), dport=9999), False),
        (v6("::ffff:203.0.113.5", "drop-mapped"), False),
        (v6("::ffff:198.51.100.5", "pass-mapped"), True),
        (v6(a.ipv6, "drop-hbh-port", IPv6ExtHdrHopByHop(), dport=9999), False),
        (v6(a.ipv6, "drop-ext3-port", IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(),
            IPv6ExtHdrRouting(addresses=[]), dport=9999), False),
        (v6(a.ipv6, "pass-hbh-9998", IPv6ExtHdrHopByHop(), dport=9998), True),
        (ether(a, b) / IP(src=a.ipv4, dst=b.ipv4, options=b"\x01\x01\x01\x00") / UDP(dport=9999)
         / marked(mark, "drop-ipopts-port"), False),
    ]
    got = arrivals_xdp(env, [f for f, _ in cases], mark)
    assert got == Counter(traffic.kind_of(f, mark) for f, ok in cases if ok)
    v = env.verdicts(ref)
    src_drops = [f for f, ok in cases if not ok and "port" not in traffic.kind_of(f, mark)]
    port_drops = [f for f, ok in cases if not ok and "port" in traffic.kind_of(f, mark)]
    assert v["drop_src"] == (len(src_drops), sum(len(f) for f in src_drops))
    assert v["drop_port"] == (len(port_drops), sum(len(f) for f in port_drops))


# --------------------------------------------------------------------------
# 10. Malformed IP headers at TC


def _malformed_frames(env, mark: bytes) -> dict[str, bytes]:
    """IP frames from a to b whose IP header the parser calls malformed.
    Headers cut short end before any payload, so instead of the marker they
    carry a tag of this test in the IPv4 identification / IPv6 flow label;
    the others carry the marker."""
    a, b = env.lab.a, env.lab.b
    tag = int(mark[-4:], 16)
    e4, e6 = bytes(ether(a, b, type=0x0800)), bytes(ether(a, b, type=0x86DD))
    ip4 = bytes(IP(src="198.51.100.9", dst=b.ipv4, id=tag) / UDP(sport=40000, dport=7) / marked(mark, "v4"))
    ip6 = bytes(IPv6(src="2001:db8:bad::9", dst="2001:db8::2", fl=tag) / UDP(sport=40000, dport=7)
                / marked(mark, "v6"))
    frames = {
        "ipv4-cut-12": e4 + ip4[:12],
        "ipv4-ihl-4": e4 + bytes([0x44]) + ip4[1:],
        "ipv4-version-5": e4 + bytes([0x55]) + ip4[1:],
        "ipv6-cut-30": e6 + ip6[:30],
        "ipv6-version-4": e6 + bytes([0x40 | (ip6[0] & 0x0F)]) + ip6[1:],
    }
    assert all(model.classify(f).l3 == abi.L3.MALFORMED for f in frames.values())
    return frames


def _through_tc(env, frames: dict[str, bytes], sentinels: dict[int, bytes], mark: bytes, hook: str):
    """Send frames, then the sentinels, from a (raw, through a's qdisc).
    Returns (frames past b's TC ingress by ethertype, send errnos, marked
    frames a capture on b saw before TC ingress, or None at tc-egress)."""
    a, b = env.lab.a, env.lab.b
    with PastIngress(b, 0x0800) as rx4, PastIngress(b, 0x86DD) as rx6, contextlib.ExitStack() as stack:
        cap = stack.enter_context(Capture(b, mark)) if hook == "tc-ingress" else None
        errs = send_raw(a, list(frames.values()) + list(sentinels.values()))
        past = {0x0800: rx4.recv_until(sentinels[0x0800]), 0x86DD: rx6.recv_until(sentinels[0x86DD])}
        tapped = count_kinds(cap.finish(via=a), mark) if cap else None
    ours = set(frames.values())
    return {k: [f for f in v if f in ours] for k, v in past.items()}, errs, tapped


def _delta(after: dict, before: dict) -> dict:
    out = {k: (v[0] - before.get(k, (0, 0))[0], v[1] - before.get(k, (0, 0))[1]) for k, v in after.items()}
    return {k: v for k, v in out.items() if v != (0, 0)}


@pytest.mark.parametrize("hook", ["tc-ingress", "tc-egress"])
def test_malformed_ip_headers_on_tc(dl_env, mark, hook) -> None:
    """IPv4 and IPv6 headers cut short (frames BPF_PROG_TEST_RUN refuses
    for TC, so only real traffic checks them) or with a bad version or
    length: passed under policy allow, dropped under deny, on TC ingress
    and TC egress. Delivery is judged behind the filter (packet sockets in b
    served after TC ingress), the verdict and protocol counters exactly."""
    env = dl_env(ipv6=False)  # nothing unprompted: every counted frame is ours
    a, b = env.lab.a, env.lab.b
    where = b if hook == "tc-ingress" else a
    env.attach(where, hook, program="counter")
    ref = env.attach(where, hook)
    env.allow(f"{a.ipv4}/32", "2001:db8::1/128")  # the sentinels pass under either policy
    bad = _malformed_frames(env, mark)
    sentinels = {
        0x0800: bytes(ether(a, b) / IP(src=a.ipv4, dst=b.ipv4) / UDP(sport=40000, dport=7)
                      / Raw(sentinel_payload(mark) + b"4")),
        0x86DD: bytes(ether(a, b) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=40000, dport=7)
                      / Raw(sentinel_payload(mark) + b"6")),
    }
    by_type = {t: [f for f in bad.values() if f[12:14] == t.to_bytes(2, "big")] for t in (0x0800, 0x86DD)}
    bad_bytes = sum(map(len, bad.values()))
    tap_sentinel = len(bytes(sentinel_frame(a, mark)))
    marked_kinds = Counter({"v4": 2, "v6": 1, "sentinel": 2})  # the two IP sentinels carry the marker too

    for policy in ("allow", "deny"):
        env.dl.set_policy(policy)
        v0, p0 = env.verdicts(ref), counters.read(env.ctx, ref).proto
        past, errs, tapped = _through_tc(env, bad, sentinels, mark, hook)
        if policy == "allow":
            assert past == by_type
            assert errs == [0] * (len(bad) + 2)
        else:
            assert past == {0x0800: [], 0x86DD: []}
            assert errs == ([0] * len(bad) if hook == "tc-ingress" else [errno.ENOBUFS] * len(bad)) + [0, 0]
        if tapped is not None:  # the frames did reach b: TC ingress decided
            assert tapped == marked_kinds

        want = {f"{'pass' if policy == 'allow' else 'drop'}_malformed": (len(bad), bad_bytes),
                "pass_allow": (2, sum(map(len, sentinels.values())))}
        protos = {("malformed", "-"): (len(bad), bad_bytes),
                  ("ipv4", "udp"): (1, len(sentinels[0x0800])), ("ipv6", "udp"): (1, len(sentinels[0x86DD]))}
        if hook == "tc-ingress":  # the capture's own sentinel (not IP) crossed b's TC ingress too
            want["pass_nomatch" if policy == "allow" else "pass_always"] = (1, tap_sentinel)
            protos[("other", "-")] = (1, tap_sentinel)
        assert _delta(env.verdicts(ref), v0) == want, policy
        assert _delta(counters.read(env.ctx, ref).proto, p0) == protos, policy
