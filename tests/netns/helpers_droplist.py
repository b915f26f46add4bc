"""Shared pieces of the drop-list traffic tests (tests/netns/test_droplist_*.py).

A :class:`DlEnv` is one xdpctl instance over one lab: its own pin directory
(/sys/fs/bpf/xdpctl-test-<tag>) and its own state directory (under the
test's tmp_path), a Context, a DropList and Hooks over them, and a way to run
the real CLI against the same instance in a subprocess. The ``dl_env``
fixture builds them; at teardown it detaches every hook pinned under the
instance's pin directory (whoever attached it: the test, the CLI or
``xdpctl restore``), closes the state and removes the pin directory, also
when the test failed.

Proving arrival without timing (see tests/netns/traffic.py):
- XDP: a capture on b sees frames after XDP, ended by a sentinel frame
  (ethertype 0x88b5, not IP: the drop list always passes it).
- TC ingress: a UDP socket in b sees datagrams after TC ingress, ended by a
  sentinel datagram sent from an address the rules under test let pass.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.packet import Packet, Raw

import traffic
from traffic import UdpReceiver, count_kinds, kind_of, send_and_capture, send_frames, sentinel_payload, udp_send
from xdpctl import abi
from xdpctl.config import Settings
from xdpctl.core import counters
from xdpctl.core.context import Context
from xdpctl.core.hooks import HookRef, Hooks, pinned_hooks
from xdpctl.core.rules.service import DropList
from xdpctl.core.rules.tables import read_pinned_config
from xdpctl.core.rules.validate import spec
from xdpctl.core.ruleset_io import export_text
from xdpctl.core.views import ChangeView
from xdpctl.kernel import bpffs, maps
from xdpctl.lab import Endpoint, TwoHostLab, in_netns
from tests.support.progs import temp_settings

REPO = Path(__file__).resolve().parents[2]

#: Spoofed sources (TEST-NET-3 is never assigned in a lab).
BAD4 = "203.0.113.0/24"
BAD6 = "2001:db8:bad::/48"

#: Every map the drop-list compiler writes.
RULE_MAPS = tuple(abi.RULE_MAPS)

_SOL_PACKET = 263
_PACKET_QDISC_BYPASS = 20


# --------------------------------------------------------------------------
# One xdpctl instance over one lab


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    def error_line(self) -> str:
        """The one-line reason of a failed command (asserts it is one line)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one stderr line, got {self.stderr!r}"
        assert lines[0].startswith("xdpctl: error: "), lines[0]
        return lines[0]


