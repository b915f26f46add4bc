"""Compile the bench-only BPF programs (bench/bpf/*.c -> bench/build/*.o)."""

from __future__ import annotations

import glob
import os
import platform
import subprocess

from .common import BPF_SRC_DIR, BUILD_DIR, REPO_DIR, log

ARCH_INC = f"/usr/include/{platform.machine()}-linux-gnu"
# bpf/include: probe_parse.c runs xdpctl's own parser
CFLAGS = ["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-Wno-unused-function",
          "-I", ARCH_INC, "-I", os.path.join(REPO_DIR, "bpf", "include")]


def build_all() -> dict[str, str]:
    """Build every bench program whose object is missing or older than its
    source; returns name -> object path."""
    os.makedirs(BUILD_DIR, exist_ok=True)
    out = {}
    for src in sorted(glob.glob(os.path.join(BPF_SRC_DIR, "*.c"))):
        name = os.path.splitext(os.path.basename(src))[0]
        obj = os.path.join(BUILD_DIR, f"{name}.o")
        deps = [src] + glob.glob(os.path.join(REPO_DIR, "bpf", "include", "*.h")) + \
            glob.glob(os.path.join(BPF_SRC_DIR, "*.h"))
        if not os.path.exists(obj) or os.path.getmtime(obj) < max(map(os.path.getmtime, deps)):
            log(f"clang {os.path.relpath(src)}")
            subprocess.run([os.environ.get("CLANG", "clang"), *CFLAGS, "-c", src, "-o", obj], check=True)
        out[name] = obj
    return out


_built: dict[str, str] = {}


def obj(name: str) -> str:
    """Path of a bench object, (re)built first if stale."""
    if not _built:
        _built.update(build_all())
    return _built[name]
