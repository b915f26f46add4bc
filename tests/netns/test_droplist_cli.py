"""The drop-list CLI as a user runs it: a separate `xdpctl` process per command
(``python -m xdpctl.cli --pin-dir ... --state-dir ...``), against this test's
own pin and state directories.

- filtering is done by the kernel alone once the CLI has exited;
- bad input changes nothing: exit code, one line on stderr, and the export,
  the rule rows, the lists, every rule map and the config entry unchanged;
- a full map is a clear error and changes nothing;
- concurrent writers (CLI processes and this process) lose no rule;
- every verb has its effect: the rule and its id, the revision, the kernel
  entry; with --json each prints its document.
"""

from __future__ import annotations

import os
import pty
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers_droplist import (
    BAD4,
    BAD6,
    REPO,
    arrivals_socket,
    cli_env,
    dl_env,  # noqa: F401  (fixture)
    key4,
    rule_val,
    udp_frame,
)
from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.rules.tables import KernelTables
from xdpctl.kernel import maps

# --------------------------------------------------------------------------
# 11. No xdpctl process needed


def test_filtering_continues_without_any_xdpctl_process(dl_env, mark, udp_receiver) -> None:
    env = dl_env()
    a, b = env.lab.a, env.lab.b
    env.cli("attach", b.ifname, "--program", "droplist", "--hook", "tc-ingress", "--netns", b.netns)
    env.cli("block", BAD4, BAD6)
    # The CLI processes have exited and this process holds no xdpctl object:
    # only the kernel (programs attached over netlink, pinned maps) filters.
    env.ctx.close()
    rx4, rx6 = udp_receiver(b.netns, b.ipv4), udp_receiver(b.netns, b.ipv6)

    def frames(rx, sources):
        return [udp_frame(env, s, mark, s, dport=rx.port) for s in sources]

    bad4, good4 = ["203.0.113.1", "203.0.113.99"], [a.ipv4, "198.51.100.9"]
    bad6, good6 = ["2001:db8:bad::1"], [a.ipv6]
    assert arrivals_socket(rx4, frames(rx4, bad4 + good4), mark, via=a, sentinel_from=a.ipv4) == Counter(good4)
    assert arrivals_socket(rx6, frames(rx6, bad6 + good6), mark, via=a, sentinel_from=a.ipv6) == Counter(good6)

    env.cli("unblock", BAD4)
    assert arrivals_socket(rx4, frames(rx4, bad4 + good4), mark, via=a, sentinel_from=a.ipv4) == \
        Counter(bad4 + good4)
    assert arrivals_socket(rx6, frames(rx6, bad6 + good6), mark, via=a, sentinel_from=a.ipv6) == Counter(good6)


# --------------------------------------------------------------------------
# 12. Bad input changes nothing


