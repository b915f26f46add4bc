"""Control-plane rows: single changes beside big lists, bulk imports, REST.

Every CLI row runs `xdpctl` as a child process: wall time from fork to
exit and the child's peak RSS (wait4). The REST rows run a real service
(`xdpctl serve`, uvicorn) as a child and time single requests from a
client in this process; its peak memory is VmHWM from /proc. Each row has
its own pin and state directories, removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess

from . import rulesets
from .common import log, pin_dir, remove_pins, settle, summary, temp_dir


def _xdpctl() -> list[str]:
    from .imports import _xdpctl as cmd

    return cmd()


# Forks the child from a small process and reports its wait4 figures: a
# child forked from the bench itself would count the bench's own pages
# (held before exec) in its peak RSS.
# Given a directory (argv[1], else ""), it then takes that directory's
# flock, xdpctl's writer lock: a change that rewrote a whole rule set
# returns once enforced and leaves the other set's catch-up to a process of
# its own that holds the lock until done ("settled_s": both sets in sync).
_SPAWN = """
import json, os, subprocess, sys, time
from xdpctl.kernel.bpffs import DirLock
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_pid, status, ru = os.wait4(p.pid, 0)
out = {"s": time.perf_counter() - t, "rss_mb": ru.ru_maxrss / 1024,
       "rc": os.waitstatus_to_exitcode(status), "err": err.decode(errors="replace")[-400:]}
