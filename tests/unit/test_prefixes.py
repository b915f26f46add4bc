"""User-input parsing: prefixes, protocols, ports, durations, block-list files."""
from __future__ import annotations

import ipaddress
import random
import re
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdpctl import native
from xdpctl.core import prefixes as px
from xdpctl.core.prefixes import Prefix, PrefixError
from xdpctl.core.rules.members import Members


def err(fn, *a, **kw) -> PrefixError:
    with pytest.raises(PrefixError) as ei:
        fn(*a, **kw)
    assert isinstance(ei.value, ValueError)
    return ei.value


# ---------------------------------------------------------------------------
# prefixes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, want", [
    ("10.0.0.0/8", Prefix(4, 0x0A000000, 8)),
    ("10.1.2.3", Prefix(4, 0x0A010203, 32)),
    ("0.0.0.0/0", Prefix(4, 0, 0)),
    ("255.255.255.255/32", Prefix(4, 0xFFFFFFFF, 32)),
    (" 192.0.2.0/24\t", Prefix(4, 0xC0000200, 24)),
    ("2001:db8::/32", Prefix(6, 0x20010DB8 << 96, 32)),
    ("2001:DB8::1", Prefix(6, (0x20010DB8 << 96) | 1, 128)),
    ("::/0", Prefix(6, 0, 0)),
    ("::", Prefix(6, 0, 128)),
    ("::1/128", Prefix(6, 1, 128)),
    ("10.0.0.0/08", Prefix(4, 0x0A000000, 8)),
])
def test_parse_prefix_ok(text, want):
    assert px.parse_prefix(text) == want


def test_host_bits_message_and_hint():
    e = err(px.parse_prefix, "10.1.2.3/8")
    assert str(e) == "10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"
    assert e.code == "host_bits" and e.text == "10.1.2.3/8" and e.lineno is None
    e = err(px.parse_prefix, "2001:db8::1/64")
    assert str(e) == "2001:db8::1/64 has host bits set; did you mean 2001:db8::/64?"
    assert px.parse_prefix("10.1.2.3/8", strict=False) == Prefix(4, 0x0A000000, 8)


@pytest.mark.parametrize("text, message, code", [
    ("10.0.0.0/33", "10.0.0.0/33: prefix length 33 out of range 0..32 for IPv4", "length"),
    ("::/129", "::/129: prefix length 129 out of range 0..128 for IPv6", "length"),
    ("10.0.0.0/", "10.0.0.0/: missing prefix length after '/'", "syntax"),
    ("10.0.0.0/x", "10.0.0.0/x: prefix length x is not a decimal number", "syntax"),
    ("10.0.0.0/-1", "10.0.0.0/-1: prefix length -1 is not a decimal number", "syntax"),
    ("10.0.0.0/1000", "10.0.0.0/1000: prefix length 1000 is not a decimal number", "syntax"),
    ("10.0.0.0/8/8", "10.0.0.0/8/8: prefix length 8/8 is not a decimal number", "syntax"),
    ("10.0.0", "10.0.0 is not an IPv4 address: expected 4 dotted decimal numbers, found 3", "syntax"),
    ("1.2.3.4.5", "1.2.3.4.5 is not an IPv4 address: expected 4 dotted decimal numbers, found 5", "syntax"),
    ("1.2.3.256", "1.2.3.256 is not an IPv4 address: 256 is out of range 0..255", "syntax"),
    ("010.0.0.1", "010.0.0.1 is not an IPv4 address: leading zero in '010' (octal is not accepted)", "syntax"),
    ("1..2.3", "1..2.3 is not an IPv4 address: empty number between dots", "syntax"),
    ("1.2.3.x/8", "1.2.3.x is not an IPv4 address: x is not a decimal number", "syntax"),
    ("1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9 is not an IPv6 address", "syntax"),
    ("2001:db8::g", "2001:db8::g is not an IPv6 address", "syntax"),
    ("fe80::1%eth0", "fe80::1%eth0: a zone index (%...) is not allowed in a prefix", "syntax"),
    ("foo", "foo is not an IP address or prefix", "syntax"),
    ("/24", "/24: missing address", "syntax"),
    ("", "empty prefix", "syntax"),
    ("   ", "empty prefix", "syntax"),
    ("::ffff:10.0.0.0/90", "::ffff:10.0.0.0/90: an IPv4-mapped prefix needs a length of 96 or more "
                           "(/90 would span non-mapped IPv6 space)", "mapped"),
    ("::ffff:10.1.0.0/104", "::ffff:10.1.0.0/104 has host bits set; did you mean ::ffff:10.0.0.0/104?",
     "host_bits"),
])
def test_prefix_errors(text, message, code):
    e = err(px.parse_prefix, text)
    assert str(e) == message
    assert e.code == code


def test_non_string():
    e = err(px.parse_prefix, 42)
    assert "expected a prefix string" in str(e)


