"""`xdpctl dump`: samples of what the drop list decides, from the hook's ring
buffer, on a namespace lab with spoofed blocked and passed frames: exactly
the blocked ones with their rule and reason, pcap that tcpdump reads with
the frames' bytes, the per-second cap under a burst, nothing sampled with no
listener, and one listener per hook."""

from __future__ import annotations

import os
import select
import subprocess
import time

import pytest
from scapy.utils import rdpcap

from helpers_droplist import dl_env, send_raw, udp_frame  # noqa: F401  (fixture)
from xdpctl import abi
from xdpctl.core.dump import CFG, RB, Listener, reasons_mask
from xdpctl.core.errors import Conflict
from xdpctl.kernel import libbpf, maps
from xdpctl.kernel.ringbuf import RingBuffers

BAD, GOOD = "203.0.113.", "198.51.100."


def _start(env, *args: str) -> subprocess.Popen:
    """`xdpctl dump ARGS` on b's interface, returned once it listens."""
    b = env.lab.b
    p = env.popen("dump", b.ifname, "--netns", b.netns, *args)
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and p.poll() is None:
        if select.select([p.stderr], [], [], 0.5)[0]:
            line = p.stderr.readline()
            if line.startswith("listening on "):
                return p
    p.kill()
    pytest.fail(f"dump did not start listening: {line!r} {p.stderr.read() if p.poll() is not None else ''}")


def _finish(p: subprocess.Popen) -> tuple[str, str]:
    try:
        return p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()


def _frames(env, mark, n: int):
    """n passed and n blocked frames, alternating (passed first)."""
    out = []
    for i in range(1, n + 1):
        out += [udp_frame(env, f"{GOOD}{i}", mark, f"pass-{i}"), udp_frame(env, f"{BAD}{i}", mark, f"drop-{i}")]
    return out


def test_dump_prints_exactly_the_blocked(dl_env, mark):
    env = dl_env()
    ref = env.attach(env.lab.b, "xdp", "generic")
    rid = env.block(f"{BAD}0/24").added[0].id
    p = _start(env, "--count", "3")
    assert send_raw(env.lab.a, _frames(env, mark, 3)) == [0] * 6
    out, err = _finish(p)
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3, out
    for i, line in enumerate(lines, 1):
        assert f" xdp if{env.lab.b.ifindex} drop drop_src rule {rid} {BAD}{i}:40000 -> " in line, line
        assert line.endswith(f":7 udp len {len(udp_frame(env, f'{BAD}{i}', mark, f'drop-{i}'))}"), line
    assert err.strip().endswith("3 samples")
    # the listener turned the stage off on its way out
    with maps.Map.from_pin(ref.pin(env.ctx, CFG)) as m:
        assert m.lookup(abi.U32.pack(0)) == bytes(abi.SAMPLE_CFG.size)


def test_dump_pcap_is_read_by_tcpdump(dl_env, mark, tmp_path):
    env = dl_env()
    env.attach(env.lab.b, "tc-ingress")
    env.block(f"{BAD}0/24")
    f = tmp_path / "d.pcap"
    p = _start(env, "--count", "2", "-w", str(f))
    frames = _frames(env, mark, 2)
    send_raw(env.lab.a, frames)
    _, err = _finish(p)
    assert p.returncode == 0, err
    tcpdump = subprocess.run(["tcpdump", "-nn", "-r", str(f)], capture_output=True, text=True, check=True)
    shown = tcpdump.stdout.splitlines()
    assert len(shown) == 2 and all(f"IP {BAD}{i}.40000 > " in shown[i - 1] for i in (1, 2)), shown
    got = [bytes(r) for r in rdpcap(str(f))]
    assert got == [bytes(frames[1])[:abi.SAMPLE_BYTES], bytes(frames[3])[:abi.SAMPLE_BYTES]]


def test_cap_holds_under_a_burst(dl_env, mark, tmp_path):
    env = dl_env()
    env.attach(env.lab.b, "xdp", "generic")
    env.block(f"{BAD}0/24")
    cap, burst = 5, 3000
    f = tmp_path / "burst.pcap"
    p = _start(env, "--cap", str(cap), "--seconds", "4", "-w", str(f))
    frame = udp_frame(env, f"{BAD}9", mark, "burst")
    assert send_raw(env.lab.a, [frame] * burst) == [0] * burst
    _finish(p)
    times = sorted(float(r.time) for r in rdpcap(str(f)))
    # per CPU and second of the kernel clock: a wall-clock second meets two
    most = 2 * cap * libbpf.num_possible_cpus()
    assert cap <= len(times) < burst
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + 1.0) <= most, (i, times)


def test_no_listener_no_samples_and_one_listener_per_hook(dl_env, mark):
    env = dl_env()
    ref = env.attach(env.lab.b, "xdp", "generic")
    env.block(f"{BAD}0/24")
    with maps.Map.from_pin(ref.pin(env.ctx, RB)) as rb:
        seen: list[bytes] = []
        with RingBuffers([rb.fd], seen.append) as rbs:
            assert send_raw(env.lab.a, _frames(env, mark, 3)) == [0] * 6
            assert rbs.poll(0) == 0 and seen == []
    # a stale flag (its process gone) is taken over by the next listener
    dead = subprocess.Popen(["true"])
    dead.wait()
    with maps.Map.from_pin(ref.pin(env.ctx, CFG)) as cfg:
        cfg.update(abi.U32.pack(0), abi.SAMPLE_CFG.pack(dead.pid, 1, 10, 1 << 3, 0))
        with Listener(env.ctx, [ref], reasons_mask(None, False)) as lst:
            assert abi.SAMPLE_CFG.unpack(cfg.lookup(abi.U32.pack(0)))[0] == os.getpid()
            send_raw(env.lab.a, _frames(env, mark, 1))
            deadline, got = time.monotonic() + 10, []
            while not got and time.monotonic() < deadline:
                got = lst.poll(100)
            assert [(s.verdict, s.reason, s.data) for s in got] == \
                [("drop", "drop_src", bytes(udp_frame(env, f"{BAD}1", mark, "drop-1")))]
        assert cfg.lookup(abi.U32.pack(0)) == bytes(abi.SAMPLE_CFG.size)
        # a live one is a conflict, and keeps its flag (pid 1 never exits)
        cfg.update(abi.U32.pack(0), abi.SAMPLE_CFG.pack(1, 1, 10, 1 << 3, 0))
        with pytest.raises(Conflict):
            with Listener(env.ctx, [ref], reasons_mask(None, False)):
                pass
        assert abi.SAMPLE_CFG.unpack(cfg.lookup(abi.U32.pack(0)))[0] == 1
        cfg.update(abi.U32.pack(0), bytes(abi.SAMPLE_CFG.size))
