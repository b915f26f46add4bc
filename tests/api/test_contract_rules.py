"""One document per resource: `xdpctl X --json` and the REST answer are equal.

A real server (uvicorn, real kernel) and the real CLI as separate processes
share one pin directory and one state directory. For every resource of the
drop list (rules, a list's members, one prefix, lists, one list, policy,
revision) the CLI's --json output must be the very document GET answers;
changes made through one front end answer with the same document shape and
are read back identically through the other. No traffic flows, so the hit
counters cannot change between the two reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_helpers import Running

REPO = Path(__file__).resolve().parents[2]


class Cli:
    """The xdpctl CLI as a separate process against the server's directories."""

    def __init__(self, srv: Running) -> None:
        self.srv = srv
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
        self.env["PYTHONPATH"] = str(REPO) + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")

    def json(self, *args: str):
        argv = [sys.executable, "-m", "xdpctl.cli", "--pin-dir", self.srv.settings.pin_dir,
                "--state-dir", self.srv.settings.state_dir, *args, "--json"]
        p = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=self.env, timeout=120)
        assert p.returncode == 0, f"xdpctl {' '.join(args)}: exit {p.returncode}\n{p.stderr}"
        return json.loads(p.stdout)


@pytest.fixture(scope="module")
def contract(start_server):
    srv = start_server(expire_interval=0)
    with srv.client() as c:
        yield srv, c, Cli(srv)


def get(client: httpx.Client, path: str, **params) -> dict:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{r.json()["revision"]}"'
    return r.json()


def _populate(client: httpx.Client) -> None:
    for path, body in (
        ("/v1/block", {"prefixes": ["198.51.100.0/24", "2001:db8:bad::/48"], "comment": "scanners"}),
        ("/v1/block", {"prefixes": ["203.0.113.7"], "dst": True, "ttl": "2h"}),
        ("/v1/block", {"proto": "udp", "port": 53}),
        ("/v1/allow", {"prefixes": ["198.51.100.64/26"], "mgmt": True, "comment": "bastion"}),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 201, r.text
    r = client.put("/v1/lists/feed", content="192.0.2.0/25\n192.0.2.200\n2001:db8:feed::/64\n",
                   headers={"Content-Type": "text/plain"}, params={"comment": "feed"})
    assert r.status_code == 201, r.text


def test_every_get_of_the_drop_list_equals_the_cli_json(contract) -> None:
    _srv, client, cli = contract
    _populate(client)
    pairs = [
        (("rules",), "/v1/rules", {}),
        (("rules", "--list", "feed"), "/v1/rules", {"list": "feed"}),
        (("rules", "--list", "feed", "--limit", "2"), "/v1/rules", {"list": "feed", "limit": 2}),
        (("rules", "--prefix", "198.51.100.0/24"), "/v1/rules", {"prefix": "198.51.100.0/24"}),
        (("lists",), "/v1/lists", {}),
        (("lists", "feed"), "/v1/lists/feed", {}),
        (("lists", "feed", "--limit", "1"), "/v1/lists/feed", {"limit": 1}),
        (("policy",), "/v1/policy", {}),
        (("revision",), "/v1/revision", {}),
    ]
    for args, path, params in pairs:
        rest = get(client, path, **params)
        assert cli.json(*args) == rest, (args, path, params)
    # the documents are about something: the rules, the list and its members
    rules = get(client, "/v1/rules")["rules"]
    assert len(rules) == 5 and {r["prefix"] for r in rules} >= {"198.51.100.0/24", "2001:db8:bad::/48", None}
    detail = get(client, "/v1/lists/feed", limit=1)
    assert detail["list"]["count"] == 3 and len(detail["members"]) == 1 and detail["truncated"] is True


def test_changes_answer_the_same_documents_through_both_front_ends(contract, tmp_path) -> None:
    _srv, client, cli = contract
    # a rule added through the CLI reads back through REST as the CLI printed it
    made = cli.json("block", "100.100.0.0/16", "--comment", "cli")
    (added,) = made["added"]
    assert get(client, "/v1/rules", prefix="100.100.0.0/16")["rules"] == [added]
    r = client.post("/v1/block", json={"prefixes": ["100.101.0.0/16"], "comment": "rest"})
    assert r.status_code == 201 and set(r.json()) == set(made), r.text
    assert cli.json("rules", "--prefix", "100.101.0.0/16")["rules"] == r.json()["added"]
    removed = cli.json("unblock", "--id", str(r.json()["added"][0]["id"]))
    r = client.delete(f"/v1/rules/{added['id']}")
    assert r.status_code == 200 and set(r.json()) == set(removed) and r.json()["removed"] == [added], r.text

    # a list imported through the CLI is the list REST shows, and the reverse
    feed = tmp_path / "cli-feed.txt"
    feed.write_text("100.102.0.0/24\n100.102.1.1\n")
    imported = cli.json("import", str(feed), "--list", "cli-feed")
    # (at least the two members; a TTL rule's deadline is rewritten on every full sync)
    assert imported["created"] is True and imported["map_entries_written"] >= 2
    assert f"{imported['map_entries_written']} map entries written" in imported["notes"][0]
    assert get(client, "/v1/lists/cli-feed")["list"] == imported["list"]
    r = client.put("/v1/lists/rest-feed", json={"prefixes": ["100.103.0.0/24"]})
    assert r.status_code == 201 and set(r.json()) == set(imported), r.text
    assert cli.json("lists", "rest-feed")["list"] == r.json()["list"]
    dropped = cli.json("unblock", "--list", "rest-feed")
    r = client.delete("/v1/lists/cli-feed")
    assert r.status_code == 200 and set(r.json()) == set(dropped), r.text

    # policy set on one side is read back on the other
    assert cli.json("policy", "deny") == get(client, "/v1/policy")
    r = client.put("/v1/policy", json={"policy": "allow"})
    assert r.status_code == 200 and cli.json("policy") == r.json(), r.text

    # maintenance: nothing due, nothing to repair: equal documents (without
    # the TTL rule, whose kernel deadline every full sync computes afresh)
    for rule in get(client, "/v1/rules")["rules"]:
        if rule["expires"] is not None:
            assert client.delete(f"/v1/rules/{rule['id']}").status_code == 200
    r = client.post("/v1/expire")
    assert r.status_code == 200 and cli.json("expire") == r.json(), r.text
    r = client.post("/v1/restore")
    assert r.status_code == 200 and r.json()["map_entries_written"] == 0, r.text
    assert cli.json("restore") == r.json()
