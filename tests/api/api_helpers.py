"""Helpers of the API tests: a uvicorn server in a thread, kernel probes.

Kept out of conftest.py so that test modules can import them by name.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import uvicorn

from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe
from xdpctl import abi
from xdpctl.config import Settings
from xdpctl.core.context import Context
from xdpctl.core.rules.tables import read_pinned_config
from xdpctl.kernel import maps

TOKEN = "test-token-" + os.urandom(8).hex()

# Small maps: quick to create and to read back.
SMALL = {
    "xc_v4_l24": 1 << 12, "xc_v4_l32": 1 << 12, "xc_v6_l128": 1 << 10, "xc_v6_l64": 1 << 10,
    "xc_v6_l48": 1 << 10, "xc_v6_l32": 1 << 10, "xc_v6_trie": 1 << 10, "xc_port_trie": 1 << 10,
    "xc_rule_stats": 1 << 14,
}
START_TIMEOUT = 20.0


@dataclass
class Running:
    url: str
    settings: Settings
    token: str
    app: object

    def client(self, token: str | None = "default", headers: dict[str, str] | None = None) -> httpx.Client:
        """A client sending ``token`` (default: the server's; None: none)."""
        hdrs = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok is not None:
            hdrs["Authorization"] = f"Bearer {tok}"
        return httpx.Client(base_url=self.url, headers=hdrs, timeout=30.0)


class ServerThread:
    """uvicorn.Server in a daemon thread on a socket bound before start."""

    def __init__(self, app) -> None:
        # proto given explicitly: asyncio sets TCP_NODELAY on accepted
        # connections only when the listening socket says IPPROTO_TCP
        # (without it every answer waits for a delayed ACK).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="uvicorn", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the API server stopped during start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start in {START_TIMEOUT:g}s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT)
        self.sock.close()


# ---------------------------------------------------------------------------
# Asking the kernel behind the API's back
# ---------------------------------------------------------------------------
def kernel_match(settings: Settings, addr: str) -> abi.RuleVal | None:
    """The rule the drop list matches for a source address, as the kernel
    decides it: a packet from ``addr`` run through the drop-list program
    over the service's pinned maps (BPF_PROG_TEST_RUN, see
    tests.support.progs.DropListProbe). None: no rule matches. The rule's
    fields (action, prefix length, deadline) come from the map entry that
    carries the rule id the kernel counted a hit for."""
    with DropListProbe(settings) as probe:
        retval, reason, rid = probe.source_match(addr)
    if reason == abi.DlReason.PASS_NOMATCH:
        assert rid is None and retval == XDP_PASS, (addr, retval, rid)
        return None
    assert reason in (abi.DlReason.PASS_ALLOW, abi.DlReason.DROP_SRC) and rid is not None, (addr, reason, rid)
    assert retval == (XDP_DROP if reason == abi.DlReason.DROP_SRC else XDP_PASS), (addr, reason, retval)
    rv = _entry_of(settings, addr, rid)
    assert rv.action == (abi.Action.ALLOW if reason == abi.DlReason.PASS_ALLOW else abi.Action.DENY), rv
    return rv


def _entry_of(settings: Settings, addr: str, rid: int) -> abi.RuleVal:
    """The value (or fallback half) holding rule ``rid`` among the map
    entries a source lookup of ``addr`` can reach in the active rule set
    (the other one may be stale: a catch-up the service has deferred)."""
    with Context(settings) as ctx:
        active = read_pinned_config(ctx).active
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    a = int(ip)
    if ip.version == 4:
        where = [("xc_v4_l32", abi.pack_key4(0, a)), ("xc_v4_l24", abi.pack_key4(0, a & 0xFFFFFF00)),
                 ("xc_v4_l16", abi.U32.pack(a >> 16))]
    else:
        where = [(f"xc_v6_l{n}", abi.pack_key6(0, a >> (128 - n) << (128 - n))) for n in (128, 64, 48, 32)]
    values = []
    for name, key in where:
        with maps.Map.from_pin(os.path.join(settings.shared_map_dir, abi.set_map(name, active))) as m:
            values.append(m.lookup(key))
    if ip.version == 6:
        with maps.Map.from_pin(os.path.join(settings.shared_map_dir, abi.set_map("xc_v6_trie", active))) as m:
            values += [v for _k, v in m.items()]
    for raw in filter(None, values):
        v = abi.unpack_rule_val(raw)
        if v.rule_id == rid:
            return abi.RuleVal(v.rule_id, v.action, v.plen, 0, v.expires_ns)
        if v.fb_rule_id == rid:
            return abi.RuleVal(v.fb_rule_id, v.fb_action, v.fb_plen, 0, v.fb_expires_ns)
    raise AssertionError(f"rule {rid} matched {addr} but no map entry for {addr} holds it")
