"""Where a small change of the drop list runs (api.deps.change).

A change of a few rules runs on the service's event loop when it need not
wait; when another writer holds the pin directory, or the change needs a
whole-image write, it runs in the thread pool instead. Both paths are
checked against the kernel: the verdict of a packet through the drop-list
program over the service's pinned maps, and the revision the kernel holds.
"""

from __future__ import annotations

import threading

import pytest

from api_helpers import kernel_match
from tests.support import emulation as emu
from tests.support.progs import DropListProbe, kernel_rule_set
from xdpctl import abi
from xdpctl.api.deps import NOW_ITEMS
from xdpctl.core.context import Context, WouldBlock
from xdpctl.core.rules import validate
from xdpctl.core.rules import ruleset
from xdpctl.core.rules.service import BULK_THRESHOLD, DropList
from xdpctl.core.rules.tables import DEFERRED, read_pinned_config
from xdpctl.kernel import bpffs


def _held_by_another_thread(lock) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


def test_a_change_waiting_for_another_writer_leaves_the_event_loop_free(server, client):
    """A writer outside the service (here: this test, as a CLI run would)
    holds the pin directory: the POST waits for it in a worker thread while
    the service keeps answering, then lands in the kernel."""
    addr = "198.18.77.1"
    assert kernel_match(server.settings, addr) is None
    svc = server.app.state.xdpctl
    answer: dict = {}

    def post() -> None:
        with server.client() as c:
            answer["r"] = c.post("/v1/block", json={"prefixes": [addr]})

    try:
        with bpffs.DirLock(server.settings.pin_dir):
            rev = client.get("/v1/revision").json()["revision"]
            t = threading.Thread(target=post)
            t.start()
            # the change is in the thread pool once a worker holds the service's lock, waiting for ours
            while not _held_by_another_thread(svc.lock):
                assert t.is_alive(), answer
                threading.Event().wait(0.01)
            # the event loop still answers: a read, and the revision the change has not moved
            assert client.get("/v1/revision").json()["revision"] == rev
            assert client.get("/v1/rules", params={"prefix": f"{addr}/32"}).json()["rules"] == []
            assert t.is_alive() and "r" not in answer
            assert kernel_match(server.settings, addr) is None
    finally:
        t.join(60)  # the lock is released: the POST completes
    assert not t.is_alive()
    r = answer["r"]
    assert r.status_code == 201, r.text
    assert r.json()["revision"] == rev + 1
    rv = kernel_match(server.settings, addr)
    assert rv is not None and rv.action == abi.Action.DENY and rv.plen == 32


def test_a_small_change_runs_on_the_event_loop(server, client):
    """Nothing else writing: the change runs in the event loop's thread
    (no worker thread takes the service's lock) and lands in the kernel."""
    svc = server.app.state.xdpctl
    seen: list[str] = []
    real = svc.rule_set

    def spy(fn):
        seen.append(threading.current_thread().name)
        return real(fn)

    svc.rule_set = spy
    try:
        r = client.post("/v1/block", json={"prefixes": ["198.18.78.1", "198.18.78.2"]})
    finally:
        del svc.rule_set
    assert r.status_code == 201, r.text
    assert seen == []  # the thread pool's path (Service.rule_set) was not taken
    for addr in ("198.18.78.1", "198.18.78.2"):
        rv = kernel_match(server.settings, addr)
        assert rv is not None and rv.action == abi.Action.DENY
    with Context(server.settings) as ctx:
        assert read_pinned_config(ctx).generation == r.json()["revision"]


@pytest.fixture(scope="module")
def quiet(start_server):
    """A server without the expiry task: every expiry run takes the
    service's lock and runs a deferred catch-up first, as any change does,
    so it would end the wait the next test looks at."""
    srv = start_server(expire_interval=0)
    with srv.client() as c:
        yield srv, c


