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

from ..core import arenas
from .app import Global, app, hand_off


def main() -> None:
    arenas.limit()  # before any thread (the service's pool, the kernel writers)
    Global.detach = True
    try:
        app()
    finally:
        hand_off()


__all__ = ["app", "main"]
