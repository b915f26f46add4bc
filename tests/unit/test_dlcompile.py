"""The drop-list compiler: exact table contents against a straightforward
reference expansion, lookups over the tables against longest-prefix
matching over the rules, and incremental plans against full compiles."""
from __future__ import annotations

import random
from array import array
from itertools import compress

import pytest
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from tests.support import emulation as emu
from tests.support import model
from xdpctl import abi
from xdpctl.abi import Action, CfgFlag, DlReason, Policy
from xdpctl.core import dlcompile as dl
from xdpctl.core import prefixes as px
from xdpctl.core.dlcompile import Rule, RuleError

DENY, ALLOW = int(Action.DENY), int(Action.ALLOW)
BITS = {4: 32, 6: 128}

# The bands as docs/internals.md states them (kept apart from the compiler's
# own table on purpose): (map, family, lo, hi, stride)
CONTRACT_BANDS = [
    ("xc_v4_l32", 4, 25, 32, 32), ("xc_v4_l24", 4, 17, 24, 24), ("xc_v4_l16", 4, 0, 16, 16),
    ("xc_v6_l128", 6, 128, 128, 128), ("xc_v6_l64", 6, 57, 64, 64),
    ("xc_v6_l48", 6, 41, 48, 48), ("xc_v6_l32", 6, 25, 32, 32),
]


def mask(fam, plen):
    bits = BITS[fam]
    return ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)


def contract_band(fam, plen):
    for b in CONTRACT_BANDS:
        if b[1] == fam and b[2] <= plen <= b[3]:
            return b
    return None


def val(r, fb=None):
    f = (fb.id, fb.action, fb.plen, fb.expires_ns) if fb is not None else None
    return abi.pack_rule_val(r.id, r.action, r.plen, r.expires_ns, f)


VS = abi.RULE_VAL.size
ZERO = bytes(VS)


def sparse(state: dict) -> dict:
    """A table state with the empty slots of the xc_v4_l16 array left out."""
    out = dict(state)
    out["xc_v4_l16"] = {k: v for k, v in state["xc_v4_l16"].items() if v != ZERO}
    return out


def compiled_sparse(c) -> dict:
    """sparse(emu.tables_to_state(c)) without building the 131072-entry array dict."""
    out = {}
    for m in abi.RULE_MAPS:
        t = c[m]
        ks, vs = abi.MAP_SPECS[m].key_size, VS
        pairs = ((t.keys[i * ks:(i + 1) * ks], t.values[i * vs:(i + 1) * vs]) for i in range(t.count))
        if m == "xc_v4_l16":
            q = array("Q", t.values)[0::VS // 8]  # rule_id | action | plen: zero when empty
            pairs = ((t.keys[i * ks:(i + 1) * ks], t.values[i * vs:(i + 1) * vs])
                     for i in compress(range(t.count), q))
        out[m] = dict(pairs)
    return out


def apply_sparse(state: dict, plan) -> dict:
    emu.apply_plan(state, plan)
    for k, v in plan.get("xc_v4_l16", dl.MapPlan({}, set())).updates.items():
        if v == ZERO:
            del state["xc_v4_l16"][k]
    return state


def empty_sparse() -> dict:
    return {m: {} for m in abi.RULE_MAPS}


def ref_fallback(rules, w, name, fam, d, a, stride):
    """Brute force: the longest rule of w's band covering stride key a,
    shorter than w, whose deadline is later than w's (or none)."""
    if not w.expires_ns:
        return None
    cands = [r for r in rules if r.proto is None and r.family == fam and r.dir == d and r.plen < w.plen
             and contract_band(fam, r.plen) is not None and contract_band(fam, r.plen)[0] == name
             and (a & mask(fam, r.plen)) == r.net
             and (r.expires_ns == 0 or r.expires_ns > w.expires_ns)]
    return max(cands, key=lambda r: r.plen) if cands else None


def reference_state(rules) -> dict:
    """Table contents by plain expansion, key by key (xc_v4_l16 sparse)."""
    st_ = empty_sparse()
    for r in sorted((r for r in rules if r.proto is None), key=lambda r: r.plen):
        b = contract_band(r.family, r.plen)
        if b is None:
            st_["xc_v6_trie"][abi.pack_trie6_key(r.dir, r.net, r.plen)] = val(r)
            continue
        name, fam, _lo, _hi, stride = b
        bits = BITS[fam]
        for a in range(r.net, r.net + (1 << (bits - r.plen)), 1 << (bits - stride)):
            if name == "xc_v4_l16":
                k = abi.U32.pack(r.dir * 65536 + (a >> 16))
            elif fam == 4:
                k = r.dir.to_bytes(4, "little") + a.to_bytes(4, "big")
            else:
                k = r.dir.to_bytes(4, "little") + a.to_bytes(16, "big")
            st_[name][k] = val(r, ref_fallback(rules, r, name, fam, r.dir, a, stride))
    for r in rules:
        if r.proto is None:
            continue
        fams = [(4, 0, 0), (6, 0, 0)] if r.family == 0 else [(r.family, r.net, r.plen)]
        for fam, net, plen in fams:
            st_["xc_port_trie"][abi.pack_port_key(r.dir, r.proto, r.port, fam, net, plen)] = val(r)
    return st_


def lpm(rules, fam, d, addr, now=0):
    """Longest live address rule of a direction covering addr."""
    if fam == 6 and addr >> 32 == 0xFFFF:
        fam, addr = 4, addr & 0xFFFFFFFF
    best = None
    for r in rules:
        if r.proto is None and r.family == fam and r.dir == d and (addr & mask(fam, r.plen)) == r.net \
                and (r.expires_ns == 0 or r.expires_ns > now):
            if best is None or r.plen > best.plen:
                best = r
    return best


def lpm_port(rules, d, proto, port, fam, addr, now=0):
    if fam == 6 and addr >> 32 == 0xFFFF:
        fam, addr = 4, addr & 0xFFFFFFFF
    best = None
    for r in rules:
        if r.proto == proto and r.port == port and r.dir == d and (r.expires_ns == 0 or r.expires_ns > now) \
                and (r.family == 0 or (r.family == fam and (addr & mask(fam, r.plen)) == r.net)):
            if best is None or r.plen > best.plen:
                best = r
    return best


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------
def _plen(fam):
    if fam == 4:
        return st.one_of(st.integers(0, 32), st.integers(24, 32), st.just(32))
    return st.one_of(st.integers(0, 128), st.sampled_from([24, 25, 32, 33, 40, 41, 48, 49, 56, 57, 64,
                                                           65, 127, 128]))


@st.composite
def rule_sets(draw, max_rules=30, l4=True, expiring=False):
    """Rules nested around a few anchor addresses per family, so that
    prefixes of every band overlap."""
    anchors = {4: draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3)),
               6: draw(st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=3))}
    if draw(st.booleans()):
        anchors[6].append((0xFFFF << 32) | anchors[4][0])  # the mapped twin never matches IPv6 rules
    n = draw(st.integers(0, max_rules))
    rules, keys = [], set()
    ids = draw(st.lists(st.integers(1, 2**32 - 1), min_size=n, max_size=n, unique=True))
    for rid in ids:
        fam = draw(st.sampled_from([4, 4, 6]))
        plen = draw(_plen(fam))
        net = draw(st.sampled_from(anchors[fam])) & mask(fam, plen)
        if fam == 6 and net >> 32 == 0xFFFF:
            continue  # parse_prefix never produces these
        d = draw(st.integers(0, 1))
        act = draw(st.sampled_from([DENY, ALLOW]))
        exp = draw(st.sampled_from([0, 0, 10**12, 3 * 10**12])) if expiring else 0
        proto = port = None
        if l4 and draw(st.integers(0, 5)) == 0:
            proto = draw(st.sampled_from([6, 17, 132]))
            port = draw(st.sampled_from([53, 80, 443]))
            if draw(st.booleans()):
                fam, net, plen = 0, 0, 0
        # kernel keys: an L4 rule without prefix takes the /0 key of both families
        ks = {(f, d, 0, 0, proto, port) for f in (4, 6)} if fam == 0 else {(fam, d, plen, net, proto, port)}
        if ks & keys:
            continue
        keys |= ks
        rules.append(Rule(rid, fam, net, plen, d, act, proto, port, exp))
    return rules, anchors


