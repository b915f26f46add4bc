"""The lists' sorted key columns and the SQL-backed rule index over them.

The oracle is dlcompile.MemoryRuleIndex over the merged rule set (a rule
wins over a list member with the same match, an earlier list by name over
a later one): every incremental plan made with the SQL index must equal the
plan made with the oracle.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from xdpctl.core import dlcompile as dl
from xdpctl.core import prefixes as px
from xdpctl.core.rules import listindex
from xdpctl.core.rules.index import SqlRuleIndex
from xdpctl.core.rules.members import Members
from xdpctl.core.rules.store import ListRow, RuleRow, State
from xdpctl.core.rules.validate import addr_bytes

DENY, ALLOW = 1, 2


def _rand_prefix(rng: random.Random, family: int) -> px.Prefix:
    bits = 32 if family == 4 else 128
    lens = [8, 12, 16, 20, 22, 24, 28, 32] if family == 4 else [24, 32, 44, 48, 56, 64, 100, 128]
    plen = rng.choice(lens)
    base = (10 << 24) if family == 4 else (0x20010DB8 << 96)
    net = (base | rng.getrandbits(bits - 12 if family == 4 else bits - 36)) & (((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1))
    return px.Prefix(family, net, plen)


def _unique(pfxs: list[px.Prefix]) -> list[px.Prefix]:
    return list(dict.fromkeys(pfxs))


@pytest.fixture
def state(tmp_path):
    st = State(str(tmp_path / "state.db"))
    yield st
    st.close()


def _merged(rules: list[dl.Rule], members: list[dl.Rule], without: dl.Rule | None = None) -> list[dl.Rule]:
    """The rule set the kernel holds: rules first, then members in list order,
    one per match; ``without`` taken out (a member it hid shows again)."""
    merged: dict = {}
    for r in rules + members:
        if r != without:
            merged.setdefault((r.family, r.plen, r.net), r)
    return list(merged.values())


def _store(state: State, rng: random.Random, with_keys: bool) -> tuple[list[dl.Rule], list[dl.Rule]]:
    """Two lists and some rules over the same space: (rules, members)."""
    rules_: list = []
    members: list = []
    rows = []
    for rid, p in enumerate(_unique([_rand_prefix(rng, rng.choice((4, 6))) for _ in range(40)]), start=1):
        act = rng.choice((DENY, ALLOW))
        rows.append(RuleRow(rid, p.family, addr_bytes(p.family, p.net), p.plen, 0, act, 0, 0, 0, 0, None, None,
                             0.0, None))
        rules_.append(dl.Rule(rid, p.family, p.net, p.plen, 0, act))
    state.insert_rules(rows)
    base = 1000
    for name, act in (("a", DENY), ("b", ALLOW)):
        pfxs = _unique([_rand_prefix(rng, rng.choice((4, 6))) for _ in range(300)])
        m = Members.of(pfxs)
        entries = m.pack()
        state.replace_list(ListRow(name, len(pfxs), 0, act, None, None, 0.0, None, base, entries, 0),
                           listindex.sorted_keys(entries) if with_keys else None)
        for i, p in enumerate(m.prefixes()):
            members.append(dl.Rule(base + i, p.family, p.net, p.plen, 0, act))
        base += len(pfxs)
    return rules_, members


@pytest.mark.parametrize("with_keys", [True, False])
def test_plans_match_the_memory_index(state, with_keys):
    rng = random.Random(11)
    rules, members = _store(state, rng, with_keys)
    oracle = dl.MemoryRuleIndex(_merged(rules, members))
    idx = SqlRuleIndex(state)
    try:
        for r in rules:  # removing a rule: a member it hid takes its keys again
            idx.prepare(r)
            assert dl.plan_remove(r, idx) == dl.plan_remove(r, dl.MemoryRuleIndex(_merged(rules, members, r))), r
        for i in range(60):  # adding a new rule, some with a deadline
            p = _rand_prefix(rng, rng.choice((4, 6)))
            r = dl.Rule(90000 + i, p.family, p.net, p.plen, 0, DENY, None, None, rng.choice((0, 10**12)))
            idx.prepare(r)
            assert dl.plan_add(r, idx) == dl.plan_add(r, oracle), r
    finally:
        idx.close()


def test_lookup_names_the_first_list(state):
    pfx = [px.parse_prefix(x) for x in ("10.1.0.0/16", "10.1.2.3/32", "2001:db8::/48")]
    for name, base in (("b", 100), ("a", 10)):
        entries = Members.of(pfx).pack()
        state.replace_list(ListRow(name, 3, 0, DENY, None, None, 0.0, None, base, entries, 0),
                           listindex.sorted_keys(entries))
    idx = listindex.ListsIndex(state, 0.0, 0)
    try:
        name, r = idx.lookup(6, 0, 48, pfx[2].net)
        assert (name, r.id, r.plen) == ("a", 12, 48)
        assert idx.lookup(4, 0, 24, 0x0A010200) is None and idx.lookup(4, 1, 32, 0x0A010203) is None
        assert sorted((r.id, r.plen) for r in idx.within(4, 0, 0x0A000000, 8, 9, 32)) == [(10, 16), (11, 32)]
    finally:
        idx.close()
    state.delete_list("a")
    idx = listindex.ListsIndex(state, 0.0, 0)
    try:
        assert idx.lookup(4, 0, 32, 0x0A010203)[0] == "b"
    finally:
        idx.close()


def test_lists_without_key_columns_are_named_until_filled(state):
    entries = Members.of([px.parse_prefix("10.1.0.0/16")]).pack()
    state.replace_list(ListRow("old", 1, 0, DENY, None, None, 0.0, None, 1, entries, 0))
    assert state.lists_without_keys() == ["old"] and state.open_list_keys("old") is None
    state.set_list_keys("old", listindex.sorted_keys(entries))
    assert state.lists_without_keys() == []
    idx = listindex.ListsIndex(state, 0.0, 0)
    try:
        assert idx.get(4, 0, 16, 0x0A010000).id == 1
    finally:
        idx.close()


@pytest.mark.parametrize("cut_max", [4096, 0], ids=["cut around the hidden", "filter item by item"])
def test_all_rules_merges_rules_and_lists_as_the_oracle(state, monkeypatch, cut_max):
    """The compiler's input: a rule hides a list member with its match, an
    earlier list a later one's; a list being imported stands for the
    stored one of its name, in its place by name (here "a", before "b")."""
    from xdpctl.core.rules import ruleset

    monkeypatch.setattr(ruleset, "CUT_MAX", cut_max)

    rules, members = _store(state, random.Random(12), True)
    got = ruleset.all_rules(state, 0.0, 0)
    assert sorted(got) == sorted(tuple(r) for r in _merged(rules, members))
    in_b = [m for m in members if m.action == ALLOW]
    rng = random.Random(13)
    pfxs = _unique([(r.family, r.net, r.plen) for r in rules[:10] + in_b[:10]] +
                   [tuple(_rand_prefix(rng, rng.choice((4, 6)))) for _ in range(30)])
    pending = [dl.Rule(50000 + i, f, n, p, 0, DENY) for i, (f, n, p) in enumerate(pfxs)]
    got = ruleset.all_rules(state, 0.0, 0, pending=("a", dl.RuleColumns.of(pending)))
    assert sorted(got) == sorted(tuple(r) for r in _merged(rules, pending + in_b))
    assert len(got) < len(rules) + len(in_b) + len(pending)  # some were hidden


@pytest.mark.parametrize("engine", ["native", "numpy"])
@pytest.mark.parametrize("kind", ["hosts", "hosts sharing /64s", "mixed lengths", "mixed lengths sharing /64s",
                                  "one", "none"])
def test_key_columns_are_sorted_records(kind, engine, monkeypatch):
    """sorted_keys against a plain sort of (length, network, position)
    records, for the shapes its IPv6 order takes apart: one length with
    distinct high words, one length with ties in them, several lengths
    (with and without ties), by the C sorts and by numpy's."""
    if engine == "numpy":
        monkeypatch.setattr(px.native, "lib", lambda: None)
    rng = random.Random(kind)
    if kind == "hosts":
        v6 = [px.Prefix(6, (0x2001 << 112) | rng.getrandbits(112), 128) for _ in range(3000)]
    elif kind == "hosts sharing /64s":
        nets = [(0x20010DB8 << 96) | (rng.randrange(40) << 64) | rng.getrandbits(64) for _ in range(3000)]
        v6 = [px.Prefix(6, n, 128) for n in nets]
    elif kind == "mixed lengths":
        v6 = [_rand_prefix(rng, 6) for _ in range(3000)]
    elif kind == "mixed lengths sharing /64s":  # ties in the high word within a length and across lengths
        his = [(0x20010DB8 << 32) | rng.randrange(40) for _ in range(3000)]
        v6 = [px.Prefix(6, (h << 64) | rng.getrandbits(64), 128) for h in his[:2000]]
        v6 += [px.Prefix(6, h << 64, 64) for h in his[2000:2040]]
        v6 += [px.Prefix(6, (h << 64) | (rng.getrandbits(8) << 56), 72) for h in his[2040:]]
    else:
        v6 = [px.Prefix(6, 0x20010DB8 << 96, 32)] if kind == "one" else []
    v4 = [_rand_prefix(rng, 4) for _ in range(500)]
    m = Members.of(_unique(v4 + v6))
    rec4, rec6 = listindex.sorted_keys(m.pack())
    members = m.prefixes()
    want = {4: [], 6: []}
    for i, p in enumerate(members):
        size = 4 if p.family == 4 else 16
        want[p.family].append(bytes([p.plen]) + p.net.to_bytes(size, "big") + i.to_bytes(4, "big"))
    assert rec4 == b"".join(sorted(want[4])) and rec6 == b"".join(sorted(want[6]))


