"""`xdpctl export` / `apply` / `lookup` through the CLI: a rich rule set
round-trips, a bad line changes nothing and is named, a dry run lists the
exact changes, the same file twice is a no-op; lookup names the deciding
rule."""

from __future__ import annotations

from helpers_droplist import dl_env  # noqa: F401  (fixture)

RICH = [
    ("block", "203.0.113.0/24", "--comment", "scanners of 'ours'"),
    ("allow", "203.0.113.8/29"),
    ("allow", "10.9.0.0/16", "--mgmt", "--comment", "ops"),
    ("block", "2001:db8:bad::/48", "--dst"),
    ("block", "--proto", "tcp", "--port", "23", "--dst", "--ttl", "2h"),
    ("block", "198.51.100.0/24", "--proto", "udp", "--port", "53"),
]


def _setup(env, *args: str) -> None:
    """A command through the CLI's code in this process (setup only)."""
    res = env.cli_inproc(*args)
    assert res.returncode == 0, (args, res.stderr)


def _rich(env, tmp_path) -> str:
    for args in RICH:
        _setup(env, *args)
    (tmp_path / "feed.txt").write_text("192.0.2.0/25\n192.0.2.200\n2001:db8:f00::/40\n")
    _setup(env, "import", str(tmp_path / "feed.txt"), "--list", "feed", "--comment", "feed X", "--ttl", "1d")
    (tmp_path / "good.txt").write_text("198.18.0.0/15\n")
    _setup(env, "import", str(tmp_path / "good.txt"), "--list", "good", "--action", "allow", "--dst")
    _setup(env, "policy", "deny")
    return env.cli("export").stdout


def _shape(env) -> tuple:
    """The rule set without ids, times of creation, sources or counters."""
    d = env.dl
    rules = sorted(((r.prefix, r.dir, r.action, r.proto, r.port, r.comment, r.expires, r.mgmt)
                    for r in d.rules(with_stats=False)), key=repr)
    lists = [(lv.name, lv.count, lv.dir, lv.action, lv.comment, lv.expires, lv.sha256)
             for lv in d.lists(with_stats=False)]
    return d.policy(), rules, lists


def test_export_apply_round_trip(dl_env, tmp_path):
    src, dst = dl_env(), dl_env()
    text = _rich(src, tmp_path)
    f = tmp_path / "rules.txt"
    f.write_text(text)
    res = dst.cli("apply", str(f), "--json").json()
    assert res["changed"] and res["revision"] == 1 and len(res["added"]) == len(RICH)
    assert sorted(x["name"] for x in res["lists"]) == ["feed", "good"] and res["policy"] == "deny"
    assert _shape(dst) == _shape(src)
    body = dst.cli("export").stdout
    assert body.splitlines()[1:] == text.splitlines()[1:]  # all but the header's revision
    # the same file again: nothing changes, no new revision
    again = dst.cli("apply", str(f)).stdout
    assert again.strip() == "no changes: the rule set is the file's (revision 1)"
    assert dst.dl.revision() == 1
    # the kernel decides as the source's: lookup through the core on both
    for addr in ("203.0.113.9", "203.0.113.1", "10.9.1.1", "192.0.2.200", "8.8.8.8"):
        a, b = src.cli("lookup", addr, "--json").json(), dst.cli("lookup", addr, "--json").json()
        assert (a["verdict"], a["reason"], a["rule"] and a["rule"]["prefix"]) == \
            (b["verdict"], b["reason"], b["rule"] and b["rule"]["prefix"])


def test_bad_line_changes_nothing_and_is_named(dl_env, tmp_path):
    env = dl_env()
    _setup(env, "block", "203.0.113.0/24")
    before = env.snapshot()
    f = tmp_path / "bad.txt"
    f.write_text("policy deny\nblock 198.51.100.0/24\nblock 198.51.100.300\nallow 10.0.0.0/8\n")
    res = env.cli("apply", str(f), ok=False)
    assert res.returncode == 2
    assert res.stderr.startswith("xdpctl: error: line 3: ") and "nothing was applied" in res.stderr
    f.write_text("block 198.51.100.0/24\nlist x\n10.0.0.0/8\nnot-a-prefix\n")
    res = env.cli("apply", str(f), ok=False)
    assert res.returncode == 2 and res.stderr.startswith("xdpctl: error: line 4: ")
    f.write_text("block 198.51.100.0/24 --colour red\n")
    res = env.cli("apply", str(f), ok=False)
    assert res.returncode == 2 and "line 1: unknown option --colour" in res.stderr
    assert env.snapshot() == before


def test_dry_run_lists_exact_changes(dl_env, tmp_path):
    env = dl_env()
    _setup(env, "block", "203.0.113.0/24")
    _setup(env, "block", "198.51.100.0/24", "--comment", "old")
    _setup(env, "allow", "10.0.0.0/8")
    (tmp_path / "l.txt").write_text("192.0.2.0/24\n")
    _setup(env, "import", str(tmp_path / "l.txt"), "--list", "l")
    before = env.snapshot()
    f = tmp_path / "want.txt"
    f.write_text("policy deny\nblock 203.0.113.0/24\nblock 198.51.100.0/24 --comment new\n"
                 "block 2001:db8::/32 --dst\nlist m --action allow\n192.0.2.1\n")
    out = env.cli("apply", "--dry-run", str(f)).stdout.splitlines()
    assert out == [
        "would add rule: deny 2001:db8::/32 (dst)",
        "would update rule 2: deny 198.51.100.0/24 # new",
        "would remove rule 3: allow 10.0.0.0/8",
        "would create list m: allow src, 1 prefixes",
        "would remove list l",
        "would set policy deny",
    ]
    assert env.snapshot() == before
    assert env.cli("apply", "--revision", "3", str(f), ok=False).returncode == 4
    assert env.snapshot() == before
    doc = env.cli("apply", "--revision", "4", str(f), "--json").json()
    assert doc["revision"] == 5 and [r["prefix"] for r in doc["added"]] == ["2001:db8::/32"]
    assert env.dl.policy() == "deny" and [lv.name for lv in env.dl.lists(with_stats=False)] == ["m"]


def test_lookup_names_rule_and_member(dl_env, tmp_path):
    env = dl_env()
    _setup(env, "block", "203.0.113.0/24", "--comment", "scan")
    (tmp_path / "l.txt").write_text("203.0.113.64/26\n")
    _setup(env, "import", str(tmp_path / "l.txt"), "--list", "feed")
    out = env.cli("lookup", "203.0.113.70").stdout.splitlines()
    lid = env.dl.get_list("feed").id_base
    assert out == ["drop (drop_src): from 203.0.113.70, revision 2",
                   f"rule {lid} (member of list feed): deny 203.0.113.64/26"]
    out = env.cli("lookup", "203.0.113.1").stdout.splitlines()
    assert out[1] == "rule 1: deny 203.0.113.0/24 # scan"
    assert env.cli("lookup", "8.8.8.8").stdout.splitlines()[1] == "no rule matches: policy allow"
    res = env.cli("lookup", "8.8.8", ok=False)
    assert res.returncode == 2 and "8.8.8" in res.stderr
    res = env.cli("lookup", "8.8.8.8", "--port", "22", ok=False)
    assert res.returncode == 2 and "--port needs --proto" in res.stderr