TRIE6_LENS = [p for p in range(129) if contract_band(6, p) is None]


@st.composite
def expiring_chains(draw):
    """Chains of rules nested inside one band, the IPv6 trie or one port of
    the port trie (one anchor and direction per chain), with deadlines in any order: the rule
    sets where fallbacks and trie retries decide what an expired entry
    leaves visible."""
    anchors = {4: draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=2)),
               6: draw(st.lists(st.integers(0, 2**128 - 1 - (1 << 48)), min_size=1, max_size=2))}
    rules, keys = [], set()
    for _ in range(draw(st.integers(1, 3))):
        fam = draw(st.sampled_from([4, 6]))
        where = draw(st.sampled_from([b for b in CONTRACT_BANDS if b[1] == fam] + ["trie", "port"]))
        if where == "port":
            lens = list(range(BITS[fam] + 1))
        elif where == "trie":
            lens = TRIE6_LENS if fam == 6 else list(range(33))
        else:
            lens = list(range(where[2], where[3] + 1))
        top, d = draw(st.sampled_from(anchors[fam])), draw(st.integers(0, 1))
        for _ in range(draw(st.integers(2, 7) if isinstance(where, tuple) else st.integers(4, 9))):
            plen = draw(st.sampled_from(lens))
            net = top & mask(fam, plen)
            proto, port = (6, 80) if where == "port" else (None, None)
            k = (fam, d, plen, net, proto)
            if k in keys:
                continue
            keys.add(k)
            rules.append(Rule(len(rules) + 1, fam, net, plen, d, draw(st.sampled_from([DENY, ALLOW])),
                              proto, port, draw(st.sampled_from([0, 10**12, 2 * 10**12, 3 * 10**12]))))
    return rules, anchors


def probes(rules, anchors, rnd):
    """Addresses near anchors and rule boundaries."""
    out = set()
    for fam, lst in anchors.items():
        bits = BITS[fam]
        for a in lst:
            out.add((fam, a))
            for _ in range(6):
                out.add((fam, a ^ rnd.getrandbits(rnd.randint(1, bits))))
    for r in rules:
        if r.family == 0:
            continue
        bits = BITS[r.family]
        last = r.net | ((1 << (bits - r.plen)) - 1)
        for a in (r.net, last, r.net - 1, last + 1, r.net + rnd.getrandbits(bits - r.plen) if r.plen < bits else r.net):
            if 0 <= a < (1 << bits):
                out.add((r.family, a))
    return sorted(out)


SETTINGS = dict(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# full compile
# ---------------------------------------------------------------------------
@settings(**SETTINGS)
@given(rule_sets(), st.randoms(use_true_random=False))
def test_compile_matches_reference_and_lpm(rs, rnd):
    rules, anchors = rs
    c = dl.compile_full(rules)
    assert compiled_sparse(c) == reference_state(rules)
    st_ = emu.tables_to_state(c)
    for fam, addr in probes(rules, anchors, rnd):
        for d in (0, 1):
            want = lpm(rules, fam, d, addr)
            got = emu.kernel_lookup(st_, fam, d, addr)
            assert (got.rule_id if got else None) == (want.id if want else None), (fam, d, hex(addr))
            if got:
                assert (got.action, got.plen) == (want.action, want.plen)
            for proto, port in ((6, 80), (17, 53), (132, 443), (6, 443)):
                want = lpm_port(rules, d, proto, port, fam, addr)
                got = emu.kernel_port_lookup(st_, d, proto, port, fam, addr)
                assert (got.rule_id if got else None) == (want.id if want else None)


@st.composite
def v4_bulk(draw):
    """Many IPv4 rules with /32s (the columnar path) among /25../31 and
    /17../24 prefixes over a small address space, so keys collide."""
    base = draw(st.integers(0, 2**32 - 1)) & 0xFFFF0000
    n = draw(st.integers(1, 120))
    rules, keys = [], set()
    for i in range(n):
        plen = draw(st.sampled_from([32, 32, 32, 31, 30, 28, 25, 24, 20, 17, 16, 12]))
        net = (base | draw(st.integers(0, 0xFFFF))) & mask(4, plen)
        d = draw(st.integers(0, 1))
        k = (d, plen, net)
        if k in keys:
            continue
        keys.add(k)
        rules.append(Rule(i + 1, 4, net, plen, d, draw(st.sampled_from([DENY, ALLOW])), None, None,
                          draw(st.sampled_from([0, 0, 5, 2**64 - 1]))))
    return rules


@settings(**SETTINGS)
@given(v4_bulk())
def test_columnar_v4_path(rules):
    c = dl.compile_full(rules)
    assert compiled_sparse(c) == reference_state(rules)
    # plain tuples are accepted too (rows from a database)
    t = dl.compile_full([tuple(r) for r in rules])
    assert all(t[m] == c[m] for m in abi.RULE_MAPS)


def test_table_shapes():
    rules = [Rule(1, 4, 0x0A000000, 8, 1, DENY), Rule(2, 4, 0xC0000200, 25, 0, ALLOW),
             Rule(3, 4, 0xC0000201, 32, 0, DENY), Rule(4, 6, 0x20010DB8 << 96, 33, 0, DENY),
             Rule(5, 0, 0, 0, 1, DENY, 6, 22)]
    c = dl.compile_full(rules)
    assert set(c) == set(abi.RULE_MAPS)
    for m, t in c.items():
        assert len(t.keys) == t.count * abi.MAP_SPECS[m].key_size
        assert len(t.values) == t.count * abi.MAP_SPECS[m].value_size
    assert c["xc_v4_l16"].count == 2 * 65536
    l16 = emu.tables_to_state(c)["xc_v4_l16"]
    assert [abi.unpack_rule_val(l16[abi.U32.pack(65536 + 0x0A00 + i)]).rule_id for i in (0, 255)] == [1, 1]
    assert abi.unpack_rule_val(l16[abi.U32.pack(0x0A00)]).action == Action.NONE  # dir 0 is empty
    assert c["xc_v4_l32"].count == 128  # /25: 128 keys, the /32 among them
    l32 = emu.tables_to_state(c)["xc_v4_l32"]
    assert abi.unpack_rule_val(l32[abi.pack_key4(0, 0xC0000201)]).rule_id == 3
    assert abi.unpack_rule_val(l32[abi.pack_key4(0, 0xC0000205)]) == (2, ALLOW, 25, 0, 0, 0, 0, 0, 0, 0)
    assert c["xc_v6_trie"].count == 1 and c["xc_port_trie"].count == 2
    assert c.flags == CfgFlag.HAVE_DST | CfgFlag.HAVE_PORT | CfgFlag.HAVE_V6TRIE
    assert dl.compile_full([]).flags == 0
    assert dl.compile_full([Rule(1, 4, 1, 32, 1, DENY)]).flags == CfgFlag.HAVE_DST
    assert dl.compile_full([Rule(1, 6, 1, 128, 0, DENY)]).flags == 0
    assert dl.compile_full([Rule(1, 0, 0, 0, 1, DENY, 17, 53)]).flags == CfgFlag.HAVE_PORT


@settings(**SETTINGS)
@given(rule_sets())
def test_flags_are_the_or_of_rule_flags(rs):
    rules, _ = rs
    want = 0
    for r in rules:
        want |= dl.rule_flags(r)
    assert dl.compile_full(rules).flags == want
    has_dst = any(r.dir == 1 and r.proto is None for r in rules)
    assert bool(want & CfgFlag.HAVE_DST) == has_dst
    assert bool(want & CfgFlag.HAVE_PORT) == any(r.proto is not None for r in rules)
    assert bool(want & CfgFlag.HAVE_V6TRIE) == bool(dl.compile_full(rules)["xc_v6_trie"].count)


def test_band_table_matches_contract():
    for fam, bits in BITS.items():
        for p in range(bits + 1):
            b = dl.band_of(fam, p)
            cb = contract_band(fam, p)
            assert (b.map if b else None) == (cb[0] if cb else None), (fam, p)
            if b:
                assert (b.lo, b.hi, b.stride) == cb[2:]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule, message", [
    (Rule(0, 4, 0, 32), "id 0 out of range"),
    (Rule(2**32, 4, 0, 32), "id 4294967296 out of range"),
    (Rule(1, 5, 0, 32), "family 5 is not 4 or 6"),
    (Rule(1, 4, 0, 33), "plen 33 out of range 0..32"),
    (Rule(1, 4, 1, 24), "host bits set"),
    (Rule(1, 4, 2**32, 32), "is not an IPv4 address"),
    (Rule(1, 4, 0, 32, 2), "dir 2 is not 0"),
    (Rule(1, 4, 0, 32, 0, 0), "action 0 is not DENY"),
    (Rule(1, 4, 0, 32, 0, 1, 6, None), "needs both protocol and port"),
    (Rule(1, 4, 0, 32, 0, 1, 1, 80), "protocol 1 is not tcp"),
    (Rule(1, 4, 0, 32, 0, 1, 6, 0), "port 0 out of range"),
    (Rule(1, 0, 0, 0), "only for L4 rules"),
    (Rule(1, 0, 5, 0, 0, 1, 6, 80), "net 0 and plen 0"),
    (Rule(1, 4, 0, 32, 0, 1, None, None, -1), "expires_ns -1 out of range"),
    (Rule(1, 4, 0, 32.0), "plen 32.0 out of range"),
    (Rule(1, 6, 2**128, 128), "is not an IPv6 address"),
    (Rule(1, 6, -1, 128), "is not an IPv6 address"),
    (Rule(1, 6, 1, 128, 2), "dir 2 is not 0"),
])
def test_bad_rules(rule, message):
    for rules in ([rule], [Rule(9, 4, 0x01020305, 32), rule]):
        with pytest.raises(RuleError) as ei:
            dl.compile_full(rules)
        assert message in str(ei.value) and str(ei.value).startswith(f"rule {rule.id}:")
    with pytest.raises(RuleError):
        dl.validate_rule(rule)


