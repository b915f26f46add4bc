"""Rule validation shared by every front end: TTLs, list names, list members."""
from __future__ import annotations

import pytest

from xdpctl.core.errors import ValidationError
from xdpctl.core.rules import validate


def refused(fn, *a, **kw) -> ValidationError:
    with pytest.raises(ValidationError) as ei:
        fn(*a, **kw)
    return ei.value


@pytest.mark.parametrize("ttl", ["", 0, "0", " ", "0s", "9" * 5000,
                                 pytest.param(10 ** 5000, id="huge-int")])
def test_a_ttl_that_is_given_must_be_a_positive_duration(ttl):
    e = refused(validate.duration, ttl)
    assert e.field == "ttl"
    assert len(e.message) < 200
    e = refused(validate.spec, "10.0.0.0/8", ttl=ttl)
    assert e.field == "ttl"


def test_no_ttl_means_no_expiry():
    assert validate.duration(None) is None
    assert validate.spec("10.0.0.0/8").ttl is None
    assert validate.duration("1h30m") == 5400


@pytest.mark.parametrize("port", ["9" * 5000, pytest.param(10 ** 5000, id="huge-int"), 0, 65536])
def test_huge_or_out_of_range_ports_are_refused(port):
    e = refused(validate.spec, None, proto="tcp", port=port)
    assert e.field == "port" and len(e.message) < 200 and len(e.value or "") <= 80


@pytest.mark.parametrize("name", ["a", "feed-1", "x.y_z", "A" * 64, "-x", "_x", "0"])
def test_good_list_names(name):
    assert validate.list_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a b", "é", "ＡＢ", "a\n", "a" * 65,
                                  "x" * 10_000_000])
def test_bad_list_names(name):
    e = refused(validate.list_name, name)
    assert e.field == "name"
    assert len(e.message) < 300 and (e.value is None or len(e.value) <= 80)


def test_an_empty_list_needs_allow_empty():
    e = refused(validate.list_members, [], False)
    assert e.field == "prefixes" and "allow_empty" in e.hint
    assert validate.list_members([], True) == []
