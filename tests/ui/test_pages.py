"""The page and the docs over HTTP (no browser): who may open /ui, what the
session cookie grants, /docs without a network, and the dashboard document
against the reads it gathers."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from api_helpers import Running
from conftest import READ_TOKEN, TABLE_SIZE, add_vip_and_list

VIP = "192.0.2.80"


def test_ui_is_refused_without_a_token(server: Running) -> None:
    with server.client(token=None) as anon:
        for path in ("/ui", "/ui?token=wrong", "/ui?token="):
            r = anon.get(path)
            assert r.status_code == 401, (path, r.status_code)
            assert 'action="/ui/login"' in r.text and "set-cookie" not in r.headers, path
        r = anon.post("/ui/login", data={"token": "wrong"})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        assert anon.get("/v1/dashboard").status_code == 401
    with server.client(token="wrong") as bad:
        assert bad.get("/ui").status_code == 401
    with server.client(token=READ_TOKEN) as reader:
        r = reader.get("/ui")
        assert r.status_code == 200 and 'src="/static/ui/dashboard.js"' in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]


def test_session_cookie_reads_and_never_writes(server: Running) -> None:
    for token, how in ((READ_TOKEN, "query"), (server.token, "form")):
        with server.client(token=None) as browser:
            if how == "query":
                r = browser.get("/ui", params={"token": token}, follow_redirects=False)
            else:
                r = browser.post("/ui/login", data={"token": token}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/ui", r.text
            cookie = r.headers["set-cookie"]
            assert re.search(r"(?i)httponly", cookie) and re.search(r"(?i)samesite=strict", cookie), cookie
            assert token not in cookie
            assert browser.get("/ui").status_code == 200
            assert browser.get("/v1/dashboard").status_code == 200
            rev = browser.get("/v1/revision").json()["revision"]
            r = browser.post("/v1/block", json={"prefixes": ["198.18.99.0/24"]})
            assert r.status_code == 401, r.text
            assert browser.get("/v1/revision").json()["revision"] == rev
            assert browser.get("/v1/rules", params={"prefix": "198.18.99.0/24"}).json()["rules"] == []
            # a wrong bearer header is not rescued by the cookie
            assert browser.get("/v1/rules", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with server.client(token=None) as forged:
        forged.cookies.set("xdpctl_read", "0" * 64)
        assert forged.get("/v1/dashboard").status_code == 401 and forged.get("/ui").status_code == 401


def test_docs_load_only_local_assets(server: Running) -> None:
    with server.client(token=None) as anon:
        page = anon.get("/docs")
        assert page.status_code == 200
        refs = re.findall(r'(?:src|href|url)\s*[=:]\s*["\']([^"\']+)["\']', page.text)
        assert len(refs) == 4, refs  # css, favicon, bundle, the OpenAPI document
        for ref in refs:
            assert not urlsplit(ref).netloc and ref.startswith("/"), ref
            r = anon.get(ref)
            assert r.status_code == 200 and len(r.content) > 100, (ref, r.status_code)
        assert anon.get("/redoc").status_code == 404


def test_dashboard_is_the_reads_it_gathers(server: Running) -> None:
    with server.client() as c:
        add_vip_and_list(c, VIP, ("192.0.2.91", "192.0.2.92"), "ui-pages", "198.18.50.0/24\n198.18.51.0/24\n")
        d = c.get("/v1/dashboard").json()
        assert d["fleet"] is False and d["policy"] == c.get("/v1/policy").json()["policy"]
        assert d["revision"] == c.get("/v1/revision").json()["revision"]
        assert d["status"] == c.get("/v1/status").json()
        assert d["lists"] == c.get("/v1/lists").json()["lists"]
        assert {"vips": d["vips"], "backends": d["backends"]} == {
            "vips": c.get("/v1/lb/vips").json()["vips"], "backends": c.get("/v1/lb/backends").json()["backends"]}
        assert d["lb_stats"] == c.get("/v1/lb/stats").json()
        assert d["stats"]["hooks"] == c.get("/v1/stats").json()["hooks"] and d["stats"]["time"] == d["time"]
        assert d["rules"] == len(c.get("/v1/rules").json()["rules"])
        slots = {b["address"]: b["slots"] for b in d["backends"] if b["vip"] == VIP}
        assert sum(slots.values()) == TABLE_SIZE and slots["192.0.2.92"] > 2 * slots["192.0.2.91"] > 0, slots
        assert "/v1/dashboard" in c.get("/openapi.json").json()["paths"]
