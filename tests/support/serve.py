"""`xdpctl serve` as a process of its own, for the tests that start,
signal or kill one (python -m xdpctl.api.app, as the serve() entry point)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from xdpctl.config import Settings

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(settings: Settings, port: int, token: str, output: int = subprocess.DEVNULL) -> subprocess.Popen:
    """The service on 127.0.0.1:port over the settings' pin and state
    directories, its token from the environment, the expiry task off."""
    return subprocess.Popen(
        [sys.executable, "-m", "xdpctl.api.app", "--port", str(port), "--pin-dir", settings.pin_dir,
         "--state-dir", settings.state_dir, "--expire-interval", "0"],
        cwd=REPO, env={**os.environ, "XDPCTL_API_TOKEN": token}, stdout=output,
        stderr=subprocess.STDOUT if output == subprocess.PIPE else output, text=True)


def wait_up(proc: subprocess.Popen, url: str, deadline_s: float = 60) -> httpx.Response:
    """The first answer of /healthz (the wait is bounded; it asserts only
    that the service starts)."""
    deadline = time.monotonic() + deadline_s
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "the service exited"
        try:
            return httpx.get(url + "/healthz", timeout=5)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
