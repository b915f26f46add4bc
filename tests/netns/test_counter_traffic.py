"""The protocol counter on real traffic between two namespaces.

Frames of every kind the parser distinguishes go from a to b with the
counter on b's XDP hook (generic and native), on b's TC ingress and on a's
TC egress; the counts read back through xdpctl.core.counters must be exact.
Then the counter and the root program are replaced again and again while
traffic flows, and not one packet may go uncounted or be lost.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

import traffic
from helpers_xdpctl import EXTRA_SLOTS, MIX_COUNTS, SENTINEL_SLOT, XEnv, assert_bare, expected_counts, extra_frames
from helpers_xdpctl import xenv  # noqa: F401  (fixture)
from xdpctl.core.context import Context
from xdpctl.core.hooks import HOOK_PROG, HookRef, kind
from xdpctl.core.hooks import program as hookprog
from xdpctl.core.hooks.service import on_hook
from xdpctl.kernel import maps, netlink
from xdpctl.lab import Endpoint, netns_socket
from tests.support.frames import udp4

# (hook, XDP mode, endpoint that carries the hook)
PLACEMENTS = [
    pytest.param("xdp", "generic", "b", id="xdp-generic-on-b"),
    pytest.param("xdp", "native", "b", id="xdp-native-on-b"),
    pytest.param("tc-ingress", None, "b", id="tc-ingress-on-b"),
    pytest.param("tc-egress", None, "a", id="tc-egress-on-a"),
]


@pytest.mark.parametrize(("hook", "mode", "where"), PLACEMENTS)
def test_protocol_mix_counted_exactly(xenv: XEnv, hook: str, mode: str | None, where: str, udp_receiver) -> None:
    a, b = xenv.a, xenv.b
    ep: Endpoint = getattr(xenv, where)
    res = xenv.hooks.attach(ep.ifname, "counter", hook, mode, ep.netns)
    assert (res.mode, res.replaced) == (mode, False)

    mark = traffic.marker()
    frames = traffic.frame_mix(a, b, mark, MIX_COUNTS) + extra_frames(a, b, mark)
    got = traffic.send_and_capture(a, b, frames, mark)
    # Every frame arrived in b (for tc-ingress the capture sees frames before
    # TC ran, so the socket below proves delivery past the hook).
    want_kinds = dict(MIX_COUNTS) | {kind: 1 for kind in EXTRA_SLOTS}
    assert dict(traffic.count_kinds(got, mark)) == want_kinds

    rx = udp_receiver(b.netns, b.ipv4)
    datagrams = [traffic.payload(mark, f"sock{i}") for i in range(3)]
    for data in datagrams:
        traffic.udp_send(a.netns, b.ipv4, rx.port, data)
    assert [m.payload for m in rx.recv(len(datagrams))] == datagrams

    want = expected_counts(frames, mark, sentinels=1, udp_datagrams=[len(d) for d in datagrams])
    # Spelled out once, so a wrong table in the helper cannot hide a bug:
    # 9 kinds with counts 1..9, VLAN and QinQ also in the IPv4/UDP slot, the
    # sentinel as "other", 3 socket datagrams as IPv4/UDP.
    assert {k: v[0] for k, v in want.items()} == {
        ("ipv4", "tcp"): 1, ("ipv4", "udp"): 2 + 6 + 7 + 3, ("ipv4", "icmp"): 3, ("ipv6", "icmpv6"): 4,
        ("arp", "-"): 5, ("vlan", "802.1q"): 6, ("vlan", "qinq"): 7, ("ipv6", "udp"): 8,
        ("malformed", "-"): 9, ("ipv4", "sctp"): 1, ("ipv4", "gre"): 1, ("ipv4", "fragment"): 1,
        ("ipv6", "fragment"): 1, ("ipv6", "tcp"): 1, SENTINEL_SLOT: 1,
    }
    # On TC a single 802.1Q tag arrives stripped into skb metadata (ingress):
    # the counter still files the frame under the VLAN slot and adds the 4
    # tag bytes, so every hook reports the on-wire length.
    vlan_frames = [f for f in frames if traffic.kind_of(f, mark) == "vlan"]
    assert want[("vlan", "802.1q")] == (6, sum(len(bytes(f)) for f in vlan_frames))
    assert all(len(bytes(f)) == 14 + 4 + 20 + 8 + len(traffic.payload(mark, "vlan")) for f in vlan_frames)

    assert xenv.counts(ep, hook) == want

    xenv.hooks.detach(ep.ifname, "counter", hook, ep.netns)
    assert_bare(ep)
    assert not os.path.exists(xenv.ref(ep, hook).dir(xenv.ctx))


# --------------------------------------------------------------------------
# Replacement under load


class LoadSender(threading.Thread):
    """Send one UDP frame over and over from ``ep`` until told to stop.

    Frames go out in chunks; after each chunk the thread waits until the
    receiving socket got all of it (a lost frame raises TimeoutError after
    the receiver's bound), so the receiver's backlog never overflows and
    "sent" always equals "delivered". It never waits for the replacing
    thread: every replacement happens while frames are flowing.
    """

    def __init__(self, ep: Endpoint, frame: bytes, rx: traffic.UdpReceiver, minimum: int, chunk: int = 200):
        super().__init__(name=f"load:{ep.ifname}", daemon=True)
        self.ep, self.frame, self.rx = ep, frame, rx
        self.minimum, self.chunk = minimum, chunk
        self.sent = 0
        self.error: BaseException | None = None
        self.stop_requested = threading.Event()
        self._progress = threading.Condition()

    def run(self) -> None:
        try:
            with netns_socket(self.ep.netns, socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
                sock.bind((self.ep.ifname, 0))
                while not (self.stop_requested.is_set() and self.sent >= self.minimum):
                    for _ in range(self.chunk):
                        sock.send(self.frame)
                    self.rx.recv(self.chunk)
                    with self._progress:
                        self.sent += self.chunk
                        self._progress.notify_all()
        except BaseException as exc:  # handed to the test thread
            self.error = exc
            with self._progress:
                self._progress.notify_all()

    def wait_beyond(self, count: int, timeout: float = traffic.DEFAULT_TIMEOUT) -> int:
        """Block until more than ``count`` frames went through; return the total."""
        with self._progress:
            ok = self._progress.wait_for(lambda: self.sent > count or self.error is not None, timeout)
        if self.error is not None:
            raise self.error
        if not ok:
            raise TimeoutError(f"sender stuck at {self.sent} frames")
        return self.sent

    def finish(self) -> int:
        self.stop_requested.set()
        self.join(traffic.DEFAULT_TIMEOUT * 3)
        if self.is_alive():
            raise TimeoutError("sender did not stop")
        if self.error is not None:
            raise self.error
        return self.sent


def replace_root(ctx: Context, ref: HookRef, mode: str | None, current_root: int) -> int:
    """Swap the hook's program for a freshly loaded one the way xdpctl does:
    XDP_FLAGS_REPLACE with the current program as expected one (XDP), or
    `tc filter replace` on xdpctl's pref/handle (TC). Returns the new id."""
    now = on_hook(ctx, ref)
    assert now.ours is not None and now.ours.id == current_root
    with hookprog.load(ctx, ref, now.ours.stages) as loaded:
        fd = loaded.prog_fd(HOOK_PROG)
        kind(ref.hook).install(ctx, ref, netlink.get_link(ref.ifname, ref.netns), fd, mode, now.cur)
        return maps.prog_info(fd).id


def kernel_root_id(ref: HookRef) -> int | None:
    if ref.hook == "xdp":
        return netlink.get_link(ref.ifname, ref.netns).xdp_ids.get("generic")
    cur = netlink.tc_ours(ref.ifname, ref.netns, ref.hook)
    return cur.prog_id if cur else None


MINIMUM_FRAMES = 20000
ROUNDS = 8  # alternately: a stage switched on or off, the program replaced


@pytest.mark.parametrize(
    ("hook", "mode"), [("xdp", "generic"), ("tc-ingress", None)], ids=["xdp-generic", "tc-ingress"]
)
def test_replace_under_load_counts_every_packet(xenv: XEnv, hook: str, mode: str | None, udp_receiver) -> None:
    a, b = xenv.a, xenv.b
    ref = xenv.ref(b, hook)
    first = xenv.hooks.attach(b.ifname, "counter", hook, mode, b.netns)
    assert kernel_root_id(ref) == first.root_id
    rx = udp_receiver(b.netns, b.ipv4)
    frame = udp4(a.ipv4, b.ipv4, dport=rx.port, src_mac=a.mac, dst_mac=b.mac)

    stage_ids, root_ids = [first.prog_id], [first.root_id]
    sender = LoadSender(a, frame, rx, MINIMUM_FRAMES)
    sender.start()
    try:
        seen = 0
        for i in range(ROUNDS):
            seen = sender.wait_beyond(seen)  # traffic flowed since the last swap
            if i % 4 == 0:
                res = xenv.hooks.attach(b.ifname, "droplist", hook, mode, b.netns)
                assert not res.replaced and res.root_id == root_ids[-1]
                stage_ids.append(res.prog_id)
            elif i % 4 == 2:
                xenv.hooks.detach(b.ifname, "droplist", hook, b.netns)
                assert kernel_root_id(ref) == root_ids[-1]
            else:
                root_ids.append(replace_root(xenv.ctx, ref, mode, root_ids[-1]))
                assert kernel_root_id(ref) == root_ids[-1]
    finally:
        sent = sender.finish()

    assert sent >= MINIMUM_FRAMES
    assert len(rx.received) == sent  # every frame reached the socket past the hook
    assert xenv.counts(b, hook) == {("ipv4", "udp"): (sent, sent * len(frame))}
    # Switching a stage kept the program; every replacement produced a new
    # one; the last is what runs.
    assert len(set(root_ids)) == len(root_ids) == 1 + ROUNDS // 2
    assert set(stage_ids) <= set(root_ids[:-1])
    st = xenv.hooks.hook_status(ref)
    assert st.attached and st.mode == mode
    assert st.prog.id == root_ids[-1] == kernel_root_id(ref)
    assert [(s.program, s.id) for s in st.stages] == [("counter", root_ids[-1])]
