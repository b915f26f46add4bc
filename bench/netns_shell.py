"""A long-lived shell inside a network namespace (`ip netns exec NS bash`).

`ip netns exec` gives every invocation a fresh mount namespace with its own
/sys, so a bpffs mounted there (and every pin libxdp makes in it) lives only
as long as that one process. Tools that pin on one invocation and read the
pins on the next (xdp-filter load, then xdp-filter ip) must therefore run
in the same shell, which this class keeps open.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
import uuid

from .common import CLEANUP


class ShellError(RuntimeError):
    pass


class NetnsShell:
    def __init__(self, netns: str, timeout: float = 600.0):
        self.netns = netns
        self.timeout = timeout
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", netns, "bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._reader, name=f"shell-{netns}", daemon=True).start()
        self._cleanup = CLEANUP.push(f"close shell in {netns}", self.close)

    def _reader(self) -> None:
        for line in self.p.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def run(self, cmd: str, check: bool = True) -> tuple[int, str, float]:
        """Run one command line; returns (exit code, output, seconds)."""
        marker = f"__xcbench_{uuid.uuid4().hex}__"
        t = time.perf_counter()
        self.p.stdin.write(f"{cmd}\necho {marker} $?\n")
        self.p.stdin.flush()
        out = []
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShellError(f"{cmd!r}: no answer within {self.timeout:g}s")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise ShellError(f"{cmd!r}: shell in {self.netns} exited")
            if marker in line:  # also after output that did not end its line
                head, _, tail = line.partition(marker)
                out.append(head)
                rc = int(tail.split()[0])
                break
            out.append(line)
        dt = time.perf_counter() - t
        text = "".join(out)
        if check and rc != 0:
            raise ShellError(f"{cmd!r} failed ({rc}): {text.strip()[-400:]}")
        return rc, text, dt

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.write("exit\n")
                self.p.stdin.flush()
                self.p.wait(5)
            except Exception:
                self.p.kill()
                self.p.wait()
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except Exception:
                pass