@pytest.mark.parametrize("text, want", [
    ("::ffff:10.1.2.3", Prefix(4, 0x0A010203, 32)),
    ("::ffff:10.1.2.0/120", Prefix(4, 0x0A010200, 24)),
    ("::ffff:0.0.0.0/96", Prefix(4, 0, 0)),
    ("::FFFF:192.0.2.128/121", Prefix(4, 0xC0000280, 25)),
    ("::ffff:a01:203/128", Prefix(4, 0x0A010203, 32)),
])
def test_v4_mapped_normalised(text, want):
    assert px.parse_prefix(text) == want
    if "/" not in text:
        assert px.parse_address(text) == (4, want.net)


def test_not_mapped():
    # ::a.b.c.d (IPv4-compatible, deprecated) and ::ffff:0:0:0 are plain IPv6
    assert px.parse_prefix("::10.0.0.1").family == 6
    assert px.parse_prefix("::1:ffff:0:0/96").family == 6


def test_family_filter_and_address():
    assert px.parse_prefix("10.0.0.0/8", family=4).plen == 8
    e = err(px.parse_prefix, "10.0.0.0/8", family=6)
    assert str(e) == "10.0.0.0/8 is an IPv4 prefix; IPv6 expected" and e.code == "family"
    assert px.parse_address("192.0.2.1") == (4, 0xC0000201)
    assert px.parse_address("::ffff:192.0.2.1") == (4, 0xC0000201)
    e = err(px.parse_address, "192.0.2.0/24")
    assert str(e) == "192.0.2.0/24: an address is expected, not a prefix"


@given(st.integers(0, 32).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, 2**32 - 1))))
def test_v4_against_ipaddress(pa):
    plen, addr = pa
    net = addr & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
    text = f"{ipaddress.IPv4Address(net)}/{plen}"
    assert px.parse_prefix(text) == Prefix(4, net, plen)
    assert px.format_prefix(Prefix(4, net, plen)) == text
    if net != addr:
        with pytest.raises(PrefixError):
            px.parse_prefix(f"{ipaddress.IPv4Address(addr)}/{plen}")


