"""The questions a single change asks SQLite about addresses find their
rows through the index rules_match down to the address: their cost does
not grow with the number of rules stored. A range on the prefix length
would stop the index there and read every rule of those lengths (a change
beside 100,000 individual /32 rules would read all of them)."""
from __future__ import annotations

import time

import pytest

from xdpctl.core import dlcompile as dlc
from xdpctl.core.rules.index import SqlRuleIndex
from xdpctl.core.rules.ruleset import V6_TRIE_LENS
from xdpctl.core.rules.store import RuleRow, State
from xdpctl.core.rules.validate import addr_bytes


@pytest.fixture
def state(tmp_path):
    s = State(str(tmp_path / "state.db"))
    now = time.time()
    rows = [RuleRow(i, 4, (0x0A000000 + i).to_bytes(4, "big"), 32, 0, 1, 0, 0, 0, 0, None, "cli", now, None)
            for i in range(1, 3001)]
    rows += [RuleRow(5000 + i, 4, (0x0B000000 + (i << 8)).to_bytes(4, "big"), 24, 0, 1, 0, 0, 0, 0, None, "cli",
                     now, None) for i in range(500)]
    rows += [RuleRow(6000 + i, 6, ((0x20010DB8 << 96) + i).to_bytes(16, "big"), 128, 0, 1, 0, 0, 0, 0, None, "cli",
                     now, None) for i in range(500)]
    with s.tx():
        s.insert_rules(rows)
    s.db.execute("ANALYZE")
    yield s
    s.close()


def _plan(state: State, sql: str) -> str:
    return " | ".join(row[3] for row in state.db.execute("EXPLAIN QUERY PLAN " + sql))


@pytest.mark.parametrize("rule", [
    dlc.Rule(1, 4, 0x0A000105, 32), dlc.Rule(1, 4, 0x0A000180, 27), dlc.Rule(1, 4, 0x0B000000, 20),
    dlc.Rule(1, 4, 0x0A000000, 24, 1), dlc.Rule(1, 6, (0x20010DB8 << 96) + 7, 128),
    dlc.Rule(1, 6, 0x20010DB8 << 96, 64),
], ids=lambda r: f"v{r.family}-{r.plen}-dir{r.dir}")
def test_the_address_questions_of_a_change_search_down_to_the_address(state, rule):
    asked: list[str] = []
    state.db.set_trace_callback(asked.append)
    index = SqlRuleIndex(state)
    try:
        index.prepare(rule)
        state.rule_by_key((rule.family, rule.dir, 0, 0, 0, rule.plen, addr_bytes(rule.family, rule.net)))
        state.rule_set_facts(V6_TRIE_LENS)
    finally:
        index.close()
        state.db.set_trace_callback(None)
    on_addr = [q for q in asked if q.startswith("SELECT") and " addr" in q and "FROM rules" in q]
    assert len(on_addr) >= 2, asked  # the band's rules inside the prefix, and the rule itself
    for q in on_addr:
        plan = _plan(state, q)
        assert "rules_match" in plan and ("addr=?" in plan or "addr>?" in plan), (q, plan)
        assert "plen>?" not in plan and "plen<?" not in plan, (q, plan)


def _replanned(state: State) -> dict[str, int]:
    """Questions about rules that SQLite prepared again after the first
    time, with how often (sqlite_stmt: the statements the connection holds
    prepared, as Python's statement cache keeps them; the schema's own
    PRAGMAs are prepared again by the migration's ALTERs)."""
    return {sql: n for sql, n in state.db.execute("SELECT sql, reprep FROM sqlite_stmt")
            if n and "FROM rules" in sql}


def test_the_rule_questions_are_planned_once_whatever_their_values(state):
    """A value bound where a partial index's WHERE names the column
    (``dir=?`` beside rules_dst's ``dir=1``) made SQLite plan the statement
    again on every run, several times the lookup's own cost. Each question
    is asked with values that differ in each such column; none may be
    planned again."""
    a4, a6 = addr_bytes(4, 0x0A000105), addr_bytes(6, (0x20010DB8 << 96) + 7)
    now = time.time()
    for fam, addr, plens in ((4, a4, (24, 32)), (6, a6, (64, 128))):
        for d in (0, 1, 0):
            for proto, port, anyaddr in ((0, 0, 0), (6, 80, 0), (17, 53, 1)):
                state.rule_by_key((fam, d, proto, port, anyaddr, plens[1], addr))
                state.l4_zero_rule(d, proto or 6, port or 80, anyaddr=bool(anyaddr))
                state.l4_rules(d, proto or 6, port or 80, fam)
            state.address_rule(fam, d, plens[1], addr)
            state.address_rules_in(fam, d, plens, (addr, addr))
            state.address_rules_at(fam, d, list(plens), [addr])
            state.address_nets(fam, d, plens)
            state.rule_rows(match=(fam, plens[1], addr))
            state.expired_rules(now + d)
            state.anything_expired(now + d)
            state.rule_set_facts(V6_TRIE_LENS)
    assert state.rule_by_key((4, 0, 0, 0, 0, 32, a4)).id == 0x105
    asked = [sql for sql, in state.db.execute("SELECT sql FROM sqlite_stmt") if "FROM rules" in sql]
    assert len(asked) >= 10, asked
    assert _replanned(state) == {}
