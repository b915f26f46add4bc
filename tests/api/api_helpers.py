"""Helpers of the API tests: a uvicorn server in a thread, kernel reads.

Kept out of conftest.py so that test modules can import them by name.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import uvicorn

from xdpctl import abi
from xdpctl.config import Settings
from xdpctl.core import dlcompile as dlc
from xdpctl.core import prefixes as px
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
# Reading the kernel behind the API's back
# ---------------------------------------------------------------------------
class _Lookups:
    """A pinned hash or array map seen as {key: value}, read key by key."""

    def __init__(self, m: maps.Map) -> None:
        self.m = m

    def get(self, key: bytes) -> bytes | None:
        return self.m.lookup(key)


def kernel_match(settings: Settings, addr: str, dst: bool = False) -> abi.RuleVal | None:
    """The rule the drop-list program would match for a source (or
    destination) address: the compiler's model of the C lookup, run over
    the pinned maps (tries read whole, other maps key by key)."""
    fam, value = px.parse_address(addr)
    opened = [maps.Map.from_pin(os.path.join(settings.shared_map_dir, name)) for name in abi.RULE_MAPS]
    try:
        tables = {}
        for name, m in zip(abi.RULE_MAPS, opened):
            tables[name] = dict(m.items()) if m.type == abi.MapType.LPM_TRIE else _Lookups(m)
        return dlc.kernel_lookup(tables, fam, 1 if dst else 0, value)
    finally:
        for m in opened:
            m.close()