@pytest.mark.parametrize("rules, message", [
    ([Rule(1, 4, 0x01020304, 32), Rule(2, 4, 0x01020305, 32), Rule(3, 4, 0x01020304, 32, 0, ALLOW)],
     "rule 3: same key as rule 1"),
    ([Rule(1, 4, 0x01020300, 24), Rule(2, 4, 0x01020300, 24, 0, ALLOW)], "rule 2: same key as rule 1"),
    ([Rule(1, 6, 5 << 64, 64), Rule(2, 6, 5 << 64, 64)], "rule 2: same key as rule 1"),
    ([Rule(1, 6, 7, 128), Rule(2, 6, 8, 128), Rule(3, 6, 7, 128, 0, ALLOW)], "rule 3: same key as rule 1"),
    ([Rule(1, 6, 5 << 64, 66), Rule(2, 6, 5 << 64, 66)], "rule 2: same key as rule 1"),
    ([Rule(1, 0, 0, 0, 0, DENY, 6, 80), Rule(2, 4, 0, 0, 0, DENY, 6, 80)], "rule 2: same key as rule 1"),
])
def test_duplicate_keys(rules, message):
    with pytest.raises(RuleError) as ei:
        dl.compile_full(rules)
    assert str(ei.value).startswith(message)


def test_same_prefix_other_dir_or_port_is_fine():
    """One prefix in both directions and under two ports: four rules, four
    keys, no duplicate-key error, each key holding its own rule."""
    a = 0x01020304
    rules = [Rule(1, 4, a, 32, 0), Rule(2, 4, a, 32, 1),
             Rule(3, 4, a, 32, 0, DENY, 6, 80), Rule(4, 4, a, 32, 0, DENY, 6, 81)]
    c = dl.compile_full(rules)
    assert compiled_sparse(c) == reference_state(rules)
    assert compiled_sparse(c)["xc_v4_l32"] == {abi.pack_key4(0, a): val(rules[0]), abi.pack_key4(1, a): val(rules[1])}
    assert compiled_sparse(c)["xc_port_trie"] == {abi.pack_port_key(0, 6, 80, 4, a, 32): val(rules[2]),
                                                  abi.pack_port_key(0, 6, 81, 4, a, 32): val(rules[3])}
    assert all(not compiled_sparse(c)[m] for m in abi.RULE_MAPS if m not in ("xc_v4_l32", "xc_port_trie"))


# ---------------------------------------------------------------------------
# incremental plans
# ---------------------------------------------------------------------------
class ScanIndex(dl.MemoryRuleIndex):
    """An index that also answers rules_within (by scanning)."""

    def rules_within(self, family, dir, net, plen, lo_plen, hi_plen, exclude_id):
        return [r for r in self._addr.values()
                if r.family == family and r.dir == dir and lo_plen <= r.plen <= hi_plen
                and r.plen >= plen and (r.net & mask(family, plen)) == net and r.id != exclude_id]


class within_always:
    """Make the planner use rules_within for every band rule."""

    def __enter__(self):
        self.saved = dl._WITHIN_MIN
        dl._WITHIN_MIN = 0

    def __exit__(self, *exc):
        dl._WITHIN_MIN = self.saved


@settings(**SETTINGS)
@given(rule_sets(max_rules=24), st.randoms(use_true_random=False), st.booleans())
def test_plans_step_by_step(rs, rnd, use_within):
    """Random adds and removes, each planned against the index of the
    current rule set and applied at once: the tables always equal a full
    compile of the current set. With use_within the planner asks the index
    for the rules inside a prefix instead of key by key."""
    if use_within:
        with within_always():
            _plans_step_by_step(rs, rnd, ScanIndex())
    else:
        _plans_step_by_step(rs, rnd, dl.MemoryRuleIndex())


def _plans_step_by_step(rs, rnd, index):
    rules, _ = rs
    state = empty_sparse()
    present: dict[int, Rule] = {}
    ops = [("add", r) for r in rules]
    rnd.shuffle(ops)
    todo = list(ops)
    while todo:
        op, r = todo.pop()
        if op == "add":
            before_in_index = rnd.random() < 0.5  # plan_add works either way
            if before_in_index:
                index.add(r)
            apply_sparse(state, dl.plan_add(r, index))
            if not before_in_index:
                index.add(r)
            present[r.id] = r
            if rnd.random() < 0.4:
                todo.insert(rnd.randint(0, len(todo)), ("remove", r))
        else:
            still = rnd.random() < 0.5  # plan_remove works either way
            if not still:
                index.remove(r)
            apply_sparse(state, dl.plan_remove(r, index))
            if still:
                index.remove(r)
            del present[r.id]
        assert state == compiled_sparse(dl.compile_full(list(present.values())))


@settings(**SETTINGS)
@given(rule_sets(max_rules=24), st.randoms(use_true_random=False), st.booleans())
def test_batched_plans_against_final_index(rs, rnd, use_within):
    """Several removes and adds planned against the index of the final set
    and merged into one plan (how the control plane batches a change)."""
    if use_within:
        with within_always():
            _batched(rs, rnd, ScanIndex)
    else:
        _batched(rs, rnd, dl.MemoryRuleIndex)


def _batched(rs, rnd, index_cls):
    rules, _ = rs
    rnd.shuffle(rules)
    k = rnd.randint(0, len(rules))
    before, after_adds = rules[:k], rules[k:]
    removed = [r for r in before if rnd.random() < 0.5]
    final = [r for r in before if r not in removed] + after_adds
    state = compiled_sparse(dl.compile_full(before))
    index = index_cls(final)
    plan = dl.Plan()
    for r in removed:
        plan.merge(dl.plan_remove(r, index))
    for r in after_adds:
        plan.merge(dl.plan_add(r, index))
    apply_sparse(state, plan)
    assert state == compiled_sparse(dl.compile_full(final))


def test_plan_replace_and_update():
    index = dl.MemoryRuleIndex([Rule(1, 4, 0x0A000000, 24, 0, DENY)])
    state = emu.tables_to_state(dl.compile_full(index.rules()))
    # same id, new action and deadline
    upd = Rule(1, 4, 0x0A000000, 24, 0, ALLOW, None, None, 99)
    emu.apply_plan(state, dl.plan_add(upd, index))
    index.add(upd)
    assert state == emu.tables_to_state(dl.compile_full([upd]))
    # l16 removal writes zero values instead of deleting
    r16 = Rule(2, 4, 0x0B000000, 16, 1, DENY)
    p = dl.plan_add(r16, index)
    index.add(r16)
    emu.apply_plan(state, p)
    index.remove(r16)
    p = dl.plan_remove(r16, index)
    assert not p["xc_v4_l16"].deletes
    assert p["xc_v4_l16"].updates == {abi.U32.pack(65536 + 0x0B00): ZERO}
    emu.apply_plan(state, p)
    assert state == emu.tables_to_state(dl.compile_full([upd]))


