"""`make demo`: the main job end to end on a lab of network namespaces.

1. Builds two namespaces joined by a veth pair: a client side and a server
   side with a UDP service on 192.0.2.2:9999.
2. Attaches the protocol counter and the drop list to the server's
   interface (XDP, native if possible) with its own pin and state
   directories, so it never touches a production xdpctl.
3. Starts the REST API (`xdpctl serve`) on loopback with a bearer token.
4. Sends legitimate traffic and a spoofed flood from 203.0.113.0/24: both
   reach the service.
5. Blocks 203.0.113.0/24 over REST, sends the same traffic again: the flood
   is dropped in XDP, the legitimate traffic still arrives. Shows counters,
   rule hits and status.
6. The load balancer (xdpctl.demo_lb): a VIP over three backends by weight
   on a bridge lab, connections spread by weight, one backend drained while
   a connection to it stays open.
Everything is removed at the end unless --keep is given.

The demo needs only xdpctl's runtime dependencies: frames are built here
and sent on a packet socket, REST calls use the standard library.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .config import Settings
from .core import counters
from .core.context import Context
from .core.hooks import HookRef, Hooks
from .kernel import bpffs
from .demo_lb import lb_story
from .lab import TwoHostLab, inet_checksum, netns_socket

console = Console(width=110)
ATTACK_NET = "203.0.113.0/24"
PORT = 9999


# ---------------------------------------------------------------- frames
def udp4_frame(src: str, dst: str, sport: int, dport: int, src_mac: str, dst_mac: str, payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP (checksum 0: none, allowed over IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    ip = ip[:10] + struct.pack("!H", inet_checksum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    return eth + ip + udp


def traffic(lab: TwoHostLab, n_legit: int, n_attack: int) -> list[bytes]:
    """Legitimate datagrams with a spoofed flood interleaved."""
    a, b = lab.a, lab.b
    legit = [udp4_frame(a.ipv4, b.ipv4, 41000 + i % 100, PORT, a.mac, b.mac, b"hello from the client")
             for i in range(n_legit)]
    attack = [udp4_frame(f"203.0.113.{1 + i % 250}", b.ipv4, 53, PORT, a.mac, b.mac, b"spoofed flood" + bytes(20))
              for i in range(n_attack)]
    out = []
    per_legit = max(1, n_attack // max(n_legit, 1))
    while legit or attack:
        if legit:
            out.append(legit.pop())
        for _ in range(per_legit):
            if attack:
                out.append(attack.pop())
    return out


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
            _data, (src, _port) = sock.recvfrom(2048)
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


# ---------------------------------------------------------------- REST
def rest(base: str, method: str, path: str, body: object = None, token: str | None = None) -> tuple[int, dict]:
    """One JSON request; (status, body) for 2xx and 4xx/5xx alike."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


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
            if rest(f"http://127.0.0.1:{port}", "GET", "/healthz")[0] == 200:
                return proc
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("API server did not answer /healthz within 20 s")


def stop_api(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the story
@dataclass
class Demo:
    settings: Settings
    lab: TwoHostLab
    ctx: Context
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = field(default_factory=free_port)
    api: subprocess.Popen | None = None
    ref: HookRef | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "xdpctl.cli", "--pin-dir", self.settings.pin_dir,
                        "--state-dir", self.settings.state_dir, *args], check=False)


