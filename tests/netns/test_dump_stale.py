"""A sampling flag whose listener died: a `xdpctl dump` killed outright
leaves its pid in the hook's xc_smp_cfg. `xdpctl status` (and GET
/v1/status, the same view) lists it as stale with what it costs; `xdpctl
dump --clear` clears exactly the stale flags and leaves a live listener's."""

from __future__ import annotations

import json
import select
import signal
import time

import pytest

from helpers_droplist import dl_env  # noqa: F401  (fixture)
from xdpctl import abi
from xdpctl.core.dump import CFG, STALE_NOTE
from xdpctl.kernel import maps

ZERO = abi.U32.pack(0)


def _listening(p) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        if select.select([p.stderr], [], [], 0.5)[0] and p.stderr.readline().startswith("listening on "):
            return
    p.kill()
    pytest.fail("dump did not start listening")


def test_status_shows_a_dead_listeners_flag_and_dump_clear_clears_it(dl_env):
    env = dl_env()
    b = env.lab.b
    ref = env.attach(b, "xdp", "generic")
    tc = env.attach(b, "tc-ingress")
    p = env.popen("dump", b.ifname, "--netns", b.netns, "--rate", "3", "--cap", "7")
    try:
        _listening(p)
        pid = p.pid
        p.send_signal(signal.SIGKILL)  # no way to clear its flags
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    stale = {"netns": b.netns, "ifname": b.ifname, "pid": pid, "listener_alive": False, "rate": 3, "cap": 7,
             "note": STALE_NOTE}
    status = json.loads(env.cli("status", "--json").stdout)
    assert sorted(status["sampling"], key=lambda f: f["hook"]) == [
        {**stale, "hook": "tc-ingress"}, {**stale, "hook": "xdp"}]
    text = env.cli("status").stdout
    assert f"is set for pid {pid}, which is gone" in text and "`xdpctl dump --clear`" in text
    # a live listener's flag (pid 1 never exits) on the TC hook stays
    with maps.Map.from_pin(tc.pin(env.ctx, CFG)) as cfg:
        cfg.update(ZERO, abi.SAMPLE_CFG.pack(1, 1, 10, 1 << 3, int(abi.HookKind.TC_INGRESS)))
        got = json.loads(env.cli("dump", b.ifname, "--netns", b.netns, "--clear", "--json").stdout)
        assert got == {"cleared": [{**stale, "hook": "xdp"}]}
        with maps.Map.from_pin(ref.pin(env.ctx, CFG)) as xcfg:
            assert xcfg.lookup(ZERO) == bytes(abi.SAMPLE_CFG.size)
        assert abi.SAMPLE_CFG.unpack(cfg.lookup(ZERO))[0] == 1
        (live,) = json.loads(env.cli("status", "--json").stdout)["sampling"]
        assert (live["hook"], live["pid"], live["listener_alive"]) == ("tc-ingress", 1, True)
        cfg.update(ZERO, bytes(abi.SAMPLE_CFG.size))
    assert json.loads(env.cli("status", "--json").stdout)["sampling"] == []
