"""REST of a VIP's flow hash: the ``hash`` field of POST and PATCH
/v1/lb/vips, shown by GET and by `xdpctl lb vip list --json`; a bad value
is refused naming the field and changes nothing."""

from __future__ import annotations

import httpx

from api_helpers import Running
from test_lb_rest import check_error, cli_json

VIP = "192.0.2.210"


def test_hash_field_set_shown_and_checked(client: httpx.Client, server: Running) -> None:
    r = client.post("/v1/lb/vips", json={"address": VIP, "proto": "udp", "port": 0, "table_size": 1009,
                                         "hash": "l3"})
    assert r.status_code == 201, r.text
    assert r.json()["vip"]["hash"] == "l3"
    (got,) = [x for x in client.get("/v1/lb/vips").json()["vips"] if x["address"] == VIP]
    assert got["hash"] == "l3"
    before = client.get("/v1/lb/vips").json()
    check_error(client.patch(f"/v1/lb/vips/{VIP}", json={"proto": "udp", "port": 0, "hash": "l5"}), 422,
                "validation_error", "hash")
    assert client.get("/v1/lb/vips").json() == before
    r = client.patch(f"/v1/lb/vips/{VIP}", json={"proto": "udp", "port": 0, "hash": "l4"})
    assert r.status_code == 200 and r.json()["vip"]["hash"] == "l4"
    assert cli_json(server, "lb", "vip", "list") == client.get("/v1/lb/vips").json()
    assert client.request("DELETE", f"/v1/lb/vips/{VIP}", params={"proto": "udp", "port": 0}).status_code == 200