if sys.argv[1] and os.path.isdir(sys.argv[1]):
    with DirLock(sys.argv[1], create=False):
        out["settled_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def run_child(args: list[str], env: dict | None = None, settle_dir: str | None = None) -> dict:
    """Run a child (this tree's xdpctl first on its path, ``env`` added to
    the environment): wall seconds from fork to exit, peak RSS (MB), exit
    status; with ``settle_dir`` (a pin directory) also the seconds until
    its writer lock is free ("settled_s")."""
    from .imports import _env, _python

    p = subprocess.run([_python(), "-c", _SPAWN, settle_dir or "", *args], capture_output=True, text=True,
                       env={**_env(), **(env or {})})
    if p.returncode:
        return {"s": float("nan"), "rss_mb": float("nan"), "rc": p.returncode, "error": p.stderr[-400:]}
    out = json.loads(p.stdout)
    err = out.pop("err")
    if out["rc"]:
        out["error"] = err
    return out


class Instance:
    """One pin directory and state directory, driven by the CLI."""

    def __init__(self, label: str, env: dict | None = None):
        self.pins, self.state = pin_dir(label), temp_dir(label)
        self.env = env

    def cli(self, *args: str) -> dict:
        return run_child(_xdpctl() + ["--pin-dir", self.pins, "--state-dir", self.state, *args], self.env,
                         settle_dir=self.pins)

    def map_memory_mb(self) -> float:
        """memlock of every pinned map, from fdinfo."""
        from xdpctl.kernel import maps

        total = 0
        shared = os.path.join(self.pins, "maps")
        for name in os.listdir(shared) if os.path.isdir(shared) else ():
            with maps.Map.from_pin(os.path.join(shared, name)) as m:
                with open(f"/proc/self/fdinfo/{m.fd}") as f:
                    total += next((int(line.split()[1]) for line in f if line.startswith("memlock:")), 0)
        return total / 2**20

    def close(self) -> None:
        remove_pins(self.pins)


def _write(work: str, family: int, kind: str, count: int, seed: int = 20240601) -> str:
    rs = rulesets.make(family, kind, count, seed)
    return rs.write(os.path.join(work, f"v{family}-{kind}-{count}-{seed}.txt"))


# The bands the preallocated rows make preallocated (settings.prealloc)
PREALLOC = {"XDPCTL_PREALLOC": "xc_v4_l32,xc_v6_l128"}


def import_rows(work: str, count: int, runs: int, env: dict | None = None, peers: bool = True) -> dict:
    """Fresh imports (IPv4 exact, IPv6 exact, IPv4 mixed), a replace of a
    loaded list, and (``peers``) nft -f of the same IPv4 addresses into a
    plain set; the maps' memory with one prefix loaded. ``env``: settings
    for xdpctl (e.g. PREALLOC)."""
    out: dict = {}
    tag = "p" if env else ""
    v4 = _write(work, 4, "exact", count)
    for label, path in (("v4_exact", v4), ("v6_exact", _write(work, 6, "exact", count)),
                        ("v4_mixed", _write(work, 4, "mixed", count))):
        samples = []
        for i in range(runs):
            inst = Instance(f"imp{tag}{label}{i}", env)
            try:
                log(f"control: import {label} {count:,}{' preallocated' if env else ''} (run {i + 1}/{runs})")
                samples.append(inst.cli("import", path, "--list", "bench"))
            finally:
                inst.close()
        out[f"import_{label}"] = summary(samples)
    other = _write(work, 4, "exact", count, seed=7)
    samples = []
    for i in range(runs):
        inst = Instance(f"repl{tag}{i}", env)
        try:
            inst.cli("import", v4, "--list", "bench")
            log(f"control: replace a {count:,} list{' preallocated' if env else ''} (run {i + 1}/{runs})")
            samples.append(inst.cli("import", other, "--list", "bench"))
        finally:
            inst.close()
    out["replace_v4_exact"] = summary(samples)
    inst = Instance(f"rest{tag}", env)
    try:
        inst.cli("import", _write(work, 4, "exact", 1), "--list", "one")
        out["maps_mb_at_rest"] = inst.map_memory_mb()
    finally:
        inst.close()
    if peers:
        out["nft_plain_set"] = summary([_nft_load(work, v4) for _ in range(runs)])
    return out


def _nft_load(work: str, prefix_file: str) -> dict:
    """nft -f: the same addresses into a plain hash set (no interval flag),
    in a network namespace of its own that goes away with the process."""
    with open(prefix_file) as f:
        addrs = [line.strip().split("/")[0] for line in f if line.strip() and not line.startswith("#")]
    path = os.path.join(work, "nft-plain.nft")
    with open(path, "w") as f:
        f.write("table inet xcbench_plain {\n  set s { type ipv4_addr; size %d; elements = {\n" % (len(addrs) + 1))
        f.write(",\n".join(addrs))
        f.write("\n  } }\n}\n")
    try:
        return run_child(["unshare", "-n", "nft", "-f", path])
    finally:
        settle()  # the set is freed as the namespace goes


FEED = 10_000  # hosts of the list a feed refresh replaces


def single_change_rows(work: str, big: int, tries: int) -> dict:
    """`xdpctl block` of one /32, the import and removal of a 1-prefix
    list, and a feed refresh (a FEED-host list replaced by another FEED
    hosts, half of them new), with nothing and with ``big`` list members
    loaded; `xdpctl version` (start-up alone) for scale; map memory."""
    out: dict = {"startup": summary([run_child(_xdpctl() + ["version"]) for _ in range(tries)])}
    inst = Instance("single")
    small = os.path.join(work, "small-list.txt")
    with open(small, "w") as f:
        f.write("10.252.0.1\n")

    def small_lists(label: str) -> None:
        imports, removals = [], []
        for i in range(tries):
            imports.append(inst.cli("import", small, "--list", f"small{i}"))
            removals.append(inst.cli("unblock", "--list", f"small{i}"))
        out[f"small_import_{label}"], out[f"small_remove_{label}"] = summary(imports), summary(removals)

    feeds = [_write(work, 4, "exact", FEED // 2, seed=31 + i) for i in range(tries + 1)]

    def feed(label: str) -> None:  # the list holds feeds[i] and feeds[i + 1]: each refresh swaps half
        merged = []
        for i in range(tries + 1):
            path = os.path.join(work, f"feed{i}.txt")
            with open(feeds[i]) as a, open(feeds[(i + 1) % len(feeds)]) as b, open(path, "w") as f:
                f.write(a.read() + b.read())
            merged.append(path)
        inst.cli("import", merged[0], "--list", "feed")
        out[f"feed_replace_{label}"] = summary([inst.cli("import", m, "--list", "feed") for m in merged[1:]])
        inst.cli("unblock", "--list", "feed")

    try:
        out["block_empty"] = summary([inst.cli("block", f"10.250.0.{i + 1}") for i in range(tries)])
        small_lists("empty")
        feed("empty")
        for n in (big // 2, big):
            log(f"control: import {n:,} members, then {tries} single blocks")
            path = _write(work, 4, "exact", n, seed=11 + n)
            imp = inst.cli("import", path, "--list", f"big{n}")
            os.unlink(path)
            out[f"maps_mb_{n}"] = inst.map_memory_mb()
            out[f"import_{n}"] = imp
            if n != big:
                inst.cli("unblock", "--list", f"big{n}")
        out["block_big"] = summary([inst.cli("block", f"10.251.0.{i + 1}") for i in range(tries)])
        small_lists("big")
        feed("big")
        out["big"] = big
    finally:
        inst.close()
        os.unlink(small)
    return out


def run(cfg) -> dict:
    """The rows; ``cfg.control_runs`` / ``control_tries`` / ``control_posts``
    override the runs per import row, the single CLI changes and the single
    POSTs (defaults: 3 / 11 / 1000, quick 1 / 3 / 100). A p99 of 1,000
    POSTs is the tenth slowest; of 200 it was the second, which one stall
    of the VM decides."""
    from . import control_rest

    work = temp_dir("control")
    quick = cfg.quick
    count = cfg.import_count
    out = {"count": count}
    runs = getattr(cfg, "control_runs", 1 if quick else 3)
    out.update(import_rows(work, count, runs))
    out["prealloc"] = import_rows(work, count, runs, env=PREALLOC, peers=False)
    out["single"] = single_change_rows(work, 2 * count, getattr(cfg, "control_tries", 3 if quick else 11))
    out["rest"] = control_rest.run(work, count, getattr(cfg, "control_posts", 100 if quick else 1000))
    return out


def main() -> int:
    """python -m bench.control [COUNT]: the rows alone, one run each."""
    import sys
    from types import SimpleNamespace

    from .common import CLEANUP

    cfg = SimpleNamespace(quick=False, import_count=int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
                          control_runs=1, control_tries=5, control_posts=1000)
    try:
        res = run(cfg)
    finally:
        CLEANUP.run_all()
    print(json.dumps(res))
    print(table(res))
    return 0



def table(res: dict) -> str:
    """The rows as a markdown table (medians; spread = (max-min)/median)."""
    s, r = res["single"], res.get("rest", {})

    def timed(row: dict) -> str:
        return f"{row['median']:.2f} s (min {row['min']:.2f}, spread {row['spread']:.0%}"

    def cli(row: dict) -> str:
        later = row.get("settled")
        both = f"; both rule sets in sync after {later:.2f} s" if later and later - row["median"] >= 0.01 else ""
        return f"{timed(row)}), {row['rss_mb']:.0f} MB{both}"

    def singles(row: dict) -> str:
        if not row:
            return "-"
        worst = f" (slowest of {row['n']}: {row['max_ms']:.2f} ms)" if "max_ms" in row and "n" in row else ""
        return f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f} ms{worst}"

    def put(r: dict, key: str, extra: str = "") -> str:
        """A PUT row: median of its runs with min and spread (a run before
        the rows had runs: its one time)."""
        if not r.get(f"{key}_s"):
            return "-"
        runs = r.get(key)
        if runs:
            return f"{timed(runs)}, {runs['n']} runs){extra}"
        return f"{r[f'{key}_s']:.2f} s{extra}"

    n = res["count"]
    rows = [
        (f"`xdpctl block` one /32, {s['big']:,} list members loaded", cli(s["block_big"])),
        ("`xdpctl block` one /32, nothing loaded", cli(s["block_empty"])),
        (f"`xdpctl import` of a 1-prefix list, {s['big']:,} list members loaded", cli(s["small_import_big"])),
        ("`xdpctl import` of a 1-prefix list, nothing loaded", cli(s["small_import_empty"])),
        (f"`xdpctl unblock --list` of it, {s['big']:,} list members loaded", cli(s["small_remove_big"])),
        ("`xdpctl unblock --list` of it, nothing loaded", cli(s["small_remove_empty"])),
        (f"`xdpctl import` refreshing a {FEED:,}-host list (half its hosts new), {s['big']:,} list members loaded",
         cli(s["feed_replace_big"]) if "feed_replace_big" in s else "-"),
        (f"`xdpctl import` refreshing a {FEED:,}-host list (half its hosts new), nothing loaded",
         cli(s["feed_replace_empty"]) if "feed_replace_empty" in s else "-"),
        ("`xdpctl version` (start-up alone)", cli(s["startup"])),
        (f"POST /v1/block one /32, {n:,} list loaded, p50 / p99",
         singles(r.get("block_with_list"))),
        ("POST /v1/block one /32, no list, p50 / p99", singles(r.get("block_no_list"))),
        (f"POST /v1/block one /32, {r.get('others', 0):,} other rules present, p50 / p99",
         singles(r.get("block_beside_rules"))),
        (f"nft -f the same {n:,} addresses, plain hash set", cli(res["nft_plain_set"])),
    ]
    pre = res.get("prealloc") or {}
    for key, what in (("import_v4_exact", f"import {n:,} IPv4 /32, fresh"),
                      ("replace_v4_exact", f"replace a {n:,} list with another"),
                      ("import_v6_exact", f"import {n:,} IPv6 /128, fresh"),
                      ("import_v4_mixed", f"import {n:,} mixed IPv4 (95 % /32), fresh")):
        rows.append((what, cli(res[key])))
        if key in pre:
            rows.append((f"{what}, {PREALLOC['XDPCTL_PREALLOC']} preallocated", cli(pre[key])))
    rows += [
        ("kernel maps (memlock) with one prefix loaded", f"{res['maps_mb_at_rest']:.0f} MB"
         + (f"; {pre['maps_mb_at_rest']:.0f} MB with {PREALLOC['XDPCTL_PREALLOC']} preallocated" if pre else "")),
        ("POST /v1/block, 10,000 prefixes as JSON (the item limit)",
         f"{r['bulk_10k_s']['median']:.2f} s" if r.get("bulk_10k_s", {}).get("n") else "-"),
        (f"PUT /v1/lists {n:,} text, alone", put(r, "put_list_alone")),
        (f"PUT /v1/lists {n:,} text, {r.get('others', 0):,} other rules present",
         put(r, "put_list", f", service peak {r.get('put_list_hwm_mb', r.get('service_hwm_mb', 0)):.0f} MB")),
        (f"PUT /v1/lists {n:,} prefixes as JSON, {r.get('others', 0):,} other rules present",
         put(r, "put_list_json", f", service peak {r.get('put_list_json_hwm_mb', 0):.0f} MB")),
    ]
    rows += [(f"kernel maps (memlock) at {k[len('maps_mb_'):]} members", f"{v:.0f} MB")
             for k, v in s.items() if k.startswith("maps_mb_")]
    return "\n".join(["| what | measured |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


if __name__ == "__main__":
    raise SystemExit(main())
