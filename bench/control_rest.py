"""REST rows of the control-plane section: a real service (`xdpctl serve`,
uvicorn, a child process) and a client here.

single   POST /v1/block of one /32, N times in a row: p50 / p99 (ms), first
         with no list, then with a list of ``count`` members alone. Each
         row starts from a settled service (no catch-up pending) on an
         idle machine (common.settle): the kernel freeing maps an earlier
         row or section removed, or the catch-up of the PUT before it,
         would otherwise run beside the first requests on these 2 CPUs.
bulk     the list removed, POST /v1/block with 10,000 prefixes (the JSON
         item limit) until 100,000 rules are present: seconds per request;
         then the singles again beside those rules.
put      PUT /v1/lists/big, ``count`` prefixes as text/plain, alone and
         with those 100,000 rules present; then as JSON ({"prefixes":
         [...]}) beside them: each row PUT_RUNS times (the list removed
         and the service settled in between), median and spread.
memory   the service's peak RSS (VmHWM) before the last two PUT rows, and
         in each of them (the peak is reset before each).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

from .common import log, median, pin_dir, settle, summary, temp_dir

TOKEN = "xcbench-token-0123456789abcdef"
PUT_RUNS = 3  # PUTs per PUT row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _singles(client, n: int, third: int) -> dict:
    _settle(client)
    settle()
    times = []
    for i in range(n):
        t = time.perf_counter()
        r = client.post("/v1/block", json={"prefixes": [f"10.{third}.{i // 250}.{i % 250 + 1}"]})
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return {"p50_ms": _percentile(times, 0.5), "p99_ms": _percentile(times, 0.99), "max_ms": max(times), "n": n}


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _start(pins: str, state: str, port: int) -> subprocess.Popen:
    from .imports import _env, _xdpctl

    tok = os.path.join(state, "bench-token")
    os.makedirs(state, exist_ok=True)
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    return subprocess.Popen(_xdpctl() + ["--pin-dir", pins, "--state-dir", state, "serve", "--port", str(port),
                                         "--token-file", tok], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())


def _wait_up(client, proc: subprocess.Popen, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"xdpctl serve exited with {proc.returncode}")
        try:
            client.get("/healthz")
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("xdpctl serve did not answer within the deadline")


def _put(client, body: str | bytes, ctype: str = "text/plain") -> float:
    t = time.perf_counter()
    client.put("/v1/lists/big", content=body, headers={"Content-Type": ctype}).raise_for_status()
    return time.perf_counter() - t


def _reset_hwm(pid: int) -> None:
    """Start the peak RSS (VmHWM) again from the current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def _settle(client) -> None:
    """Let the service finish a change's deferred catch-up (GET /healthz
    runs a pending one first), so the next timed request starts clean."""
    client.get("/healthz")


def _puts(client, proc: subprocess.Popen | None, body: str | bytes, ctype: str, runs: int) -> dict:
    """PUT the list ``runs`` times (removed and settled in between; the
    last one left in place, its catch-up not waited for): the row's
    summary, with ``proc`` the service's peak RSS over the runs as rss_mb
    (reset before each)."""
    samples = []
    for i in range(runs):
        if i:
            _settle(client)
            client.delete("/v1/lists/big").raise_for_status()
            _settle(client)
        if proc is not None:
            _reset_hwm(proc.pid)
        t = _put(client, body, ctype)
        samples.append({"s": t, "rss_mb": _hwm_mb(proc.pid) if proc is not None else 0.0})
    return summary(samples)


def _measure(client, proc: subprocess.Popen, list_text: str, n: int, others: int, runs: int = PUT_RUNS) -> dict:
    """Singles with no list, then with the list alone; the list goes, the
    other rules come (bulk), and the list is PUT again beside them. Each
    PUT row is ``runs`` PUTs of the list."""
    out: dict = {"block_no_list": _singles(client, n, 200), "others": others}
    alone = _puts(client, None, list_text, "text/plain", runs)
    out["put_list_alone_s"], out["put_list_alone"] = alone["median"], alone
    out["block_with_list"] = _singles(client, n, 201)
    client.delete("/v1/lists/big").raise_for_status()
    bulk = []
    for k in range(others // 10_000):
        body = {"prefixes": [f"11.{k}.{i // 250}.{i % 250 + 1}" for i in range(10_000)]}
        t = time.perf_counter()
        client.post("/v1/block", json=body).raise_for_status()
        bulk.append(time.perf_counter() - t)
    out["bulk_10k_s"] = {"median": median(bulk), "n": len(bulk)}
    out["block_beside_rules"] = _singles(client, n, 202)
    log(f"control: PUT /v1/lists {list_text.count(chr(10)):,} prefixes beside {others:,} rules ({runs} runs)")
    out["service_hwm_mb"] = _hwm_mb(proc.pid)  # before the list rows: the peak of everything else
    beside = _puts(client, proc, list_text, "text/plain", runs)
    out["put_list_s"], out["put_list_hwm_mb"], out["put_list"] = beside["median"], beside["rss_mb"], beside
    _settle(client)
    client.delete("/v1/lists/big").raise_for_status()
    _settle(client)
    body = json.dumps({"prefixes": list_text.split()}).encode()
    log(f"control: PUT /v1/lists {len(body):,} bytes of JSON beside {others:,} rules ({runs} runs)")
    js = _puts(client, proc, body, "application/json", runs)
    out["put_list_json_s"], out["put_list_json_hwm_mb"], out["put_list_json"] = js["median"], js["rss_mb"], js
    return out


def run(work: str, count: int, n: int) -> dict:
    import httpx

    from . import rulesets
    from xdpctl.demo import stop_api
    from xdpctl.kernel import bpffs

    pins, state = pin_dir("rest"), temp_dir("rest")
    text = rulesets.make(4, "exact", count).text()
    port = _free_port()
    proc = _start(pins, state, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            _wait_up(client, proc)
            log(f"control: REST singles and bulk ({n} single POSTs per row)")
            return _measure(client, proc, text, n, 100_000 if count >= 1_000_000 else 10_000)
    finally:
        stop_api(proc)
        bpffs.remove_tree(pins)


def main() -> int:
    """python -m bench.control_rest [COUNT] [POSTS]: the REST rows alone."""
    import sys

    from .common import CLEANUP, temp_dir

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    posts = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    try:
        res = run(temp_dir("control"), count, posts)
    finally:
        CLEANUP.run_all()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
