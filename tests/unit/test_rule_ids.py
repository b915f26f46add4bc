"""Rule ids: a freed id is not handed out again until the id space wraps
(the mark is the last id written: asking for ids does not move it)."""
from __future__ import annotations

import time

import pytest

from xdpctl.core.errors import CapacityError
from xdpctl.core.rules.store import ListRow, RuleRow, State

CAP = 10  # ids 1..9


@pytest.fixture
def state(tmp_path):
    s = State(str(tmp_path / "state.db"))
    yield s
    s.close()


def add(state: State, n: int) -> list[int]:
    ids = state.free_ids(n, CAP)
    state.insert_rules([RuleRow(i, 4, i.to_bytes(4, "big"), 32, 0, 1, 0, 0, 0, 0, None, "cli", time.time(), None)
                        for i in ids])
    return ids


def test_a_deleted_id_is_not_the_next_one(state):
    assert add(state, 3) == [1, 2, 3]
    state.delete_rules([3])
    assert add(state, 1) == [4]
    state.delete_rules([1, 2])
    assert add(state, 2) == [5, 6]


def test_list_ranges_go_above_the_mark_too(state):
    assert add(state, 2) == [1, 2]
    state.delete_rules([1, 2])
    assert state.allocate_ids(3, CAP) == 3
    state.replace_list(ListRow("l", 3, 0, 1, None, None, time.time(), None, 3, b"", 0))
    assert add(state, 1) == [6]


def test_after_the_capacity_the_oldest_ids_come_back_first(state):
    assert add(state, 9) == list(range(1, 10))
    state.delete_rules([7])
    state.delete_rules([2])
    state.delete_rules([5])
    # wrapped: in id order from the start, the ids handed out longest ago
    assert add(state, 1) == [2]
    assert add(state, 1) == [5]
    assert add(state, 1) == [7]
    with pytest.raises(CapacityError):
        add(state, 1)


def test_a_wrapped_list_range_takes_the_lowest_free_run(state):
    add(state, 9)
    state.delete_rules([1, 2, 3, 6, 7])
    assert state.allocate_ids(2, CAP) == 1
    assert state.allocate_ids(2, CAP) == 1  # asking is not taking
    state.replace_list(ListRow("l", 2, 0, 1, None, None, time.time(), None, 1, b"", 0))
    assert state.allocate_ids(2, CAP, reserved=[(3, 4)]) == 6
    with pytest.raises(CapacityError):
        state.allocate_ids(4, CAP)


def test_a_database_without_a_mark_starts_above_its_highest_id(state):
    add(state, 4)
    state.replace_list(ListRow("l", 2, 0, 1, None, None, time.time(), None, 6, b"", 0))
    state.delete_rules([2])
    state.delete_meta("rule_id_mark")
    assert add(state, 2) == [8, 9]