def test_a_whole_image_change_is_answered_live_and_the_next_change_waits_for_its_catch_up(quiet, monkeypatch):
    """A list of more than BULK_THRESHOLD members is a whole-image write:
    the PUT is answered once xc_cfg has flipped (the list is enforced), with
    the other set marked stale and its catch-up left to a thread (held back
    here). /healthz runs that catch-up before it reports, and so does the
    next change before it writes: each then finds both sets in sync."""
    server, client = quiet
    svc = server.app.state.xdpctl
    go = threading.Event()
    real = type(svc)._catch_up_later

    def held(self) -> None:
        go.wait(60)
        real(self)

    monkeypatch.setattr(type(svc), "_catch_up_later", held)
    hosts = [f"10.231.{i // 250}.{i % 250 + 1}" for i in range(BULK_THRESHOLD + 1)]
    try:
        for step in ("health", "change"):
            r = client.put("/v1/lists/deferred", content="\n".join(hosts if step == "health" else hosts[1:]),
                           headers={"Content-Type": "text/plain"})
            assert r.status_code in (200, 201), r.text
            rev = r.json()["revision"]
            with Context(server.settings) as ctx:
                cfg = read_pinned_config(ctx)
            assert cfg.generation == rev and cfg.synced == DEFERRED and svc.ctx.pending_catch_up is not None
            rv = kernel_match(server.settings, hosts[-1])
            assert rv is not None and rv.action == abi.Action.DENY and rv.plen == 32
            if step == "health":
                h = client.get("/healthz")
                assert h.status_code == 200 and h.json()["kernel"]["in_sync"] is True, h.text
            else:
                b = client.post("/v1/block", json={"prefixes": ["198.18.76.1"]})
                assert b.status_code == 201 and b.json()["revision"] == rev + 1, b.text
                assert kernel_match(server.settings, "198.18.76.1") is not None
                assert kernel_match(server.settings, hosts[0]) is None  # left the list with the second PUT
            assert svc.ctx.pending_catch_up is None
            with Context(server.settings) as ctx:
                cfg = read_pinned_config(ctx)
                assert cfg.synced == cfg.generation == client.get("/v1/revision").json()["revision"]
                want = emu.tables_to_state(ruleset.compile_stored(ctx.state))
                assert kernel_rule_set(ctx, 0) == want and kernel_rule_set(ctx, 1) == want
    finally:
        go.set()
        client.delete("/v1/lists/deferred")
        client.post("/v1/rules/delete", json={"rules": [{"prefix": "198.18.76.1/32"}]})


@pytest.mark.parametrize("items", [2, NOW_ITEMS + 1])
def test_a_bad_item_is_the_same_422_on_either_path(client, server, items):
    """The last prefix is bad: on the event loop (2 items) and in the
    thread pool (more than NOW_ITEMS) the answer names it, and nothing of
    the others reaches the kernel."""
    good = [f"198.18.{79 + items}.{i + 1}" for i in range(items - 1)]
    r = client.post("/v1/block", json={"prefixes": good + ["300.1.1.1"]})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == f"prefixes[{items - 1}]"
    assert r.json()["value"] == "300.1.1.1"
    for addr in good:
        assert kernel_match(server.settings, addr) is None


# ---------------------------------------------------------------------------
# The core's side: Context.no_wait
# ---------------------------------------------------------------------------
def _facts(ctx) -> tuple:
    st = ctx.state
    return st.revision, [(r.id, r.addr, r.plen) for r in st.rule_rows()], read_pinned_config(ctx)


def test_no_wait_refuses_a_held_lock_and_a_whole_image_write_before_changing_anything(ctx):
    dl = DropList(ctx)
    dl.add(validate.specs(["203.0.113.1"]))
    before = _facts(ctx)
    ctx.no_wait = True
    try:
        with bpffs.DirLock(ctx.settings.pin_dir):
            with pytest.raises(WouldBlock, match="another writer"):
                dl.add(validate.specs(["203.0.113.2"]))
        many = [f"10.{i // 250}.{i % 250}.1" for i in range(BULK_THRESHOLD + 1)]
        with pytest.raises(WouldBlock, match="whole-image"):
            dl.add(validate.specs(many))  # more than a delta: compile and sync the whole set
        assert _facts(ctx) == before
        with DropListProbe(ctx.settings) as p:
            assert p.source_match("203.0.113.2")[1] == abi.DlReason.PASS_NOMATCH
            assert p.source_match("10.0.1.1")[1] == abi.DlReason.PASS_NOMATCH
            assert p.source_match("203.0.113.1")[1] == abi.DlReason.DROP_SRC
        # a delta needs neither: it runs
        dl.add(validate.specs(["203.0.113.2"]))
    finally:
        ctx.no_wait = False
    assert ctx.state.revision == before[0] + 1
    with DropListProbe(ctx.settings) as p:
        assert p.source_match("203.0.113.2")[1] == abi.DlReason.DROP_SRC
    # the refused whole-image change, where it may wait
    dl.add(validate.specs(many))
    with DropListProbe(ctx.settings) as p:
        assert p.source_match("10.0.1.1")[1] == abi.DlReason.DROP_SRC