def set_up(demo: Demo) -> socket.socket:
    """Attach the classifiers, start the API, open the service's socket."""
    a, b = demo.lab.a, demo.lab.b
    console.print(Panel.fit(
        f"lab: client [bold]{a.netns}[/] ({a.ifname} {a.ipv4})  <-veth->  server [bold]{b.netns}[/] "
        f"({b.ifname} {b.ipv4}, UDP service on port {PORT})\n"
        f"pins {demo.settings.pin_dir}, state {demo.settings.state_dir}", title="xdpctl demo"))
    hooks = Hooks(demo.ctx)
    for prog in ("counter", "droplist"):
        res = hooks.attach(b.ifname, prog, "xdp", "auto", b.netns)
        console.print(f"attached [bold]{prog}[/] to {b.ifname} (xdp, {res.mode} mode): prog id {res.prog_id}")
    demo.ref = HookRef(b.netns, b.ifname, "xdp")
    demo.api = start_api(demo.settings, demo.port, demo.token)
    console.print(f"REST API serving on {demo.base} (OpenAPI at {demo.base}/docs)")
    server = netns_socket(b.netns, socket.AF_INET, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    server.bind((b.ipv4, PORT))
    return server


def block_over_rest(demo: Demo) -> None:
    console.rule(f"2. block {ATTACK_NET} over REST")
    status, body = rest(demo.base, "POST", "/v1/block", {"prefixes": [ATTACK_NET], "comment": "demo: spoofed flood"},
                        demo.token)
    if status != 201:
        raise RuntimeError(f"POST /v1/block -> {status}: {body}")
    for added in body["added"]:
        console.print(f"POST /v1/block -> {status}: rule {added['id']} {added['action']} {added['prefix']}, "
                      f"revision {body['revision']}")
    status, body = rest(demo.base, "POST", "/v1/block", {"prefixes": ["203.0.113.7/24"]}, demo.token)
    console.print(f"bad input is refused: POST /v1/block 203.0.113.7/24 -> {status} {json.dumps(body)[:200]}")


def show_counters(ctx: Context, ref: HookRef, title: str) -> None:
    hc = counters.read(ctx, ref)
    console.print(title, style="bold")
    t = Table()
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


def show_results(demo: Demo) -> None:
    assert demo.ref is not None
    show_counters(demo.ctx, demo.ref, f"counters on {demo.ref.ifname} xdp (both rounds)")
    status, body = rest(demo.base, "GET", "/v1/rules", token=demo.token)
    if status != 200:
        raise RuntimeError(f"GET /v1/rules answered {status}: {body}")
    for rule in body["rules"]:
        console.print(f"rule {rule['id']} {rule['action']} {rule['prefix']}: {rule['packets']:,} packets, "
                      f"{rule['bytes']:,} bytes")
    demo.cli("status")


def keep_running(demo: Demo) -> None:
    console.print(
        f"kept running. Try:\n"
        f"  xdpctl --pin-dir {demo.settings.pin_dir} --state-dir {demo.settings.state_dir} stats --watch\n"
        f"  curl -H 'Authorization: Bearer {demo.token}' {demo.base}/metrics\n"
        f"  curl -H 'Authorization: Bearer {demo.token}' -X POST {demo.base}/v1/block "
        f"-d '{{\"prefixes\":[\"198.51.100.0/24\"]}}' -H 'content-type: application/json'\n"
        f"Ctrl-C removes everything.")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def story(demo: Demo, n_legit: int, n_attack: int) -> bool:
    """Before, block, after; True when the block did exactly its job."""
    server = set_up(demo)
    a = demo.lab.a
    frames = traffic(demo.lab, n_legit, n_attack)
    try:
        console.rule("1. before: a spoofed flood from 203.0.113.0/24 reaches the service")
        send_frames(a.netns, a.ifname, frames)
        before = wait_datagrams(server, n_legit + n_attack)
        console.print(f"service received: legit {before['legit']}, attack {before['attack']}")

        block_over_rest(demo)

        console.rule("3. after: the flood is dropped in XDP, the client still gets through")
        send_frames(a.netns, a.ifname, frames)
        after = wait_datagrams(server, n_legit, timeout=3.0)
        extra = drain(server)
        after = {k: after[k] + extra[k] for k in after}
        console.print(f"service received: legit {after['legit']}, attack {after['attack']}")
    finally:
        server.close()
    show_results(demo)
    ok = before == {"legit": n_legit, "attack": n_attack} and after == {"legit": n_legit, "attack": 0}
    console.print(Panel.fit(
        ("[green]OK[/]: the block over REST dropped every spoofed datagram and no legitimate one"
         if ok else f"[red]unexpected[/]: before {before}, after {after}"), title="result"))
    return ok


def tear_down(demo: Demo) -> None:
    if demo.api is not None:
        stop_api(demo.api)
    if demo.ref is not None:
        try:
            Hooks(demo.ctx).detach(demo.ref.ifname, None, None, demo.ref.netns)
        except Exception as exc:  # the lab teardown removes the interface anyway
            console.print(f"detach: {exc}")
    demo.ctx.close()
    demo.lab.close()
    bpffs.remove_tree(demo.settings.pin_dir)
    shutil.rmtree(demo.settings.state_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xdpctl.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="leave the lab, programs and API running")
    ap.add_argument("--legit", type=int, default=200)
    ap.add_argument("--attack", type=int, default=2000)
    ap.add_argument("--lb-conns", type=int, default=300, help="connections per round of the load balancer part")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        console.print("make demo needs root (namespaces, XDP)", style="red")
        return 77
    settings = Settings(pin_dir=f"/sys/fs/bpf/xdpctl-demo-{secrets.token_hex(3)}",
                        state_dir=tempfile.mkdtemp(prefix="xdpctl-demo-"))
    demo = Demo(settings, TwoHostLab(prefix="xdmo", ipv6=False), Context(settings))
    try:
        ok = story(demo, args.legit, args.attack)
        ok = lb_story(console, demo.ctx, args.lb_conns) and ok
        if args.keep:
            keep_running(demo)
        return 0 if ok else 1
    finally:
        tear_down(demo)


if __name__ == "__main__":
    sys.exit(main())