@given(st.integers(0, 128), st.integers(0, 2**128 - 1))
def test_v6_against_ipaddress(plen, addr):
    net = addr & (((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1))
    text = f"{ipaddress.IPv6Address(net)}/{plen}"
    p = px.parse_prefix(text)
    if (net >> 32) == 0xFFFF and plen >= 96:
        assert p == Prefix(4, net & 0xFFFFFFFF, plen - 96)
    elif (net >> 32) == 0xFFFF:
        with pytest.raises(PrefixError):
            px.parse_prefix(text)
    else:
        assert p == Prefix(6, net, plen)
        assert px.parse_prefix(px.format_prefix(p)) == p


def test_format_and_contains():
    assert px.format_prefix(Prefix(4, 0x0A000001, 32)) == "10.0.0.1/32"
    assert px.format_prefix(Prefix(4, 0x0A000001, 32), bare=True) == "10.0.0.1"
    assert str(Prefix(6, 0x20010DB8 << 96, 32)) == "2001:db8::/32"
    assert px.prefix_contains(Prefix(4, 0x0A000000, 8), 4, 0x0AFFFFFF)
    assert not px.prefix_contains(Prefix(4, 0x0A000000, 8), 4, 0x0B000000)
    assert not px.prefix_contains(Prefix(4, 0, 0), 6, 0)


# ---------------------------------------------------------------------------
# protocols, ports, durations
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("v, want", [("tcp", 6), ("UDP", 17), (" sctp ", 132), ("6", 6),
                                     ("17", 17), (132, 132)])
def test_proto_ok(v, want):
    assert px.parse_proto(v) == want


@pytest.mark.parametrize("v, message", [
    ("icmp", "protocol icmp is not supported; expected tcp, udp or sctp"),
    ("1", "protocol 1 is not supported; expected tcp (6), udp (17) or sctp (132)"),
    (47, "protocol 47 is not supported; expected tcp (6), udp (17) or sctp (132)"),
    ("", "empty protocol; expected tcp, udp or sctp"),
    (True, "protocol True is not valid; expected tcp, udp or sctp"),
])
def test_proto_errors(v, message):
    e = err(px.parse_proto, v)
    assert str(e) == message and e.code == "proto"


def test_proto_name():
    assert [px.proto_name(n) for n in (6, 17, 132, 47)] == ["tcp", "udp", "sctp", "47"]


@pytest.mark.parametrize("v, want", [("1", 1), ("65535", 65535), (443, 443), (" 53 ", 53)])
def test_port_ok(v, want):
    assert px.parse_port(v) == want


@pytest.mark.parametrize("v, message", [
    ("0", "port 0 out of range 1..65535"),
    (65536, "port 65536 out of range 1..65535"),
    ("-1", "port -1 is not a number; expected 1..65535"),
    ("http", "port http is not a number; expected 1..65535"),
    ("", "empty port; expected a number 1..65535"),
    (False, "port False is not a number"),
])
def test_port_errors(v, message):
    e = err(px.parse_port, v)
    assert str(e) == message and e.code == "port"


@pytest.mark.parametrize("v, want", [
    ("30s", 30), ("5m", 300), ("2h", 7200), ("7d", 604800), ("1h30m", 5400),
    ("1d2h3m4s", 93784), ("90", 90), (3600, 3600), ("2H", 7200), ("0h5m", 300),
])
def test_duration_ok(v, want):
    assert px.parse_duration(v) == want


@pytest.mark.parametrize("v, message", [
    ("0s", "duration 0s must be positive"),
    ("0", "duration 0 must be positive"),
    (-5, "duration -5 must be positive"),
    ("", "empty duration; expected e.g. 30s, 5m, 2h, 7d or 1h30m"),
    ("5x", "duration 5x: unit 'x' is unknown; use d, h, m or s"),
    ("1h30", "duration 1h30: number 30 has no unit; use d, h, m or s"),
    ("30m1h", "duration 30m1h: units must appear once each, largest first (d, h, m, s)"),
    ("1h1h", "duration 1h1h: units must appear once each, largest first (d, h, m, s)"),
    ("h", "duration h is not valid; expected e.g. 30s, 5m, 2h, 7d or 1h30m"),
    ("1.5h", "duration 1.5h is not valid; expected e.g. 30s, 5m, 2h, 7d or 1h30m"),
    ("1 h", "duration 1 h is not valid; expected e.g. 30s, 5m, 2h, 7d or 1h30m"),
    ("99999999999999d", "duration 99999999999999d is too long"),
])
def test_duration_errors(v, message):
    e = err(px.parse_duration, v)
    assert str(e) == message and e.code == "duration"


# ---------------------------------------------------------------------------
# block-list files
# ---------------------------------------------------------------------------
SPAMHAUS = """\
; Spamhaus DROP List 2024/01/01 - (c) 2024 The Spamhaus Project
; https://www.spamhaus.org/drop/drop.txt
; Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT
1.10.16.0/20 ; SBL256894
1.19.0.0/16 ; SBL434604
2.56.192.0/22 ; SBL459831
"""


def test_spamhaus_format():
    got = px.parse_prefix_text(SPAMHAUS)
    assert [str(p) for p in got] == ["1.10.16.0/20", "1.19.0.0/16", "2.56.192.0/22"]


def test_comments_blank_lines_and_forms():
    text = ("# a list\n\n10.0.0.0/8\n  192.0.2.1  # one host\n\r\n2001:db8::/32 ; v6\n"
            "::ffff:198.51.100.0/120\n\t# indented comment\n203.0.113.7;x\n")
    got = px.parse_prefix_text(text)
    assert got == [Prefix(4, 0x0A000000, 8), Prefix(4, 0xC0000201, 32), Prefix(6, 0x20010DB8 << 96, 32),
                   Prefix(4, 0xC6336400, 24), Prefix(4, 0xCB007107, 32)]
    assert px.parse_prefix_text(text.encode()) == got
    assert px.parse_prefix_text("\ufeff10.0.0.0/8\r\n") == [Prefix(4, 0x0A000000, 8)]
    assert px.parse_prefix_text("") == []
    assert px.parse_prefix_text("# nothing\n\n") == []
    assert px.parse_prefix_text("10.0.0.0/8") == [Prefix(4, 0x0A000000, 8)]  # no final newline


def test_bad_line_named():
    text = "10.0.0.0/8\n# c\n10.1.2.3/16 ; x\n10.9.9.9/33\n"
    e = err(px.parse_prefix_text, text)
    assert e.lineno == 3 and e.code == "host_bits"
    assert str(e) == "line 3: 10.1.2.3/16 has host bits set; did you mean 10.1.0.0/16?"
    e = err(px.parse_prefix_text, "1.2.3.4\nfoo bar\n")
    assert str(e) == "line 2: foo bar is not an IP address or prefix" and e.text == "foo bar"


def test_duplicates_name_both_lines():
    text = "10.0.0.0/8\n192.0.2.1\n\n# x\n192.0.2.1/32 ; again\n"
    e = err(px.parse_prefix_text, text)
    assert (e.lineno, e.other_lineno, e.code) == (5, 2, "duplicate")
    assert str(e) == "line 5: 192.0.2.1/32 on line 5 duplicates line 2"
    # the same prefix written in different forms is a duplicate too
    e = err(px.parse_prefix_text, "::ffff:10.0.0.0/104\n10.0.0.0/8\n")
    assert (e.lineno, e.other_lineno) == (2, 1)
    # the first problem in file order wins: here the duplicate on line 3
    e = err(px.parse_prefix_text, "1.1.1.1\n2.2.2.2\n1.1.1.1\nbad\n")
    assert e.lineno == 3 and e.code == "duplicate"
    assert px.parse_prefix_text("1.1.1.1\n1.1.1.1\n2.2.2.2\n", allow_duplicates=True) == \
        [Prefix(4, 0x01010101, 32), Prefix(4, 0x02020202, 32)]
    # same network, different lengths: not duplicates
    assert len(px.parse_prefix_text("10.0.0.0/8\n10.0.0.0/16\n10.0.0.0\n")) == 3


def test_errors_in_late_chunks_have_the_right_line(monkeypatch):
    monkeypatch.setattr(px, "_CHUNK", 64)  # many fast-path chunks
    lines = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(500)]
    text = "\n".join(lines) + "\n"
    assert len(px.parse_prefix_text(text)) == 500
    bad = lines[:]
    bad[321] = "10.1.2.3/8"
    e = err(px.parse_prefix_text, "\n".join(bad))
    assert e.lineno == 322
    dup = lines + [lines[17]]
    e = err(px.parse_prefix_text, "\n".join(dup))
    assert (e.lineno, e.other_lineno) == (501, 18)
    mixed = lines[:200] + ["2001:db8::/32 ; v6 in the middle"] + lines[200:]
    got = px.parse_prefix_text("\n".join(mixed))
    assert got[200] == Prefix(6, 0x20010DB8 << 96, 32) and len(got) == 501


