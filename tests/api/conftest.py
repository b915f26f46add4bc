"""A real xdpctl API server for the tests: uvicorn on 127.0.0.1 in a thread.

The server runs over the real kernel with its own pin directory and state
directory (tests.support.progs.temp_settings), both removed afterwards.
One server serves the whole session (starting one costs a restore); tests
use prefixes of their own so that they do not see each other's rules.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# The traffic helpers of the namespace tests (frames, captures).
sys.path.insert(0, str(HERE.parent / "netns"))

from api_helpers import SMALL, TOKEN, Running, ServerThread  # noqa: E402

from xdpctl.api.app import create_app  # noqa: E402
from xdpctl.config import Settings  # noqa: E402
from xdpctl.kernel import bpffs  # noqa: E402
from xdpctl.lab import TwoHostLab  # noqa: E402
from tests.support.progs import temp_settings  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session")
def start_server(tmp_path_factory) -> Iterator[Callable[..., Running]]:
    """Factory: start a server with create_app options; all are stopped and
    their pin directories removed at the end of the session."""
    started: list[tuple[ServerThread, Settings]] = []

    def start(read_token: str | None = None, **options) -> Running:
        state = tmp_path_factory.mktemp("api-state")
        settings = temp_settings(str(state), f"api-{os.getpid()}-{len(started)}", **SMALL)
        settings.api_read_token = read_token
        options.setdefault("expire_interval", 0.2)
        app = create_app(settings, TOKEN, **options)
        srv = ServerThread(app)
        started.append((srv, settings))
        srv.start()
        return Running(f"http://127.0.0.1:{srv.port}", settings, TOKEN, app)

    yield start
    for srv, settings in started:
        try:
            srv.stop()
        finally:
            bpffs.remove_tree(settings.pin_dir)


@pytest.fixture(scope="session")
def server(start_server) -> Running:
    return start_server(list_hit_metrics=True)


@pytest.fixture(scope="session")
def client(server: Running) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="session")
def anon(server: Running) -> Iterator[httpx.Client]:
    with server.client(token=None) as c:
        yield c


@pytest.fixture
def lab() -> Iterator[TwoHostLab]:
    """Two hosts a and b, IPv4 only: nothing but our frames on the wire."""
    two = TwoHostLab(ipv6=False)
    try:
        yield two
    finally:
        two.close()