@pytest.mark.parametrize("engine", ["native", "numpy"])
def test_the_parsers_sort_gives_the_same_key_columns(engine, monkeypatch):
    """Plain IPv4 text: the sort that checked it for duplicates
    (Members.order4) orders its key column exactly as sorted_keys' own
    sort and a plain sort of the records do, with either reader of the
    text; text the columns do not take (both families) leaves no order."""
    if engine == "numpy":
        monkeypatch.setattr(px.native, "lib", lambda: None)
    rng = random.Random(engine)
    pfxs = _unique([_rand_prefix(rng, 4) for _ in range(5000)])
    text = "".join(f"{ipaddress.ip_network((p.net, p.plen))}\n" for p in pfxs)
    m = Members.parse(text)
    assert m.order4 is not None and len(m.order4) == len(pfxs)
    entries = m.pack()
    got = listindex.sorted_keys(entries, m.order4)
    want = b"".join(sorted(bytes([p.plen]) + p.net.to_bytes(4, "big") + i.to_bytes(4, "big")
                           for i, p in enumerate(pfxs)))
    assert got == listindex.sorted_keys(entries) == (want, b"")
    assert Members.parse(text + "2001:db8::/32\n").order4 is None


@pytest.mark.parametrize("engine", ["native", "numpy"])
def test_the_ipv4_order_past_the_position_bits_is_the_same(engine, monkeypatch):
    """order_v4 past the positions its packed words carry (2^24 members;
    lowered to 2^4 here) takes the argsort path: the same order, and the
    same duplicate answer, as the packed sort gives."""
    import numpy as np

    if engine == "numpy":
        monkeypatch.setattr(px.native, "lib", lambda: None)
    rng = random.Random(engine)
    pfxs = _unique([_rand_prefix(rng, 4) for _ in range(3000)])
    plens = np.array([p.plen for p in pfxs], np.uint8)
    nets = np.array([p.net for p in pfxs], np.uint32)
    want = px.order_v4(plens, nets)
    monkeypatch.setattr(px, "_POS_BITS", 4)
    got = px.order_v4(plens, nets)
    assert got[1] is want[1] is True and got[0].tolist() == want[0].tolist()
    dup = px.order_v4(np.append(plens, plens[7]), np.append(nets, nets[7]))
    assert dup[1] is False


