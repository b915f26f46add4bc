"""Section 3: xdp-filter (Debian xdp-tools) with the same exact-address rules.

xdp-filter is loaded the way a user would, on a veth end inside a namespace
this bench creates, in two configurations: ``xdp-filter load IFACE -m skb
-f ipv4,ipv6`` (IP address filtering only, the feature xdpctl's drop list
is compared on; program xdpfilt_alw_ip) and ``xdp-filter load IFACE -m
skb`` (as loaded by default, every feature; xdpfilt_alw_all), each on its
own end of the lab inside a long-lived ``ip netns exec`` shell that has
its own bpffs mounted, because xdp-filter keeps its maps pinned there
between invocations. A trivial program that drops every frame
(bench/bpf/xdp_drop.c) runs in the same rounds: the floor that costs are
measured above.

The program id comes from ``ip -j link`` and its fd from
bpf_prog_get_fd_by_id in the root namespace; BPF_PROG_TEST_RUN then runs
the same 64-byte frames as for xdpctl, whose drop path (the hook program with the drop list on,
DropList.import_list of the same addresses) is measured in the same rounds. Addresses are added with
``xdp-filter ip -m src ADDR``: a sample of them by the CLI (timed, per
address), the rest written straight into xdp-filter's map with batch
updates, using the exact value bytes its CLI wrote for the sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from xdpctl.core.errors import CapacityError
from xdpctl.kernel import maps, objects
from xdpctl.lab import TwoHostLab

from . import build, frames, rulesets
from .common import CLEANUP, log, temp_dir
from .netns_shell import NetnsShell
from .testrun import XDP_DROP, XDP_PASS, Job, XdpctlDropPath, run_jobs

# The two configurations measured, each in its own namespace (and bpffs):
# IP address filtering only, the feature xdpctl's drop list is compared on,
# and xdp-filter as `xdp-filter load IFACE` loads it (every feature).
CONFIGS = (("ip", "ipv4,ipv6", "b"), ("all", None, "a"))


def _attached_prog(netns: str, ifname: str) -> tuple[int, str]:
    p = subprocess.run(["ip", "-n", netns, "-j", "link", "show", ifname], capture_output=True, text=True, check=True)
    info = json.loads(p.stdout)[0]
    prog = info["xdp"]["prog"] if "prog" in info.get("xdp", {}) else info["xdp"]["attached"][0]["prog"]
    return prog["id"], prog.get("name", "?")


class Peer:
    """xdp-filter loaded in one configuration on one end of the lab, from a
    long-lived shell with its own bpffs; its program opened by id."""

    def __init__(self, name: str, features: str | None, ep):
        self.name, self.ifname = name, ep.ifname
        self.sh = NetnsShell(ep.netns)
        self.sh.run("mount -t bpf bpf /sys/fs/bpf")
        feat = f" -f {features}" if features else ""
        _, _, self.load_s = self.sh.run(f"xdp-filter load {ep.ifname} -m skb{feat}")
        pid, self.prog = _attached_prog(ep.netns, ep.ifname)
        self.fd = maps.prog_fd_by_id(pid)
        CLEANUP.push(f"close xdp-filter ({name}) prog fd", lambda: os.close(self.fd))
        self.maps = {}
        for mid in maps.prog_info(self.fd).map_ids:
            m = maps.Map.from_id(mid)
            CLEANUP.push(f"close map {m.name}", m.close)
            self.maps[m.name] = m

    def close(self) -> None:
        self.sh.run(f"xdp-filter unload {self.ifname}", check=False)
        self.sh.close()


def run(cfg) -> dict:
    out = {"features": {name: feat or "default (all)" for name, feat, _ in CONFIGS}, "rows": [], "notes": []}
    work = temp_dir("xdpfilter")
    with TwoHostLab(prefix="xcb", ipv6=False) as lab:
        peers: list[Peer] = []
        drop = objects.load(build.obj("xdp_drop"))
        CLEANUP.push("close xdp_drop", drop.close)
        try:
            for name, feat, end in CONFIGS:
                peers.append(Peer(name, feat, getattr(lab, end)))
            _, version, _ = peers[0].sh.run("xdp-filter load --version 2>&1 | head -1", check=False)
            out["version"] = version.strip()
            out["load_s"] = peers[0].load_s
            out["program"] = {p.name: p.prog for p in peers}
            out["maps"] = {n: {"type": m.type, "max_entries": m.max_entries, "key_size": m.key_size,
                               "value_size": m.value_size} for n, m in peers[0].maps.items()}
            for family in cfg.families:
                for count in cfg.xdpfilter_sizes:
                    try:
                        out["rows"].append(_one(peers, drop.prog_fd("xdp_drop"), family, count, cfg, work))
                    except Exception as exc:  # keep the sizes that worked
                        log(f"  FAILED: {type(exc).__name__}: {exc}")
                        out["rows"].append({"family": family, "count": count, "fits": True, "cli_ms_per_addr": 0,
                                            "cli_added": 0, "errors": [f"{type(exc).__name__}: {exc}"]})
        finally:
            for p in peers:
                p.close()
    return out


def _fill(peer: Peer, rs, n_cli: int, path: str) -> tuple[float, float | None]:
    """The rule set's addresses into one xdp-filter: the first n_cli by its
    CLI (from ``path``), the rest by batch update with the value bytes its
    CLI wrote. (CLI seconds, batch seconds or None); CapacityError when
    the map is too small."""
    fm = peer.maps["filter_ipv4" if rs.family == 4 else "filter_ipv6"]
    fm.clear()
    _, _, dt = peer.sh.run(f"while read a; do xdp-filter ip -m src \"$a\" || exit_code=1; done < {path}")
    key_of = (lambda a: a.to_bytes(4, "big")) if rs.family == 4 else (lambda a: a.to_bytes(16, "big"))
    template = fm.lookup(key_of(rs.match_addr))
    rest = [a for a in rs.nets if a != rs.match_addr][n_cli - 1:]
    if not rest:
        return dt, None
    t = time.perf_counter()
    try:
        fm.update_batch(b"".join(map(key_of, rest)), template * len(rest), len(rest))
    except CapacityError:
        fm.clear()
        raise
    return dt, time.perf_counter() - t


def _one(peers: list[Peer], drop_fd: int, family: int, count: int, cfg, work: str) -> dict:
    rs = rulesets.make(family, "exact", count)
    fm = peers[0].maps["filter_ipv4" if family == 4 else "filter_ipv6"]
    row = {"family": family, "count": count, "max_entries": fm.max_entries}
    log(f"xdp-filter: IPv{family} {count:,} addresses")
    # always CLI-add the match address first: its value bytes are the template
    first = rulesets.fmt_addr(family, rs.match_addr)
    others = [rulesets.fmt_addr(family, a) for a in rs.nets if a != rs.match_addr]
    n_cli = min(count, cfg.xdpfilter_cli_sample)
    path = os.path.join(work, f"cli-{family}-{count}.txt")
    with open(path, "w") as f:
        f.write("\n".join([first] + others[: n_cli - 1]) + "\n")
    try:
        for i, peer in enumerate(peers):
            dt, bt = _fill(peer, rs, n_cli if i == 0 else 1, path if i == 0 else _first_only(path, work))
            if i == 0:
                row.update(cli_added=n_cli, cli_s=dt, cli_ms_per_addr=dt / n_cli * 1e3)
                if bt is not None:
                    row.update(batch_added=count - n_cli, batch_s=bt)
    except CapacityError:
        row["fits"] = False
        row["error"] = (f"does not fit: filter_ipv{family} holds {fm.max_entries} entries, "
                        f"a size fixed when xdp-filter was built (E2BIG on batch update)")
        log(f"  {row['error']}")
        return row
    row["fits"] = True
    # xdpctl with the same rules, measured in the same rounds
    xp = XdpctlDropPath(f"xf{family}{count}")
    try:
        row["xdpctl_load_s"] = xp.load(rs)
        row["xdp_filter"], row["xdp_filter_all"], row["xdpctl"], row["xdp_drop"], errors = {}, {}, {}, {}, []
        jobs = []
        for name, addr, want in (("match", rs.match_addr, XDP_DROP), ("miss", rs.miss_addr, XDP_PASS)):
            frame = frames.udp_from(family, addr)
            for peer, key in zip(peers, ("xdp_filter", "xdp_filter_all")):
                jobs.append(Job(row[key], name, peer.fd, frame, want, cfg.repeat, f"xdp-filter ({peer.name})"))
            jobs.append(Job(row["xdpctl"], name, xp.fds()["chain"], frame, want, cfg.repeat, "xdpctl"))
            jobs.append(Job(row["xdp_drop"], name, drop_fd, frame, XDP_DROP, cfg.repeat, "trivial XDP_DROP"))
        run_jobs(jobs, cfg.runs, errors)
        if errors:
            row["errors"] = errors
            for e in errors:
                log(f"  WRONG VERDICT: {e}")
    finally:
        xp.close()
        for peer in peers:
            peer.maps["filter_ipv4" if family == 4 else "filter_ipv6"].clear()
    return row


def _first_only(path: str, work: str) -> str:
    """A copy of a CLI address file with its first line only."""
    out = os.path.join(work, "first.txt")
    with open(path) as f, open(out, "w") as g:
        g.write(f.readline())
    return out
