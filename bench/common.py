"""Shared helpers: paths, logging, timing, cleanup, machine facts."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Iterable

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
BPF_SRC_DIR = os.path.join(BENCH_DIR, "bpf")
BUILD_DIR = os.path.join(BENCH_DIR, "build")
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
VENV_BIN = os.path.join(REPO_DIR, ".venv", "bin")

# Every pin directory, namespace and nftables table the bench makes carries
# this in its name, so a crashed run's leftovers are easy to recognise.
TAG = "xcbench"

_T0 = time.monotonic()


def log(msg: str) -> None:
    """Progress on stderr (tables go to stdout)."""
    sys.stderr.write(f"[{time.monotonic() - _T0:7.1f}s] {msg}\n")
    sys.stderr.flush()


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def spread(xs: Iterable[float]) -> float:
    """(max - min) / median, as a fraction: how noisy a set of runs was."""
    xs = list(xs)
    if len(xs) < 2:
        return 0.0
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m if m else 0.0


def summary(samples: list[dict], key: str = "s") -> dict:
    """Runs of one row (each a dict with ``key`` seconds and ``rss_mb``):
    median, min, max, spread, count, the peak RSS, and the runs' errors;
    the median of "settled_s" too when every run has one."""
    xs = [s[key] for s in samples]
    out = {"median": median(xs), "min": min(xs), "max": max(xs), "spread": spread(xs), "n": len(xs),
           "rss_mb": max(s["rss_mb"] for s in samples), "errors": [s["error"] for s in samples if "error" in s]}
    if all("settled_s" in s for s in samples):  # a CLI change: until the writer lock was free again
        out["settled"] = median([s["settled_s"] for s in samples])
    return out


@contextlib.contextmanager
def every_cpu():
    """Let the calling thread (and what it starts) run on every CPU for the
    with-block: control-plane rows time whole processes, which use more
    than one CPU (a map-writer thread, parallel batch writes)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


@contextlib.contextmanager
def pinned_cpu(cpu: int | None):
    """Pin the calling thread to one CPU for the with-block."""
    if cpu is None:
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def bench_cpu() -> int | None:
    """The CPU measurements run on: the last one (CPU 0 takes most IRQs)."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) > 1 else None


# ---------------------------------------------------------------------------
# Cleanup: everything the bench makes is registered here at creation time and
# removed in reverse order at the end, after an exception, on SIGINT/SIGTERM
# and at interpreter exit.
# ---------------------------------------------------------------------------
class Cleanup:
    def __init__(self) -> None:
        self._stack: list[tuple[str, Callable[[], None]]] = []
        self._lock = threading.Lock()

    def push(self, what: str, fn: Callable[[], None]) -> Callable[[], None]:
        """Register fn; returns a callable that runs it now (once) instead."""
        entry = (what, fn)
        with self._lock:
            self._stack.append(entry)

        def now() -> None:
            with self._lock:
                try:
                    self._stack.remove(entry)
                except ValueError:
                    return
            _quiet(what, fn)

        return now

    def run_all(self) -> None:
        if os.getpid() != _MAIN_PID:  # a forked helper: not ours to clean
            return
        while True:
            with self._lock:
                if not self._stack:
                    return
                what, fn = self._stack.pop()
            _quiet(what, fn)


def _quiet(what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception as exc:  # cleanup goes on with the next item
        log(f"cleanup: {what}: {exc}")


CLEANUP = Cleanup()


_MAIN_PID = os.getpid()


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP unwind the bench like Ctrl-C, so cleanup runs. Only in
    this process: helpers that fork (pyroute2 does, to open a netlink socket
    in a namespace) inherit the handler and must simply die as usual."""
    def handler(signum, _frame):
        if os.getpid() != _MAIN_PID:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def _busy_s() -> float:
    """CPU seconds the machine has been busy (every CPU, since boot)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def settle(limit_s: float = 10.0, step_s: float = 0.25, busy_max: float = 0.15) -> float:
    """Wait until the machine is idle (less than ``busy_max`` of one CPU
    busy over a step, this process's own sleep included), at most
    ``limit_s``; the seconds waited. Removing a pinned hash of a million
    entries, or an nft set, frees them in the kernel's workers for about a
    second afterwards: without this, that work lands in the next timed run."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        b0 = _busy_s()
        time.sleep(step_s)
        if (_busy_s() - b0) / step_s < busy_max:
            break
    return time.perf_counter() - t0


def remove_pins(path: str) -> None:
    """Remove a pin directory, then wait for the kernel to free its maps
    (settle): a timed run after it starts on an idle machine."""
    from xdpctl.kernel import bpffs

    bpffs.remove_tree(path)
    settle()


def temp_dir(label: str) -> str:
    d = tempfile.mkdtemp(prefix=f"{TAG}-{label}-")
    CLEANUP.push(f"remove {d}", lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def pin_dir(label: str) -> str:
    """A fresh bpffs pin directory name (not created), removed at cleanup."""
    from xdpctl.kernel import bpffs

    path = f"/sys/fs/bpf/{TAG}-{os.getpid()}-{label}-{os.urandom(3).hex()}"
    CLEANUP.push(f"remove pins {path}", lambda: bpffs.remove_tree(path))
    return path


def run_cmd(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, **kw)


def _first_line(args: list[str]) -> str:
    try:
        p = run_cmd(args, timeout=10)
        out = (p.stdout or p.stderr).strip().splitlines()
        return out[0] if out else "?"
    except Exception:
        return "?"


def machine_info() -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem_gb = f"{kb / 1024 / 1024:.1f}"
    except (OSError, ValueError, IndexError):
        pass
    virt = _first_line(["systemd-detect-virt"])
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu,
        "memory_gb": mem_gb,
        "virtualization": virt,
        "python": platform.python_version(),
        "clang": _first_line(["clang", "--version"]),
        "xdp_tools": _first_line(["xdp-filter", "load", "--version"]),
        "nftables": _first_line(["nft", "--version"]),
        "jit": _read("/proc/sys/net/core/bpf_jit_enable"),
        "bpf_stats": _read("/proc/sys/kernel/bpf_stats_enabled"),
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"
