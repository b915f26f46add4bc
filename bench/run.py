"""`make bench`: run every measurement, write bench/results/, print tables.

    .venv/bin/python -m bench.run            full set (9-16 minutes on a 2-core VM)
    .venv/bin/python -m bench.run --quick    reduced set (3-4 minutes)
    .venv/bin/python -m bench.run --only testrun,nft

Sections: testrun (drop path + LPM baseline + cache-cold + attribution),
xdpfilter, nft (load time + traffic), import, lb (load balancer per packet,
Maglev build time and disruption), lblab (TCP connections per second
through the load balancer vs plain routing), sample (the sample stage off
vs on). Needs root, bpffs, clang,
xdp-tools and nftables. Everything it creates (namespaces, pins, nftables
tables, temp files) is removed at the end, also after an error or Ctrl-C.
No assertion anywhere: numbers are reported, never judged by exit code
(a wrong verdict or a failed peer is listed under "Problems").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field

from . import build, report
from .common import (CLEANUP, REPO_DIR, RESULTS_DIR, bench_cpu, every_cpu, install_signal_handlers, log,
                     machine_info)

DOCS_DIR = os.path.join(REPO_DIR, "docs")  # the full run's docs/benchmarks.md + .json

SECTIONS = ("testrun", "xdpfilter", "nft", "import", "sample", "lb", "lblab", "fleet")
# Sections that time whole control-plane processes (xdpctl and nft -f as
# children, the REST service, batch writes): they run on every CPU, like
# those programs do in use. The others stay on the bench CPU.
EVERY_CPU = ("import",)


@dataclass
class Config:
    quick: bool = False
    cpu: int | None = None
    # section 1/2
    families: tuple = (4, 6)
    kinds: tuple = ("exact", "mixed")
    sizes: tuple = (1, 10_000, 100_000, 1_000_000)
    repeat: int = 1_000_000
    runs: int = 5
    spray: bool = True
    spray_repeat: int = 200_000
    spray_runs: int = 3
    sizing_sizes: tuple = (1, 100_000)
    memory_sizes: tuple = (1_000_000, 2_000_000)
    # section 3
    xdpfilter_sizes: tuple = (1, 10_000, 100_000, 1_000_000)
    xdpfilter_cli_sample: int = 1000
    # section 4
    nft_families: tuple = (4,)
    nft_sizes: tuple = (1, 10_000, 100_000, 1_000_000)
    traffic_sizes: tuple = (1, 10_000, 100_000, 1_000_000)
    traffic_frames: int = 2_000_000
    traffic_runs: int = 3
    # section 5
    import_sets: tuple = ((4, "exact"), (4, "mixed"), (6, "exact"), (6, "mixed"))
    import_count: int = 1_000_000
    import_gc_variant: bool = True
    # section 7
    lb_hooks: tuple = ("xdp-native", "xdp-generic", "tc-ingress")
    lb_conns: int = 2000
    lb_runs: int = 5
    # section 8
    fleet_agents: tuple = (3, 10)
    fleet_changes: int = 200
    fleet_list: int = 1_000_000
    sections: tuple = field(default_factory=lambda: SECTIONS)

    @classmethod
    def quick_config(cls) -> "Config":
        return cls(quick=True, sizes=(1, 100_000), repeat=200_000, runs=3, spray_repeat=50_000, spray_runs=3,
                   sizing_sizes=(1,), memory_sizes=(100_000,),
                   xdpfilter_sizes=(1, 10_000), xdpfilter_cli_sample=100,
                   nft_sizes=(1, 10_000, 100_000), traffic_sizes=(1, 100_000), traffic_frames=500_000,
                   import_sets=((4, "exact"),), import_gc_variant=False,
                   lb_hooks=("xdp-native", "tc-ingress"), lb_conns=1000, lb_runs=3,
                   fleet_agents=(3,), fleet_changes=50, fleet_list=100_000)


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def _product() -> dict:
    """Which xdpctl was measured (read-only git queries)."""
    def git(*args):
        p = subprocess.run(["git", "--no-optional-locks", *args], capture_output=True, text=True, cwd=REPO_DIR)
        return p.stdout.strip() if p.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "?"
    # what is measured: the product, its BPF and C helper sources and the bench itself (untracked files too)
    dirty = bool(git("status", "--porcelain", "--", "xdpctl", "bpf", "native", "bench", "api"))
    return {"commit": commit, "dirty": dirty}


def _snapshot_objects() -> tuple[str, dict]:
    """Copy xdpctl's BPF objects aside and point xdpctl at the copy
    (XDPCTL_BPF_DIR), so the whole run measures one build even if
    `make bpf` runs again meanwhile. Returns (directory, name -> sha256);
    the caller removes the directory when the run is over."""
    import hashlib
    import tempfile

    from .common import TAG

    src = os.path.join(REPO_DIR, "xdpctl", "bpf")
    dst = tempfile.mkdtemp(prefix=f"{TAG}-objects-")
    out = {}
    for name in sorted(os.listdir(src)):
        if name.endswith(".o"):
            shutil.copy2(os.path.join(src, name), dst)
            with open(os.path.join(dst, name), "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()[:16]
    os.environ["XDPCTL_BPF_DIR"] = dst
    return dst, out


def _preflight() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (BPF, namespaces, nftables)")
    for tool in ("clang", "ip", "nft", "xdp-filter"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            problems.append(f"{tool} not found (make deps)")
    if not os.path.exists(os.path.join(REPO_DIR, "xdpctl", "bpf", "xdp_droplist.o")):
        problems.append("xdpctl/bpf/*.o missing: run `make bpf`")
    return problems


def _cleanup_stale() -> None:
    """Leftovers of a killed bench run: namespaces, pins."""
    from xdpctl import lab

    from .common import TAG

    lab.cleanup_stale("xcb")
    for name in os.listdir("/sys/fs/bpf"):
        if name.startswith(f"{TAG}-"):
            pid = name.split("-")[1]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                from xdpctl.kernel import bpffs

                bpffs.remove_tree(os.path.join("/sys/fs/bpf", name))


def _config(argv: list[str] | None) -> tuple[Config, str]:
    """The run's configuration and results directory, from the command line."""
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced set, 3-4 minutes on a 2-core VM")
    ap.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--out", default=RESULTS_DIR, help="results directory [bench/results]")
    ap.add_argument("--render", metavar="RUN_JSON",
                    help="measure nothing: write the reports of a saved run (bench/results/run-*.json) again")
    args = ap.parse_args(argv)
    cfg = Config.quick_config() if args.quick else Config()
    if args.only:
        want = tuple(s.strip() for s in args.only.split(",") if s.strip())
        bad = [s for s in want if s not in SECTIONS]
        if bad:
            ap.error(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
        cfg.sections = want
    return cfg, args.out, args.render


def _run_sections(cfg: Config, results: dict) -> bool:
    """Run every chosen section into ``results``; True when interrupted."""
    from . import fleet, imports, lb, lb_lab, nft, sample, testrun, xdpfilter

    runners = {"testrun": testrun.run, "xdpfilter": xdpfilter.run, "nft": nft.run, "import": imports.run,
               "sample": sample.run, "lb": lb.run, "lblab": lb_lab.run, "fleet": fleet.run}
    keys = {"import": "imports", "lblab": "lb_lab"}
    try:
        for name in cfg.sections:
            t = time.monotonic()
            log(f"== section {name}")
            try:
                with every_cpu() if name in EVERY_CPU else contextlib.nullcontext():
                    results["sections"][keys.get(name, name)] = runners[name](cfg)
            except KeyboardInterrupt:
                results["errors"].append(f"section {name}: interrupted")
                raise
            except Exception as exc:
                results["errors"].append(f"section {name} failed: {type(exc).__name__}: {exc}")
                log(f"section {name} failed:\n{traceback.format_exc()}")
            finally:
                CLEANUP.run_all()
                results["timing"][name] = {"seconds": time.monotonic() - t}
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return True
    return False


def _finish(results: dict, cfg: Config, t_start: float) -> None:
    results["seconds"] = time.monotonic() - t_start
    results["loadavg_end"] = _loadavg()
    end = _product()
    if end["commit"] != results["product"]["commit"]:
        results["notes"].append(f"xdpctl changed during the run: commit {results['product']['commit']} at the start, "
                                f"{end['commit']} at the end. BPF objects were pinned to the start's build; "
                                f"subprocesses (CLI, import worker) load the Python code current when they start.")
    _collect_problems(results)
    results["notes"] += _notes(cfg)


def _write(results: dict, cfg: Config, out_dir: str) -> None:
    """The run's JSON, latest*.md/json beside it, the report on stdout."""
    os.makedirs(out_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = "-quick" if cfg.quick else ""
    if cfg.sections != SECTIONS:
        suffix += "-partial"
    json_path = os.path.join(out_dir, f"run-{stamp}{suffix}.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    md = report.render(results)
    md_name = "latest.md" if not suffix else f"latest{suffix}.md"
    for name, data in ((md_name, md), (md_name.replace(".md", ".json"), json.dumps(results, indent=1, default=str))):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(data)
    if not suffix:  # the full run: the pair meant to be committed
        for name, data in (("benchmarks.md", md), ("benchmarks.json", json.dumps(results, indent=1, default=str))):
            with open(os.path.join(DOCS_DIR, name), "w") as f:
                f.write(data)
        log(f"wrote docs/benchmarks.md and docs/benchmarks.json (commit {results['product']['commit']}, "
            f"{'uncommitted changes' if results['product']['dirty'] else 'clean tree'})")
    sys.stdout.write(md)
    log(f"wrote {os.path.relpath(json_path)} and {os.path.relpath(os.path.join(out_dir, md_name))} "
        f"in {results['seconds'] / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    cfg, out_dir, render = _config(argv)
    if render:
        return _render_saved(render, out_dir)
    problems = _preflight()
    if problems:
        sys.stderr.write("bench: cannot run: " + "; ".join(problems) + "\n")
        return 2
    cfg.cpu = bench_cpu()
    install_signal_handlers()
    _cleanup_stale()

    t_start = time.monotonic()
    results: dict = {"machine": machine_info(), "config": asdict(cfg), "product": _product(),
                     "loadavg_start": _loadavg(), "sections": {}, "timing": {}, "errors": [], "notes": []}
    log(f"bench: {'quick' if cfg.quick else 'full'} run, sections {', '.join(cfg.sections)}, CPU {cfg.cpu}")
    build.build_all()
    obj_dir, results["product"]["objects"] = _snapshot_objects()
    if cfg.cpu is not None:
        os.sched_setaffinity(0, {cfg.cpu})
    try:
        interrupted = _run_sections(cfg, results)
    finally:
        CLEANUP.run_all()
        shutil.rmtree(obj_dir, ignore_errors=True)
    _finish(results, cfg, t_start)
    _write(results, cfg, out_dir)
    return 130 if interrupted else 0


def _render_saved(path: str, out_dir: str) -> int:
    """The reports of a saved run, written again (after a change to report.py)."""
    with open(path) as f:
        results = json.load(f)
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items()
             if k in Config.__dataclass_fields__}
    _write(results, Config(**saved), out_dir)
    return 0


def _collect_problems(results: dict) -> None:
    s = results["sections"]
    for e in s.get("testrun", {}).get("raw", []) + s.get("testrun", {}).get("sizing", []):
        if "failed" in e:
            results["errors"].append(f"test-run IPv{e['family']} {e['kind']} {e['count']}: {e['failed']}")
        for err in e.get("errors", []):
            results["errors"].append(f"test-run IPv{e['family']} {e['kind']} {e['count']}: {err}")
    results["errors"] += s.get("lb", {}).get("per_packet", {}).get("errors", [])
    for r in s.get("xdpfilter", {}).get("rows", []):
        for err in r.get("errors", []):
            results["errors"].append(f"xdp-filter IPv{r['family']} {r['count']}: {err}")
    for r in s.get("nft", {}).get("load", []):
        if "error" in r:
            results["errors"].append(f"nft load IPv{r['family']} {r['kind']} {r['count']}: {r['error']}")
    for r in s.get("nft", {}).get("traffic", []):
        if "error" in r:
            results["errors"].append(f"traffic {r['count']} rules: {r['error']}")
        for k, v in r.items():
            if isinstance(v, dict) and v.get("dropped_fraction", 1) < 0.99:
                results["errors"].append(f"traffic {r['count']} rules, {k}: only {v['dropped_fraction']:.1%} "
                                         f"of the frames were counted by the receiver")
    for e in s.get("imports", {}).get("sets", []):
        for k in ("cli", "api", "api_nogc"):
            if k in e and "error" in e[k]:
                results["errors"].append(f"import IPv{e['family']} {e['kind']} ({k}): {e[k]['error']}")
        for k in ("api", "api_nogc"):
            missing = e.get(k, {}).get("not_wrapped")
            if missing:
                results["errors"].append(f"import breakdown ({k}): bench/instrument.py names what xdpctl no longer "
                                         f"has: {', '.join(missing)}")
    for e in s.get("lb_lab", {}).get("errors", []):
        results["errors"].append(f"lb lab: {e}")


def _notes(cfg: Config) -> list[str]:
    return [
        "BPF_PROG_TEST_RUN numbers are the kernel's own average over the repeats (integer ns) and include "
        "the test-run loop itself (the 'empty XDP program' row of 2d).",
        "Ratios in one table come from the same run; peers are measured in alternating rounds "
        "(A, B, C, A, B, C, ...), medians per peer.",
        "The traffic generator and the receiver share one CPU (veth NAPI runs right after each batch of "
        "generated frames), so Mpps include the generator's own cost; 'ns above floor' removes it.",
        "Traffic runs use one source address (the match case of the IPv4 exact set); misses would go up "
        "the stack and are not part of the traffic comparison.",
        "nftables IPv6 and xdp-filter beyond its compiled-in map size are not measured; see each table.",
    ]


if __name__ == "__main__":
    sys.exit(main())
