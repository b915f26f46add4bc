"""Drop-list state over time: TTL expiry, restore after pins are lost, drift repair.

Traffic proves each state: a capture on b (after b's XDP hook) shows what
passed; frames sent through a's TC egress report each drop as ENOBUFS to the
sender. TTL tests read each temporary rule's deadline from the kernel entry
and the database row: traffic meant for "before the deadline" counts only if
it was through before both (else the round starts over with a longer TTL),
and traffic meant for "after" waits until both have passed. No assertion
depends on how long anything took.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections import Counter

import pytest

from helpers_droplist import (
    BAD4,
    BAD6,
    arrivals_xdp,
    capture_raw,
    detach_behind_xdpctls_back,
    dl_env,  # noqa: F401  (fixture)
    key4,
    key6,
    rule_val,
    udp_frame,
    wait_until,
)
from tests.support.progs import host_table_problems
from xdpctl import abi
from xdpctl.core.context import Context
from xdpctl.core.errors import NotFound
from xdpctl.core.hooks import HookRef
from xdpctl.core.restore import restore
from xdpctl.core.rules import hosts4, presence
from xdpctl.core.rules.clock import kernel_ns
from xdpctl.core.rules.tables import KernelTables, read_pinned_config
from xdpctl.core.rules.validate import DENY
from xdpctl.core.views import RuleView
from xdpctl.kernel import bpffs, maps


def _frames(env, mark, sources):
    return [udp_frame(env, s, mark, s) for s in sources]


def _shared(env, name: str) -> maps.Map:
    """A shared map; a rule map in the active set."""
    if name in abi.RULE_MAPS:
        name = abi.set_map(name, read_pinned_config(env.ctx).active)
    return maps.Map.from_pin(os.path.join(env.settings.shared_map_dir, name))


def _kernel_deadline(env, ids: set[int], pick=min) -> int:
    """The earliest (or, with pick=max, the latest) deadline the kernel
    holds for rules ``ids``: read from the map values (heads and fallbacks),
    on the clock the classifiers compare with (CLOCK_MONOTONIC, coarse)."""
    found = []
    for table in env.map_dump().values():
        for raw in table.values():
            v = rule_val(raw)
            found += [e for r, e in ((v.rule_id, v.expires_ns), (v.fb_rule_id, v.fb_expires_ns)) if r in ids]
    assert found and all(found), (ids, found)
    return pick(found)


def _before_deadline(env, add, observe, ttl: int = 2):
    """Add temporary rules with ``add(ttl_text)`` (it returns them) and run
    ``observe()`` while they are in force; return (rules, what observe
    returned).

    A round counts only if observe() ended before the first of the rules'
    deadlines, on both clocks that hold one: the kernel's (read from the map
    values) and the database's (wall clock). Otherwise (a slow machine) the
    round proves nothing: its rules are removed and the next round doubles
    the TTL. Nothing here depends on how long anything takes."""
    while True:
        rules = add(f"{ttl}s")
        deadline_ns = _kernel_deadline(env, {r.id for r in rules})
        seen = observe()
        if kernel_ns() < deadline_ns and time.time() < min(r.expires for r in rules):
            return rules, seen
        _remove_if_present(env, {r.id for r in rules})
        ttl *= 2
        assert ttl <= 1024, "the deadline passed every time before the traffic was through"


def _remove_if_present(env, ids: set[int]) -> None:
    """Remove rules ``ids``; any of them may be reaped as expired meanwhile."""
    while left := [r.id for r in env.dl.rules() if r.id in ids]:
        with contextlib.suppress(NotFound):  # one expired and was reaped first
            env.dl.remove(ids=left)


def _wait_past(env, rules: list[RuleView]) -> None:
    """Until the kernel deadlines (CLOCK_MONOTONIC, tick resolution) and the
    database deadlines (wall clock) of ``rules`` have all passed. The bound
    is a minute past the latest deadline: it only ends a wait that would
    never end."""
    deadline_ns = _kernel_deadline(env, {r.id for r in rules}, max)
    latest = max(r.expires for r in rules)
    bound = max(deadline_ns - kernel_ns(), 0) / 1e9 + 60
    wait_until(lambda: kernel_ns() > deadline_ns and time.time() > latest,
               f"rules {sorted(r.id for r in rules)} to pass their deadlines", timeout=bound)


# --------------------------------------------------------------------------
# 7. TTL


@pytest.mark.parametrize("reaper", ["cli", "api"])
def test_ttl_expiry(dl_env, mark, reaper) -> None:
    env = dl_env()
    a = env.lab.a
    ref = env.attach(env.lab.b, "xdp", "generic")
    env.block("198.18.0.0/15")  # permanent
    sources = ["203.0.113.5", "198.18.0.5", a.ipv4]
    frames = _frames(env, mark, sources)

    def add(ttl: str) -> list[RuleView]:
        if reaper == "cli":
            added = env.cli("block", BAD4, "--ttl", ttl, "--json").json()["added"]
            assert [r["prefix"] for r in added] == [BAD4]
        else:
            env.block(BAD4, ttl=ttl)
        return [r for r in env.dl.rules() if r.prefix == BAD4]

    def observe() -> tuple[int, Counter]:
        return env.verdicts(ref).get("drop_src", (0, 0))[0], arrivals_xdp(env, frames, mark)

    (rule,), (drops_before, got) = _before_deadline(env, add, observe)
    assert got == Counter([a.ipv4]), "before the deadline"
    assert rule.expires is not None and rule.expires > rule.created
    with _shared(env, "xc_v4_l24") as m:
        val = rule_val(m.lookup(key4("203.0.113.0")))
    assert val.rule_id == rule.id and val.action == DENY and val.plen == 24 and val.expires_ns > 0

    _wait_past(env, [rule])
    # Nothing reaped it: the database row and the kernel entry are still there...
    assert rule.id in [r.id for r in env.dl.rules()]
    with _shared(env, "xc_v4_l24") as m:
        assert rule_val(m.lookup(key4("203.0.113.0"))).rule_id == rule.id
    # ...but the kernel treats the entry as absent.
    assert arrivals_xdp(env, frames, mark) == Counter(["203.0.113.5", a.ipv4])
    stats = {r.id: r.packets for r in env.dl.rules()}
    assert stats[rule.id] == 1  # only the frame from before the deadline
    # 203.0.113.5 once, 198.18.0.5 twice, since the round that counted began
    assert env.verdicts(ref)["drop_src"][0] - drops_before == 3

    if reaper == "cli":
        removed = [r["id"] for r in env.cli("expire", "--json").json()["removed"]]
    else:
        removed = [r.id for r in env.dl.expire().removed]
    assert removed == [rule.id]
    assert [r.prefix for r in env.dl.rules()] == ["198.18.0.0/15"]
    with _shared(env, "xc_v4_l24") as m:
        assert m.lookup(key4("203.0.113.0")) is None
    assert env.dl.expire().removed == []
    assert arrivals_xdp(env, frames, mark) == Counter(["203.0.113.5", a.ipv4])


def test_expired_rule_gives_way_to_the_rule_it_covered(dl_env, mark) -> None:
    """After a temporary rule's deadline, the kernel must apply what the
    database says is in force: the permanent rules the temporary one
    covered. Checked before any process reaps the expired rule, in the same
    map band as the covered rule and in a shorter band."""
    env = dl_env()
    a = env.lab.a
    env.attach(env.lab.b, "xdp", "generic")
    # same band (xc_v4_l24 holds /17../24; xc_v6_l48 holds /41../48)
    env.block("203.0.112.0/23")
    env.block("198.18.0.0/23")
    env.block("2001:db8:ba0::/44")
    # shorter band (/24 in xc_v4_l24 under a /25 and a /32 in xc_v4_l32)
    env.block("198.51.100.0/24")

    def add(ttl: str) -> list[RuleView]:
        env.block("203.0.113.0/24", ttl=ttl)
        env.allow("198.18.1.0/24", ttl=ttl)
        env.block("2001:db8:bad::/48", ttl=ttl)
        env.block("198.51.100.7/32", ttl=ttl)
        env.allow("198.51.100.128/25", ttl=ttl)
        return [r for r in env.dl.rules() if r.expires is not None]

    sources = ["203.0.113.5", "198.18.1.5", "2001:db8:bad::1", "198.51.100.7", "198.51.100.200",
               "203.0.112.5", "198.18.0.5", a.ipv4]
    frames = _frames(env, mark, sources)
    temporary, got = _before_deadline(env, add, lambda: arrivals_xdp(env, frames, mark))
    assert got == Counter(["198.18.1.5", "198.51.100.200", a.ipv4])
    assert len(temporary) == 5

    _wait_past(env, temporary)
    # Desired state now: only the permanent rules. Nothing has reaped yet.
    assert len([r for r in env.dl.rules() if r.expires is not None]) == 5
    assert arrivals_xdp(env, frames, mark) == Counter([a.ipv4]), \
        "expired entries must uncover the permanent rules they covered"

    assert len(env.dl.expire().removed) == 5
    assert arrivals_xdp(env, frames, mark) == Counter([a.ipv4])


# --------------------------------------------------------------------------
# 10. Restore


def test_restore_after_pins_and_programs_are_gone(dl_env, mark, tmp_path) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    env.attach(b, "xdp", "generic")
    env.attach(a, "tc-egress")
    env.block(BAD6)
    env.block(None, proto="udp", port=9999)
    blocklist = tmp_path / "spamhaus.txt"
    blocklist.write_text("# a block list\n203.0.113.0/24 ; first\n198.18.0.0/15\n")
    env.cli("import", str(blocklist))
    assert [(x.name, x.count) for x in env.dl.lists()] == [("spamhaus", 2)]
    maps_before, cfg_before = env.map_dump(), env.config()
    rules_before = env.dl.rules(with_stats=False)

    blocked = [udp_frame(env, "203.0.113.5", mark, "list-1"), udp_frame(env, "198.19.255.1", mark, "list-2"),
               udp_frame(env, "2001:db8:bad::5", mark, "rule-v6"),
               udp_frame(env, a.ipv4, mark, "port-9999", dport=9999)]
    good = [udp_frame(env, a.ipv4, mark, "good4"), udp_frame(env, a.ipv6, mark, "good6")]
    good_kinds = Counter(["good4", "good6"])
    all_kinds = good_kinds + Counter(["list-1", "list-2", "rule-v6", "port-9999"])

    def assert_filtering() -> None:
        # a's TC egress drops (the sender sees ENOBUFS)...
        got, errs = capture_raw(env, blocked + good, mark)
        assert got == good_kinds
        assert errs == [errno.ENOBUFS] * len(blocked) + [0] * len(good)
        # ...and so does b's XDP for frames that skip a's TC egress.
        got, errs = capture_raw(env, blocked + good, mark, bypass_qdisc=True)
        assert got == good_kinds and errs == [0] * (len(blocked) + len(good))

    assert_filtering()

    # Someone removes the programs with plain netlink and wipes the pins.
    detach_behind_xdpctls_back(b, xdp_mode="generic")
    detach_behind_xdpctls_back(a, tc=True)
    env.ctx.close()
    bpffs.remove_tree(env.settings.pin_dir)
    assert not os.path.exists(env.settings.pin_dir)
    got, errs = capture_raw(env, blocked + good, mark)
    assert got == all_kinds and not any(errs)

    rep = env.cli("restore", "--json").json()
    assert rep["errors"] == []
    # every rule-map entry and the config entry written again, nothing deleted
    assert rep["map_entries_written"] == sum(len(v) for v in maps_before.values()) + 1
    assert rep["map_entries_deleted"] == 0
    attached = [line for line in rep["log"] if line.startswith("attached droplist on ")]
    assert len(attached) == 2, rep["log"]
    assert any(f"{b.netns}/{b.ifname} xdp (generic)" in line for line in attached)
    assert any(f"{a.netns}/{a.ifname} tc-egress" in line for line in attached)

    assert env.map_dump() == maps_before
    assert env.config() == cfg_before
    assert env.dl.rules(with_stats=False) == rules_before
    for ep, hook in ((b, "xdp"), (a, "tc-egress")):
        st = env.hooks.hook_status(HookRef(ep.netns, ep.ifname, hook))
        assert st.attached and [s.program for s in st.stages] == ["droplist"]
    assert_filtering()
    # hits of list members are counted per member (each frame was sent twice)
    members = {r.prefix: (r.packets, r.bytes) for r in env.dl.rules(list_name="spamhaus")}
    assert members == {"203.0.113.0/24": (2, 2 * len(blocked[0])), "198.18.0.0/15": (2, 2 * len(blocked[1]))}
    (lst,) = env.dl.lists()
    assert (lst.packets, lst.bytes) == (4, 2 * len(blocked[0]) + 2 * len(blocked[1]))


def test_restore_repairs_drift(dl_env, mark) -> None:
    env = dl_env()
    a = env.lab.a
    env.attach(env.lab.b, "xdp", "generic")
    env.block("203.0.113.7/32")
    env.block(BAD6)
    env.block("198.51.100.0/24")
    before, cfg = env.map_dump(), env.config()
    sources = ["203.0.113.7", "198.18.0.9", "2001:db8:bad::1", "198.51.100.1", a.ipv4]
    frames = _frames(env, mark, sources)
    desired = Counter(["198.18.0.9", a.ipv4])
    assert arrivals_xdp(env, frames, mark) == desired

    # Drift by hand: one entry missing, one bogus entry (with its presence
    # bit: the data path looks up only what the bitmap says may be there;
    # and in the host table, which it reads before the band).
    with _shared(env, "xc_v4_l32") as m:
        assert m.delete(key4("203.0.113.7"))
        m.update(key4("198.18.0.9"), abi.pack_rule_val(4242, DENY, 32))
    with KernelTables(env.ctx) as kt:
        presence.set_key_bits(kt, kt.cfg.active, [("xc_v4_l32", key4("198.18.0.9"))])
        with hosts4.opened(kt, kt.cfg.active) as buf:
            hosts4.delete(buf, key4("203.0.113.7"), 1)
            hosts4.put(buf, key4("198.18.0.9"), abi.pack_rule_val(4242, DENY, 32), 1)
    assert arrivals_xdp(env, frames, mark) == Counter(["203.0.113.7", a.ipv4])

    rep = env.cli("restore", "--json").json()
    assert (rep["map_entries_written"], rep["map_entries_deleted"], rep["errors"]) == (1, 1, [])
    assert any("1 map entries written, 1 deleted" in line for line in rep["log"]), rep["log"]
    assert env.map_dump() == before and host_table_problems(env.ctx) == {}
    assert arrivals_xdp(env, frames, mark) == desired

    rep = restore(Context(env.settings)).to_json()  # again, in this process: nothing to repair
    assert (rep["map_entries_written"], rep["map_entries_deleted"], rep["errors"]) == (0, 0, [])

    # Drift in the IPv6 table and in the config entry (policy flipped to deny).
    with _shared(env, "xc_v6_l48") as m:
        assert m.delete(key6("2001:db8:bad::"))
    with KernelTables(env.ctx) as kt:
        kt.write_config(int(abi.Policy.DENY), cfg[1], cfg[2])
    assert arrivals_xdp(env, frames, mark) == Counter()
    rep = env.cli("restore", "--json").json()
    assert (rep["map_entries_written"], rep["map_entries_deleted"], rep["errors"]) == (2, 0, [])
    assert env.map_dump() == before and env.config() == cfg
    assert arrivals_xdp(env, frames, mark) == desired
