"""Shared fixtures and helpers for the xdpctl traffic, attach and CLI tests.

Every test gets an IPv4-only two-host lab (no IPv6 at all, so no MLD or ND
frames that the counter would count), its own pin directory and state
directory (tests.support.progs.temp_settings), and a teardown that, pass or
fail, detaches every hook xdpctl pinned there, closes the lab and removes
the pin directory.

The CLI runs as a separate process (the ``xdpctl`` entry point of the venv
that runs the tests) with ``--pin-dir`` and ``--state-dir`` pointing at the
test's directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.packet import Packet

import traffic
from xdpctl.core import counters
from xdpctl.core.context import Context
from xdpctl.core.hooks import HookRef, Hooks, pinned_hooks
from xdpctl.core.errors import XdpctlError
from xdpctl.kernel import bpffs, netlink
from xdpctl.lab import Endpoint, TwoHostLab
from tests.support.frames import protocol_mix
from tests.support.progs import temp_settings

REPO = Path(__file__).resolve().parents[2]
XDPCTL = Path(sys.executable).with_name("xdpctl")

#: Small shared drop-list maps: the tests hold a handful of rules at most,
#: and the default sizes (millions of entries) only cost time and memory.
SMALL_CAPACITY = {
    "xc_v4_l24": 1024,
    "xc_v4_l32": 1024,
    "xc_v6_l128": 1024,
    "xc_v6_l64": 1024,
    "xc_v6_l48": 1024,
    "xc_v6_l32": 1024,
    "xc_v6_trie": 1024,
    "xc_port_trie": 1024,
    "xc_rule_stats": 4096,
}

#: Upper bound of every CLI run (seconds); never an assertion about speed.
CLI_TIMEOUT = 60

# --------------------------------------------------------------------------
# What the counter must record for each frame kind (docs/internals.md)

#: traffic.frame_mix kind -> counter slots it lands in.
MIX_SLOTS: dict[str, tuple[tuple[str, str], ...]] = {
    "tcp4": (("ipv4", "tcp"),),
    "udp4": (("ipv4", "udp"),),
    "icmp4": (("ipv4", "icmp"),),
    "icmp6-echo": (("ipv6", "icmpv6"),),
    "arp": (("arp", "-"),),
    "vlan": (("ipv4", "udp"), ("vlan", "802.1q")),
    "qinq": (("ipv4", "udp"), ("vlan", "qinq")),
    "ipv6-ext": (("ipv6", "udp"),),
    "ipv4-trunc": (("malformed", "-"),),
}

#: Kinds of tests.support.frames.protocol_mix that frame_mix lacks, and
#: their slots. Each is built with the test's marker as payload, so captures
#: keep them.
EXTRA_SLOTS: dict[str, tuple[tuple[str, str], ...]] = {
    "sctp": (("ipv4", "sctp"),),
    "gre": (("ipv4", "gre"),),
    "ipv4_fragment": (("ipv4", "fragment"),),
    "ipv6_fragment": (("ipv6", "fragment"),),
    "ipv6_routing_tcp": (("ipv6", "tcp"),),
}

#: The capture's sentinel (ethertype 0x88b5) is one L3 "other" frame.
SENTINEL_SLOT = ("other", "-")

#: Distinct counts per kind, so that one kind taken for another shows.
MIX_COUNTS = {kind: n for n, kind in enumerate(MIX_SLOTS, start=1)}


def extra_frames(src: Endpoint, dst: Endpoint, mark: bytes) -> list[bytes]:
    """One frame of every EXTRA_SLOTS kind, labelled with ``mark``."""
    out = []
    for kind in EXTRA_SLOTS:
        mix = protocol_mix(
            src_mac=src.mac, dst_mac=dst.mac, src4=src.ipv4, dst4=dst.ipv4,
            payload=traffic.payload(mark, kind),
        )
        out.append(mix[kind])
    return out


def expected_counts(
    frames: Iterable[Packet | bytes], mark: bytes, *, sentinels: int = 0, udp_datagrams: Iterable[int] = ()
) -> dict[tuple[str, str], tuple[int, int]]:
    """(l3, l4) -> (packets, bytes) the counter must show for these frames.

    Bytes are the frame length on the wire; ``sentinels`` capture sentinels
    from ``traffic.sentinel_frame`` are added as "other"; ``udp_datagrams``
    are the payload sizes of datagrams sent from a real IPv4 socket
    (Ethernet + IPv4 + UDP headers around them).
    """
    pk: Counter[tuple[str, str]] = Counter()
    by: Counter[tuple[str, str]] = Counter()
    for f in frames:
        kind = traffic.kind_of(f, mark)
        slots = MIX_SLOTS.get(kind) or EXTRA_SLOTS[kind]  # KeyError: unknown kind
        n = len(traffic.frame_bytes(f))
        for slot in slots:
            pk[slot] += 1
            by[slot] += n
    if sentinels:
        pk[SENTINEL_SLOT] += sentinels
        by[SENTINEL_SLOT] += sentinels * (14 + len(traffic.sentinel_payload(mark)))
    for size in udp_datagrams:
        pk[("ipv4", "udp")] += 1
        by[("ipv4", "udp")] += 14 + 20 + 8 + size
    return {k: (pk[k], by[k]) for k in pk}


# --------------------------------------------------------------------------
# Reading the kernel directly (not through xdpctl)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=CLI_TIMEOUT)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def ip_link_json(ep: Endpoint) -> dict:
    """`ip -n NS -d -j link show dev IF` as a dict."""
    (link,) = json.loads(sh("ip", "-n", ep.netns, "-d", "-j", "link", "show", "dev", ep.ifname).stdout)
    return link


def ip_xdp(ep: Endpoint) -> tuple[int, int] | None:
    """(attach mode number, prog id) that `ip link` reports, or None."""
    xdp = ip_link_json(ep).get("xdp")
    if not xdp:
        return None
    return xdp["mode"], xdp["prog"]["id"]


def tc_filters_json(ep: Endpoint, direction: str) -> list[dict]:
    """Filters with options from `tc -n NS -j filter show dev IF ingress|egress`."""
    out = sh("tc", "-n", ep.netns, "-j", "filter", "show", "dev", ep.ifname, direction).stdout.strip()
    return [f for f in json.loads(out or "[]") if "options" in f]


def qdisc_kinds(ep: Endpoint) -> list[str]:
    out = sh("tc", "-n", ep.netns, "-j", "qdisc", "show", "dev", ep.ifname).stdout.strip()
    return [q["kind"] for q in json.loads(out or "[]")]


def bpftool_net(ep: Endpoint) -> dict:
    """`bpftool net show dev IF` run inside the namespace."""
    out = sh("ip", "netns", "exec", ep.netns, "bpftool", "-j", "net", "show", "dev", ep.ifname).stdout
    (entry,) = json.loads(out)
    return entry


def ethtool_features(ep: Endpoint) -> str:
    return sh("ip", "netns", "exec", ep.netns, "ethtool", "-k", ep.ifname).stdout


def assert_bare(ep: Endpoint) -> None:
    """Nothing attached: no XDP program, no clsact qdisc, no tc filter."""
    assert netlink.get_link(ep.ifname, ep.netns).xdp_ids == {}
    assert ip_xdp(ep) is None
    assert "clsact" not in qdisc_kinds(ep)
    assert tc_filters_json(ep, "ingress") == [] and tc_filters_json(ep, "egress") == []


# --------------------------------------------------------------------------
# The test environment


@dataclass
class XEnv:
    lab: TwoHostLab
    ctx: Context
    hooks: Hooks
    tmp: Path

    @property
    def a(self) -> Endpoint:
        return self.lab.a

    @property
    def b(self) -> Endpoint:
        return self.lab.b

    def ref(self, ep: Endpoint, hook: str) -> HookRef:
        return HookRef(ep.netns, ep.ifname, hook)

    def counts(self, ep: Endpoint, hook: str) -> dict[tuple[str, str], tuple[int, int]]:
        return counters.read(self.ctx, self.ref(ep, hook)).proto

    def verdicts(self, ep: Endpoint, hook: str) -> dict[str, tuple[int, int]]:
        return counters.read(self.ctx, self.ref(ep, hook)).verdicts

    def cli(self, *args: str, env: dict[str, str] | None = None,
            as_nobody: bool = False) -> subprocess.CompletedProcess:
        """Run ``xdpctl --pin-dir P --state-dir S ARGS``; never raises on exit codes."""
        return run_cli(self.ctx, *args, env=env, as_nobody=as_nobody)


def run_cli(ctx: Context, *args: str, env: dict[str, str] | None = None,
            as_nobody: bool = False) -> subprocess.CompletedProcess:
    if not XDPCTL.exists():
        raise AssertionError(f"{XDPCTL} is missing: install the package into the venv (make deps)")
    cmd = [str(XDPCTL), "--pin-dir", ctx.settings.pin_dir, "--state-dir", ctx.settings.state_dir, *args]
    if as_nobody:
        cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("XDPCTL_")}
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=CLI_TIMEOUT)


def cli_ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, f"{res.args}: exit {res.returncode}: {res.stderr.strip()}"
    return res


def cli_json(res: subprocess.CompletedProcess):
    return json.loads(cli_ok(res).stdout)


def cli_error(res: subprocess.CompletedProcess, exit_code: int, *fragments: str) -> str:
    """Assert a failed run: exit code, nothing on stdout, one line on stderr
    starting with "xdpctl: error: " and holding every fragment. Returns it."""
    assert res.returncode == exit_code, (
        f"{res.args}: exit {res.returncode}, want {exit_code}; stderr: {res.stderr.strip()}"
    )
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, f"stderr must be one line, got {len(lines)}: {res.stderr!r}"
    line = lines[0]
    assert line.startswith("xdpctl: error: "), line
    for frag in fragments:
        assert frag in line, f"{frag!r} not in {line!r}"
    return line


def detach_all(ctx: Context) -> list[str]:
    """Detach every hook pinned under ctx's pin dir (only programs still
    ours are detached from the kernel); return what could not be removed."""
    problems = []
    hooks = Hooks(ctx)
    for ns, ifname in sorted({(h.netns, h.ifname) for h in pinned_hooks(ctx)}, key=str):
        try:
            hooks.detach(ifname, netns=ns)
        except XdpctlError as exc:
            problems.append(f"detach {ns}/{ifname}: {exc}")
    for ref in pinned_hooks(ctx):  # stale pins whose stages were gone
        try:
            hooks.teardown(ref)
        except XdpctlError as exc:
            problems.append(f"teardown {ref.label()}: {exc}")
    return problems


@pytest.fixture
def xenv(tmp_path: Path) -> Iterator[XEnv]:
    """IPv4-only lab + private pin/state dirs; everything undone afterwards."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    ctx = Context(temp_settings(str(state_dir), **SMALL_CAPACITY))
    lab = None
    try:
        ctx.kernel_ready()
        lab = TwoHostLab(ipv6=False)
        yield XEnv(lab, ctx, Hooks(ctx), tmp_path)
    finally:
        try:
            if lab is not None and not lab.closed:
                detach_all(ctx)
        finally:
            try:
                if lab is not None:
                    lab.close()
            finally:
                ctx.close()
                bpffs.remove_tree(ctx.settings.pin_dir)
