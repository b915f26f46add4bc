"""The service as a process: health when the kernel side is broken,
concurrent clients, a CLI writing beside it, and the serve() entry point."""

from __future__ import annotations

import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
from api_helpers import Running, kernel_match

from xdpctl import abi
from xdpctl.core import prefixes as px
from xdpctl.core.context import Context
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import bpffs
from tests.support import serve
from tests.support.progs import temp_settings

def test_health_degraded_until_restore(start_server) -> None:
    srv = start_server(expire_interval=0)
    with srv.client() as c:
        assert c.get("/healthz").status_code == 200
        bpffs.remove_tree(srv.settings.shared_map_dir)  # someone emptied the pins
        r = c.get("/healthz")
        assert r.status_code == 503, r.text
        h = r.json()
        assert h["status"] == "degraded" and h["kernel"]["ok"] is False and h["kernel"]["shared_maps"] is False
        assert "POST /v1/restore" in h["kernel"]["detail"] and h["db"]["ok"] is True
        r = c.post("/v1/restore")
        assert r.status_code == 200 and r.json()["errors"] == [], r.text
        r = c.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text


def test_concurrent_clients_get_distinct_revisions(client: httpx.Client) -> None:
    rev0 = client.get("/v1/revision").json()["revision"]
    n = 8

    def block(i: int) -> httpx.Response:
        return client.post("/v1/block", json={"prefixes": [f"100.90.{i}.0/24"]})

    def read(i: int) -> httpx.Response:
        return client.get("/metrics" if i % 2 else "/v1/rules")

    with ThreadPoolExecutor(max_workers=2 * n) as pool:
        writes = list(pool.map(block, range(n)))
        reads = list(pool.map(read, range(n)))
    assert [r.status_code for r in writes] == [201] * n, [r.text for r in writes if r.status_code != 201]
    assert all(r.status_code == 200 for r in reads)
    assert sorted(r.json()["revision"] for r in writes) == list(range(rev0 + 1, rev0 + n + 1))
    ids = [r.json()["added"][0]["id"] for r in writes]
    r = client.post("/v1/rules/delete", json={"ids": ids})
    assert r.status_code == 200 and len(r.json()["removed"]) == n, r.text


def test_a_cli_writer_beside_the_service(client: httpx.Client, server: Running) -> None:
    """Changes made through another core context (as the CLI makes them)
    are seen at once, and the service's own changes build on them."""
    with Context(server.settings) as cli:
        res = DropList(cli).import_list("side", [px.parse_prefix("100.92.0.0/16")], source="cli")
    assert client.get("/v1/revision").json()["revision"] == res.revision
    assert "side" in {x["name"] for x in client.get("/v1/lists").json()["lists"]}

    r = client.post("/v1/allow", json={"prefixes": ["100.92.5.0/24"]})
    assert r.status_code == 201, r.text
    rid = r.json()["added"][0]["id"]
    assert kernel_match(server.settings, "100.92.5.1").action == abi.Action.ALLOW
    assert client.delete(f"/v1/rules/{rid}").status_code == 200
    # the list member covers the hole again: the service knew of the list
    hit = kernel_match(server.settings, "100.92.5.1")
    assert hit is not None and hit.action == abi.Action.DENY and hit.plen == 16

    with Context(server.settings) as cli:
        DropList(cli).add([spec("100.93.0.0/16")], source="cli")
    (rule,) = client.get("/v1/rules", params={"prefix": "100.93.0.0/16"}).json()["rules"]
    assert rule["source"] == "cli"
    assert client.delete(f"/v1/rules/{rule['id']}").status_code == 200
    assert client.delete("/v1/lists/side").status_code == 200


def test_serve_entry_point(tmp_path) -> None:
    """`python -m xdpctl.api.app` (serve()) with default map sizes: starts on
    loopback, takes the token from the environment, stops on SIGTERM."""
    settings = temp_settings(str(tmp_path / "state"), f"api-{os.getpid()}-serve")
    port = serve.free_port()
    proc = serve.start(settings, port, "serve-token", output=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        r = serve.wait_up(proc, url)
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        assert httpx.post(url + "/v1/expire").status_code == 401
        r = httpx.post(url + "/v1/expire", headers={"Authorization": "Bearer serve-token"})
        assert r.status_code == 200, r.text
        assert not os.path.exists(os.path.join(settings.state_dir, "api-token"))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        # uvicorn shuts down cleanly, then re-raises the signal it caught
        assert proc.returncode in (0, -signal.SIGTERM), out
        assert "Application shutdown complete" in out and "Traceback" not in out and "Warning" not in out, out
        assert "token from the service's $XDPCTL_API_TOKEN" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        bpffs.remove_tree(settings.pin_dir)