@dataclass
class DlEnv:
    lab: TwoHostLab
    settings: Settings
    tmp: Path
    ctx: Context = field(init=False)

    def __post_init__(self) -> None:
        self.ctx = Context(self.settings)
        self.ctx.kernel_ready()

    # -- core objects
    @property
    def dl(self) -> DropList:
        return DropList(self.ctx)

    @property
    def hooks(self) -> Hooks:
        return Hooks(self.ctx)

    def attach(self, ep: Endpoint, hook: str = "xdp", mode: str | None = None,
               program: str = "droplist") -> HookRef:
        if hook == "xdp" and mode is None:
            mode = "generic"
        res = self.hooks.attach(ep.ifname, program, hook, mode, ep.netns)
        if hook == "xdp":
            assert res.mode == mode
        return res.hook

    def add(self, *prefixes: str | None, **kw) -> ChangeView:
        """DropList.add with specs built like the CLI builds them."""
        return self.dl.add([spec(p, **kw) for p in prefixes], source="test")

    def block(self, *prefixes: str | None, **kw) -> ChangeView:
        return self.add(*prefixes, action="deny", **kw)

    def allow(self, *prefixes: str | None, **kw) -> ChangeView:
        return self.add(*prefixes, action="allow", **kw)

    def verdicts(self, ref: HookRef) -> dict[str, tuple[int, int]]:
        return counters.read(self.ctx, ref).verdicts

    # -- kernel state
    def map_dump(self, names: Iterable[str] = RULE_MAPS, rule_set: int | None = None) -> dict[str, dict[bytes, bytes]]:
        """Contents of rule maps of one set, by default the active one
        (ARRAY xc_v4_l16: only non-zero slots)."""
        out = {}
        rule_set = read_pinned_config(self.ctx).active if rule_set is None else rule_set
        for name in names:
            path = os.path.join(self.settings.shared_map_dir, abi.set_map(name, rule_set))
            with maps.Map.from_pin(path) as m:
                out[name] = _array_nonzero(m) if m.type in maps.ARRAY_TYPES else dict(m.items())
        return out

    def config(self) -> tuple[int, int, int]:
        """policy, flags, generation of xc_cfg (which set is active aside)."""
        return tuple(read_pinned_config(self.ctx)[:3])

    def snapshot(self) -> tuple:
        """Everything a failed command must leave alone: the export (which
        names the revision and policy), rules with ids, lists, map contents
        and the config entry."""
        d = self.dl
        rules = [(r.id, r.prefix, r.dir, r.action, r.proto, r.port, r.expires) for r in d.rules(with_stats=False)]
        lists = [(x.name, x.count, x.id_base, x.sha256) for x in d.lists(with_stats=False)]
        return "".join(export_text(d)).splitlines(), rules, lists, self.map_dump(), self.config()

    # -- the CLI against this instance
    def cli_args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "xdpctl.cli", "--pin-dir", self.settings.pin_dir,
                "--state-dir", self.settings.state_dir, *args]

    def cli(self, *args: str, ok: bool = True, stdin: str | None = None) -> CliResult:
        argv = self.cli_args(*args)
        p = subprocess.run(argv, capture_output=True, text=True, input=stdin, cwd=REPO, env=cli_env(),
                           timeout=120)
        res = CliResult(list(args), p.returncode, p.stdout, p.stderr)
        if ok:
            assert p.returncode == 0, f"xdpctl {' '.join(args)}: exit {p.returncode}\n{p.stderr}"
        return res

    def cli_inproc(self, *args: str) -> CliResult:
        """The same command through the CLI's code in this process (typer's
        test runner): the same parsing, error handling and exit codes, without
        a process start."""
        from typer.testing import CliRunner

        from xdpctl.cli import app

        res = CliRunner().invoke(app, ["--pin-dir", self.settings.pin_dir, "--state-dir",
                                       self.settings.state_dir, *args])
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise res.exception
        return CliResult(list(args), res.exit_code, res.stdout, res.stderr)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.cli_args(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO, env=cli_env())

    # -- teardown
    def close(self) -> None:
        errors: list[str] = []
        try:
            with contextlib.suppress(Exception):
                self.ctx.close()
            ctx = Context(self.settings)
            try:
                for h in pinned_hooks(ctx):
                    try:
                        Hooks(ctx).detach(h.ifname, hook=h.hook, netns=h.netns)
                    except Exception as exc:  # the namespace may be gone already
                        errors.append(f"detach {h.label()}: {exc}")
            finally:
                ctx.close()
        finally:
            bpffs.remove_tree(self.settings.pin_dir)
        assert not os.path.exists(self.settings.pin_dir), self.settings.pin_dir
        if errors:
            warnings.warn("drop-list test teardown: " + "; ".join(errors), RuntimeWarning, stacklevel=2)


