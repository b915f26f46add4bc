"""GET /v1/lookup, GET /v1/export, POST /v1/apply on a server of their own
(apply replaces the whole rule set): the round trip, a bad line, a dry run,
the same body twice, the token rules, and `xdpctl lookup --json` being the
GET's document."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RULES = ("policy deny\nblock 203.0.113.0/24 --comment 'two words'\nallow 203.0.113.8/29\n"
         "allow 10.9.0.0/16 --mgmt\nblock any --dst --proto tcp --port 23\n"
         "list feed --action deny --dst --comment 'feed X'\n198.51.100.0/24\n192.0.2.7/32\n2001:db8:bad::/48\n")
TEXT = {"content-type": "text/plain"}


@pytest.fixture(scope="module")
def own(start_server):
    srv = start_server()
    with srv.client() as c:
        yield srv, c


def test_apply_export_round_trip(own):
    srv, c = own
    r = c.post("/v1/apply", content=RULES, headers=TEXT)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["changed"] and not doc["dry_run"] and doc["policy"] == "deny"
    assert [x["prefix"] for x in doc["added"]] == ["203.0.113.0/24", "203.0.113.8/29", "10.9.0.0/16", None]
    rev = doc["revision"]
    body = c.get("/v1/export").text
    assert body.splitlines()[1:] == RULES.splitlines()
    again = c.post("/v1/apply", content=body, headers=TEXT).json()
    assert (again["changed"], again["revision"]) == (False, rev)
    assert c.get("/v1/revision").json()["revision"] == rev


def test_bad_line_dry_run_and_revision(own):
    srv, c = own
    rev = c.get("/v1/revision").json()["revision"]
    before = c.get("/v1/export").text
    bad = before.replace("allow 203.0.113.8/29\n", "allow 203.0.113.8/33\n")
    r = c.post("/v1/apply", content=bad, headers=TEXT)
    assert r.status_code == 422 and r.json()["line"] == 4 and r.json()["detail"].startswith("line 4: ")
    want = before.replace("allow 203.0.113.8/29\n", "").replace("policy deny", "policy allow")
    r = c.post("/v1/apply", params={"dry_run": "true"}, content=want, headers=TEXT)
    doc = r.json()
    assert (doc["dry_run"], doc["changed"], doc["policy"], doc["revision"]) == (True, True, "allow", rev)
    assert [x["prefix"] for x in doc["removed"]] == ["203.0.113.8/29"] and doc["added"] == []
    assert c.get("/v1/export").text == before
    assert c.post("/v1/apply", params={"revision": rev - 1}, content=want, headers=TEXT).status_code == 412
    assert c.post("/v1/apply", content=want, headers={"content-type": "application/json"}).status_code == 415
    assert c.get("/v1/export").text == before
    with srv.client(token=None) as anon:
        assert anon.post("/v1/apply", content=want, headers=TEXT).status_code == 401
        assert anon.get("/v1/lookup", params={"address": "1.2.3.4"}).status_code == 401


def test_lookup_is_the_cli_document(own):
    srv, c = own
    c.post("/v1/apply", content=RULES, headers=TEXT)
    for params, reason in (({"address": "203.0.113.1"}, "drop_src"), ({"address": "203.0.113.9"}, "pass_allow"),
                           ({"address": "192.0.2.7", "dst": "true"}, "drop_dst"),
                           ({"address": "8.8.8.8", "dst": "true", "proto": "tcp", "port": 23}, "drop_port"),
                           ({"address": "8.8.8.8"}, "drop_policy")):
        doc = c.get("/v1/lookup", params=params).json()
        assert doc["reason"] == reason, (params, doc)
        argv = [sys.executable, "-m", "xdpctl.cli", "--pin-dir", srv.settings.pin_dir, "--state-dir",
                srv.settings.state_dir, "lookup", params["address"], "--json"]
        argv += ["--dst"] if "dst" in params else []
        argv += ["--proto", params["proto"], "--port", str(params["port"])] if "proto" in params else []
        cli = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        assert cli == doc
    r = c.get("/v1/lookup", params={"address": "1.2.3"})
    assert r.status_code == 422 and r.json()["field"] == "address"
