"""xdpctl command line: thin over the core services.

Every command parses its arguments, calls one core function and renders the
result (a rich table, or the resource's view as JSON with --json). Errors are
one line on stderr and a non-zero exit code (the README's exit-code table).

    app.py     the typer app, global options, JSON output, error rendering
    hooks.py   attach, detach, status, stats, probe
    rules.py   block, allow, unblock, rules, lists, import, export, policy, revision, expire
    ops.py     lookup, apply, dump
    lb.py      lb vip, lb backend, lb stats
    system.py  restore, serve, version
    verbs.py   which module holds each verb; a run imports only that one
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from ..core import arenas, blas
from .app import Global, app, hand_off


def main() -> None:
    arenas.limit()  # before any thread (the service's pool, the kernel writers)
    blas.one_thread()  # before numpy is imported (xdpctl.core.blas)
    Global.detach = True
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        hand_off()
    _exit(code)


def _exit(code: int | str | None) -> None:
    """End the command as SystemExit(code) would, without tearing the
    interpreter down: freeing every module and object of a run costs
    40-80 ms (a 0.2 s `xdpctl block` is a fifth shorter without it), and
    everything the command owns is closed by then (its contexts, the
    database, the catch-up handed to its child). Exit handlers still run
    and the output is flushed; with a thread still alive the interpreter
    ends as usual (it waits for that thread)."""
    if threading.active_count() > 1:
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the interpreter's own exit says 120
            if stream is sys.stdout and code == 0:
                code = 120
    os._exit(code)


__all__ = ["app", "main"]
