"""The REST API over a real server and a real kernel: health, auth, rules,
revisions, lists, policy, restore, expiry, error answers."""

from __future__ import annotations

import ipaddress
import os
import stat
import struct
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from api_helpers import SMALL, Running, kernel_match

from xdpctl.api.deps import TOKEN_ENV, load_token, token_path
from xdpctl import abi
from xdpctl.core.context import Context
from xdpctl.core.rules import hosts4
from xdpctl.core.rules.tables import read_pinned_config
from xdpctl.kernel import maps
from tests.support.progs import crowded_hosts, temp_settings


def revision(client: httpx.Client) -> int:
    r = client.get("/v1/revision")
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{r.json()["revision"]}"'
    return r.json()["revision"]


def rules_on(client: httpx.Client, prefix: str) -> list[dict]:
    r = client.get("/v1/rules", params={"prefix": prefix})
    assert r.status_code == 200, r.text
    return r.json()["rules"]


def all_rules(client: httpx.Client) -> list[dict]:
    r = client.get("/v1/rules", params={"stats": False})
    assert r.status_code == 200, r.text
    return r.json()["rules"]


def assert_error(r: httpx.Response, status: int, error: str, *words: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error, body
    for w in words:
        assert w in body["detail"], body
    return body


# ---------------------------------------------------------------------------
# Health, docs, auth
# ---------------------------------------------------------------------------
def test_healthz(anon: httpx.Client, client: httpx.Client, server: Running) -> None:
    r = anon.get("/healthz")
    assert r.status_code == 200, r.text
    h = r.json()
    assert h["status"] == "ok"
    assert h["kernel"] == {"ok": True, "pin_dir": server.settings.pin_dir, "bpffs": True, "shared_maps": True,
                           "kernel_revision": h["revision"], "db_revision": h["revision"], "in_sync": True,
                           "host_table": True, "host_table_dead_slots": h["kernel"]["host_table_dead_slots"],
                           "host_table_overflowed_buckets": h["kernel"]["host_table_overflowed_buckets"],
                           "host_table_rebuild_at": hosts4.WEAR_MAX, "detail": None}
    with Context(server.settings) as ctx:  # the wear the active set's mark bucket holds
        table = os.path.join(server.settings.shared_map_dir, abi.set_map(abi.OA4_MAP, read_pinned_config(ctx).active))
    with maps.Map.from_pin(table) as m:
        raw = m.lookup(abi.U32.pack(abi.OA4_MARK))
    assert (h["kernel"]["host_table_dead_slots"], h["kernel"]["host_table_overflowed_buckets"]) == \
        struct.unpack_from("=QQ", raw, 8)
    assert h["db"]["ok"] and h["db"]["path"] == server.settings.db_path
    assert h["revision"] == revision(client)
    assert h["restore"]["last_run"] is not None and h["restore"]["last_error"] is None


def test_metrics_report_the_kernels_revision_and_the_host_tables_wear(client: httpx.Client) -> None:
    """/metrics reads the kernel's side as /healthz does: the active set's
    revision, its host table trusted, and the table's wear, which a host
    added to a full bucket (one overflowed bucket) and a deleted host (one
    dead slot) move by exactly one each."""
    def kernel() -> dict[str, float]:
        text = client.get("/metrics").text
        return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                if s.name.startswith(("xdpctl_kernel_", "xdpctl_host_table_"))}

    hosts = [str(ipaddress.IPv4Address(a)) for a in crowded_hosts(5, 41)]
    assert client.post("/v1/block", json={"prefixes": hosts[:4]}).status_code == 201
    before = kernel()
    assert client.post("/v1/block", json={"prefixes": hosts[4:]}).status_code == 201
    assert client.post("/v1/rules/delete", json={"rules": [{"prefix": hosts[0]}]}).status_code == 200
    after = kernel()
    assert after["xdpctl_kernel_revision"] == before["xdpctl_kernel_revision"] + 2 == revision(client)
    assert after["xdpctl_kernel_standby_synced"] == 1 and after["xdpctl_host_table_trusted"] == 1
    assert after["xdpctl_host_table_overflowed_buckets"] == before["xdpctl_host_table_overflowed_buckets"] + 1
    assert after["xdpctl_host_table_dead_slots"] == before["xdpctl_host_table_dead_slots"] + 1
    assert after["xdpctl_host_table_rebuild_at"] == hosts4.WEAR_MAX
    k = client.get("/healthz").json()["kernel"]
    assert (k["host_table_dead_slots"], k["host_table_overflowed_buckets"]) == \
        (after["xdpctl_host_table_dead_slots"], after["xdpctl_host_table_overflowed_buckets"])


