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