def test_ipv6_host_duplicates_across_chunks(monkeypatch):
    """IPv6 /128s are checked for duplicates by one sort at the end, from
    chunks of hosts only, chunks that also hold shorter prefixes, and
    chunks the line-by-line path took: a duplicate between any two is found
    and named by both lines."""
    monkeypatch.setattr(px, "_CHUNK", 64)
    hosts = [f"2001:db8::{i:x}" for i in range(1, 301)]
    assert len(px.parse_prefix_text("\n".join(hosts))) == 300
    cases = {
        "hosts only": hosts + [hosts[6]],
        "written as /128": hosts + [hosts[6] + "/128"],
        "beside a /64": hosts[:150] + ["2001:db8:1::/64"] + hosts[150:] + [hosts[6]],
        "in a line-by-line chunk": ["::ffff:1.2.3.4"] + hosts + [hosts[5]],
    }
    for what, lines in cases.items():
        e = err(px.parse_prefix_text, "\n".join(lines))
        first = lines.index(lines[-1].removesuffix("/128")) + 1
        assert (e.code, e.lineno, e.other_lineno) == ("duplicate", len(lines), first), what
        assert len(px.parse_prefix_text("\n".join(lines), allow_duplicates=True)) == len(lines) - 1, what
    assert px._distinct128([]) == 0


def test_parse_lines_and_file(tmp_path):
    assert px.parse_prefix_lines(["10.0.0.0/8\n", "# x\n", "192.0.2.1\r\n"]) == \
        [Prefix(4, 0x0A000000, 8), Prefix(4, 0xC0000201, 32)]
    e = err(px.parse_prefix_lines, ["x"], start=10)
    assert e.lineno == 10
    f = tmp_path / "drop.txt"
    f.write_text(SPAMHAUS)
    assert len(px.load_prefix_file(f)) == 3


# The fast path must agree with the line-by-line path on anything.
_v4_built = st.one_of(
    st.builds(lambda a, p: f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}/{p}",
              st.integers(0, 2**32 - 1), st.integers(0, 33)),
    st.builds(lambda a, p: f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255 & ~((1 << (32 - p)) - 1)}/{p}"
              if p >= 24 else f"{a >> 24}.0.0.0/8", st.integers(0, 2**32 - 1), st.integers(24, 32)),
    st.builds(lambda a: f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}", st.integers(0, 2**32 - 1)),
)
_line = st.one_of(
    _v4_built,
    st.sampled_from(["", "# c", "; c", "  ", "\t1.2.3.4 ", "1.2.3.4 ; SBL1", "1.2.3.4#x", "10.0.0.0/08",
                     "::ffff:1.2.3.4", "2001:db8::/32", "1.2.3", "1.2.3.4/", "x", "1.2.3.4\r", "0.0.0.0/0",
                     "1.2.3.4 5", "١.2.3.4", "1.2.3.4\x00"]),
    st.builds(lambda a, p: f"{ipaddress.IPv6Address(a)}/{p}", st.integers(0, 2**128 - 1), st.integers(0, 129)),
    st.builds(lambda a, p: f"{ipaddress.IPv6Address(a >> (128 - p) << (128 - p))}/{p}",
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
    st.builds(lambda a: str(ipaddress.IPv6Address(a)), st.integers(0, 2**128 - 1)),
    st.sampled_from(["2001:DB8::1", "2001:db8::1/0128", "::", "::/0", "fe80::1%eth0", "2001:db8::1 ; c",
                     "::ffff:0102:0304", "::ffff:0:0/96", "2001:db8:::1", "2001:db8::/", " 2001:db8::2\t"]),
)


@contextmanager
def _engine(c_helper: bool):
    """The parsers with the C helper, or as a tree without it runs them."""
    if c_helper:
        assert native.lib() is not None
        yield
        return
    saved = native._lib, native._tried
    native._lib, native._tried = None, True
    try:
        yield
    finally:
        native._lib, native._tried = saved


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=40), st.booleans(), st.sampled_from([1, 16, 64, 1 << 18]), st.booleans())
def test_fast_path_equals_slow_path(lines, dups_ok, chunk, c_helper):
    text = "\n".join(lines)
    saved, px._CHUNK = px._CHUNK, chunk  # small chunks: many fast-path pieces
    try:
        with _engine(c_helper):
            try:
                want = px._slow(text.split("\n"), 1, dups_ok)
            except PrefixError as e:
                with pytest.raises(PrefixError) as ei:
                    px.parse_prefix_text(text, allow_duplicates=dups_ok)
                assert (str(ei.value), ei.value.lineno) == (str(e), e.lineno)
            else:
                assert px.parse_prefix_text(text, allow_duplicates=dups_ok) == want
    finally:
        px._CHUNK = saved