def test_openapi_and_docs(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    for path in ("/v1/rules", "/v1/rules/{id}", "/v1/rules/delete", "/v1/block", "/v1/allow", "/v1/lists",
                 "/v1/lists/{name}", "/v1/policy", "/v1/restore", "/v1/expire", "/v1/revision", "/v1/status",
                 "/v1/attachments", "/v1/stats", "/healthz", "/metrics"):
        assert path in spec["paths"], path
    put = spec["paths"]["/v1/lists/{name}"]["put"]["requestBody"]["content"]
    assert set(put) == {"text/plain", "application/json"}
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    docs = anon.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_open_reads_option(start_server) -> None:
    """With reads left open by the operator, only changes need the token."""
    server = start_server(protect_reads=False, protect_metrics=False, restore_on_start=False, expire_interval=0)
    before = None
    with server.client(token=None) as anon:
        before = revision(anon)
        assert anon.get("/v1/rules").status_code == 200
        assert anon.get("/v1/lists").status_code == 200
        assert anon.get("/metrics").status_code == 200
        r = anon.post("/v1/block", json={"prefixes": ["198.18.0.0/15"]})
        body = assert_error(r, 401, "unauthorized", "missing bearer token")
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert body["detail"].count("Bearer") == 1
        assert_error(anon.delete("/v1/rules/1"), 401, "unauthorized")
        assert_error(anon.put("/v1/policy", json={"policy": "deny"}), 401, "unauthorized")
        assert_error(anon.post("/v1/restore"), 401, "unauthorized")
    with server.client(token="wrong") as bad:
        assert_error(bad.post("/v1/block", json={"prefixes": ["198.18.0.0/15"]}), 401, "unauthorized",
                     "invalid bearer token")
    with server.client(token=None, headers={"Authorization": f"Basic {server.token}"}) as basic:
        assert_error(basic.post("/v1/expire"), 401, "unauthorized", "must be 'Bearer <token>'")
    with server.client() as ok:
        assert revision(ok) == before
        assert rules_on(ok, "198.18.0.0/15") == []


def test_reads_are_protected_by_default(start_server) -> None:
    srv = start_server(restore_on_start=False, expire_interval=0)
    with srv.client(token=None) as anon, srv.client() as ok:
        assert_error(anon.get("/v1/rules"), 401, "unauthorized")
        assert_error(anon.get("/metrics"), 401, "unauthorized")
        # health never needs the token; without the restore at start nothing
        # created the shared maps yet: degraded, and it says why
        r = anon.get("/healthz")
        assert r.status_code == 503, r.text
        h = r.json()
        assert h["status"] == "degraded" and h["kernel"]["shared_maps"] is False and h["db"]["ok"] is True
        assert "POST /v1/restore" in h["kernel"]["detail"] and h["restore"]["detail"] == "disabled"
        assert ok.get("/v1/rules").status_code == 200
        assert ok.get("/metrics").status_code == 200


def test_token_file_generated_0600(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    settings = temp_settings(str(tmp_path / "state"))
    token, source = load_token(settings)
    path = token_path(settings)
    assert source == f"file {path}"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(token) >= 32
    assert load_token(settings) == (token, source)  # read back, not regenerated
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert load_token(temp_settings(str(tmp_path / "state")))[0] == "from-env"
    assert load_token(settings, "given")[0] == "given"


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------
def test_block_then_rules_and_kernel(client: httpx.Client, server: Running) -> None:
    rev0 = revision(client)
    r = client.post("/v1/block", json={"prefixes": ["198.51.100.0/24"], "comment": "rest test"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["revision"] == rev0 + 1 and r.headers["ETag"] == f'"{rev0 + 1}"'
    (added,) = body["added"]
    assert added["prefix"] == "198.51.100.0/24" and added["action"] == "deny" and added["source"] == "api"

    listed = rules_on(client, "198.51.100.0/24")
    assert [x["id"] for x in listed] == [added["id"]]
    assert listed[0]["comment"] == "rest test"

    hit = kernel_match(server.settings, "198.51.100.77")
    assert hit is not None and hit.rule_id == added["id"] and hit.action == abi.Action.DENY
    assert kernel_match(server.settings, "198.51.101.1") is None

    r = client.delete(f"/v1/rules/{added['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == rev0 + 2 and [x["id"] for x in r.json()["removed"]] == [added["id"]]
    assert kernel_match(server.settings, "198.51.100.77") is None
    assert rules_on(client, "198.51.100.0/24") == []
    assert_error(client.delete(f"/v1/rules/{added['id']}"), 404, "not_found", f"no rule with id {added['id']}")


def test_bulk_with_one_bad_item_changes_nothing(client: httpx.Client, server: Running) -> None:
    rev0 = revision(client)
    before = all_rules(client)
    good = [{"prefix": "100.64.1.0/24"}, {"prefix": "100.64.2.0/24", "action": "allow"}]
    cases = [  # (item, words, field, value); field None: pydantic's own check
        ({"prefix": "100.64.3.300"}, "rules[2]: 100.64.3.300 is not an IPv4 address", "rules[2].prefix",
         "100.64.3.300"),
        ({"prefix": "100.64.3.1/24"}, "rules[2]: 100.64.3.1/24 has host bits set", "rules[2].prefix",
         "100.64.3.1/24"),
        ({"prefix": "100.64.3.0/24", "action": "block"}, "rules[2]: unknown action 'block'", "rules[2].action",
         "block"),
        ({"prefix": None, "proto": "icmp", "port": 1}, "rules[2]: protocol icmp is not supported",
         "rules[2].proto", "icmp"),
        ({"prefix": "100.64.3.0/24", "port": True, "proto": "tcp"}, "rules[2].port: expected a number or a string",
         None, None),
        ({"prefx": "100.64.3.0/24"}, "rules[2].prefx: unknown field", None, None),
        ({"prefix": "100.64.1.0/24"}, "rules[2]: 100.64.1.0/24 is given twice (see rules[0])", "rules[2].prefix",
         "100.64.1.0/24"),
    ]
    for bad, words, field, value in cases:
        r = client.post("/v1/rules", json={"rules": good + [bad, {"prefix": "100.64.4.0/24"}]})
        body = assert_error(r, 422, "validation_error", words)
        assert body["index"] == 2, body
        if field is not None:
            assert (body["field"], body["value"]) == (field, value), body
    assert revision(client) == rev0
    assert all_rules(client) == before
    assert kernel_match(server.settings, "100.64.1.1") is None

    # all good: all applied, in one revision
    r = client.post("/v1/rules", json={"rules": good})
    assert r.status_code == 201 and r.json()["revision"] == rev0 + 1
    ids = [x["id"] for x in r.json()["added"]]
    r = client.post("/v1/rules/delete", json={"rules": [{"prefix": "100.64.1.0/24"}], "ids": [ids[1]]})
    assert r.status_code == 200, r.text
    assert sorted(x["id"] for x in r.json()["removed"]) == sorted(ids)


def test_duplicate_is_409_and_update_changes_it(client: httpx.Client, server: Running) -> None:
    r = client.post("/v1/block", json={"prefixes": ["100.65.0.0/16"]})
    assert r.status_code == 201, r.text
    rid = r.json()["added"][0]["id"]
    rev = r.json()["revision"]
    assert_error(client.post("/v1/block", json={"prefixes": ["100.65.0.0/16"]}), 409, "conflict",
                 "100.65.0.0/16 already exists as rule", "update")
    # the whole bulk fails when one item exists
    r = client.post("/v1/rules", json={"rules": [{"prefix": "100.66.0.0/16"}, {"prefix": "100.65.0.0/16"}]})
    assert_error(r, 409, "conflict", "already exists")
    assert revision(client) == rev and rules_on(client, "100.66.0.0/16") == []

    r = client.post("/v1/allow", json={"prefixes": ["100.65.0.0/16"], "update": True, "comment": "now allowed"})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == [] and r.json()["updated"][0]["id"] == rid
    assert r.json()["updated"][0]["action"] == "allow"
    hit = kernel_match(server.settings, "100.65.1.2")
    assert hit is not None and hit.rule_id == rid and hit.action == abi.Action.ALLOW
    assert client.delete(f"/v1/rules/{rid}").status_code == 200


def test_if_match_and_revision_field(client: httpx.Client) -> None:
    rev = revision(client)
    stale = rev - 1 if rev > 0 else rev + 5
    for headers, extra in (({"If-Match": str(stale)}, {}), ({"If-Match": f'"{stale}"'}, {}),
                           ({"If-Match": f'W/"{stale}"'}, {}), ({}, {"revision": stale})):
        r = client.post("/v1/block", json={"prefixes": ["100.67.0.0/16"], **extra}, headers=headers)
        assert_error(r, 412, "revision_conflict", f"revision {rev}", f"expected {stale}")
    assert_error(client.post("/v1/block", json={"prefixes": ["100.67.0.0/16"]}, headers={"If-Match": "seven"}),
                 422, "validation_error", "If-Match")
    assert_error(client.post("/v1/block", json={"prefixes": ["100.67.0.0/16"], "revision": rev},
                             headers={"If-Match": str(stale)}), 422, "validation_error", "If-Match")
    assert revision(client) == rev and rules_on(client, "100.67.0.0/16") == []

    r = client.post("/v1/block", json={"prefixes": ["100.67.0.0/16"]}, headers={"If-Match": f'"{rev}"'})
    assert r.status_code == 201, r.text
    new = r.json()["revision"]
    assert new == rev + 1 and r.headers["ETag"] == f'"{new}"'
    rid = r.json()["added"][0]["id"]
    # deletes honour it too: the old revision is stale now
    assert_error(client.delete(f"/v1/rules/{rid}", headers={"If-Match": str(rev)}), 412, "revision_conflict")
    assert_error(client.delete(f"/v1/rules/{rid}", params={"revision": rev}), 412, "revision_conflict")
    r = client.delete(f"/v1/rules/{rid}", headers={"If-Match": r.headers["ETag"]})
    assert r.status_code == 200 and r.json()["revision"] == new + 1


# ---------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------
def test_list_put_text_replace_delete(client: httpx.Client, server: Running) -> None:
    text = "# feed\n100.70.0.0/24\n100.70.1.7 ; scanner\n\n2001:db8:70::/48\n"
    rev0 = revision(client)
    r = client.put("/v1/lists/feed-a", content=text, headers={"Content-Type": "text/plain"},
                   params={"comment": "test feed"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True and body["revision"] == rev0 + 1
    assert body["list"]["count"] == 3 and body["list"]["action"] == "deny" and body["list"]["comment"] == "test feed"
    base = body["list"]["id_base"]
    names = {x["name"]: x for x in client.get("/v1/lists").json()["lists"]}
    assert names["feed-a"]["sha256"] == body["list"]["sha256"]
    members = client.get("/v1/rules", params={"list": "feed-a"}).json()["rules"]
    assert [m["prefix"] for m in members] == ["100.70.0.0/24", "100.70.1.7/32", "2001:db8:70::/48"]
    assert kernel_match(server.settings, "100.70.1.7").rule_id == base + 1
    assert kernel_match(server.settings, "2001:db8:70:1::1").rule_id == base + 2

    # a bad line: 422 naming the line, nothing changes
    r = client.put("/v1/lists/feed-a", content="100.71.0.0/24\nnot-a-prefix\n",
                   headers={"Content-Type": "text/plain"})
    body = assert_error(r, 422, "validation_error", "line 2", "not-a-prefix", "nothing was imported")
    assert body["line"] == 2
    assert revision(client) == rev0 + 1
    assert kernel_match(server.settings, "100.70.1.7") is not None

    # replace atomically, as JSON this time; duplicates are named by index
    r = client.put("/v1/lists/feed-a", json={"prefixes": ["100.71.0.0/24", "100.72.0.1", "100.71.0.0/24"]})
    body = assert_error(r, 422, "validation_error", "prefixes[2]", "prefixes[0]")
    assert body["index"] == 2
    r = client.put("/v1/lists/feed-a", json={"prefixes": ["100.71.0.0/24", "100.72.0.1"], "action": "deny"},
                   headers={"If-Match": str(rev0 + 1)})
    assert r.status_code == 200, r.text
    assert r.json()["created"] is False and r.json()["list"]["count"] == 2 and r.json()["revision"] == rev0 + 2
    assert kernel_match(server.settings, "100.70.1.7") is None
    assert kernel_match(server.settings, "2001:db8:70:1::1") is None
    assert kernel_match(server.settings, "100.72.0.1") is not None
    detail = client.get("/v1/lists/feed-a", params={"limit": 1}).json()
    assert detail["list"]["count"] == 2 and len(detail["members"]) == 1 and detail["truncated"] is True

    assert_error(client.put("/v1/lists/feed-a", content="100.71.0.0/24",
                            headers={"Content-Type": "application/x-www-form-urlencoded"}),
                 415, "unsupported_media_type", "text/plain")
    assert_error(client.put("/v1/lists/feed a", content="1.2.3.4", headers={"Content-Type": "text/plain"}),
                 422, "validation_error", "invalid list name")
    assert_error(client.put("/v1/lists/feed-a", params={"revision": rev0, "allow_empty": "true"}, json={"prefixes": []}),
                 412, "revision_conflict")

    r = client.delete("/v1/lists/feed-a")
    assert r.status_code == 200 and r.json()["revision"] == rev0 + 3
    assert kernel_match(server.settings, "100.72.0.1") is None
    assert_error(client.get("/v1/lists/feed-a"), 404, "not_found", "feed-a")
    assert_error(client.delete("/v1/lists/feed-a"), 404, "not_found")


# ---------------------------------------------------------------------------
# Policy, restore, expiry
# ---------------------------------------------------------------------------
def test_policy(client: httpx.Client, server: Running) -> None:
    r = client.get("/v1/policy")
    assert r.status_code == 200 and r.json()["policy"] == "allow"
    rev = r.json()["revision"]
    try:
        r = client.put("/v1/policy", json={"policy": "deny"})
        assert r.status_code == 200, r.text
        assert r.json() == {"policy": "deny", "revision": rev + 1}
        assert client.get("/v1/policy").json()["policy"] == "deny"
        with maps.Map.from_pin(os.path.join(server.settings.shared_map_dir, "xc_cfg")) as cfg:
            policy, _flags, generation = abi.CONFIG.unpack(cfg.lookup(abi.U32.pack(0))[: abi.CONFIG.size])
        assert policy == abi.Policy.DENY and generation == rev + 1
        assert_error(client.put("/v1/policy", json={"policy": "drop"}), 422, "validation_error",
                     "unknown policy 'drop'")
        assert_error(client.put("/v1/policy", json={"policy": "allow"}, headers={"If-Match": str(rev)}),
                     412, "revision_conflict")
    finally:
        r = client.put("/v1/policy", json={"policy": "allow"})
    assert r.status_code == 200 and r.json()["policy"] == "allow"


def test_restore_repairs_the_kernel(client: httpx.Client, server: Running) -> None:
    r = client.post("/v1/block", json={"prefixes": ["100.80.0.0/24"]})
    assert r.status_code == 201, r.text
    rid = r.json()["added"][0]["id"]
    key = abi.pack_key4(0, int.from_bytes(bytes([100, 80, 0, 0]), "big"))
    with Context(server.settings) as ctx:
        active = read_pinned_config(ctx).active
    with maps.Map.from_pin(os.path.join(server.settings.shared_map_dir, abi.set_map("xc_v4_l24", active))) as m:
        assert m.delete(key)  # drift: the active set lost the entry
    assert kernel_match(server.settings, "100.80.0.9") is None

    r = client.post("/v1/restore")
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["map_entries_written"] == 1 and rep["map_entries_deleted"] == 0 and rep["errors"] == []
    assert rep["revision"] == revision(client)
    assert kernel_match(server.settings, "100.80.0.9").rule_id == rid
    assert client.delete(f"/v1/rules/{rid}").status_code == 200


def test_expired_rules_are_reaped_in_the_background(client: httpx.Client, server: Running) -> None:
    r = client.post("/v1/block", json={"prefixes": ["100.81.0.0/24"], "ttl": 1})
    assert r.status_code == 201, r.text
    added = r.json()["added"][0]
    assert added["expires"] is not None and added["expires"] - added["created"] == pytest.approx(1, abs=0.01)
    deadline = time.monotonic() + 15  # bounds the wait; the task runs every 0.2 s
    while rules_on(client, "100.81.0.0/24"):
        assert time.monotonic() < deadline, "the expiry task did not remove the rule"
        time.sleep(0.1)
    assert kernel_match(server.settings, "100.81.0.1") is None
    assert client.post("/v1/expire").json()["removed"] == []


# ---------------------------------------------------------------------------
# Bad input is a 4xx with a precise message, never a 500
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,kwargs,status,words", [
    ("post", "/v1/rules", {"content": "{bad", "headers": {"Content-Type": "application/json"}}, 422,
     "body: not valid JSON"),
    ("post", "/v1/rules", {"content": "1.2.3.4", "headers": {"Content-Type": "text/plain"}}, 422,
     "application/json"),
    ("post", "/v1/rules", {"json": {}}, 422, "rules: Field required"),
    ("post", "/v1/rules", {"json": {"rules": []}}, 422, "rules: List should have at least 1 item"),
    ("post", "/v1/rules", {"json": {"rules": [{"prefix": "1.2.3.4", "ttl": "5x"}]}}, 422, "rules[0]: duration"),
    ("post", "/v1/rules", {"json": {"rules": [{"prefix": "1.2.3.4", "comment": "x" * 600}]}}, 422,
     "rules[0]: comment longer than 512"),
    ("post", "/v1/rules", {"json": {"rules": [{"prefix": "1.2.3.4"}], "revision": -1}}, 422, "revision"),
    ("post", "/v1/block", {"json": {"prefixes": []}}, 422, "give at least one prefix, or proto and port"),
    ("post", "/v1/block", {"json": {"prefixes": ["1.2.3.4"], "proto": "tcp"}}, 422,
     "prefixes[0]: an L4 rule needs both proto and port; add port"),
    ("post", "/v1/block", {"json": {"port": 80}}, 422, "port needs proto"),
    ("post", "/v1/allow", {"json": {"prefixes": ["::1"], "port": 99999, "proto": "udp"}}, 422,
     "port 99999 out of range"),
    ("post", "/v1/rules/delete", {"json": {}}, 422, "nothing to remove"),
    ("post", "/v1/rules/delete", {"json": {"ids": [0]}}, 422, "ids[0]"),
    ("post", "/v1/rules/delete", {"json": {"rules": [{"prefix": "100.99.0.0/16"}]}}, 404, "no rule matches"),
    ("delete", "/v1/rules/abc", {}, 422, "path parameter 'id'"),
    ("delete", "/v1/rules/99999999999", {}, 422, "path parameter 'id'"),
    ("get", "/v1/rules", {"params": {"prefix": "nonsense"}}, 422, "nonsense is not an IP"),
    ("get", "/v1/rules", {"params": {"limit": 0}}, 422, "query parameter 'limit'"),
    ("get", "/v1/rules", {"params": {"list": "no-such-list"}}, 404, "no list named"),
    ("get", "/v1/status", {"params": {"netns": "no-such-ns"}}, 404, "does not exist"),
    ("post", "/v1/attachments", {"json": {"ifname": "nosuch0", "program": "droplist"}}, 404, "nosuch0"),
    ("post", "/v1/attachments", {"json": {"ifname": "lo", "hook": "tc-sideways"}}, 422, "unknown hook"),
    ("post", "/v1/attachments", {"json": {"ifname": "lo", "program": "firewall"}}, 422, "unknown program"),
    ("post", "/v1/attachments", {"json": {"ifname": "x" * 16}}, 422, "ifname"),
    ("post", "/v1/attachments", {"json": {"ifname": "lo", "netns": "no-such-ns"}}, 404, "does not exist"),
    ("post", "/v1/attachments", {"json": {"ifname": "lo", "hook": "tc-ingress", "mode": "native"}}, 422,
     "xdp hook only"),
    ("delete", "/v1/attachments", {}, 422, "query parameter 'ifname'"),
    ("delete", "/v1/attachments", {"params": {"ifname": "lo"}}, 404, "nothing attached on lo"),
    ("get", "/v1/nowhere", {}, 404, "no such endpoint"),
    ("patch", "/v1/rules", {}, 405, "PATCH is not allowed"),
])
def test_bad_input_is_a_precise_4xx(client: httpx.Client, method, path, kwargs, status, words) -> None:
    rev = revision(client)
    r = client.request(method.upper(), path, **kwargs)
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    assert r.status_code == status and words in body["detail"], body
    assert set(body) >= {"error", "detail"}
    assert revision(client) == rev


def test_core_errors_name_field_value_and_hint_in_rest_words(client: httpx.Client, server: Running) -> None:
    """The core's field, value and hint reach the body; placeholders are
    worded for REST (field names, REST calls), never as CLI flags."""
    rev = revision(client)
    body = assert_error(client.post("/v1/block", json={"port": 80}), 422, "validation_error",
                        "port needs proto: an L4 rule needs both proto and port")
    assert (body["field"], body["value"], body["hint"]) == ("port", "80", "add proto (tcp, udp or sctp)"), body
    body = assert_error(client.post("/v1/block", json={"prefixes": []}), 422, "validation_error")
    assert body["field"] == "prefixes" and "--" not in body["detail"], body
    body = assert_error(client.post("/v1/block", json={"prefixes": ["100.68.0.0/16", "100.68.0.0/33"]}), 422,
                        "validation_error", "prefixes[1]: 100.68.0.0/33: prefix length 33 out of range")
    assert (body["field"], body["value"], body["index"]) == ("prefixes[1]", "100.68.0.0/33", 1), body
    body = assert_error(client.post("/v1/block", json={"prefixes": ["100.68.0.0/16"], "ttl": "5x"}), 422,
                        "validation_error", "prefixes[0]: duration")
    assert (body["field"], body["value"]) == ("ttl", "5x"), body
    assert revision(client) == rev

    # a full map: the hint says what is true, as a REST call
    many = "".join(f"100.120.{i // 250}.{i % 250 + 1}\n" for i in range(SMALL["xc_v4_l32"] + 1))
    r = client.put("/v1/lists/too-many", content=many, headers={"Content-Type": "text/plain"})
    body = assert_error(r, 507, "capacity_error", "xc_v4_l32", f"holds {SMALL['xc_v4_l32']}", "nothing was changed")
    assert "POST /v1/restore" in body["hint"] and "xdpctl" not in body["hint"], body
    assert revision(client) == rev
    assert_error(client.get("/v1/lists/too-many"), 404, "not_found")

    # an existing rule: the hint names the request field that updates it
    r = client.post("/v1/block", json={"prefixes": ["100.68.0.0/16"]})
    assert r.status_code == 201, r.text
    rid = r.json()["added"][0]["id"]
    body = assert_error(client.post("/v1/block", json={"prefixes": ["100.68.0.0/16"]}), 409, "conflict",
                        f"100.68.0.0/16 already exists as rule {rid} (deny)")
    assert (body["field"], body["value"], body["hint"]) == ("prefix", "100.68.0.0/16", "use update to change it")
    assert client.delete(f"/v1/rules/{rid}").status_code == 200
