"""The service at scale, as a process of its own (`python -m xdpctl.api.app`,
default map sizes): JSON list bodies past the 10,000-item cap of other
bodies, the state database's log checkpointed by the service's thread and
not by requests, and a kill -9 that loses no answered change."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import Running, kernel_match
from test_rest import assert_error, revision

from xdpctl.kernel import bpffs
from tests.support.progs import temp_settings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "scale-token-" + os.urandom(6).hex()


class Proc:
    """`python -m xdpctl.api.app` on a free port over the given settings."""

    def __init__(self, settings) -> None:
        self.settings = settings
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "XDPCTL_API_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xdpctl.api.app", "--port", str(self.port), "--pin-dir", self.settings.pin_dir,
             "--state-dir", self.settings.state_dir, "--expire-interval", "0"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"the service exited with {self.proc.returncode}"
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


@pytest.fixture(scope="module")
def svc(tmp_path_factory) -> Iterator[Proc]:
    settings = temp_settings(str(tmp_path_factory.mktemp("scale-state")), f"api-scale-{os.getpid()}")
    p = Proc(settings)
    try:
        p.start()
        yield p
    finally:
        p.kill9()
        bpffs.remove_tree(settings.pin_dir)


def _members(n: int) -> list[str]:
    """n - 1 IPv4 hosts and one IPv6 prefix."""
    return [f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(n - 1)] + ["2001:db8:5ca1:e::/64"]


def test_a_json_list_past_the_item_cap(svc: Proc) -> None:
    members = _members(20_001)
    with svc.client() as c:
        body = json.dumps({"prefixes": members, "comment": "json at scale"}).encode()
        pad = svc.settings.api_max_json_body  # past the limit of other JSON bodies: whitespace
        r = c.put("/v1/lists/scale", content=body + b" " * pad, headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["list"]["count"] == 20_001 and out["list"]["comment"] == "json at scale"
        base = out["list"]["id_base"]
        assert c.get("/v1/lists/scale", params={"limit": 1, "stats": "false"}).json()["list"]["count"] == 20_001
        big = c.post("/v1/block", content=body + b" " * pad, headers={"Content-Type": "application/json"})
        assert_error(big, 413, "too_large", "PUT /v1/lists/{name}", "application/json", "text/plain")
        over = c.post("/v1/block", json={"prefixes": members[:10_001]})
        assert_error(over, 422, "validation_error", "10000", "PUT /v1/lists/{name}", "application/json")
    assert kernel_match(svc.settings, "100.64.0.0").rule_id == base
    assert kernel_match(svc.settings, "100.64.78.31").rule_id == base + 19_999
    assert kernel_match(svc.settings, "2001:db8:5ca1:e::9").rule_id == base + 20_000
    assert kernel_match(svc.settings, "100.64.78.32") is None  # past the last member


@pytest.mark.parametrize("items, index, words", [
    (["100.70.0.1", 5], 1, ["prefixes[1]", "5 is not a string"]),
    (["100.70.0.1", None], 1, ["prefixes[1]", "not a string"]),
    (["100.70.0.1", "100.70.0.2", "100.70.0.3\n100.70.0.4"], 2, ["prefixes[2]", "line breaks"]),
    (["100.70.0.1", "100.70.0.2 # x"], 1, ["prefixes[1]", "comments"]),
    (["100.70.0.1", "100.70.0.2 ; x"], 1, ["prefixes[1]", "comments"]),
    (["100.70.0.1", ""], 1, ["prefixes[1]", "empty"]),
    (["100.70.0.1", "100.70.0.2", "\ud800"], 2, ["prefixes[2]", "Unicode"]),
    (["100.70.0.1", "100.70.0.300"], 1, ["prefixes[1]", "100.70.0.300"]),
    (["100.70.0.1", "100.70.0.1/32"], 1, ["prefixes[1]", "duplicates prefixes[0]"]),
])
def test_a_bad_json_item_is_named_and_changes_nothing(svc: Proc, items, index, words) -> None:
    with svc.client() as c:
        rev = revision(c)
        r = c.put("/v1/lists/scale-bad", content=json.dumps({"prefixes": items}).encode(),  # \u escapes
                  headers={"Content-Type": "application/json"})
        body = assert_error(r, 422, "validation_error", *words, "nothing was imported")
        assert body["index"] == index and body["field"] == "prefixes", body
        assert revision(c) == rev
        assert c.get("/v1/lists/scale-bad").status_code == 404


@pytest.mark.parametrize("doc, words", [
    ({"prefixes": ["100.70.0.1"], "colour": "red"}, ["colour", "unknown field"]),
    ({"prefixes": "100.70.0.1"}, ["prefixes", "list"]),
    ({"prefixes": ["100.70.0.1"], "dst": "sideways"}, ["dst"]),
    ({"comment": "no members"}, ["prefixes", "required"]),
    (["100.70.0.1"], ["body", "object"]),
])
def test_a_bad_json_list_body_names_the_field(svc: Proc, doc, words) -> None:
    with svc.client() as c:
        rev = revision(c)
        assert_error(c.put("/v1/lists/scale-bad", json=doc), 422, "validation_error", *words)
        assert revision(c) == rev


def _metric(c: httpx.Client, name: str) -> float:
    text = c.get("/metrics").text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def _wait(cond, what: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < end, f"not within {deadline_s:g}s: {what}"
        time.sleep(0.1)


def test_the_log_is_checkpointed_beside_requests(server: Running) -> None:
    """The service's connections never checkpoint in a commit (no request
    pays one); the thread does."""
    svc = server.app.state.xdpctl
    assert svc.ctx.state.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert svc.read_context().state.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert svc.checkpointer.is_alive()


def test_background_checkpoints_and_kill9_loses_no_answered_change(svc: Proc) -> None:
    wal = svc.settings.db_path + "-wal"
    hosts = [f"100.90.{i // 250}.{i % 250 + 1}" for i in range(100)]
    with svc.client() as c:
        passive = _metric(c, 'xdpctl_state_checkpoints_total{mode="passive"}')
        truncate = _metric(c, 'xdpctl_state_checkpoints_total{mode="truncate"}')
        for h in hosts[:60]:
            assert c.post("/v1/block", json={"prefixes": [h]}).status_code == 201
        # the thread copies the log within its delay, and empties it once idle
        _wait(lambda: _metric(c, 'xdpctl_state_checkpoints_total{mode="passive"}') > passive, "a passive checkpoint")
        _wait(lambda: _metric(c, 'xdpctl_state_checkpoints_total{mode="truncate"}') > truncate
              and os.path.getsize(wal) == 0, "the log emptied")
        assert _metric(c, "xdpctl_state_checkpoint_pages_total") > 0
        for h in hosts[60:]:
            r = c.post("/v1/block", json={"prefixes": [h]})
            assert r.status_code == 201
        last = r.json()["revision"]
    svc.kill9()  # at once: the last changes are in the log only
    svc.start()
    with svc.client() as c:
        assert revision(c) == last
        present = {r["prefix"] for r in c.get("/v1/rules", params={"limit": 10_000, "stats": "false"}).json()["rules"]}
        assert {h + "/32" for h in hosts} <= present
    assert kernel_match(svc.settings, hosts[-1]).rule_id is not None