@pytest.mark.parametrize("within", [False, True])
def test_plan_remove_after_same_key_replacement(within):
    """The index already holds another rule (new id) at the removed rule's
    key: its value takes the keys over."""
    old = Rule(1, 4, 0x0A000000, 8, 0, DENY)
    new = Rule(2, 4, 0x0A000000, 8, 0, ALLOW)
    longer = Rule(3, 4, 0x0A010000, 16, 0, DENY)
    state = compiled_sparse(dl.compile_full([old, longer]))
    index = ScanIndex([new, longer])
    if within:
        with within_always():
            plan = dl.plan_remove(old, index)
    else:
        plan = dl.plan_remove(old, index)
    apply_sparse(state, plan)
    assert state == compiled_sparse(dl.compile_full([new, longer]))


def test_short_prefix_plans_use_rules_within():
    calls = []

    class Counting(ScanIndex):
        def best_covering(self, *a):
            calls.append(a)
            return super().best_covering(*a)

    rules = [Rule(1, 4, 0x0A010000, 16), Rule(2, 4, 0x0A800000, 9, 1)]
    idx = Counting(rules)
    add = Rule(3, 4, 0x0A000000, 8)
    p = dl.plan_add(add, idx)
    assert calls == []  # one rules_within call instead of 256
    assert len(p["xc_v4_l16"].updates) == 255
    idx.add(add)
    p = dl.plan_remove(add, idx)
    assert len(calls) == 1 and len(p["xc_v4_l16"].updates) == 255
    plain = dl.MemoryRuleIndex(rules + [add])
    assert dl.plan_remove(add, plain) == p


def test_plan_merge_semantics():
    a = dl.Plan()
    a.put("xc_v4_l32", b"k1", b"v1")
    a.delete("xc_v4_l32", b"k2")
    b = dl.Plan()
    b.delete("xc_v4_l32", b"k1")
    b.put("xc_v4_l32", b"k2", b"v2")
    a.merge(b)
    assert a["xc_v4_l32"].updates == {b"k2": b"v2"} and a["xc_v4_l32"].deletes == {b"k1"}
    assert a.size() == 2


def test_memory_index():
    r1, r2 = Rule(1, 4, 0x0A000000, 8), Rule(2, 4, 0x0A010000, 16)
    idx = dl.MemoryRuleIndex([r1, r2, Rule(3, 0, 0, 0, 0, DENY, 6, 80)])
    assert len(idx) == 3
    assert idx.best_covering(4, 0, 0x0A010200, 0, 24, 0) == r2
    assert idx.best_covering(4, 0, 0x0A010200, 0, 24, 2) == r1
    assert idx.best_covering(4, 0, 0x0A010200, 9, 15, 0) is None
    assert idx.best_covering(4, 1, 0x0A010200, 0, 24, 0) is None
    idx.remove(Rule(99, 4, 0x0A000000, 8))  # another id at that key: left alone
    assert idx.best_covering(4, 0, 0x0A000000, 0, 8, 0) == r1


# ---------------------------------------------------------------------------
# expiry, as the C sees it
# ---------------------------------------------------------------------------
def tables(rules):
    """The compiled tables of a rule set, as a table state."""
    return emu.tables_to_state(dl.compile_full(rules))


def test_expired_entries_are_absent():
    T = 1000
    rules = [Rule(1, 4, 0x0A000000, 8, 0, DENY), Rule(2, 4, 0x0A000000, 24, 0, ALLOW, None, None, T),
             Rule(3, 4, 0x0A000001, 32, 0, DENY, None, None, T)]
    c = tables(rules)
    assert emu.kernel_lookup(c, 4, 0, 0x0A000001, now_ns=T - 1).rule_id == 3
    assert emu.kernel_lookup(c, 4, 0, 0x0A000001, now_ns=T).rule_id == 1      # on to shorter bands
    assert emu.kernel_lookup(c, 4, 0, 0x0A000002, now_ns=T).rule_id == 1