def _columns_and_parser(columns, chunk_name: str, chunk: int, text: str) -> tuple:
    """What a columns function gives for the text with chunks of ``chunk``
    (small: many pieces, duplicates across them), and what the parser
    gives: None when it raises, and then the columns gave way too."""
    saved = getattr(px, chunk_name)
    setattr(px, chunk_name, chunk)
    try:
        got = columns(text)
    finally:
        setattr(px, chunk_name, saved)
    try:
        return got, px.parse_prefix_text(text)
    except PrefixError:
        assert got is None  # the parser names the problem
        return got, None


# Plain IPv4 text goes to columns without prefix objects; it must agree
# with the parser on anything, and give way to it on any problem.
# Digits, dots and slashes only, drawn without a filter: a list of up to 30
# filtered elements was rejected often enough to fail hypothesis' health check.
_v4_plain = st.one_of(
    _v4_built,
    st.sampled_from(["10.0.0.0/08", "1.2.3", "01.2.3.4", "1.2.3.04/32", "1.2.3.4/032", "1.2.3.256", "1.2.3.999",
                     "1.2.3.4/33", "1.2.3.4.5", "1/2.3.4", "1.2.3.4//8", "1..2.3", ".1.2.3", "1.2.3.4/", "1000.2.3.4",
                     "0.0.0.0/0", "0.0.0.0", "255.255.255.255", "10.0.0.0/8", "10.0.0.1/8", "1.2.3.0/24"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_v4_plain, max_size=40), st.booleans(), st.sampled_from([8, 64, 1 << 20]))
def test_ipv4_columns_equal_the_parser_or_give_way(lines, newline_at_end, chunk):
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    got, want = _columns_and_parser(px.ipv4_columns, "_V4_CHUNK", chunk, text)
    if want is None:
        return
    if not lines or "" in lines:
        assert got is None  # blank lines: not plain text
        return
    if any(re.search(r"/0\d", line) for line in lines):
        assert got is None  # a length with a leading zero: the parser reads it
        return
    assert got is not None, text
    assert (px.unpack_v4(got[0]), got[1]) == ([p.net for p in want], bytes(p.plen for p in want))
    m = Members.parse(text)
    assert (m.packed4, m.nets4, m.plens4, m.n6) == (got[0], [p.net for p in want], got[1], 0)


def test_the_c_parser_is_built():
    """`make native` built the C helper: without it imports fall back to
    numpy, correct but slower, and the test below would compare numpy with itself."""
    assert native.lib() is not None, f"{native.PATH} missing: run `make native`"


@pytest.mark.parametrize("content", [b"", b"not a shared object", None])
def test_a_library_that_will_not_load_leaves_the_parse_to_numpy(tmp_path, content):
    """A missing file, or one the loader refuses (built elsewhere, cut
    short): no error, the same columns from the numpy reader."""
    text = "10.0.0.1\n10.0.0.0/8\n192.0.2.0/24\n"
    want = px.ipv4_columns(text)
    bad = tmp_path / "libxcnative.so.1"
    if content is not None:
        bad.write_bytes(content)
    saved = native.PATH, native._lib, native._tried
    native.PATH, native._lib, native._tried = str(bad), None, False
    try:
        assert native.lib() is None
        assert px.ipv4_columns(text) == want == (bytes([10, 0, 0, 1, 10, 0, 0, 0, 192, 0, 2, 0]), b"\x20\x08\x18")
    finally:
        native.PATH, native._lib, native._tried = saved


_v4_noise = st.sampled_from(["", " ", "#", ":", "\r", "a", "\x00", "/", ".", "0", "\n", "\n\n", "\xff"])


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(_v4_plain, _v4_noise), max_size=40), st.sampled_from(["\n", ""]), st.sampled_from([8, 64]))
def test_the_c_parser_gives_the_numpy_columns(lines, end, chunk):
    """Both engines of ipv4_columns, on any text (stray bytes included):
    the same networks and lengths in the same order, or both None."""
    data = ("\n".join(lines) + end).encode("utf-8", "surrogatepass")
    saved, px._V4_CHUNK = px._V4_CHUNK, chunk
    try:
        want = None if not data else px._ipv4_numpy(np, data)
    finally:
        px._V4_CHUNK = saved
    got = None if not data else native.ipv4_columns(data)
    if want is None:
        assert got is None, data
    else:
        assert got is not None, data
        assert (got[0].tolist(), got[1].tobytes()) == (want[0].tolist(), want[1].tobytes())


