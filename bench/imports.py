"""Section 5: how long a 1,000,000-prefix list takes to import.

Three measurements per rule set, each with a fresh state directory and a
fresh bpffs pin directory (so the shared maps are created as on a new host):

cli      `xdpctl --pin-dir P --state-dir S import FILE --json` as a
         subprocess: wall time from fork to exit, Python start-up included
         (the list is enforced when it exits); then until the pin
         directory's writer lock is free again: the other rule set's
         catch-up, which the command leaves to a process of its own, done.
api      a fresh Python process (``python -m bench.imports worker``) that
         parses the file and calls DropList.import_list, with the core
         functions wrapped by timers (bench/instrument.py): wall time of
         parse + import_list, and where it went.
api-nogc the same with Python's cyclic garbage collector disabled around
         the import (full run only, first rule set): how much of the time is
         the collector walking the millions of objects the import makes.

A fresh process per measurement keeps the bench's own heap (the rule sets
it holds) out of the product's timings.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

from xdpctl.kernel import bpffs

from .common import REPO_DIR, VENV_BIN, log, pin_dir, remove_pins, temp_dir
from . import rulesets


def _python() -> str:
    exe = os.path.join(VENV_BIN, "python")
    return exe if os.path.exists(exe) else sys.executable


def _xdpctl() -> list[str]:
    exe = os.path.join(VENV_BIN, "xdpctl")
    return [exe] if os.path.exists(exe) else [_python(), "-m", "xdpctl.cli"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(path: str, label: str) -> dict:
    pins, state = pin_dir(f"cli{label}"), temp_dir(f"cli{label}")
    args = _xdpctl() + ["--pin-dir", pins, "--state-dir", state, "import", path, "--list", "bench", "--json"]
    t = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, env=_env())
    dt = time.perf_counter() - t
    out = {"s": dt, "rc": p.returncode}
    if os.path.isdir(pins):  # the other rule set's catch-up (a process of its own) holds the writer lock
        with bpffs.DirLock(pins, create=False):
            out["settled_s"] = time.perf_counter() - t
    remove_pins(pins)
    if p.returncode != 0:
        out["error"] = (p.stderr or p.stdout).strip()[-500:]
    return out


def run_cli_startup() -> float:
    """Wall time of `xdpctl version`: interpreter start plus CLI imports."""
    t = time.perf_counter()
    subprocess.run(_xdpctl() + ["version"], capture_output=True, env=_env())
    return time.perf_counter() - t


def run_worker(path: str, label: str, gc_off: bool = False) -> dict:
    pins, state = pin_dir(f"api{label}"), temp_dir(f"api{label}")
    args = [_python(), "-m", "bench.imports", "worker", path, pins, state] + (["--gc-off"] if gc_off else [])
    p = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=REPO_DIR)
    remove_pins(pins)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip()[-800:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# The worker (a separate process)
# ---------------------------------------------------------------------------
def worker(path: str, pins: str, state: str, gc_off: bool) -> dict:
    from tests.support.progs import temp_settings
    from xdpctl.core.context import Context
    from xdpctl.core.rules.members import Members
    from xdpctl.core.rules.service import DropList

    from .instrument import Profiler

    prof = Profiler().install()
    settings = temp_settings(state)
    settings.pin_dir = pins
    ctx = Context(settings)
    try:
        if gc_off:
            gc.disable()
        t0 = time.perf_counter()
        with open(path, "rb") as f:  # as `xdpctl import` and PUT /v1/lists read a list
            pfx = Members.parse(f.read())
        t1 = time.perf_counter()
        prof.watch_db(ctx.state)
        res = DropList(ctx).import_list("bench", pfx, source=path)
        t2 = time.perf_counter()
        gc.enable()
        return {"total_s": t2 - t0, "parse_s": t1 - t0, "import_list_s": t2 - t1, "count": len(pfx),
                "breakdown": prof.breakdown(), "not_wrapped": prof.missing, "notes": res.notes, "gc_off": gc_off,
                "max_rss_mb": _max_rss_mb()}
    finally:
        ctx.close()
        remove_pins(pins)


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------
# Kernel write rate: batch updates into the two kinds of hash map
# ---------------------------------------------------------------------------
def kernel_write_rates(n: int, runs: int) -> dict:
    """Seconds to batch-insert n random 8-byte keys (16-byte values) into an
    empty 2M-entry hash, per-element allocated vs preallocated; plus the time
    to create the maps (load the object)."""
    import random
    import struct as st

    from xdpctl.kernel import objects

    from . import build
    from .common import median

    rng = random.Random(7)
    addrs = rng.sample(range(1 << 32), n)
    keys = b"".join(st.pack("=II", 0, a) for a in addrs)
    vals = bytes(16) * n
    out: dict = {"n": n}
    for name in ("h_noprealloc", "h_prealloc"):
        times, creates = [], []
        for _ in range(runs):
            t = time.perf_counter()
            ld = objects.load(build.obj("map_insert"))
            creates.append(time.perf_counter() - t)
            try:
                with ld.map(name) as m:
                    t = time.perf_counter()
                    m.update_batch(keys, vals, n)
                    times.append(time.perf_counter() - t)
            finally:
                ld.close()
        out[name] = {"s": median(times), "samples": times, "per_s": n / median(times),
                     "create_s": median(creates)}
    return out


# ---------------------------------------------------------------------------
# The section
# ---------------------------------------------------------------------------
def run(cfg) -> dict:
    out = {"sets": [], "cli_startup_s": None}
    log("import: kernel batch-insert rate, hash with and without preallocation")
    out["kernel_write"] = kernel_write_rates(cfg.import_count, 3 if not cfg.quick else 1)
    work = temp_dir("import-files")
    out["cli_startup_s"] = min(run_cli_startup() for _ in range(3))
    tiny = rulesets.make(4, "exact", 1).write(os.path.join(work, "one.txt"))
    out["cli_one_prefix_s"] = min(run_cli(tiny, "one")["s"] for _ in range(2))
    first = True
    for family, kind in cfg.import_sets:
        rs = rulesets.make(family, kind, cfg.import_count)
        path = rs.write(os.path.join(work, f"v{family}-{kind}-{cfg.import_count}.txt"))
        entry = {"family": family, "kind": kind, "count": cfg.import_count,
                 "file_mb": os.path.getsize(path) / 1e6}
        log(f"import: IPv{family} {kind} {cfg.import_count:,}: xdpctl import (CLI)")
        entry["cli"] = run_cli(path, f"{family}{kind[0]}")
        log(f"import: IPv{family} {kind} {cfg.import_count:,}: DropList.import_list (instrumented)")
        entry["api"] = run_worker(path, f"{family}{kind[0]}")
        if first and cfg.import_gc_variant:
            log(f"import: IPv{family} {kind} {cfg.import_count:,}: same, garbage collector off")
            entry["api_nogc"] = run_worker(path, f"{family}{kind[0]}n", gc_off=True)
        first = False
        for k in ("cli", "api", "api_nogc"):
            if k in entry and "error" in entry[k]:
                log(f"  {k} FAILED: {entry[k]['error']}")
        os.unlink(path)
        out["sets"].append(entry)
    from . import control

    out["control"] = control.run(cfg)
    log("import: control-plane rows\n" + control.table(out["control"]))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.imports")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("file")
    w.add_argument("pins")
    w.add_argument("state")
    w.add_argument("--gc-off", action="store_true")
    a = ap.parse_args(argv)
    res = worker(a.file, a.pins, a.state, a.gc_off)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
