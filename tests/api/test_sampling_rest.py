"""DELETE /v1/sampling (`xdpctl dump --clear`): a change, so it needs the
write token; an interface without the sample stage is not_found naming
ifname. Clearing on real hooks: tests/netns/test_dump_stale.py."""

from __future__ import annotations

import httpx

from test_lb_rest import check_error


def test_clear_sampling_needs_the_token_and_names_the_interface(client: httpx.Client, anon: httpx.Client) -> None:
    assert anon.request("DELETE", "/v1/sampling").status_code == 401
    check_error(client.request("DELETE", "/v1/sampling", params={"ifname": "xc-no-such0"}), 404, "not_found",
                "ifname")
    assert "sampling" in client.get("/v1/status").json()