_u64_word = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 255, 256, 2**63, 2**64 - 1, 2**56, 0xFF << 56, 32 << 56]),
    st.builds(lambda hi, lo: hi << 32 | lo, st.integers(0, 3), st.integers(0, 2**32 - 1)),  # equal high bytes
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_u64_word, max_size=300), st.integers(0, 4))
def test_the_c_sort_gives_numpys_order(words, copies):
    """The C helper's radix sort of 64-bit words against numpy's sort: any
    words (extremes, duplicates, bytes equal in every word, whose pass it
    skips), sorted in place, equal to numpy's answer."""
    a = np.array(words * max(copies, 1), dtype=np.uint64)
    want = np.sort(a)
    native.sort_u64(a)
    assert a.tolist() == want.tolist()
    assert px.sort_u64(np.array(words, dtype=np.uint64)).tolist() == sorted(words)


@settings(max_examples=300, deadline=None)
@given(st.lists(_u64_word, max_size=300), st.integers(0, 4))
def test_the_c_argsort_gives_numpys_stable_order(words, copies):
    """The radix sort carrying positions against numpy's stable argsort:
    the same positions (equal words in position order) and the words
    sorted in place; the twin (px.argsort_u64) leaves its input as it was."""
    a = np.array(words * max(copies, 1), dtype=np.uint64)
    want = np.argsort(a, kind="stable")
    srt = a.copy()
    assert native.argsort_u64(srt).tolist() == want.tolist()
    assert srt.tolist() == a[want].tolist()
    order, got = px.argsort_u64(a)
    assert order.tolist() == want.tolist() and got.tolist() == sorted(a.tolist())
    assert a.tolist() == (words * max(copies, 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), _u64_word, st.integers(0, 255)), max_size=200),
       st.booleans())
def test_lexsort_u64_gives_numpys_lexsort(rows, with_c):
    """One stable radix pass per key (least significant first) against
    numpy's lexsort: the same order, ties in position order, for words,
    big-endian words and bytes as keys, by the C sort and by numpy's."""
    lo = np.array([r[1] for r in rows], dtype=np.uint64)
    hi = np.array([r[0] for r in rows], dtype=np.uint64).astype(">u8")  # few values: many ties
    ln = np.array([r[2] for r in rows], dtype=np.uint8)
    want = np.lexsort((lo, hi, ln))
    lib = px.native.lib
    try:
        if not with_c:
            px.native.lib = lambda: None
        got = px.lexsort_u64((lo, hi, ln))
    finally:
        px.native.lib = lib
    assert got.tolist() == want.tolist()


def test_the_c_sort_refuses_what_it_cannot_sort_in_place():
    """Only a contiguous, writable uint64 array: anything else is an error,
    never a sort of the wrong bytes."""
    a = np.arange(10, dtype=np.uint64)[::-1]
    for bad in (a[::2], a.astype(np.int64), np.frombuffer(a.tobytes(), np.uint64)):
        with pytest.raises(ValueError, match="contiguous, writable uint64"):
            native.sort_u64(bad)
        with pytest.raises(ValueError, match="contiguous, writable uint64"):
            native.argsort_u64(bad)


_v6_plain = st.one_of(
    _line.filter(lambda l: l != "" and not set(l) - set("0123456789abcdefABCDEF:/")),
    st.sampled_from(["2001:DB8::1", "2001:db8::1/0128", "::", "::/0", "::ffff:0102:0304", "::ffff:0:0/96",
                     "2001:db8:::1", "2001:db8::/", "2001:db8::1/129", "2001:db8::1/64", "2001:db8::/32",
                     "2001:db8::1/128", "2001:db8::1", "fe80::/10", "g::1", "1:2:3:4:5:6:7:8:9"]),
)


def _by_family(want: list[Prefix]) -> tuple:
    """What text_columns gives for the parser's prefixes."""
    v4, v6 = [p for p in want if p.family == 4], [p for p in want if p.family == 6]
    return ([p.net for p in v4], bytes(p.plen for p in v4), [p.net for p in v6], bytes(p.plen for p in v6),
            px.pack_v6([p.net for p in v6]))


@settings(max_examples=400, deadline=None)
@given(st.lists(_v6_plain, max_size=40), st.booleans(), st.sampled_from([1, 16, 64, 1 << 18]))
def test_ipv6_text_columns_equal_the_parser(lines, newline_at_end, chunk):
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    got, want = _columns_and_parser(px.text_columns, "_CHUNK", chunk, text)
    if want is None:
        return
    if got is None:  # the parser's business: mapped addresses, a zero-led length
        assert any(px.parse_prefix(line).family == 4 for line in lines) \
            or any(re.search(r"/0\d", line) for line in lines), text
        return
    assert got == _by_family(want)
    m = Members.parse(text)
    assert (m.nets6, m.plens6, m.n4) == (got[2], got[3], 0)
    assert Members.unpack(m.pack()).prefixes() == want


