"""REST of the load balancer (/v1/lb/...) on a real uvicorn server: changes
with revisions (If-Match, 412) and tokens, errors naming fields, and
`xdpctl lb ... --json` printing the same document as the matching GET."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from api_helpers import Running
from xdpctl import abi
from xdpctl.cli import app as cli_app
from xdpctl.core.context import Context
from xdpctl.core.lb import maglev, tables
from xdpctl.core.lb.kernel import LbKernel

VIP = "192.0.2.200"
VIP6 = "2001:db8:200::1"


def cli_json(server: Running, *args: str) -> dict:
    res = CliRunner().invoke(cli_app, ["--pin-dir", server.settings.pin_dir, "--state-dir",
                                       server.settings.state_dir, *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def revision(client: httpx.Client) -> int:
    return client.get("/v1/revision").json()["revision"]


def check_error(r: httpx.Response, status: int, error: str, field: str | None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error and body["field"] == field, body
    return body


def test_vips_and_backends_lifecycle(client: httpx.Client, server: Running) -> None:
    rev0 = revision(client)
    r = client.post("/v1/lb/vips", json={"address": VIP, "proto": "tcp", "port": 443, "table_size": 1009})
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == f'"{rev0 + 1}"' and r.json()["vip"]["table_size"] == 1009
    for i, w in ((1, 1), (2, 3)):
        r = client.post("/v1/lb/backends", json={"address": f"10.20.0.{i}", "vip": VIP, "proto": "tcp",
                                                 "port": 443, "weight": w, "mac": f"02:00:00:00:02:0{i}"})
        assert r.status_code == 201, r.text
        assert r.json()["backend"]["state"] == "active"
    r = client.patch("/v1/lb/backends/10.20.0.1", json={"vip": VIP, "proto": "tcp", "port": 443,
                                                        "state": "draining"})
    assert r.status_code == 200 and r.json()["backend"]["state"] == "draining"
    assert r.json()["revision"] == rev0 + 4
    backends = {b["address"]: b for b in client.get("/v1/lb/backends").json()["backends"] if b["vip"] == VIP}
    assert backends["10.20.0.1"]["slots"] == 0 and backends["10.20.0.2"]["slots"] == 1009
    # the kernel holds the Python table of the VIP
    ids = [backends["10.20.0.2"]["id"]]
    with Context(server.settings) as c, LbKernel(c) as k:
        base, size, vip_id, _ = abi.LB_VIP.unpack(k["xc_lb_vips"].lookup(tables.vip_key(VIP, 6, 443))[:16])
        ring = [int.from_bytes(k["xc_lb_ring"].lookup(abi.U32.pack(i))[:4], "little")
                for i in range(base, base + size)]
    assert ring == [ids[i] for i in maglev.build([("10.20.0.2", 3)], 1009)]
    r = client.request("DELETE", "/v1/lb/backends/10.20.0.1", params={"vip": VIP, "proto": "tcp", "port": 443})
    assert r.status_code == 200 and r.json()["removed"] is True
    r = client.request("DELETE", f"/v1/lb/vips/{VIP}", params={"proto": "tcp", "port": 443})
    assert r.status_code == 200 and r.json()["revision"] == rev0 + 6
    kernel = client.get("/healthz").json()["kernel"]  # every change is the kernel's revision too
    assert kernel["in_sync"] is True and kernel["kernel_revision"] == rev0 + 6
    assert VIP not in [v["address"] for v in client.get("/v1/lb/vips").json()["vips"]]
    assert not [b for b in client.get("/v1/lb/backends").json()["backends"] if b["vip"] == VIP]


def test_cli_json_is_the_rest_body(client: httpx.Client, server: Running) -> None:
    assert client.post("/v1/lb/vips", json={"address": VIP6, "proto": "udp", "port": 53,
                                            "table_size": 211}).status_code == 201
    assert client.post("/v1/lb/backends", json={"address": "2001:db8:200::5", "vip": VIP6, "proto": "udp",
                                                 "port": 53, "mac": "02:00:00:00:02:05"}).status_code == 201
    for path, args in (("/v1/lb/vips", ("lb", "vip", "list")), ("/v1/lb/backends", ("lb", "backend", "list")),
                       ("/v1/lb/stats", ("lb", "stats"))):
        r = client.get(path)
        assert r.status_code == 200
        assert cli_json(server, *args) == r.json(), path
    out = cli_json(server, "lb", "backend", "set", "2001:db8:200::5", "--vip", VIP6, "--proto", "udp",
                   "--port", "53", "--weight", "4")
    assert out["backend"]["weight"] == 4 and out["revision"] == revision(client)
    r = client.request("DELETE", f"/v1/lb/vips/{VIP6}", params={"proto": "udp", "port": 53})
    assert r.status_code == 200


def test_revisions_and_tokens(client: httpx.Client, anon: httpx.Client) -> None:
    rev = revision(client)
    body = {"address": "192.0.2.201", "proto": "tcp", "port": 80}
    check_error(client.post("/v1/lb/vips", json=body, headers={"If-Match": f'"{rev + 5}"'}), 412,
                "revision_conflict", "revision")
    check_error(client.post("/v1/lb/vips", json={**body, "revision": rev + 5}), 412, "revision_conflict",
                "revision")
    assert anon.post("/v1/lb/vips", json=body).status_code == 401
    assert anon.get("/v1/lb/vips").status_code == 401
    assert revision(client) == rev
    r = client.post("/v1/lb/vips", json=body, headers={"If-Match": f'"{rev}"'})
    assert r.status_code == 201 and r.json()["revision"] == rev + 1
    assert client.request("DELETE", "/v1/lb/vips/192.0.2.201", params={"proto": "tcp", "port": 80},
                          headers={"If-Match": f'"{rev + 1}"'}).status_code == 200


def test_bad_input_is_refused_and_changes_nothing(client: httpx.Client) -> None:
    vip = "192.0.2.202"
    assert client.post("/v1/lb/vips", json={"address": vip, "proto": "tcp", "port": 80,
                                            "table_size": 11}).status_code == 201
    be = {"address": "10.21.0.1", "vip": vip, "proto": "tcp", "port": 80, "mac": "02:00:00:00:03:01"}
    assert client.post("/v1/lb/backends", json=be).status_code == 201
    before = (client.get("/v1/lb/vips").json(), client.get("/v1/lb/backends").json())
    check_error(client.post("/v1/lb/vips", json={"address": vip, "proto": "tcp", "port": 80}), 409, "conflict",
                "address")
    check_error(client.post("/v1/lb/vips", json={"address": "192.0.2.203", "proto": "tcp", "port": 80,
                                                 "table_size": 1000}), 422, "validation_error", "table_size")
    check_error(client.post("/v1/lb/backends", json={**be, "vip": "192.0.2.99"}), 404, "not_found", "vip")
    check_error(client.post("/v1/lb/backends", json={**be, "address": "2001:db8::7"}), 422, "validation_error",
                "address")
    # a second backend needs at least 20 slots
    check_error(client.post("/v1/lb/backends", json={**be, "address": "10.21.0.2"}), 422, "validation_error",
                "table_size")
    check_error(client.patch("/v1/lb/backends/10.21.0.1", json={"vip": vip, "proto": "tcp", "port": 80,
                                                                "weight": 0}), 422, "validation_error", "weight")
    check_error(client.request("DELETE", "/v1/lb/backends/10.21.0.9", params={"vip": vip, "proto": "tcp",
                                                                              "port": 80}),
                404, "not_found", "address")
    assert client.post("/v1/lb/vips", json={"address": vip, "proto": "tcp", "port": 80,
                                            "bogus": 1}).status_code == 422
    assert (client.get("/v1/lb/vips").json(), client.get("/v1/lb/backends").json()) == before
    assert client.request("DELETE", f"/v1/lb/vips/{vip}", params={"proto": "tcp", "port": 80}).status_code == 200