def test_stored_columns_are_the_rows_as_rules(state):
    """The individual rules as compiler columns equal each row as
    row_to_rule makes it: L4 rules on any address (with and without a
    port), ports on prefixes, both directions, both families, deadlines."""
    from xdpctl.core.rules import ruleset
    from xdpctl.core.rules.index import row_to_rule

    rng = random.Random(21)
    rows = []
    for rid, p in enumerate(_unique([_rand_prefix(rng, rng.choice((4, 6))) for _ in range(60)]), start=1):
        proto, port = rng.choice([(0, 0), (0, 0), (6, 443), (17, 0)])
        expires = rng.choice([None, None, 1000.0 + rid])
        rows.append(RuleRow(rid, p.family, addr_bytes(p.family, p.net), p.plen, rng.choice((0, 1)),
                            rng.choice((DENY, ALLOW)), proto, port, 0, 0, None, None, 0.0, expires))
    rows.append(RuleRow(100, 0, b"", 0, 0, DENY, 6, 22, 1, 0, None, None, 0.0, None))   # any address, port 22
    rows.append(RuleRow(101, 0, b"", 0, 1, DENY, 17, 0, 1, 0, None, None, 0.0, 1500.0))  # any address, any port
    state.insert_rules(rows)
    now_wall, now_kns = 1200.0, 5_000_000_000
    want = [tuple(row_to_rule(r, now_wall, now_kns)) for r in sorted(rows, key=lambda r: r.id)]
    assert list(ruleset.stored_columns(state, now_wall, now_kns)) == want
    assert any(w[8] == 0 for w in want) and any(w[8] > 0 for w in want) and any(w[1] == 0 for w in want)
    # a scan that comes in another order (an index the planner picks) still gives id order
    ids, fields, addrs, extra = state.rule_matches()
    sizes = [4 if f >> 24 == 4 else 16 if f >> 24 == 6 else 0 for f in fields]
    cuts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    parts = [addrs[cuts[i]:cuts[i + 1]] for i in range(len(sizes))]
    turned = (ids[::-1], fields[::-1], b"".join(parts[::-1]), extra)
    state.rule_matches = lambda: turned
    assert list(ruleset.stored_columns(state, now_wall, now_kns)) == want
