"""Section 3: xdp-filter (Debian xdp-tools) with the same exact-address rules.

xdp-filter is loaded the way a user would, on a veth end inside a namespace
this bench creates: ``xdp-filter load IFACE -m skb -f ipv4,ipv6`` (IP
address filtering only, the feature xdpctl's drop list is compared on)
inside a long-lived ``ip netns exec`` shell that has its own bpffs mounted,
because xdp-filter keeps its maps pinned there between invocations.

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
from xdpctl.kernel import maps
from xdpctl.lab import TwoHostLab

from . import frames, rulesets
from .common import CLEANUP, log, temp_dir
from .netns_shell import NetnsShell
from .testrun import XDP_DROP, XDP_PASS, Job, XdpctlDropPath, run_jobs

FEATURES = "ipv4,ipv6"


def _attached_prog(netns: str, ifname: str) -> tuple[int, str]:
    p = subprocess.run(["ip", "-n", netns, "-j", "link", "show", ifname], capture_output=True, text=True, check=True)
    info = json.loads(p.stdout)[0]
    prog = info["xdp"]["prog"] if "prog" in info.get("xdp", {}) else info["xdp"]["attached"][0]["prog"]
    return prog["id"], prog.get("name", "?")


def run(cfg) -> dict:
    out = {"features": FEATURES, "rows": [], "notes": []}
    work = temp_dir("xdpfilter")
    with TwoHostLab(prefix="xcb", ipv6=False) as lab:
        ep = lab.b
        sh = NetnsShell(ep.netns)
        try:
            sh.run("mount -t bpf bpf /sys/fs/bpf")
            _, version, _ = sh.run("xdp-filter load --version 2>&1 | head -1", check=False)
            out["version"] = version.strip()
            _, _, t_load = sh.run(f"xdp-filter load {ep.ifname} -m skb -f {FEATURES}")
            out["load_s"] = t_load
            pid, pname = _attached_prog(ep.netns, ep.ifname)
            out["program"] = {"id": pid, "name": pname}
            fd = maps.prog_fd_by_id(pid)
            CLEANUP.push("close xdp-filter prog fd", lambda: os.close(fd))
            info = maps.prog_info(fd)
            fmaps = {}
            for mid in info.map_ids:
                m = maps.Map.from_id(mid)
                CLEANUP.push(f"close map {m.name}", m.close)
                fmaps[m.name] = m
            out["maps"] = {n: {"type": m.type, "max_entries": m.max_entries, "key_size": m.key_size,
                               "value_size": m.value_size} for n, m in fmaps.items()}
            for family in cfg.families:
                fm = fmaps["filter_ipv4" if family == 4 else "filter_ipv6"]
                for count in cfg.xdpfilter_sizes:
                    try:
                        out["rows"].append(_one(sh, fd, fm, family, count, cfg, work))
                    except Exception as exc:  # keep the sizes that worked
                        log(f"  FAILED: {type(exc).__name__}: {exc}")
                        out["rows"].append({"family": family, "count": count, "fits": True, "cli_ms_per_addr": 0,
                                            "cli_added": 0, "errors": [f"{type(exc).__name__}: {exc}"]})
            sh.run(f"xdp-filter unload {ep.ifname}", check=False)
        finally:
            sh.close()
    return out


def _one(sh: NetnsShell, fd: int, fm: maps.Map, family: int, count: int, cfg, work: str) -> dict:
    rs = rulesets.make(family, "exact", count)
    row = {"family": family, "count": count, "max_entries": fm.max_entries}
    log(f"xdp-filter: IPv{family} {count:,} addresses")
    fm.clear()
    addrs = [rulesets.fmt_addr(family, a) for a in rs.nets]
    # always CLI-add the match address first: its value bytes are the template
    first = rulesets.fmt_addr(family, rs.match_addr)
    others = [a for a in addrs if a != first]
    n_cli = min(count, cfg.xdpfilter_cli_sample)
    path = os.path.join(work, f"cli-{family}-{count}.txt")
    with open(path, "w") as f:
        f.write("\n".join([first] + others[: n_cli - 1]) + "\n")
    _, _, dt = sh.run(f"while read a; do xdp-filter ip -m src \"$a\" || exit_code=1; done < {path}")
    row["cli_added"] = n_cli
    row["cli_s"] = dt
    row["cli_ms_per_addr"] = dt / n_cli * 1e3
    key_of = (lambda a: a.to_bytes(4, "big")) if family == 4 else (lambda a: a.to_bytes(16, "big"))
    template = fm.lookup(key_of(rs.match_addr))
    rest = [a for a in rs.nets if a != rs.match_addr][n_cli - 1:]
    if rest:
        keys = b"".join(map(key_of, rest))
        t = time.perf_counter()
        try:
            fm.update_batch(keys, template * len(rest), len(rest))
            row["batch_added"] = len(rest)
            row["batch_s"] = time.perf_counter() - t
        except CapacityError:
            row["fits"] = False
            row["error"] = (f"does not fit: filter_ipv{family} holds {fm.max_entries} entries, "
                            f"a size fixed when xdp-filter was built (E2BIG on batch update)")
            log(f"  {row['error']}")
            fm.clear()
            return row
    row["fits"] = True
    # xdpctl with the same rules, measured in the same rounds
    xp = XdpctlDropPath(f"xf{family}{count}")
    try:
        row["xdpctl_load_s"] = xp.load(rs)
        row["xdp_filter"], row["xdpctl"], errors = {}, {}, []
        jobs = []
        for name, addr, want in (("match", rs.match_addr, XDP_DROP), ("miss", rs.miss_addr, XDP_PASS)):
            frame = frames.udp_from(family, addr)
            jobs.append(Job(row["xdp_filter"], name, fd, frame, want, cfg.repeat, "xdp-filter"))
            jobs.append(Job(row["xdpctl"], name, xp.fds()["chain"], frame, want, cfg.repeat, "xdpctl"))
        run_jobs(jobs, cfg.runs, errors)
        if errors:
            row["errors"] = errors
            for e in errors:
                log(f"  WRONG VERDICT: {e}")
    finally:
        xp.close()
    fm.clear()
    return row