_v6_forms = st.one_of(
    _v6_plain,
    st.builds(lambda a: ipaddress.IPv6Address(a).exploded, st.integers(0, 2**128 - 1)),
    st.builds(lambda a, z: str(ipaddress.IPv6Address(a << z * 16)), st.integers(0, 2**32 - 1), st.integers(0, 6)),
    st.builds(lambda a, p: f"{ipaddress.IPv6Address(a >> (128 - p) << (128 - p)).exploded.upper()}/{p}",
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
)
_v6_noise = st.sampled_from(["", " ", "#", ".", "\r", "x", "\x00", "/", ":", "::::", "1:", ":1", "\n", "12345::",
                             "1::2::3", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8::", "\xff"])


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(_v6_forms, _v6_noise), max_size=40), st.booleans())
def test_ipv6_columns_equal_the_parser_or_give_way(lines, newline_at_end):
    """The C helper's plain IPv6 text: the parser's networks (packed as
    inet_pton packs them) and lengths in file order; on anything else
    (blank lines, stray bytes, a dotted tail, an IPv4-mapped address, a
    zero-led length, a problem the parser names) it gives way."""
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    got = px.ipv6_columns(text.encode("utf-8", "surrogatepass"))
    try:
        want = px.parse_prefix_text(text)
    except PrefixError:
        assert got is None, text
        return
    real = (text[:-1] if text.endswith("\n") else text).split("\n")  # ['::', ''] is "::\n": one line, not blank
    plain = bool(text) and all(real) and not any(re.search(r"/0\d|[^0-9a-fA-F:/]", line) for line in real)
    if not plain or any(p.family == 4 for p in want):
        assert got is None, text
        return
    assert got is not None, text
    assert got == (px.pack_v6([p.net for p in want]), bytes(p.plen for p in want))
    m = Members.parse(text)
    assert (m.packed6, m.plens6, m.n4, m.n6) == (*got, 0, len(want))
    assert m.nets6 == [p.net for p in want]  # made from the packed networks when asked for


def test_ipv6_columns_without_the_c_helper_give_way():
    text = "2001:db8::1\n2001:db8::/32\n"
    assert px.ipv6_columns(text) == (bytes.fromhex("20010db8000000000000000000000001" "20010db8" + "00" * 12),
                                     b"\x80\x20")
    assert px.unpack_v6(px.ipv6_columns(text)[0]) == [0x20010DB8 << 96 | 1, 0x20010DB8 << 96]
    with _engine(False):
        assert px.ipv6_columns(text) is None
        assert Members.parse(text).prefixes() == px.parse_prefix_text(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(_line, max_size=40), st.booleans(), st.sampled_from([1, 16, 64, 1 << 18]), st.booleans())
def test_text_columns_equal_the_parser_or_give_way(lines, newline_at_end, chunk, c_helper):
    """Any text, comments and both families included, with the C helper
    or without: text_columns gives the parser's prefixes by family, or
    gives way to it; Members.parse gives the parser's answer either way."""
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    with _engine(c_helper):
        got, want = _columns_and_parser(px.text_columns, "_CHUNK", chunk, text)
        if want is None:
            return
        assert got is None or got == _by_family(want)
        assert Members.parse(text).prefixes() == sorted(want, key=lambda p: p.family)


@pytest.mark.parametrize("chunk", [16, 1 << 18])
def test_a_feed_of_both_families_with_comments_goes_to_columns(chunk):
    """Interleaved families, comments holding ':' and '.', spaces and CRs:
    still columns (split by family, each in file order), the parser's
    prefixes; an IPv4-mapped address among them gives way to the parser."""
    text = ("# feed from https://example.net:8443/list.txt\r\n10.0.0.1 ; first\n2001:db8::1\n"
            "  192.0.2.0/24\t# a net\n2001:db8:1::/48 ; v6 net\n\n198.51.100.7\n2001:db8::2 # 1.2.3.4\n")
    got, want = _columns_and_parser(px.text_columns, "_CHUNK", chunk, text)
    assert got is not None and got == _by_family(want) and len(want) == 6
    mapped = text + "::ffff:10.0.0.9\n"
    assert _columns_and_parser(px.text_columns, "_CHUNK", chunk, mapped)[0] is None
    assert Members.parse(mapped).prefixes() == sorted(px.parse_prefix_text(mapped), key=lambda p: p.family)


@pytest.mark.parametrize("text", ["10.0.0.1\n# c\n10.0.0.2\n", "10.0.0.1\r\n10.0.0.2\r\n", "2001:db8::1\n10.0.0.1\n",
                                  " 10.0.0.1\n", "10.0.0.1\n\n10.0.0.2", "\ufeff10.0.0.1\n10.0.0.2\n"])
def test_other_text_goes_past_ipv4_columns(text):
    """Comments, CRs, IPv6, spaces, blank lines: ipv4_columns says no (a
    byte-order mark alone it skips), Members.parse gives the parser's answer."""
    if text.startswith("\ufeff"):
        assert px.ipv4_columns(text.encode()) == (bytes([10, 0, 0, 1, 10, 0, 0, 2]), b"\x20\x20")
    else:
        assert px.ipv4_columns(text) is None
    want = px.parse_prefix_text(text)
    m = Members.parse(text)
    assert m.prefixes() == sorted(want, key=lambda p: p.family)


@settings(max_examples=200, deadline=None)
@given(st.lists(_v4_plain, min_size=1, max_size=30))
def test_members_of_json_items_equal_the_parser(items):
    try:
        want = px.parse_prefix_items(items)
    except px.PrefixItemError as e:
        with pytest.raises(px.PrefixItemError) as ei:
            Members.parse_items(items)
        assert (str(ei.value), ei.value.index) == (str(e), e.index)
        return
    m = Members.parse_items(items)
    assert (m.nets4, m.plens4, m.n6) == ([p.net for p in want], bytes(p.plen for p in want), 0)


def test_members_of_json_items_name_the_bad_item():
    for items, index in ((["10.0.0.1", ""], 1), (["10.0.0.1", 7], 1), (["10.0.0.1", "10.0.0.1/32"], 1),
                         (["10.0.0.1", "10.0.0.2 # x"], 1), (["10.0.0.0/8", "10.0.0.1/8"], 1)):
        with pytest.raises(px.PrefixItemError) as ei:
            Members.parse_items(items)
        assert ei.value.index == index, items
    assert Members.parse_items(["2001:db8::1", "10.0.0.1"]).prefixes() == \
        [Prefix(4, 0x0A000001, 32), Prefix(6, 0x20010DB8 << 96 | 1, 128)]


def test_members_parse_names_the_bad_line():
    for text, line in (("10.0.0.1\n10.0.0.256\n", 2), ("10.0.0.1\n10.0.0.2\n10.0.0.1\n", 3),
                       ("10.0.0.0/8\n10.0.0.1/8\n", 2)):
        with pytest.raises(PrefixError) as ei:
            Members.parse(text)
        assert ei.value.lineno == line


def test_large_list_round_trip():
    rnd = random.Random(7)
    seen = set()
    want = []
    while len(want) < 20000:
        plen = 32 if rnd.random() < 0.9 else rnd.randint(8, 31)
        net = rnd.getrandbits(32) & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
        if (net, plen) not in seen:
            seen.add((net, plen))
            want.append(Prefix(4, net, plen))
    text = "\n".join(px.format_prefix(p, bare=rnd.random() < 0.5) for p in want) + "\n"
    assert px.parse_prefix_text(text) == want


# ---------------------------------------------------------------------------
# huge numbers and huge lines: a clear error, cut, never Python's limits
# ---------------------------------------------------------------------------
HUGE = "9" * 5000


@pytest.mark.parametrize("fn, value", [
    (px.parse_port, HUGE), (px.parse_proto, HUGE), (px.parse_duration, HUGE), (px.parse_duration, HUGE + "s"),
    (px.parse_duration, "1h" + HUGE + "m"), (px.parse_prefix, "10.0.0.0/" + HUGE),
    (px.parse_prefix, "10.0.0." + HUGE),
    pytest.param(px.parse_port, 10 ** 5000, id="port-huge-int"),
    pytest.param(px.parse_proto, 10 ** 5000, id="proto-huge-int"),
    pytest.param(px.parse_duration, 10 ** 5000, id="duration-huge-int"),
])
def test_huge_numbers_are_errors_with_short_messages(fn, value):
    e = err(fn, value)
    assert len(str(e)) < 300, str(e)[:400]


def test_a_long_bad_line_is_cut_in_the_message():
    line = "10.0.0.1" + "x" * 10_000_000
    e = err(px.parse_prefix_text, "10.0.0.0/8\n" + line + "\n")
    assert e.lineno == 2
    assert len(str(e)) < 300, str(e)[:400]
    e = err(px.parse_prefix, "10.0.0.1/8")  # host bits: the hint stays whole
    assert "10.0.0.0/8" in str(e)


@pytest.mark.parametrize("items,index,reason", [
    (["10.0.0.1", 7], 1, "7 is not a string"),
    (["10.0.0.1", "10.0.0.2 # x"], 1, "'10.0.0.2 # x' is not a prefix (line breaks and comments are for text bodies)"),
    (["10.0.0.1", "10.0.0.2\n10.0.0.3"], 1, None),
    (["10.0.0.1", ""], 1, "an empty string is not a prefix"),
    (["10.0.0.1", "2001:db8::/32", "10.0.0.1/32"], 2, "10.0.0.1/32 duplicates prefixes[0]"),
    (["10.0.0.1", "10.0.0.300"], 1, None),
])
def test_prefix_items_name_the_bad_item(items, index, reason):
    with pytest.raises(px.PrefixItemError) as ei:
        px.parse_prefix_items(items)
    assert ei.value.index == index and str(ei.value).startswith(f"prefixes[{index}]: ")
    if reason is not None:
        assert ei.value.reason == reason


def test_prefix_items_parse_like_lines():
    items = ["10.0.0.1", "192.0.2.0/24", "2001:db8::/48"]
    assert px.parse_prefix_items(items) == px.parse_prefix_text("\n".join(items))