def _bad_input_cases(tmp_path, revision: int) -> list[tuple[bool, list[str], int, list[str]]]:
    """(also as a process?, argv, exit code, substrings of the one stderr line)"""
    bad_line = tmp_path / "bad-line.txt"
    bad_line.write_text("198.51.100.0/25\n# comment\n198.51.100.128/25 ; fine\n10.0.0.1/33\n192.0.2.0/24\n")
    host_bits = tmp_path / "host-bits.txt"
    host_bits.write_text("198.51.100.0/25\n198.51.100.129/25\n")
    dup = tmp_path / "dup.txt"
    dup.write_text("198.51.100.0/25\n198.51.100.128/25\n198.51.100.0/25\n")
    good = tmp_path / "good.txt"
    good.write_text("198.51.100.0/24\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    long_line = tmp_path / "long-line.txt"
    long_line.write_text("10.0.0.1" + "x" * 10_000_000 + "\n")
    huge = "9" * 5000
    stale = str(revision - 1)
    P, _ = True, False  # P: also run as a separate process
    return [
        (P, ["block", "203.0.113.300"], 2, ["203.0.113.300 is not an IPv4 address", "out of range 0..255"]),
        (_, ["block", "not-an-address"], 2, ["is not an IP address or prefix"]),
        (P, ["block", "203.0.113.5/24"], 2, ["has host bits set", "did you mean 203.0.113.0/24?"]),
        (_, ["block", "2001:db8:bad::1/48"], 2, ["has host bits set", "did you mean 2001:db8:bad::/48?"]),
        (P, ["block", "203.0.113.0/33"], 2, ["prefix length 33 out of range 0..32"]),
        (_, ["block", "2001:db8::/129"], 2, ["prefix length 129 out of range 0..128"]),
        (P, ["block", "--proto", "icmp", "--port", "1"], 2, ["protocol icmp is not supported"]),
        (_, ["block", "198.51.100.0/24", "--proto", "gre", "--port", "1"], 2, ["protocol gre is not supported"]),
        (P, ["block", "--proto", "udp", "--port", "70000"], 2, ["port 70000 out of range 1..65535"]),
        (_, ["block", "--proto", "udp", "--port", "0"], 2, ["port 0 out of range 1..65535"]),
        (_, ["block", "--proto", "udp"], 2, ["needs both --proto and --port", "add --port (1-65535)"]),
        (_, ["block", "--port", "80"], 2, ["--port needs --proto", "add --proto (tcp, udp or sctp)"]),
        (_, ["block", "198.51.100.0/24", "--port", "80"], 2, ["--port needs --proto"]),
        (P, ["block", "198.51.100.0/24", "198.18.4.0/24", "198.51.100.0/24"], 2, ["given twice"]),
        (_, ["block", "198.51.100.0/24", "::ffff:198.51.100.0/120"], 2, ["given twice"]),
        (_, ["block", "::ffff:203.0.113.0/120"], 4, [f"{BAD4} already exists as rule"]),
        (P, ["block", "198.51.100.0/24", BAD4], 4, [f"{BAD4} already exists as rule"]),
        (_, ["allow", "203.0.113.128/25"], 4, ["203.0.113.128/25 already exists as rule"]),
        (_, ["block", "--proto", "tcp", "--port", "22"], 4, ["any tcp/22 already exists as rule"]),
        (P, ["block", "198.51.100.0/24", "--revision", stale], 4,
         [f"revision conflict: the rule set is at revision {revision}, the request expected {stale}"]),
        (_, ["policy", "deny", "--revision", stale], 4, ["revision conflict"]),
        (_, ["import", str(good), "--list", "base", "--revision", stale], 4, ["revision conflict"]),
        (_, ["unblock", BAD4, "--revision", stale], 4, ["revision conflict"]),
        (_, ["block", "198.51.100.0/24", "--ttl", "5x"], 2, ["duration"]),
        (_, ["block", "198.51.100.0/24", "--ttl", "0"], 2, ["must be positive"]),
        (_, ["unblock", "--proto", "udp", "--port", "9999"], 3, ["no rule matches any udp/9999"]),
        (_, ["policy", "maybe"], 2, ["unknown policy 'maybe'"]),
        (_, ["unblock", "198.51.100.0/24"], 3, ["no rule matches 198.51.100.0/24"]),
        (_, ["unblock", "198.18.0.0/15"], 4, ["member of list 'base'"]),
        (_, ["unblock", "--list", "nosuch"], 3, ["no list named 'nosuch'"]),
        (P, ["import", str(bad_line), "--list", "base"], 2,
         ["line 4:", "10.0.0.1/33", "out of range 0..32", "nothing was imported"]),
        (_, ["import", str(host_bits), "--list", "fresh"], 2,
         ["line 2:", "did you mean 198.51.100.128/25?", "nothing was imported"]),
        (_, ["import", str(dup), "--list", "fresh"], 2, ["198.51.100.0/25 on line 3 duplicates line 1"]),
        (_, ["import", str(tmp_path / "missing.txt")], 2, ["no such file"]),
        (_, ["import", str(good), "--list", "bad name!"], 2, ["invalid list name"]),
        (P, ["block", "198.51.100.0/24", "--ttl", ""], 2, ["empty duration"]),
        (_, ["block", "198.51.100.0/24", "--ttl", " "], 2, ["empty duration"]),
        (_, ["block", "198.51.100.0/24", "--ttl", huge], 2, ["is too large"]),
        (P, ["block", "--proto", "udp", "--port", huge], 2, ["is too large"]),
        (_, ["block", "--proto", huge, "--port", "1"], 2, ["is too large"]),
        (P, ["import", str(empty), "--list", "fresh"], 2, ["has no prefixes", "--allow-empty"]),
        (_, ["import", str(empty), "--list", "base"], 2, ["has no prefixes", "--allow-empty"]),
        (_, ["import", str(good), "--list", ".."], 2, ["invalid list name"]),
        (_, ["import", str(good), "--list", ".hidden"], 2, ["invalid list name"]),
        (_, ["import", str(good), "--list", "caf\u00e9"], 2, ["invalid list name"]),
        (_, ["import", str(long_line), "--list", "fresh"], 2, ["line 1:", "nothing was imported"]),
    ]


def _setup_rules(env) -> int:
    env.block(BAD4)
    env.allow("203.0.113.128/25")
    env.block(None, proto="tcp", port=22)
    env.block("198.51.100.7/32", dst=True)
    env.dl.import_list("base", [px.parse_prefix("198.18.0.0/15"), px.parse_prefix(BAD6)])
    revision = env.dl.revision()
    assert revision == 5
    return revision


def _problem(args, code, needles, res) -> str | None:
    lines = res.stderr.splitlines()
    if res.returncode == code and len(lines) == 1 and lines[0].startswith("xdpctl: error: ") \
            and len(lines[0]) < 1000 \
            and all(n in lines[0] for n in needles) and not res.stdout:
        return None
    return (f"xdpctl {' '.join(args)}: exit {res.returncode} (want {code}), stdout {res.stdout!r}, "
            f"stderr {res.stderr!r}, want {needles}")


def test_bad_input_changes_nothing(dl_env, tmp_path) -> None:
    """Every bad command through the CLI code, one at a time, with the state
    compared before and after each."""
    env = dl_env()
    revision = _setup_rules(env)
    before = env.snapshot()
    problems = []
    for _proc, args, code, needles in _bad_input_cases(tmp_path, revision):
        res = env.cli_inproc(*args)
        if (p := _problem(args, code, needles, res)) is not None:
            problems.append(p)
        if env.snapshot() != before:
            problems.append(f"xdpctl {' '.join(args)} changed the state")
            before = env.snapshot()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("args, option", [
    (["block", "198.51.100.0/24", "--revision", "-1"], "--revision"),
    (["policy", "deny", "--revision", "-5"], "--revision"),
    (["block", "198.51.100.0/24", "--revision", "9" * 40], "--revision"),
    (["unblock", "--id", "99999999999999999999"], "--id"),
    (["unblock", "--id", "0"], "--id"),
    (["rules", "--limit", "9" * 5000], "--limit"),
])
def test_bad_numbers_are_usage_errors(dl_env, args, option) -> None:
    """Numbers out of an option's range are refused while parsing: exit 2
    naming the option, no traceback, nothing changed."""
    env = dl_env()
    _setup_rules(env)
    before = env.snapshot()
    res = env.cli(*args, ok=False)
    assert res.returncode == 2 and option in res.stderr and "Traceback" not in res.stderr, res
    assert env.snapshot() == before


def test_empty_list_on_purpose(dl_env, tmp_path) -> None:
    env = dl_env()
    _setup_rules(env)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    res = env.cli("import", str(empty), "--list", "base", "--allow-empty", "--json")
    assert '"count": 0' in res.stdout
    assert [x.count for x in env.dl.lists(with_stats=False) if x.name == "base"] == [0]


def test_bad_input_from_separate_processes(dl_env, tmp_path) -> None:
    env = dl_env()
    revision = _setup_rules(env)
    before = env.snapshot()
    # one command per kind of mistake
    cases = [c[1:] for c in _bad_input_cases(tmp_path, revision) if c[0]]
    assert len(cases) == 12
    # Independent commands that may change nothing: run them side by side
    # (the pin-directory lock serialises the writers), then check each answer
    # and the state once.
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        results = list(pool.map(lambda c: env.cli(*c[0], ok=False), cases))
    problems = [p for (args, code, needles), res in zip(cases, results)
                if (p := _problem(args, code, needles, res)) is not None]
    assert not problems, "\n".join(problems)
    assert env.snapshot() == before
    assert env.cli("export").stdout.splitlines() == before[0]


def test_full_map_is_a_clear_error_and_changes_nothing(dl_env, tmp_path) -> None:
    # Tiny /32 table: the maps are created here, with this capacity, before
    # any CLI process touches them (the CLI reuses pinned maps as they are).
    env = dl_env(capacity={"xc_v4_l32": 4})
    with KernelTables(env.ctx) as kt:
        assert kt["xc_v4_l32"].max_entries == 4
    env.block("198.51.100.1", "198.51.100.2")
    before = env.snapshot()
    big_list = tmp_path / "many.txt"
    big_list.write_text("".join(f"198.18.0.{i}\n" for i in range(1, 4)))

    res = env.cli("import", str(big_list), "--list", "many", ok=False)
    assert res.returncode == 6, res.stderr
    line = res.error_line()  # a list this small goes as a delta: the write finds the map full and is undone
    assert "xc_v4_l32" in line and "4 entries" in line and "full" in line
    assert env.snapshot() == before

    for args in (["block", "198.51.100.3", "198.51.100.4", "198.51.100.5"],  # one /32 too many
                 ["block", "203.0.113.0/25"]):  # a /25 is 128 /32 keys
        res = env.cli(*args, ok=False)
        assert res.returncode == 6, (args, res.returncode, res.stderr)
        line = res.error_line()
        assert "xc_v4_l32" in line and "4 entries" in line and "full" in line
        assert env.snapshot() == before

    # Exactly full is fine.
    env.cli("block", "198.51.100.3", "198.51.100.4")
    with KernelTables(env.ctx) as kt:
        assert len(kt.read("xc_v4_l32")) == 4


# --------------------------------------------------------------------------
# 13. Concurrent writers


def test_concurrent_writers_lose_no_rule(dl_env) -> None:
    env = dl_env()
    assert env.dl.revision() == 0  # the database exists before the writers start
    n = 20
    procs = [env.popen("block", f"198.18.0.{i}/32", "--comment", f"cli {i}") for i in range(1, n + 1)]
    try:
        # This process writes at the same time, one rule per change.
        for i in range(1, n + 1):
            env.block(f"203.0.113.{i}/32", comment=f"api {i}")
    finally:
        outs = [(p, *p.communicate(timeout=120)) for p in procs]
    failed = [(p.args[-3], p.returncode, err) for p, _out, err in outs if p.returncode != 0]
    assert not failed

    data = env.cli("rules", "--json").json()
    want = {f"198.18.0.{i}/32" for i in range(1, n + 1)} | {f"203.0.113.{i}/32" for i in range(1, n + 1)}
    got = {r["prefix"]: r for r in data["rules"]}
    assert set(got) == want and len(data["rules"]) == 2 * n
    assert len({r["id"] for r in data["rules"]}) == 2 * n
    assert data["revision"] == 2 * n  # one revision per change, none lost
    assert {r["comment"] for r in data["rules"]} == {f"{w} {i}" for w in ("cli", "api") for i in range(1, n + 1)}

    with maps.Map.from_pin(os.path.join(env.settings.shared_map_dir, "xc_v4_l32")) as m:
        table = dict(m.items())
    assert set(table) == {key4(p.split("/")[0]) for p in want}
    for p, r in got.items():
        v = rule_val(table[key4(p.split("/")[0])])
        assert (v.rule_id, v.action, v.plen) == (r["id"], 1, 32)


# --------------------------------------------------------------------------
# Every verb, as a separate process, and what it did


def _entry(env, name: str, addr: str):
    """The rule value the kernel holds for a source address key, or None."""
    raw = env.map_dump([name])[name].get(key4(addr))
    return rule_val(raw) if raw is not None else None


def test_each_verb_changes_the_rules_revision_and_kernel(dl_env, tmp_path) -> None:
    env = dl_env()
    deny, allow = int(abi.Action.DENY), int(abi.Action.ALLOW)

    doc = env.cli("block", "198.51.100.0/24", "--comment", "scan", "--json").json()
    (r1,) = doc["added"]
    assert (doc["revision"], r1["id"], r1["prefix"], r1["action"], r1["comment"], r1["source"]) == \
        (1, 1, "198.51.100.0/24", "deny", "scan", "cli")
    v = _entry(env, "xc_v4_l24", "198.51.100.0")
    assert (v.rule_id, v.action, v.plen) == (1, deny, 24)

    doc = env.cli("allow", "198.51.100.128/25", "--json").json()
    (r2,) = doc["added"]
    assert (doc["revision"], r2["id"], r2["action"]) == (2, 2, "allow")
    v = _entry(env, "xc_v4_l32", "198.51.100.200")
    assert (v.rule_id, v.action, v.plen) == (2, allow, 25)
    assert _entry(env, "xc_v4_l32", "198.51.100.7") is None  # the deny half stays a /24 entry

    doc = env.cli("block", "--proto", "tcp", "--port", "22", "--json").json()
    (r3,) = doc["added"]
    assert (doc["revision"], r3["id"], r3["prefix"], r3["family"], r3["proto"], r3["port"]) == \
        (3, 3, None, 0, "tcp", 22)
    policy, flags, generation = env.config()
    assert generation == 3 and flags & abi.CfgFlag.HAVE_PORT and policy == abi.Policy.ALLOW
    assert env.map_dump(["xc_port_trie"])["xc_port_trie"]

    doc = env.cli("rules", "--json").json()
    assert doc == env.dl.rules_view().to_json()
    assert [(r["id"], r["prefix"]) for r in doc["rules"]] == [(1, "198.51.100.0/24"), (2, "198.51.100.128/25"),
                                                              (3, None)]
    assert (doc["revision"], doc["policy"]) == (3, "allow")

    feed = tmp_path / "feed.txt"
    feed.write_text("192.0.2.7\n198.18.0.0/24\n")
    doc = env.cli("import", str(feed), "--list", "feed", "--json").json()
    lst = doc["list"]
    assert (doc["revision"], doc["created"], lst["name"], lst["count"], lst["action"]) == (4, True, "feed", 2, "deny")
    assert doc["map_entries_written"] == 2 and doc["map_entries_deleted"] == 0, doc
    v = _entry(env, "xc_v4_l32", "192.0.2.7")
    assert (v.rule_id, v.action, v.plen) == (lst["id_base"], deny, 32)
    assert env.cli("lists", "--json").json() == {"revision": 4, "lists": [lst | {"packets": 0, "bytes": 0}]}
    detail = env.cli("lists", "feed", "--json").json()
    assert [(m["id"], m["prefix"], m["list"]) for m in detail["members"]] == \
        [(lst["id_base"], "192.0.2.7/32", "feed"), (lst["id_base"] + 1, "198.18.0.0/24", "feed")]
    assert detail["truncated"] is False and detail["list"]["sha256"] == lst["sha256"]

    assert env.cli("policy", "deny", "--json").json() == {"policy": "deny", "revision": 5}
    assert env.cli("policy", "--json").json() == {"policy": "deny", "revision": 5}
    assert env.config()[0] == abi.Policy.DENY and env.config()[2] == 5
    assert env.cli("policy", "allow").stdout.strip() == "policy allow, revision 6"
    assert env.cli("revision", "--json").json() == {"revision": 6}

    doc = env.cli("unblock", "--id", "1", "--json").json()
    assert doc["revision"] == 7 and [r["id"] for r in doc["removed"]] == [1]
    assert _entry(env, "xc_v4_l24", "198.51.100.0") is None
    doc = env.cli("unblock", "--list", "feed", "--json").json()
    assert doc["revision"] == 8 and doc["notes"] == ["removed list feed (2 prefixes)"]
    assert _entry(env, "xc_v4_l32", "192.0.2.7") is None

    assert env.cli("expire", "--json").json() == {"revision": 8, "removed": [], "removed_lists": []}
    assert env.cli("export").stdout.splitlines() == [
        "# xdpctl rule set, revision 8", "policy allow", "allow 198.51.100.128/25",
        "block any --proto tcp --port 22"]


# --------------------------------------------------------------------------
# What a person reads: ids, revisions, expiry, progress


def test_a_deleted_rule_id_is_not_given_to_the_next_rule(dl_env) -> None:
    env = dl_env()
    ids = [env.cli("block", p, "--json").json()["added"][0]["id"] for p in ("192.0.2.1", "192.0.2.2")]
    assert ids == [1, 2]
    env.cli("unblock", "--id", "2")
    (new,) = env.cli("block", "192.0.2.3", "--json").json()["added"]
    assert new["id"] == 3
    # A stale id from before names no rule: it removes nothing.
    res = env.cli("unblock", "--id", "2", ok=False)
    assert res.returncode == 3 and "no rule with id 2" in res.error_line()
    assert [(r["id"], r["prefix"]) for r in env.cli("rules", "--json").json()["rules"]] == [
        (1, "192.0.2.1/32"), (3, "192.0.2.3/32")]
    # A list's ids go above the mark as well.
    f = env.tmp / "few.txt"
    f.write_text("198.51.100.0/24\n")
    assert env.cli("import", str(f), "--json").json()["list"]["id_base"] == 4


def test_setting_the_policy_it_already_has_changes_no_revision(dl_env) -> None:
    env = dl_env()
    assert env.cli("policy", "deny").stdout == "policy deny, revision 1\n"
    assert env.cli("policy", "deny").stdout == "policy already deny, revision 1\n"
    assert env.cli("policy", "deny", "--json").json() == {"policy": "deny", "revision": 1}
    assert env.cli("revision").stdout == "1\n"
    assert env.cli("policy", "allow").stdout == "policy allow, revision 2\n"


def test_a_rule_past_its_ttl_shows_as_expired_until_reaped(dl_env) -> None:
    env = dl_env()
    (r2,) = env.cli("block", "192.0.2.10", "--json").json()["added"]
    (r,) = env.cli("block", "192.0.2.9", "--ttl", "1s", "--json").json()["added"]
    assert r2["expired"] is False
    while time.time() <= r["expires"]:  # wait for a known instant, then look
        time.sleep(max(0.0, r["expires"] - time.time()) + 0.05)
    rules = env.cli("rules", "--json").json()["rules"]
    assert [(x["id"], x["expired"]) for x in rules] == [(r2["id"], False), (r["id"], True)]
    rows = [ln for ln in env.cli("rules").stdout.splitlines() if "192.0.2." in ln]
    assert "expired" not in rows[0] and "expired" in rows[1]
    assert env.cli("expire", "--json").json()["removed"][0]["id"] == r["id"]
    assert [x["id"] for x in env.cli("rules", "--json").json()["rules"]] == [r2["id"]]


def test_the_import_progress_bar_covers_reading_and_writing(dl_env) -> None:
    env = dl_env()
    f = env.tmp / "big.txt"
    f.write_text("".join(f"10.{i >> 8 & 255}.{i & 255}.0/24\n" for i in range(20000)))
    master, slave = pty.openpty()
    try:
        p = subprocess.run(env.cli_args("import", str(f)), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=slave, cwd=REPO, env=cli_env(), timeout=120, text=True)
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0, shown.decode(errors="replace")
    assert p.stdout.endswith("created list big, revision 1\n")
    text = shown.decode(errors="replace")
    assert "read big" in text and "write big" in text
    assert text.rfind("read big") < text.rfind("write big")
    assert "100%" in text
