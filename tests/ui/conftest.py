"""Fixtures of the page tests: a real API server, a namespace lab, and
Debian's chromium driven headless through chromedriver (selenium).

A missing chromium or chromedriver fails the test (make deps installs both).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "api"))    # api_helpers: the server thread
sys.path.insert(0, str(HERE.parent / "netns"))  # traffic: frames, sending

from api_helpers import SMALL, TOKEN, Running, ServerThread  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

from tests.support.progs import temp_settings  # noqa: E402
from xdpctl.api.app import create_app  # noqa: E402
from xdpctl.kernel import bpffs  # noqa: E402
from xdpctl.lab import TwoHostLab  # noqa: E402

READ_TOKEN = "read-token-" + os.urandom(8).hex()
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--window-size=1400,1300", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Running]:
    """A server whose reads need a token; READ_TOKEN may only read."""
    state = tmp_path_factory.mktemp("ui-state")
    settings = temp_settings(str(state), f"ui-{os.getpid()}-{os.urandom(3).hex()}", **SMALL)
    settings.api_read_token = READ_TOKEN
    app = create_app(settings, TOKEN, expire_interval=0)
    srv = ServerThread(app)
    try:
        srv.start()
        yield Running(f"http://127.0.0.1:{srv.port}", settings, TOKEN, app)
    finally:
        srv.stop()
        bpffs.remove_tree(settings.pin_dir)


@pytest.fixture
def lab() -> Iterator[TwoHostLab]:
    with TwoHostLab(ipv6=False) as two:  # removed even when the test fails
        yield two


TABLE_SIZE = 101


def add_vip_and_list(c: httpx.Client, vip: str, backends: tuple[str, str], name: str, prefixes: str) -> None:
    """A UDP/53 VIP with two backends of weight 1 and 3, and a list."""
    r = c.post("/v1/lb/vips", json={"address": vip, "proto": "udp", "port": 53, "table_size": TABLE_SIZE})
    assert r.status_code == 201, r.text
    for i, (addr, weight) in enumerate(zip(backends, (1, 3))):
        r = c.post("/v1/lb/backends", json={"address": addr, "vip": vip, "proto": "udp", "port": 53,
                                            "weight": weight, "mac": f"02:00:00:00:0b:{i:02x}"})
        assert r.status_code == 201, r.text
    r = c.put(f"/v1/lists/{name}", content=prefixes, headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless chromium keeping the console and the network log."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "the page tests need chromium and chromedriver (Debian: chromium chromium-driver)"
    opts = Options()
    opts.binary_location = chromium
    for arg in (*CHROME_ARGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