def _array_nonzero(m: maps.Map) -> dict[bytes, bytes]:
    """Non-zero slots of a (non-per-CPU) ARRAY map, read with one batch
    lookup and filtered at C speed (xc_v4_l16 has 131072 slots)."""
    import ctypes
    from array import array
    from itertools import compress

    from xdpctl.kernel import libbpf as L

    n, vs = m.max_entries, m.value_size
    assert vs % 8 == 0 and not m.percpu
    keys = ctypes.create_string_buffer(4 * n)
    vals = ctypes.create_string_buffer(vs * n)
    out_batch = ctypes.create_string_buffer(8)
    count = ctypes.c_uint32(n)
    opts = L.BatchOpts(ctypes.sizeof(L.BatchOpts), 0, 0)
    ret = L.bpf_map_lookup_batch(m.fd, None, out_batch, keys, vals, ctypes.byref(count), ctypes.byref(opts))
    assert ret in (0, -errno.ENOENT) and count.value == n, (ret, count.value)
    raw = vals.raw
    words = array("Q", raw)
    per = vs // 8
    slots = sorted({i // per for i in compress(range(len(words)), words)})
    return {i.to_bytes(4, "little"): raw[i * vs:(i + 1) * vs] for i in slots}


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def dl_env(make_lab, tmp_path) -> Iterator[Callable[..., DlEnv]]:
    """Factory ``dl_env(**lab_kwargs, capacity={...})`` -> DlEnv over a fresh
    TwoHostLab. Hooks are detached and the pin directory removed after the
    test, before the lab goes."""
    made: list[DlEnv] = []

    def make(capacity: dict[str, int] | None = None, **lab_kwargs) -> DlEnv:
        lab = make_lab(**lab_kwargs)
        state = tmp_path / f"state{len(made)}"
        settings = temp_settings(str(state), **(capacity or {}))
        env = DlEnv(lab, settings, tmp_path)
        made.append(env)
        return env

    yield make
    for env in reversed(made):
        env.close()


# --------------------------------------------------------------------------
# Traffic


def arrivals_xdp(env: DlEnv, frames: list[Packet], mark: bytes, tx: Endpoint | None = None,
                 rx: Endpoint | None = None) -> Counter[str]:
    """Kinds of the marked frames that a capture on b (after XDP) saw."""
    lab = env.lab
    got = send_and_capture(tx or lab.a, rx or lab.b, frames, mark)
    return count_kinds(got, mark)


def arrivals_socket(rx: UdpReceiver, frames: list[Packet], mark: bytes, *, via: Endpoint,
                    sentinel_from: str, sentinel_to: str | None = None) -> Counter[str]:
    """Kinds of the marked datagrams that reached ``rx`` (after TC ingress).

    ``frames`` go out of ``via``; then a sentinel datagram is sent from a
    real socket in via's namespace, bound to ``sentinel_from`` (an address
    the rules let pass), to ``sentinel_to`` (default rx's address)."""
    send_frames(via, frames)
    udp_send(via.netns, sentinel_to or rx.addr, rx.port, sentinel_payload(mark), src=sentinel_from)
    return Counter(kind_of(m.payload, mark) or "" for m in rx.recv_until(sentinel_payload(mark)))


def send_raw(ep: Endpoint, frames: Iterable[Packet | bytes], *, bypass_qdisc: bool = False) -> list[int]:
    """Send frames one by one from a packet socket on ``ep``; return the
    errno of each send (0: sent).

    A frame that the sender's TC egress hook drops (TC_ACT_SHOT) fails its
    send() with ENOBUFS: the sender learns of each drop. With
    ``bypass_qdisc`` (PACKET_QDISC_BYPASS) frames skip the sender's qdisc and
    TC egress and go straight to the driver, so they reach the peer's XDP
    hook whatever TC egress would do."""
    out: list[int] = []
    with traffic.same_cpu():
        with in_netns(ep.netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            if bypass_qdisc:
                s.setsockopt(_SOL_PACKET, _PACKET_QDISC_BYPASS, 1)
            s.bind((ep.ifname, 0))
            for f in frames:
                try:
                    s.send(bytes(f))
                    out.append(0)
                except OSError as exc:
                    out.append(exc.errno)
        finally:
            s.close()
    return out


def capture_raw(env: DlEnv, frames: list[Packet], mark: bytes, *, bypass_qdisc: bool = False
                ) -> tuple[Counter[str], list[int]]:
    """send_raw from a with a capture on b: (kinds seen on b, send errnos)."""
    lab = env.lab
    with traffic.Capture(lab.b, mark) as cap:
        errs = send_raw(lab.a, frames, bypass_qdisc=bypass_qdisc)
        got = cap.finish(via=lab.a)
    return count_kinds(got, mark), errs


def marked(mark: bytes, kind: str) -> Raw:
    return Raw(traffic.payload(mark, kind))


# --------------------------------------------------------------------------
# Kernel helpers


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 30.0, step: float = 0.05) -> None:
    """Poll ``pred`` until true; the timeout only bounds the wait."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g}s")
        time.sleep(step)


def key4(addr: str, dir: int = 0) -> bytes:
    return abi.pack_key4(dir, int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big"))


def key6(addr: str, dir: int = 0) -> bytes:
    return abi.pack_key6(dir, int.from_bytes(socket.inet_pton(socket.AF_INET6, addr), "big"))


def rule_val(raw: bytes) -> abi.RuleVal:
    return abi.unpack_rule_val(raw[: abi.RULE_VAL.size])


def detach_behind_xdpctls_back(ep: Endpoint, xdp_mode: str | None = None, tc: bool = False) -> None:
    """Remove programs from ``ep`` with plain netlink, as an admin with `ip`
    would: the XDP program (given its mode) and/or the whole clsact qdisc."""
    from pyroute2 import IPRoute

    from xdpctl.kernel import netlink

    with in_netns(ep.netns):
        ipr = IPRoute()
    try:
        if xdp_mode:
            flags = netlink.MODE_FLAGS[xdp_mode]
            ipr.link("set", index=ep.ifindex, IFLA_XDP={"attrs": [("IFLA_XDP_FD", -1), ("IFLA_XDP_FLAGS", flags)]})
        if tc:
            ipr.tc("del", "clsact", index=ep.ifindex)
    finally:
        ipr.close()


def udp_frame(env: DlEnv, src: str, mark: bytes, kind: str, *, dst: str | None = None, dport: int = 7,
              sport: int = 40000, tx: Endpoint | None = None, rx: Endpoint | None = None) -> Packet:
    """Ethernet/IPv4-or-IPv6/UDP frame from ``tx`` (default a) to ``rx``'s MAC
    (default b), source ``src`` (the family follows it), destination ``dst``
    (default rx's address of that family), payload ``payload(mark, kind)``."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    tx = tx or env.lab.a
    rx = rx or env.lab.b
    if ":" in src:
        ip = IPv6(src=src, dst=dst or rx.ipv6 or "2001:db8::2")
    else:
        ip = IP(src=src, dst=dst or rx.ipv4)
    return traffic.ether(tx, rx) / ip / UDP(sport=sport, dport=dport) / marked(mark, kind)