def test_expired_entry_gives_way_to_shorter_rule_of_its_band():
    """One key holds one rule, so an expiring /24 carries the /17 it covers
    as its fallback: past the deadline the kernel answers with the /17,
    before the control plane has removed the expired rule."""
    T = 1000
    live, dead = Rule(1, 4, 0x0A000000, 17), Rule(2, 4, 0x0A000000, 24, 0, DENY, None, None, T)
    c = tables([live, dead])
    assert emu.kernel_lookup(c, 4, 0, 0x0A000005, now_ns=0).rule_id == 2
    assert emu.kernel_lookup(c, 4, 0, 0x0A000005, now_ns=T).rule_id == 1
    # the same through plans: add the /17 under the expiring /24, and the reverse
    for order in ([live, dead], [dead, live]):
        idx = dl.MemoryRuleIndex()
        st_ = emu.empty_state()
        for r in order:
            idx.add(r)
            emu.apply_plan(st_, dl.plan_add(r, idx))
        assert emu.kernel_lookup(st_, 4, 0, 0x0A000005, now_ns=T).rule_id == 1
    idx = dl.MemoryRuleIndex([live])
    st_ = emu.apply_plan(c, dl.plan_remove(dead, idx))
    assert emu.kernel_lookup(st_, 4, 0, 0x0A000005, now_ns=T).rule_id == 1
    # a fallback that expires earlier than the winner is skipped
    early = Rule(3, 4, 0x0A000000, 20, 0, DENY, None, None, T // 2)
    c = tables([live, dead, early])
    assert emu.kernel_lookup(c, 4, 0, 0x0A000005, now_ns=T).rule_id == 1


@pytest.mark.parametrize("under", [None, Rule(900, 4, 0x0A000010, 28), Rule(901, 4, 0x0A000000, 24, 1)])
def test_a_ttl_host_list_gets_fallbacks_only_where_a_shorter_rule_lies_under_it(under):
    """A TTL list of /32s is as short as its band's shortest rule unless
    something shorter shares the band: then its keys inside that rule carry
    it as fallback (compared with the key-by-key reference), else none has
    one, and the compile does not look (a list's columns, Rule objects)."""
    from xdpctl.core.rules.members import Members

    T = 10**18
    hosts = [0x0A000000 + i for i in range(0, 64, 3)] + [0x0B000001]
    m = Members(hosts, b"\x20" * len(hosts), [], b"")
    rules = [Rule(1 + i, 4, a, 32, 0, DENY, None, None, T) for i, a in enumerate(hosts)]
    extra = [] if under is None else [under]
    for rule_set in [rules + extra] + ([] if extra else [m.columns(1, 0, int(DENY), T)]):
        assert compiled_sparse(dl.compile_full(rule_set)) == reference_state(rules + extra)
    c = tables(rules + extra)
    inside = [a for a in hosts if under is not None and under.dir == 0 and a & mask(4, under.plen) == under.net]
    assert len(inside) == (0 if under is None or under.dir else 5)
    for a in hosts:
        got = emu.kernel_lookup(c, 4, 0, a, now_ns=T)
        assert (got.rule_id if got else None) == (under.id if a in inside else None)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_ttl_rules_over_sparse_shorter_rules_get_the_reference_fallbacks(seed):
    """Many TTL rules beside a few shorter rules of their bands (IPv4 /32
    hosts over /25-/31, /20-/24 over /17-/19, IPv6 /128 over /121-/127,
    both directions, deadlines before and after): the fallbacks the compile
    looks up only under those shorter rules are the key-by-key reference's,
    as columns and as Rule objects."""
    rnd = random.Random(seed)
    T = 10**12
    nets4 = [0x0A000000, 0x0A000100, 0xC0A80000, 0xC0A81000]
    v6 = 0x20010DB8 << 96
    rules, seen, rid = [], set(), 1

    def add(fam, net, plen, d, exp):
        nonlocal rid
        if (fam, net, plen, d) in seen:
            return
        seen.add((fam, net, plen, d))
        rules.append(Rule(rid, fam, net, plen, d, DENY if rnd.random() < 0.8 else ALLOW, None, None, exp))
        rid += 1

    deadlines = [0, T // 2, T, 2 * T]
    for _ in range(300):  # TTL hosts and short TTL nets
        d = rnd.randrange(2)
        base = rnd.choice(nets4)
        add(4, base | rnd.randrange(256), 32, d, T)
        p = rnd.randrange(20, 25)
        add(4, (base | rnd.randrange(1 << 12) << 8) & mask(4, p), p, d, rnd.choice(deadlines[1:]))
        add(6, v6 | rnd.randrange(1 << 10), 128, d, T)
    for _ in range(12):  # a few rules under them
        d = rnd.randrange(2)
        base = rnd.choice(nets4)
        p = rnd.randrange(25, 32)
        add(4, (base | rnd.randrange(256)) & mask(4, p), p, d, rnd.choice(deadlines))
        p = rnd.randrange(17, 20)
        add(4, base & mask(4, p), p, d, rnd.choice(deadlines))
        p = rnd.randrange(121, 128)
        add(6, (v6 | rnd.randrange(1 << 10)) & mask(6, p), p, d, rnd.choice(deadlines))
    want = reference_state(rules)
    assert compiled_sparse(dl.compile_full(rules)) == want
    assert compiled_sparse(dl.compile_full(dl.RuleColumns.of(rules))) == want
    fallbacks = sum(v[16:20] != bytes(4) for m in want.values() for v in m.values())  # a fallback rule id
    assert fallbacks > 20  # the sets do exercise fallbacks


def test_trie_retries_past_expired_entries():
    T = 1000
    base = 0x20010000 << 96
    rules = [Rule(1, 6, base, 20)] + [Rule(10 + p, 6, base, p, 0, DENY, None, None, T) for p in (21, 22, 23, 24)]
    c = tables(rules)
    assert emu.kernel_lookup(c, 6, 0, base, now_ns=0).rule_id == 34
    # four expired levels: the C gives up after XC_TRIE_RETRY lookups
    assert emu.kernel_lookup(c, 6, 0, base, now_ns=T) is None
    c = tables(rules[:-1])
    assert emu.kernel_lookup(c, 6, 0, base, now_ns=T).rule_id == 1
    pr = [Rule(1, 0, 0, 0, 0, DENY, 6, 80), Rule(2, 4, 0x0A000000, 8, 0, ALLOW, 6, 80, T)]
    c = tables(pr)
    assert emu.kernel_port_lookup(c, 0, 6, 80, 4, 0x0A000001, now_ns=0).rule_id == 2
    assert emu.kernel_port_lookup(c, 0, 6, 80, 4, 0x0A000001, now_ns=T).rule_id == 1
    assert emu.kernel_port_lookup(c, 0, 6, 80, 6, 1, now_ns=T).rule_id == 1
    assert emu.kernel_port_lookup(c, 0, 6, 81, 4, 0x0A000001, now_ns=0) is None


def alive(r, now):
    return r.expires_ns == 0 or r.expires_ns > now


def band_answer(chain, now):
    """What one hash or array band answers for a key, from docs/internals.md:
    chain holds the band's rules covering the key, longest first. The key
    holds the first; past its deadline, its fallback (the longest shorter
    rule of the chain whose deadline is later, or none) answers if live;
    else the band has nothing."""
    if not chain:
        return None
    w = chain[0]
    if alive(w, now):
        return w
    fb = next((r for r in chain[1:] if r.expires_ns == 0 or r.expires_ns > w.expires_ns), None)
    return fb if fb is not None and alive(fb, now) else None


TRIE_LOOKUPS = 4  # docs/internals.md: an expired trie entry is skipped, at most 4 lookups in all


def trie_answer(chain, now):
    """An LPM trie asked again below each expired entry: the first live rule
    among its TRIE_LOOKUPS longest covering entries."""
    return next((r for r in chain[:TRIE_LOOKUPS] if alive(r, now)), None)


def _longest_first(rules):
    return sorted(rules, key=lambda r: r.plen, reverse=True)


def expiring_lookup(rules, fam, d, addr, now):
    """The documented address lookup over the rules themselves (not the
    tables), expired rules included: each band and the IPv6 trie answer on
    their own; the longest answer wins."""
    if fam == 6 and addr >> 32 == 0xFFFF:
        fam, addr = 4, addr & 0xFFFFFFFF
    cover = [r for r in rules if r.proto is None and r.family == fam and r.dir == d
             and (addr & mask(fam, r.plen)) == r.net]
    answers = [band_answer(_longest_first(r for r in cover if contract_band(fam, r.plen) == b), now)
               for b in CONTRACT_BANDS if b[1] == fam]
    if fam == 6:
        answers.append(trie_answer(_longest_first(r for r in cover if contract_band(6, r.plen) is None), now))
    return max((r for r in answers if r is not None), key=lambda r: r.plen, default=None)


def expiring_port_lookup(rules, d, proto, port, fam, addr, now):
    if fam == 6 and addr >> 32 == 0xFFFF:
        fam, addr = 4, addr & 0xFFFFFFFF
    chain = [r for r in rules if r.proto == proto and r.port == port and r.dir == d
             and (r.family == 0 or (r.family == fam and (addr & mask(fam, r.plen)) == r.net))]
    return trie_answer(_longest_first(chain), now)


def _same(got, want):
    assert (got.rule_id if got else None) == (want.id if want else None)
    if got:
        assert (got.action, got.plen) == (want.action, want.plen)


@settings(**(SETTINGS | {"max_examples": 100}))
@given(st.one_of(rule_sets(max_rules=20, expiring=True), expiring_chains()), st.randoms(use_true_random=False),
       st.sampled_from([0, 10**12, 2 * 10**12, 3 * 10**12, 4 * 10**12]))
def test_expired_rules_answer_as_documented(rs, rnd, now):
    """Rules past their deadline stay in the tables until the control plane
    reaps them. Meanwhile every lookup answers what docs/internals.md says
    (fallbacks, trie retries), computed from the rules; an expired rule never
    answers, and expired rules only ever hide live ones: without any, the
    answer is longest-prefix matching over the rules."""
    rules, anchors = rs
    live = [r for r in rules if alive(r, now)]
    live_ids = {r.id for r in live}
    event(f"expired rules: {min(len(rules) - len(live), 3)}{'+' if len(rules) - len(live) > 3 else ''}")
    st_ = tables(rules)
    hidden = 0
    for fam, addr in probes(rules, anchors, rnd):
        for d in (0, 1):
            got = emu.kernel_lookup(st_, fam, d, addr, now)
            want = expiring_lookup(rules, fam, d, addr, now)
            _same(got, want)
            best = lpm(live, fam, d, addr, now)
            hidden += want != best
            if got:
                assert got.rule_id in live_ids and got.plen <= best.plen
            if len(live) == len(rules):
                _same(got, best)
            for proto, port in ((6, 80), (17, 53), (132, 443)):
                got = emu.kernel_port_lookup(st_, d, proto, port, fam, addr, now)
                want = expiring_port_lookup(rules, d, proto, port, fam, addr, now)
                _same(got, want)
                best = lpm_port(live, d, proto, port, fam, addr, now)
                hidden += want != best
                assert got is None or (got.rule_id in live_ids and got.plen <= best.plen)
                if len(live) == len(rules):
                    _same(got, best)
    # steer the search towards rule sets where expired entries hide live rules
    target(float(hidden), label="lookups where expired rules hide a live one")


def test_expired_rule_oracle_sees_shadowing():
    """The oracle above is not longest-prefix matching in disguise, and the
    tables agree with it where they differ from it: in one band, a /24
    expiring first over a /20 expiring later (expired too) hides the live
    /17 under them; in the IPv6 trie and in the port trie, four expired
    entries hide a fifth, live one."""
    T = 1000
    band = [Rule(1, 4, 0x0A000000, 17), Rule(2, 4, 0x0A000000, 20, 0, DENY, None, None, 2 * T),
            Rule(3, 4, 0x0A000000, 24, 0, DENY, None, None, T)]
    base6 = 0x2001 << 112
    trie = [Rule(1, 6, base6, 16)] + [Rule(p, 6, base6, p, 0, DENY, None, None, T) for p in (17, 18, 19, 20)]
    port = [Rule(1, 4, 0x0A000000, 8, 0, ALLOW, 6, 80)] + \
        [Rule(p, 4, 0x0A000000, p, 0, DENY, 6, 80, T) for p in (9, 10, 11, 12)]
    cases = [
        (band, lambda rs, t: expiring_lookup(rs, 4, 0, 0x0A000001, t),
         lambda st_, t: emu.kernel_lookup(st_, 4, 0, 0x0A000001, t), lambda rs, t: lpm(rs, 4, 0, 0x0A000001, t)),
        (trie, lambda rs, t: expiring_lookup(rs, 6, 0, base6 | 1, t),
         lambda st_, t: emu.kernel_lookup(st_, 6, 0, base6 | 1, t), lambda rs, t: lpm(rs, 6, 0, base6 | 1, t)),
        (port, lambda rs, t: expiring_port_lookup(rs, 0, 6, 80, 4, 0x0A000001, t),
         lambda st_, t: emu.kernel_port_lookup(st_, 0, 6, 80, 4, 0x0A000001, t),
         lambda rs, t: lpm_port(rs, 0, 6, 80, 4, 0x0A000001, t)),
    ]
    for rules, oracle, kernel, longest in cases:
        st_ = tables(rules)
        assert oracle(rules, 3 * T) is None and kernel(st_, 3 * T) is None
        assert longest(rules, 3 * T).id == 1
        # with one expired entry fewer, the retry or the fallback reaches the live rule
        assert oracle(rules[:-1], 3 * T).id == 1 and kernel(tables(rules[:-1]), 3 * T).rule_id == 1
        for now in (0, T - 1):
            _same(kernel(st_, now), oracle(rules, now))
            _same(kernel(st_, now), longest(rules, now))


# ---------------------------------------------------------------------------
# the whole verdict: model over rules == C logic over compiled tables
# ---------------------------------------------------------------------------
def table_verdict(st_, flags: int, pkt: model.Pkt, policy: int, now: int = 0):
    """The droplist.h decision written over kernel_lookup (cfg flags honoured)."""
    if pkt.l3 == abi.L3.MALFORMED:
        return (True, DlReason.DROP_MALFORMED, None) if policy == Policy.DENY else \
               (False, DlReason.PASS_MALFORMED, None)
    if pkt.l3 not in (abi.L3.IPV4, abi.L3.IPV6):
        return False, (DlReason.PASS_ALWAYS if policy == Policy.DENY else DlReason.PASS_NOMATCH), None
    found = [(emu.kernel_lookup(st_, pkt.family, 0, pkt.src, now), DlReason.DROP_SRC)]
    if flags & CfgFlag.HAVE_DST:
        found.append((emu.kernel_lookup(st_, pkt.family, 1, pkt.dst, now), DlReason.DROP_DST))
    if flags & CfgFlag.HAVE_PORT and pkt.has_ports:
        for d, a in ((0, pkt.src), (1, pkt.dst)):
            found.append((emu.kernel_port_lookup(st_, d, pkt.ip_proto, pkt.dport, pkt.family, a, now),
                          DlReason.DROP_PORT))
    for m, _ in found:
        if m and m.action == ALLOW:
            return False, DlReason.PASS_ALLOW, m.rule_id
    for m, why in found:
        if m and m.action == DENY:
            return True, why, m.rule_id
    if policy != Policy.DENY:
        return False, DlReason.PASS_NOMATCH, None
    return (False, DlReason.PASS_ALWAYS, None) if pkt.nd else (True, DlReason.DROP_POLICY, None)


@settings(**SETTINGS)
@given(rule_sets(max_rules=25), st.randoms(use_true_random=False), st.sampled_from([0, 1]))
def test_model_verdict_equals_table_verdict(rs, rnd, policy):
    rules, anchors = rs
    c = dl.compile_full(rules)
    st_ = emu.tables_to_state(c)
    pts = probes(rules, anchors, rnd)
    for _ in range(40):
        fam, src = rnd.choice(pts)
        same = [a for f, a in pts if f == fam]
        dst = rnd.choice(same)
        l4 = rnd.choice([abi.L4.TCP, abi.L4.UDP, abi.L4.SCTP, abi.L4.ICMP, abi.L4.FRAGMENT,
                         abi.L4.MALFORMED, abi.L4.ICMPV6])
        proto = {abi.L4.TCP: 6, abi.L4.UDP: 17, abi.L4.SCTP: 132, abi.L4.ICMP: 1,
                 abi.L4.ICMPV6: 58}.get(l4, rnd.choice([6, 17]))
        mapped = lambda a: fam == 6 and a >> 32 == 0xFFFF  # noqa: E731
        pkt = model.Pkt(abi.L3.IPV4 if fam == 4 else abi.L3.IPV6, l4, proto, family=fam, src=src, dst=dst,
                        sport=rnd.choice([53, 80, 1234]), dport=rnd.choice([53, 80, 443, 8080]),
                        src_v4mapped=mapped(src), dst_v4mapped=mapped(dst),
                        nd=l4 == abi.L4.ICMPV6 and fam == 6 and rnd.random() < 0.5, length=100)
        assert model.verdict(rules, pkt, policy, 0) == table_verdict(st_, c.flags, pkt, policy), pkt
    for l3 in (abi.L3.ARP, abi.L3.OTHER, abi.L3.MALFORMED):
        pkt = model.Pkt(l3, abi.L4.NONE)
        assert model.verdict(rules, pkt, policy, 0) == table_verdict(st_, c.flags, pkt, policy)


def _random_rules(seed: int, family: int, n: int, base: int, free_bits: int, shorter: list[int]) -> list[Rule]:
    """n distinct rules under ``base``: 80 % hosts, the rest of the
    ``shorter`` lengths; both directions, some with a deadline."""
    rnd = random.Random(seed)
    host = BITS[family]
    rules, keys = [], set()
    while len(rules) < n:
        plen = host if rnd.random() < 0.8 else rnd.choice(shorter)
        net = (base | rnd.getrandbits(free_bits)) & mask(family, plen)
        d = rnd.randint(0, 1)
        if (d, plen, net) in keys:
            continue
        keys.add((d, plen, net))
        rules.append(Rule(len(rules) + 1, family, net, plen, d, rnd.choice([DENY, ALLOW]), None, None,
                          rnd.choice([0, 123])))
    return rules


def test_compile_large_random_v4_against_reference():
    """A few thousand rules through the columnar path, checked exactly."""
    rules = _random_rules(11, 4, 4000, 0x0A000000, 20, [8, 12, 16, 17, 20, 24, 25, 28, 31])
    c = dl.compile_full(rules)
    assert compiled_sparse(c) == reference_state(rules)
    assert sparse(emu.tables_to_state(c)) == reference_state(rules)


def test_compile_large_random_v6_against_reference():
    """IPv6 hosts (the columnar /128 path) among shorter prefixes, checked
    exactly; a set of hosts alone too."""
    rules = _random_rules(12, 6, 3000, 0x20010DB8 << 96, 72, [24, 32, 40, 48, 60, 64, 100, 127])
    for rs in (rules, [r for r in rules if r.plen == 128]):
        c = dl.compile_full(rs)
        assert compiled_sparse(c) == reference_state(rs)
        assert dl.compile_full([tuple(r) for r in rs])["xc_v6_l128"] == c["xc_v6_l128"]


def _int_nets(rs: dl.RuleColumns) -> dl.RuleColumns:
    """The same rules with their networks as a plain list of integers
    (no packed IPv6 networks)."""
    return dl.RuleColumns(*(list(c) if i == 2 else c for i, c in enumerate(rs.cols)))


def test_parsed_ipv6_hosts_compile_from_their_packed_networks_as_from_the_integers():
    """A list parsed from text carries its IPv6 networks packed
    (RuleColumns.packed6, from its Nets6Later column): the /128 image built from them is the one the
    integers give, checked against the reference; beside other rules (the
    columns rebuilt, no packed networks) too."""
    from xdpctl.core.rules.members import Members

    rnd = random.Random(13)
    addrs = sorted({rnd.getrandbits(128) for _ in range(3000)})
    text = "".join(f"{px.format_address(6, a)}\n" for a in addrs)
    m = Members.parse(text)
    assert m.packed6 is not None and m.nets6 == addrs
    cols = m.columns(100, 0, int(Action.DENY), 0)
    assert cols.packed6 == m.packed6
    plain = _int_nets(cols)
    assert plain.packed6 is None
    got, want = dl.compile_full(cols), dl.compile_full(plain)
    assert got["xc_v6_l128"] == want["xc_v6_l128"] and got["xc_v6_l128"].count == len(addrs)
    rules = [Rule(*r) for r in cols]
    assert compiled_sparse(got) == reference_state(rules)
    beside = dl.RuleColumns.concat([dl.RuleColumns.of([Rule(1, 4, 0x0A000000, 8, 0, DENY, None, None, 0)]), cols])
    assert beside.packed6 is None
    assert compiled_sparse(dl.compile_full(beside)) == reference_state([Rule(1, 4, 0x0A000000, 8, 0, DENY, None,
                                                                             None, 0)] + rules)
    assert Members.unpack(m.pack()).packed6 == m.packed6


@pytest.mark.parametrize("seed", range(3))
def test_ipv6_hosts_among_other_lengths_are_picked_from_the_packed_networks(seed, monkeypatch):
    """A parsed IPv6 list of several lengths: its /128 rows' packed
    networks are picked out of RuleColumns.packed6 (every IPv6 row's), never
    packed again from the integers; the image equals the one the integers
    give and the reference. With IPv4 rows before them, a /128 with a port
    (not a plain host) and destination rules too."""
    from xdpctl.core import prefixes
    from xdpctl.core.rules.members import Members

    rnd = random.Random(100 + seed)
    hosts = {rnd.getrandbits(128) for _ in range(2000)}
    shorter = {(rnd.getrandbits(128) >> (128 - p)) << (128 - p): p
               for p in (rnd.choice([32, 40, 48, 56, 60, 64, 100, 127]) for _ in range(300))}
    lines = [f"{px.format_address(6, a)}\n" for a in hosts] + \
            [f"{px.format_address(6, a)}/{p}\n" for a, p in shorter.items()]
    rnd.shuffle(lines)
    m = Members.parse("".join(lines))
    assert m.packed6 is not None and m.n6 == len(lines) and len(set(m.plens6)) > 2
    d = seed % 2
    cols = m.columns(5000, d, int(Action.DENY), 0)
    ip4 = dl.RuleColumns.of([Rule(1, 4, 0x0A000001, 32, 0, DENY, None, None, 0),
                             Rule(2, 4, 0x0A010000, 16, 0, DENY, None, None, 0)])
    port = [Rule(3, 6, max(hosts), 128, 0, DENY, 6, 443, 0)]

    def cat(a, b, packed6):  # two rule sets' columns; the networks with the IPv6 rows packed
        out = [x + y if isinstance(x, bytes) and isinstance(y, bytes) else list(x) + list(y) for x, y in zip(a, b)]
        out[2] = dl.Nets6Later([n for n, f in zip(out[2], out[1]) if f == 4], packed6)  # IPv4 rows come first
        return dl.RuleColumns(*out)

    mixed = cat(ip4.cols, cols.cols, cols.packed6)
    with_port = cat(mixed.cols, dl.RuleColumns.of(port).cols, cols.packed6 + max(hosts).to_bytes(16, "big"))
    assert with_port.packed6 is not None and list(with_port.cols[2]) == list(mixed.cols[2]) + [max(hosts)]

    def no_packing(nets):
        raise AssertionError("the /128 networks were packed again")

    for rs in (cols, mixed, with_port):
        want = dl.compile_full(_int_nets(rs))   # from the integers
        with monkeypatch.context() as mp:
            mp.setattr(dl, "pack_v6", no_packing)
            got = dl.compile_full(rs)
        assert got["xc_v6_l128"] == want["xc_v6_l128"] and got["xc_v6_l128"].count == len(hosts)
        assert got.flags == want.flags and compiled_sparse(got) == compiled_sparse(want)
        assert compiled_sparse(got) == reference_state([Rule(*r) for r in rs])
    assert prefixes.pack_v6 is not no_packing


@pytest.mark.parametrize("seed", range(4))
def test_the_columnar_split_of_a_band_gives_the_loops_bytes(seed, monkeypatch):
    """From 64 rules up, the IPv4 rules shorter than /32 and the IPv6 rules
    other than plain /128s are checked and sorted into their tables as
    columns (_band_rules), and _alone_columns
    does the work of _clusters for a band: every table gets exactly the
    bytes, in the same order, that the rule-by-rule loops write; rules
    overlapping or not, /32 keys inside shorter rules of xc_v4_l32 (they
    keep their key) or none, both directions, deadlines, a few rules of
    other kinds beside; checked against the reference too."""
    rnd = random.Random(seed)
    free = (20, 24, 28)[seed % 3]  # narrow: many clusters; wide: mostly lone rules
    lens = [12, 16, 17, 19, 20, 22, 24, 25, 27, 30, 31] + [32] * (4 if seed % 2 else 0)
    rules, seen = [], set()
    while len(rules) < 2000:
        plen, d = rnd.choice(lens), rnd.randint(0, 1)
        net = (0x0A000000 | rnd.getrandbits(free)) & mask(4, plen)
        if (d, plen, net) not in seen:
            seen.add((d, plen, net))
            rules.append(Rule(len(rules) + 1, 4, net, plen, d, rnd.choice([DENY, ALLOW]), None, None,
                              rnd.choice([0, 0, 123])))
    lens6 = [24, 30, 32, 33, 40, 44, 48, 52, 56, 60, 64, 65, 100, 127] + [128] * (3 if seed % 2 else 0)
    while len(rules) < 2600:  # IPv6 rules of every table: the four bands and the trie
        plen, d = rnd.choice(lens6), rnd.randint(0, 1)
        net = (0x20010DB8 << 96 | rnd.getrandbits(free + 40) << 60) & mask(6, plen)
        if (d, plen, net) not in seen:
            seen.add((d, plen, net))
            rules.append(Rule(len(rules) + 1, 6, net, plen, d, rnd.choice([DENY, ALLOW]), None, None,
                              rnd.choice([0, 0, 123])))
    n = len(rules)
    rules += [Rule(n + 3, 4, 0x0A000000, 8, 0, DENY, 6, 22), Rule(n + 4, 0, 0, 0, 1, ALLOW, 17, 53),
              Rule(n + 5, 6, 0x20010DB8 << 96, 48, 0, DENY, 17, 53)]
    rnd.shuffle(rules)
    monkeypatch.setattr(dl, "_COLUMNS_MIN", 2)
    cols = dl.compile_full(rules)
    monkeypatch.setattr(dl, "_COLUMNS_MIN", 10**9)
    loop = dl.compile_full(rules)
    for m in abi.RULE_MAPS:
        assert (cols[m].keys, cols[m].values, cols[m].count) == (loop[m].keys, loop[m].values, loop[m].count), m
    assert cols.flags == loop.flags
    assert compiled_sparse(cols) == reference_state(rules)


@pytest.mark.parametrize("bad, message", [
    (dict(net=0x0A000001), "host bits set in net"),
    (dict(id=0), "id 0 out of range"),
    (dict(id=2**32), "id 4294967296 out of range"),
    (dict(net=2**32), "is not an IPv4 address"),
    (dict(plen=33), "plen 33 out of range 0..32"),
    (dict(dir=2), "dir 2 is not 0"),
    (dict(action=0), "action 0 is not DENY"),
    (dict(expires_ns=-1), "expires_ns -1 out of range"),
    (dict(net=0x0A000000, plen=24), None),  # the key of rule 1: the later of the two is named
])
def test_a_bad_rule_among_many_shorter_ipv4_prefixes_is_named(bad, message):
    """The columnar check of the IPv4 rules shorter than /32 gives way to
    the rule-by-rule one, which names the rule and the problem."""
    rules = [Rule(i + 1, 4, 0x0A000000 + (i << 8), 24) for i in range(200)]
    rules += [Rule(1000 + i, 4, 0x0B000000 + i, 32) for i in range(50)]
    culprit = Rule(**{**Rule(500, 4, 0x0C000000, 24)._asdict(), **bad})
    for at in (0, 100, len(rules)):
        with pytest.raises(RuleError) as ei:
            dl.compile_full(rules[:at] + [culprit] + rules[at:])
        if message is None:
            first, second = (culprit.id, 1) if at else (1, culprit.id)
            assert str(ei.value).startswith(f"rule {first}: same key as rule {second} ")
        else:
            assert str(ei.value).startswith(f"rule {culprit.id}:") and message in str(ei.value)


@pytest.mark.parametrize("seed", range(6))
def test_an_ipv6_band_as_columns_gives_the_loops_bytes(seed, monkeypatch):
    """_compile_band6 (the /32, /48 and /64 bands from _COLUMNS_MIN rules
    up) writes the bytes, in the order, of _compile_plain's loop: rules
    expanding to many keys, overlapping (the longer one takes a key),
    nested in chains, both directions, deadlines; the reference agrees.
    Below _COLUMNS_MIN the loop runs."""
    rnd = random.Random(seed)
    band = [b for b in dl.BANDS if b.map in ("xc_v6_l32", "xc_v6_l48", "xc_v6_l64")][seed % 3]
    free = (band.hi - 16) if seed < 3 else 12   # wide: mostly apart; narrow: overlapping, nested
    rules, seen = [], set()
    while len(rules) < (300 if seed < 5 else 40):
        plen, d = rnd.randint(band.lo, band.hi), rnd.randint(0, 1) if seed % 2 else 0
        net = (0x2001 << 112 | rnd.getrandbits(free) << (128 - 16 - free)) & mask(6, plen)
        if (d, plen, net) not in seen:
            seen.add((d, plen, net))
            rules.append(Rule(len(rules) + 7, 6, net, plen, d, rnd.choice([DENY, ALLOW]), None, None,
                              rnd.choice([0, 0, 5 * 10**9])))
    rnd.shuffle(rules)
    calls = []
    real = dl._compile_plain
    monkeypatch.setattr(dl, "_compile_plain", lambda b, m, o: (calls.append(b.map), real(b, m, o)))
    cols = dl.Compiled()
    dl._compile_band6(band, list(rules), cols)
    assert calls == ([] if len(rules) >= dl._COLUMNS_MIN else [band.map])
    loop = dl.Compiled()
    real(band, list(rules), loop)
    t, want = cols[band.map], loop[band.map]
    assert (t.keys, t.values, t.count) == (want.keys, want.values, want.count)
    assert t.count > len(rules)  # shorter rules made many keys
    if seed in (3, 4):  # and some keys twice: the longer rule took them
        assert sum(1 << (band.stride - r.plen) for r in rules) > t.count
    whole = dl.compile_full(rules)  # the fallbacks of rules with deadlines added to the values
    assert (whole[band.map].keys, whole[band.map].count) == (want.keys, want.count)
    assert compiled_sparse(whole) == reference_state(rules)


@pytest.mark.parametrize("bad, message", [
    (dict(net=0x20010DB8 << 96 | 1), "host bits set in net"),
    (dict(net=1 << 128), "is not an IPv6 address"),
    (dict(net=-(1 << 96)), "is not an IPv6 address"),
    (dict(plen=129), "plen 129 out of range 0..128"),
    (dict(id=0), "id 0 out of range"),
    (dict(dir=2), "dir 2 is not 0"),
    (None, None),  # the key of another rule: the later of the two is named
])
def test_a_bad_rule_among_many_ipv6_prefixes_is_named(bad, message):
    """The columnar check of the IPv6 rules other than plain /128s gives
    way to the rule-by-rule one, which names the rule and the problem."""
    rules = [Rule(i + 1, 6, (0x20010DB8 << 96 | i << 88) & mask(6, plen), plen)
             for i, plen in enumerate([64, 48, 100, 40] * 50)]
    rules += [Rule(1000 + i, 6, 0x20010DB9 << 96 | i, 128) for i in range(50)]
    twin = rules[7]
    culprit = twin._replace(id=500) if bad is None else Rule(**{**Rule(500, 6, 0x20010DBA << 96, 64)._asdict(), **bad})
    for at in (0, 100, len(rules)):
        with pytest.raises(RuleError) as ei:
            dl.compile_full(rules[:at] + [culprit] + rules[at:])
        if message is None:
            first, second = (culprit.id, twin.id) if at > 7 else (twin.id, culprit.id)
            assert str(ei.value).startswith(f"rule {first}: same key as rule {second} ")
        else:
            assert str(ei.value).startswith(f"rule {culprit.id}:") and message in str(ei.value)


@given(ids=st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=50), act=st.sampled_from(list(Action)),
       plen=st.integers(0, 128), exp=st.one_of(st.just(0), st.integers(1, 2**64 - 1)))
def test_values_of_one_action_and_deadline_for_all_equal_the_columns(ids, act, plen, exp) -> None:
    """xc_rule_val columns (a list's hosts, listdelta): one action and one
    deadline given as plain ints pack as the same columns given per rule."""
    import numpy as np

    per_rule = dl._vals_col(array("I", ids), bytes([act]) * len(ids), plen, np.full(len(ids), exp, np.uint64))
    assert dl._vals_col(np.array(ids, np.uint32), int(act), plen, exp) == per_rule
    assert [abi.RULE_VAL.unpack_from(per_rule, i * abi.RULE_VAL.size)[:5] for i in range(len(ids))] == \
        [(i, act, plen, 0, exp) for i in ids]


@pytest.mark.parametrize("n4, n6", [(0, 5), (3, 0), (4, 6), (7, 2), (0, 0)])
def test_a_networks_column_with_packed_ipv6_rows_reads_as_the_list(n4, n6):
    """Nets6Later (a parsed list's networks, IPv6 rows packed): every
    item, slice, iteration and masked pick equals the plain list's, before
    and after the IPv6 integers are made; IPv4 rows alone make none."""
    rnd = random.Random(n4 * 10 + n6)
    v4, v6 = [rnd.getrandbits(32) for _ in range(n4)], [rnd.getrandbits(128) for _ in range(n6)]
    full = v4 + v6
    for _ in range(300):
        col = dl.Nets6Later(list(v4), px.pack_v6(v6))
        assert len(col) == len(full)
        i = rnd.randint(-len(full) - 2, len(full) + 1)
        if -len(full) <= i < len(full):
            assert col[i] == full[i]
        else:
            with pytest.raises(IndexError):
                col[i]
        a, b, step = rnd.randint(-12, 12), rnd.randint(-12, 12), rnd.choice([1, 2, -1, -3])
        assert col[a:b:step] == full[a:b:step]
        mask = bytes(rnd.randint(0, 1) for _ in full)
        fresh = dl.Nets6Later(list(v4), px.pack_v6(v6))
        assert fresh.pick(mask) == list(compress(full, mask)) and fresh._all is None
        if n4:
            assert fresh[:n4] == v4 and fresh[n4 - 1] == v4[-1] and fresh._all is None
        assert list(fresh) == full and fresh.pick(mask) == list(compress(full, mask))


def test_a_parsed_list_compiles_without_its_hosts_as_integers(monkeypatch):
    """A list of mixed IPv6 lengths, parsed (IPv6 text: the parser's
    packed networks): its columns carry the networks packed (Nets6Later),
    and the compile makes integers only for
    the rows that are not plain /128 hosts; the image is the one of the
    integers."""
    from xdpctl.core.rules.members import Members

    rnd = random.Random(21)
    hosts = [rnd.getrandbits(128) for _ in range(1500)]
    shorter = {(rnd.getrandbits(128) >> 80) << 80: 48 for _ in range(200)}
    text = "".join([f"{px.format_address(6, a)}\n" for a in hosts] +
                   [f"{px.format_address(6, a)}/{p}\n" for a, p in shorter.items()])
    cols = Members.parse(text).columns(10, 0, int(Action.DENY), 0)
    assert isinstance(cols.cols[2], dl.Nets6Later)
    made = []
    real = dl.unpack_v6
    monkeypatch.setattr(dl, "unpack_v6", lambda raw: (made.append(len(raw) // 16), real(raw))[1])
    got = dl.compile_full(cols)
    assert made == [len(shorter)] and cols.cols[2]._all is None
    monkeypatch.undo()
    want = dl.compile_full(_int_nets(cols))
    for m in abi.RULE_MAPS:
        assert got[m] == want[m], m
    assert got.flags == want.flags
