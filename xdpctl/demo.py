"""`make demo`: the main job end to end on a lab of network namespaces.

1. Builds two namespaces joined by a veth pair: a client side and a server
   side with a UDP service on 192.0.2.2:9999.
2. Attaches the protocol counter and the drop list to the server's
   interface (XDP, native if possible) with its own pin and state
   directories, so it never touches a production xdpctl.
3. Starts the REST API (uvicorn) on loopback with a bearer token.
4. Sends legitimate traffic and a spoofed flood from 203.0.113.0/24: both
   reach the service.
5. Blocks 203.0.113.0/24 over REST, sends the same traffic again: the flood
   is dropped in XDP, the legitimate traffic still arrives. Shows counters,
   rule hits and status.
Everything is removed at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .config import Settings
from .core import counters
from .core.context import Context
from .core.hooks import HookRef, Hooks
from .kernel import bpffs
from .lab import TwoHostLab, netns_socket
from .testing.frames import udp4

console = Console(width=110)
ATTACK_NET = "203.0.113.0/24"
PORT = 9999


def send_frames(netns: str, ifname: str, frames: list[bytes]) -> None:
    s = netns_socket(netns, socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.bind((ifname, 0))
        for f in frames:
            s.send(f)
    finally:
        s.close()


def drain(sock: socket.socket) -> dict[str, int]:
    """Datagrams received so far, by source kind."""
    got = {"legit": 0, "attack": 0}
    sock.setblocking(False)
    while True:
        try:
            data, (src, _port) = sock.recvfrom(2048)
        except BlockingIOError:
            return got
        got["attack" if src.startswith("203.0.113.") else "legit"] += 1


def wait_datagrams(sock: socket.socket, expect: int, timeout: float = 5.0) -> dict[str, int]:
    total = {"legit": 0, "attack": 0}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = drain(sock)
        for k in total:
            total[k] += got[k]
        if sum(total.values()) >= expect:
            break
        time.sleep(0.05)
    return total


def traffic(lab: TwoHostLab, n_legit: int, n_attack: int) -> list[bytes]:
    a, b = lab.a, lab.b
    frames = [udp4(a.ipv4, b.ipv4, dport=PORT, sport=41000 + i % 100, src_mac=a.mac, dst_mac=b.mac,
                   payload=b"hello from the client") for i in range(n_legit)]
    frames += [udp4(f"203.0.113.{1 + i % 250}", b.ipv4, dport=PORT, sport=53, src_mac=a.mac, dst_mac=b.mac,
                    payload=b"spoofed flood" + bytes(20)) for i in range(n_attack)]
    # interleave: an attack in the middle of normal traffic
    out = []
    li, ai = frames[:n_legit], frames[n_legit:]
    while li or ai:
        if li:
            out.append(li.pop())
        for _ in range(max(1, n_attack // max(n_legit, 1))):
            if ai:
                out.append(ai.pop())
    return out


def show_counters(ctx: Context, ref: HookRef, title: str) -> None:
    hc = counters.read(ctx, ref)
    t = Table(title=title)
    for col in ("l3", "l4", "packets", "bytes"):
        t.add_column(col, justify="right" if col in ("packets", "bytes") else "left")
    for (l3, l4), (p, b) in sorted(hc.proto.items()):
        t.add_row(l3, l4, f"{p:,}", f"{b:,}")
    console.print(t)
    if hc.verdicts:
        v = Table(title="drop list verdicts")
        v.add_column("reason")
        v.add_column("packets", justify="right")
        for k, (p, _b) in sorted(hc.verdicts.items()):
            v.add_row(k, f"{p:,}")
        console.print(v)


def start_api(settings: Settings, port: int, token: str) -> subprocess.Popen:
    env = dict(os.environ, XDPCTL_API_TOKEN=token)
    cmd = [sys.executable, "-m", "xdpctl.cli", "--pin-dir", settings.pin_dir, "--state-dir", settings.state_dir,
           "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API server exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API server did not answer /healthz within 20 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xdpctl.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="leave the lab, programs and API running")
    ap.add_argument("--legit", type=int, default=200)
    ap.add_argument("--attack", type=int, default=2000)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        console.print("make demo needs root (namespaces, XDP)", style="red")
        return 77

    tag = secrets.token_hex(3)
    state_dir = tempfile.mkdtemp(prefix="xdpctl-demo-")
    settings = Settings(pin_dir=f"/sys/fs/bpf/xdpctl-demo-{tag}", state_dir=state_dir)
    token = secrets.token_urlsafe(16)
    port = free_port()
    api = None
    lab = TwoHostLab(prefix="xdmo", ipv6=False)
    ctx = Context(settings)
    ref = None
    ok = False
    try:
        a, b = lab.a, lab.b
        console.print(Panel.fit(
            f"lab: client [bold]{a.netns}[/] ({a.ifname} {a.ipv4})  <-veth->  server [bold]{b.netns}[/] "
            f"({b.ifname} {b.ipv4}, UDP service on port {PORT})\npins {settings.pin_dir}, state {state_dir}",
            title="xdpctl demo"))
        hooks = Hooks(ctx)
        for prog in ("counter", "droplist"):
            res = hooks.attach(b.ifname, prog, "xdp", "auto", b.netns)
            console.print(f"attached [bold]{prog}[/] to {b.ifname} (xdp, {res.mode} mode): prog id {res.prog_id}")
        ref = HookRef(b.netns, b.ifname, "xdp")

        api = start_api(settings, port, token)
        base = f"http://127.0.0.1:{port}"
        console.print(f"REST API serving on {base} (OpenAPI at {base}/docs)")

        server = netns_socket(b.netns, socket.AF_INET, socket.SOCK_DGRAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        server.bind((b.ipv4, PORT))

        frames = traffic(lab, args.legit, args.attack)
        console.rule("1. before: a spoofed flood from 203.0.113.0/24 reaches the service")
        send_frames(a.netns, a.ifname, frames)
        before = wait_datagrams(server, args.legit + args.attack)
        console.print(f"service received: legit {before['legit']}, attack {before['attack']}")

        console.rule(f"2. block {ATTACK_NET} over REST")
        r = httpx.post(f"{base}/v1/block", json={"prefixes": [ATTACK_NET], "comment": "demo: spoofed flood"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
        r.raise_for_status()
        body = r.json()
        for added in body["added"]:
            console.print(f"POST /v1/block -> {r.status_code}: rule {added['id']} {added['action']} "
                          f"{added['prefix']}, revision {body['revision']}")
        bad = httpx.post(f"{base}/v1/block", json={"prefixes": ["203.0.113.7/24"]},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
        console.print(f"bad input is refused: POST /v1/block 203.0.113.7/24 -> {bad.status_code} {bad.text[:200]}")

        console.rule("3. after: the flood is dropped in XDP, the client still gets through")
        send_frames(a.netns, a.ifname, frames)
        after = wait_datagrams(server, args.legit, timeout=3.0)
        after_extra = drain(server)
        after = {k: after[k] + after_extra[k] for k in after}
        console.print(f"service received: legit {after['legit']}, attack {after['attack']}")
        show_counters(ctx, ref, f"counters on {b.ifname} xdp (both rounds)")
        rules = httpx.get(f"{base}/v1/rules", timeout=10).json()
        items = rules.get("rules", rules) if isinstance(rules, dict) else rules
        for rule in items:
            console.print(f"rule {rule['id']} {rule['action']} {rule['prefix']}: {rule['packets']:,} packets, "
                          f"{rule['bytes']:,} bytes")
        subprocess.run([sys.executable, "-m", "xdpctl.cli", "--pin-dir", settings.pin_dir, "--state-dir", state_dir,
                        "status"], check=False)
        ok = before == {"legit": args.legit, "attack": args.attack} and after == {"legit": args.legit, "attack": 0}
        console.print(Panel.fit(
            ("[green]OK[/]: the block over REST dropped every spoofed datagram and no legitimate one"
             if ok else f"[red]unexpected[/]: before {before}, after {after}"), title="result"))
        server.close()
        if args.keep:
            console.print(
                f"kept running. Try:\n  xdpctl --pin-dir {settings.pin_dir} --state-dir {state_dir} stats --watch\n"
                f"  curl {base}/metrics\n  curl -H 'Authorization: Bearer {token}' -X POST {base}/v1/block "
                f"-d '{{\"prefixes\":[\"198.51.100.0/24\"]}}' -H 'content-type: application/json'\n"
                f"Ctrl-C removes everything.")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(5)
            except subprocess.TimeoutExpired:
                api.kill()
        if ref is not None:
            try:
                Hooks(ctx).detach(ref.ifname, None, None, ref.netns)
            except Exception as exc:  # the lab teardown removes the interface anyway
                console.print(f"detach: {exc}")
        ctx.close()
        lab.close()
        bpffs.remove_tree(settings.pin_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
