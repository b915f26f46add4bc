"""The C allocator's arena cap (xdpctl.core.arenas): threads that allocate
share ARENAS arenas instead of one each. glibc itself reports its arenas
(malloc_info: one <heap> element per arena). Each case runs in a fresh
interpreter, so no thread of the test session has made arenas before."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from xdpctl.core import arenas

THREADS_ALLOCATE = """
import ctypes, sys, threading
from xdpctl.core import arenas
if sys.argv[1] == "limit":
    assert arenas.limit()
go = threading.Barrier(8)
def work():
    go.wait()  # all alive at once: none can inherit another's free arena
    bufs = [bytearray(300_000) for _ in range(20)]  # past pymalloc: malloc's own
    go.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
f = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(f))
libc.fclose(ctypes.c_void_p(f))
"""


def _heaps(tmp_path, mode: str, env: dict | None = None) -> int:
    out = tmp_path / f"info-{mode}.xml"
    subprocess.run([sys.executable, "-c", THREADS_ALLOCATE, mode, str(out)], check=True,
                   env={**os.environ, **(env or {})})
    return len(re.findall(r'<heap nr="\d+">', out.read_text()))


def test_threads_share_the_capped_arenas(tmp_path):
    assert _heaps(tmp_path, "limit") == arenas.ARENAS


def test_without_the_cap_each_thread_takes_an_arena(tmp_path):
    # what the cap prevents: the main arena and the eight threads' (glibc allows 8 per CPU)
    assert _heaps(tmp_path, "none") == min(9, 8 * (os.cpu_count() or 1))


def test_an_operators_setting_stands(tmp_path):
    probe = "import sys; from xdpctl.core import arenas; sys.exit(0 if arenas.limit() is False else 1)"
    subprocess.run([sys.executable, "-c", probe], check=True, env={**os.environ, "MALLOC_ARENA_MAX": "4"})
    subprocess.run([sys.executable, "-c", probe], check=True,
                   env={**os.environ, "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
