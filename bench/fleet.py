"""Section 6: fleet mode, from an acknowledged etcd write to enforcement.

One etcd on loopback and N agents (`xdpctl agent` processes), each with its
own pin and state directories, as N hosts would run them. A change is a
fleet write of one rule (FleetWriter: one etcd transaction); it counts as
enforced on a node when that node's kernel holds it: the generation of the
pinned xc_cfg (the revision the active rule set holds) has moved past the
one read before the write (each fleet change is one local change). Reported:
p50/p99 over the changes, per agent count; and how long after its
acknowledgement a large list is enforced on every node.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import time

from xdpctl.config import load_settings
from xdpctl.core import prefixes as px
from xdpctl.core.context import Context
from xdpctl.core.errors import BpfError
from xdpctl.core.fleet.kv import Etcd, EtcdOptions
from xdpctl.core.fleet.writer import Fleet
from xdpctl.core.rules.tables import read_pinned_config
from xdpctl.core.rules.validate import spec

from .common import CLEANUP, REPO_DIR, VENV_BIN, log, pin_dir, temp_dir

BOUND = 600.0  # seconds: give up on a node after this long


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: list[str], logfile: str):
    """Start a process; the function that stops it (also run at cleanup)."""
    with open(logfile, "ab") as out:
        p = subprocess.Popen(args, stdout=out, stderr=out, cwd=REPO_DIR, start_new_session=True)

    def stop() -> None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return CLEANUP.push(f"stop pid {p.pid}", stop)


def _etcd() -> str:
    exe = shutil.which("etcd")
    if exe is None:
        raise RuntimeError("etcd is not installed (make deps installs etcd-server)")
    d, cport, pport = temp_dir("etcd"), _port(), _port()
    url, peer = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    _spawn([exe, "--name", "b", "--data-dir", os.path.join(d, "data"), "--listen-client-urls", url,
            "--advertise-client-urls", url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"b={peer}", "--quota-backend-bytes", str(4 << 30)], os.path.join(d, "etcd.log"))
    _wait(lambda: _alive(url), "etcd", 60)
    return url


def _alive(url: str) -> bool:
    try:
        Etcd(EtcdOptions([url], timeout=1)).revision()
        return True
    except Exception:
        return False


def _wait(cond, what: str, bound: float = BOUND) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > bound:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.002)
    return time.monotonic()


class Node:
    def __init__(self, url: str, prefix: str, name: str):
        self.settings = load_settings(pin_dir=pin_dir(f"fleet-{name}"), state_dir=temp_dir(f"fleet-{name}"))
        self.ctx = Context(self.settings)
        python = os.path.join(VENV_BIN, "python")
        self.stop = _spawn([python, "-m", "xdpctl.cli", "--pin-dir", self.settings.pin_dir, "--state-dir",
                self.settings.state_dir, "agent", "--etcd", url, "--prefix", prefix, "--node", name, "--ttl", "5"],
               os.path.join(self.settings.state_dir, "agent.log"))

    def generation(self) -> int:
        try:
            return read_pinned_config(self.ctx).generation
        except (OSError, BpfError):
            return -1  # the maps are not there yet


def _enforced(nodes: list[Node], fleet: Fleet, change) -> float:
    """Seconds from the write's acknowledgement to its enforcement on every node."""
    before = [n.generation() for n in nodes]
    change(fleet)
    t_ack = time.monotonic()
    pending = list(zip(nodes, before))
    while pending:
        pending = [(n, g) for n, g in pending if n.generation() <= g]
        if pending and time.monotonic() - t_ack > BOUND:
            raise RuntimeError(f"{len(pending)} nodes did not enforce a change within {BOUND:g}s")
        if pending:
            time.sleep(0.002)
    return time.monotonic() - t_ack


def _fleet(url: str, agents: int, label: str) -> tuple[Fleet, list[Node]]:
    prefix = f"/xcbench/{label}-{os.getpid()}"
    nodes = [Node(url, prefix, f"{label}-{i}") for i in range(agents)]
    fleet = Fleet(Etcd(EtcdOptions([url])), prefix)
    _enforced(nodes, fleet, lambda f: f.add([spec("198.18.255.0/24")]))  # creates every node's maps
    return fleet, nodes


def _latency(url: str, agents: int, changes: int) -> dict:
    fleet, nodes = _fleet(url, agents, f"lat{agents}")
    lat = [_enforced(nodes, fleet, lambda f, i=i: f.add([spec(f"10.{i // 256}.{i % 256}.0/24")]))
           for i in range(changes)]
    for n in nodes:
        n.stop()
    q = statistics.quantiles(lat, n=100)
    out = {"agents": agents, "changes": changes, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3,
           "max_ms": max(lat) * 1e3}
    log(f"fleet: {agents} agents, {changes} changes: p50 {out['p50_ms']:.0f} ms, p99 {out['p99_ms']:.0f} ms")
    return out


def _large_list(url: str, agents: int, count: int) -> dict:
    fleet, nodes = _fleet(url, agents, "list")
    base = int.from_bytes(bytes([100, 64, 0, 0]), "big")
    members = [px.Prefix(4, base + i, 32) for i in range(count)]
    t0 = time.monotonic()
    res: dict = {}

    def write(f: Fleet) -> None:
        res["revision"] = f.import_list("big", members).revision
        res["written_s"] = time.monotonic() - t0

    res["enforced_s"] = _enforced(nodes, fleet, write)
    for n in nodes:
        n.stop()
    out = {"agents": agents, "count": count, "written_s": res["written_s"], "enforced_after_ack_s": res["enforced_s"]}
    log(f"fleet: list of {count:,} on {agents} agents: written {out['written_s']:.1f}s, enforced "
        f"{out['enforced_after_ack_s']:.1f}s after the acknowledgement")
    return out


def run(cfg) -> dict:
    url = _etcd()
    out: dict = {"latency": [], "lists": []}
    for agents in cfg.fleet_agents:
        out["latency"].append(_latency(url, agents, cfg.fleet_changes))
    out["lists"].append(_large_list(url, 3, cfg.fleet_list))
    return out
