"""Bounded requests and protected reads, against a real uvicorn server:
the token and the body size are checked before a body is read, pages are
capped and walkable, reads never wait for the writer, and every client
mistake is a clear 4xx that changes nothing."""

from __future__ import annotations

import ipaddress
import socket
import threading
from urllib.parse import urlparse

import httpx

from api_helpers import Running


def _raw(server: Running, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send request headers (and maybe the start of a body) on a raw socket;
    read the whole answer (the server closes the connection after it)."""
    u = urlparse(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as s:
        s.sendall(head.encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    header_blob, _, payload = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_blob.decode().split("\r\n"):
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), headers, payload


def _head(method: str, path: str, length: int, token: str | None = None, ctype: str = "application/json") -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
            f"{auth}\r\n")


def test_a_300mb_body_without_token_is_refused_unread(server: Running) -> None:
    # Only the headers are sent: the answer comes, and the connection closes,
    # without the server waiting for (or reading) any of the 300 MB.
    status, headers, payload = _raw(server, _head("POST", "/v1/block", 300 << 20))
    assert status == 401 and headers.get("connection") == "close", (status, headers, payload)
    assert b"missing bearer token" in payload
    status, headers, payload = _raw(server, _head("PUT", "/v1/lists/big", 300 << 20, ctype="text/plain"))
    assert status == 401 and headers.get("connection") == "close"


def test_bodies_over_the_limit_are_413_before_reading(server: Running) -> None:
    limit = server.settings.api_max_json_body
    status, headers, payload = _raw(server, _head("POST", "/v1/block", limit + 1, server.token))
    assert status == 413 and headers.get("connection") == "close", (status, payload)
    assert str(limit).encode() in payload and b"text/plain" in payload
    text_limit = server.settings.api_max_body
    status, _h, payload = _raw(server, _head("PUT", "/v1/lists/big", text_limit + 1, server.token, "text/plain"))
    assert status == 413 and str(text_limit).encode() in payload


def test_a_chunked_body_over_the_limit_is_cut_off(server: Running, client: httpx.Client) -> None:
    limit = server.settings.api_max_json_body
    before = client.get("/v1/revision").json()["revision"]

    def chunks():
        yield b'{"prefixes": ["198.18.0.0/15"'
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    r = client.post("/v1/block", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    assert client.get("/v1/revision").json()["revision"] == before


def test_limit_is_capped(client: httpx.Client) -> None:
    for path in ("/v1/rules", "/v1/lists/anything"):
        r = client.get(path, params={"limit": 10_000_000})
        assert r.status_code == 422 and "limit" in r.json()["detail"], r.text
        r = client.get(path, params={"limit": "9" * 5000})
        assert r.status_code == 422, r.text


def test_cursor_walk_over_a_list_collects_every_member_once(client: httpx.Client) -> None:
    # 2,500 hosts and 2,500 /24s: within the small maps of the test server
    members = [f"10.77.{i // 256}.{i % 256}/32" for i in range(2500)]
    members += [f"10.{100 + i // 256}.{i % 256}.0/24" for i in range(2500)]
    r = client.put("/v1/lists/walk5000", content="\n".join(members) + "\n",
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": 700, "stats": "false"} | ({"after": after} if after is not None else {})
        page = client.get("/v1/lists/walk5000", params=params).json()
        seen += [m["prefix"] for m in page["members"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert pages == 8
    assert sorted(seen) == sorted(members) and len(seen) == len(set(seen)) == 5000
    assert client.delete("/v1/lists/walk5000").status_code == 200


def test_cursor_walk_over_rules(client: httpx.Client) -> None:
    prefixes = [f"198.19.{i}.0/24" for i in range(25)]
    assert client.post("/v1/block", json={"prefixes": prefixes}).status_code == 201
    seen, after = [], None
    while True:
        page = client.get("/v1/rules", params={"limit": 4} | ({"after": after} if after else {})).json()
        seen += [r["prefix"] for r in page["rules"] if r["prefix"] in prefixes]
        after = page["next"]
        if after is None:
            break
    assert sorted(seen) == sorted(prefixes)
    assert client.post("/v1/rules/delete", json={"rules": [{"prefix": p} for p in prefixes]}).status_code == 200


def test_a_long_read_does_not_hold_back_a_change(server: Running, client: httpx.Client) -> None:
    svc = server.app.state.xdpctl
    inside, release = threading.Event(), threading.Event()

    def slow_read(d):
        view = d.rules_view()
        inside.set()
        release.wait(60)
        return view

    t = threading.Thread(target=svc.read, args=(slow_read,))
    t.start()
    try:
        assert inside.wait(30)
        r = client.post("/v1/block", json={"prefixes": ["198.18.44.0/24"]})
        assert r.status_code == 201, r.text
        assert not release.is_set()  # the change finished while the read was still in progress
    finally:
        release.set()
        t.join()
    assert client.post("/v1/rules/delete", json={"rules": [{"prefix": "198.18.44.0/24"}]}).status_code == 200


def test_bulk_json_is_capped_in_items(client: httpx.Client) -> None:
    prefixes = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(10_001)]
    r = client.post("/v1/block", json={"prefixes": prefixes})
    assert r.status_code == 422 and "text/plain" in r.json()["detail"], r.text[:300]


def test_client_mistakes_are_4xx_and_change_nothing(client: httpx.Client) -> None:
    before = client.get("/v1/revision").json()["revision"]
    huge = "9" * 5000
    cases = [
        ("post", "/v1/block", {"json": {"prefixes": ["198.18.50.0/24"], "ttl": ""}}, 422, "empty duration"),
        ("post", "/v1/block", {"json": {"prefixes": ["198.18.50.0/24"], "ttl": 0}}, 422, "must be positive"),
        ("post", "/v1/block", {"json": {"prefixes": ["198.18.50.0/24"], "ttl": huge}}, 422, "too large"),
        ("post", "/v1/block", {"content": '{"prefixes": [], "proto": "udp", "port": ' + huge + "}",
                               "headers": {"Content-Type": "application/json"}}, 422, ""),
        ("post", "/v1/block", {"json": {"prefixes": [], "proto": "udp", "port": huge}}, 422, "too large"),
        ("put", "/v1/lists/ttl0", {"params": {"ttl": ""}, "content": "198.18.51.0/24\n",
                                   "headers": {"Content-Type": "text/plain"}}, 422, "empty duration"),
        ("put", "/v1/lists/empty", {"content": "", "headers": {"Content-Type": "text/plain"}}, 422, "allow_empty"),
        ("put", "/v1/lists/empty", {"json": {"prefixes": []}}, 422, "allow_empty"),
        ("put", "/v1/lists/..x", {"content": "198.18.52.0/24\n", "headers": {"Content-Type": "text/plain"}},
         422, "invalid list name"),
        ("put", "/v1/lists/caf%C3%A9", {"content": "198.18.52.0/24\n", "headers": {"Content-Type": "text/plain"}},
         422, "invalid list name"),
        ("put", "/v1/lists/long", {"content": "10.0.0.1" + "x" * 10_000_000 + "\n",
                                   "headers": {"Content-Type": "text/plain"}}, 422, "line 1"),
        ("delete", "/v1/rules/99999999999999999999", {}, 422, ""),
        ("post", "/v1/block", {"json": {"prefixes": ["198.18.53.0/24"]}, "headers": {"If-Match": "null"}}, 422, ""),
        ("post", "/v1/rules", {"json": {"rules": [{}]}}, 422, ""),
        ("post", "/v1/rules/delete", {"json": {"ids": []}}, 422, ""),
        ("post", "/v1/block", {"content": b"\xff\xfe not json", "headers": {"Content-Type": "application/json"}},
         422, ""),
        ("post", "/v1/block", {"json": {"prefixes": ["198.18.53.0/24"]}, "headers": {"If-Match": '"0"'}},
         412, "revision conflict"),
        ("put", "/v1/policy", {"json": {"policy": "deny"}, "headers": {"If-Match": "0"}}, 412, "revision"),
        ("delete", "/v1/lists/nosuch", {"headers": {"If-Match": "0"}}, 412, "revision"),
    ]
    problems = []
    for method, path, kw, status, words in cases:
        r = client.request(method, path, **kw)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code != status or words not in body.get("detail", "") or len(r.text) > 2000:
            problems.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
    assert not problems, "\n".join(problems)
    assert client.get("/v1/revision").json()["revision"] == before


def test_405_says_allow(client: httpx.Client) -> None:
    r = client.delete("/v1/revision")
    assert r.status_code == 405 and "GET" in r.headers.get("allow", ""), (r.status_code, r.headers)
    r = client.patch("/v1/lists/x")
    assert r.status_code == 405 and r.headers.get("allow"), (r.status_code, r.headers)


def test_openapi_declares_the_real_error_body(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            err = op["responses"].get("422")
            assert err and err["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, \
                (method, path)


def test_reads_accept_a_token(server: Running, anon: httpx.Client, client: httpx.Client) -> None:
    for path in ("/v1/rules", "/v1/lists", "/v1/revision", "/v1/policy", "/metrics"):
        assert anon.get(path).status_code == 401, path
        assert client.get(path).status_code == 200, path
    assert anon.get("/healthz").status_code == 200


READ_TOKEN = "read-only-token-for-tests-0123456789"


def test_read_token_reads_and_may_not_change(start_server) -> None:
    """A read-only token reads every GET; a change with it is a 403 and
    changes nothing; no token at all is a 401; /healthz stays open."""
    srv = start_server(read_token=READ_TOKEN, expire_interval=0)
    with srv.client() as writer, srv.client(token=READ_TOKEN) as reader, srv.client(token=None) as anon:
        rev = writer.get("/v1/revision").json()["revision"]
        for path in ("/v1/rules", "/v1/lists", "/v1/policy", "/v1/revision", "/v1/status", "/v1/stats"):
            r = reader.get(path)
            assert r.status_code == 200, (path, r.text)
            r = anon.get(path)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", (path, r.text)
        assert reader.get("/metrics").status_code == 200
        assert anon.get("/metrics").status_code == 401
        r = reader.post("/v1/block", json={"prefixes": ["198.51.100.0/24"]})
        assert r.status_code == 403 and r.json()["error"] == "forbidden", r.text
        r = reader.put("/v1/policy", json={"policy": "deny"})
        assert r.status_code == 403, r.text
        assert writer.get("/v1/revision").json()["revision"] == rev
        assert writer.get("/v1/rules").json()["rules"] == []
        h = anon.get("/healthz")
        assert h.status_code == 200 and h.json()["status"] == "ok", h.text


def test_a_list_streams_as_text_and_round_trips(client: httpx.Client, anon: httpx.Client) -> None:
    """GET /v1/lists/{name}/members.txt streams every member (no page cap)
    in the format PUT takes: putting it back gives the same members."""
    members = [f"10.78.{i // 256}.{i % 256}/32" for i in range(2000)]
    members += [f"2001:db8:78:{i:x}::/64" for i in range(400)]
    r = client.put("/v1/lists/stream2400", content="\n".join(members) + "\n",
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    digest = r.json()["list"]["sha256"]
    with client.stream("GET", "/v1/lists/stream2400/members.txt") as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        body = "".join(resp.iter_text())
    lines = body.splitlines()
    assert lines[0].startswith("# xdpctl list stream2400: 2400 prefixes, deny src")
    assert [ipaddress.ip_network(x) for x in lines[1:]] == [ipaddress.ip_network(m) for m in members]
    r = client.put("/v1/lists/stream2400-copy", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    assert r.json()["list"]["count"] == 2400 and r.json()["list"]["sha256"] == digest
    nf = client.get("/v1/lists/nosuch/members.txt")
    assert nf.status_code == 404 and nf.json()["error"] == "not_found", nf.text
    assert anon.get("/v1/lists/stream2400/members.txt").status_code == 401
    for name in ("stream2400", "stream2400-copy"):
        assert client.delete(f"/v1/lists/{name}").status_code == 200
