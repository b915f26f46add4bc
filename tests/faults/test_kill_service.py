"""kill -9 of a real `xdpctl serve` right after it answered a whole-image
change, while it writes the other rule set (the catch-up the service runs
after answering; seen in xc_cfg: the other set marked stale). Before any
repair: the kernel enforces the answered revision, exactly the compile of
what the database holds, and health reports the stale set. A new service's
start (its restore) brings both sets to that compile."""

from __future__ import annotations

import os
import signal

import httpx

from tests.support import emulation as emu
from tests.support import serve
from tests.support.progs import XDP_DROP, XDP_PASS, DropListProbe, host_table_problems, kernel_rule_set, temp_settings
from xdpctl import abi
from xdpctl.core.context import Context
from xdpctl.core.rules import ruleset
from xdpctl.core.rules.tables import DEFERRED, kernel_health, read_pinned_config
from xdpctl.kernel import bpffs

TOKEN = "kill-service-token"
HOSTS = 500_000  # a catch-up of this many entries takes far longer than reading xc_cfg and a kill


def _host(i: int) -> str:
    return f"10.{64 + i // 65536}.{i // 256 % 256}.{i % 256}"


def test_kill_during_the_catch_up_after_an_answered_change(tmp_path) -> None:
    settings = temp_settings(str(tmp_path / "state"), f"killsvc-{os.getpid()}")
    port = serve.free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    proc = serve.start(settings, port, TOKEN)
    try:
        assert serve.wait_up(proc, url).status_code == 200
        body = "\n".join(_host(i) for i in range(HOSTS))
        r = httpx.put(url + "/v1/lists/feed", content=body, headers={**auth, "Content-Type": "text/plain"},
                      timeout=300)
        assert r.status_code == 201, r.text
        rev = r.json()["revision"]
        with Context(settings) as ctx:
            cfg = read_pinned_config(ctx)
            assert (cfg.generation, cfg.synced) == (rev, DEFERRED), "the catch-up was not under way"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            cfg = read_pinned_config(ctx)
            assert (cfg.generation, cfg.synced) == (rev, DEFERRED)  # killed before the catch-up finished
            assert ctx.state.revision == rev
            want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
            assert kernel_rule_set(ctx, cfg.active) == want
            assert kernel_rule_set(ctx, 1 - cfg.active) != want
            assert host_table_problems(ctx) == {}  # a table still trusted (none, or one rebuilt) mirrors its band
            with DropListProbe(settings, host_table=True) as probe:
                assert probe.source_match(_host(HOSTS - 1))[:2] == (XDP_DROP, abi.DlReason.DROP_SRC)
                assert probe.source_match(_host(HOSTS))[:2] == (XDP_PASS, abi.DlReason.PASS_NOMATCH)
            h = kernel_health(ctx, rev)
            assert h.in_sync is False and not h.ok and "restore" in h.detail
            assert h.host_table is False  # rebuilt by the catch-up the kill stopped; the band answers

        proc = serve.start(settings, port, TOKEN)  # its start restores
        r = serve.wait_up(proc, url)
        assert r.status_code == 200 and r.json()["kernel"]["in_sync"] is True, r.text
        assert r.json()["kernel"]["host_table"] is True, r.text
        with Context(settings) as ctx:
            cfg = read_pinned_config(ctx)
            assert cfg.generation == cfg.synced == ctx.state.revision
            want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
            assert kernel_rule_set(ctx, 0) == want and kernel_rule_set(ctx, 1) == want
            assert cfg.flags & abi.CfgFlag.HAVE_OA4 and host_table_problems(ctx) == {}
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        bpffs.remove_tree(settings.pin_dir)
