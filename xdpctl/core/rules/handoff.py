"""A whole-image change's catch-up, run after the command that made it.

A change that wrote one whole image into the standby rule set flips xc_cfg
to it (the data path enforces the new revision from then on), commits the
database, and still has to write the same change into the other set (the
catch-up, rules.tables.CatchUp) before both sets are in sync. A context
with ``defer_catch_up`` leaves that job in ``Context.pending_catch_up``;
the service runs it after answering (api.deps), a short-lived command hands
it to a child process of its own here (:func:`detach`), so the command
returns once its change is enforced.

Until the catch-up has run, xc_cfg.synced is DEFERRED: any other writer
takes the writer lock after it (the child holds it while it writes), and a
writer that gets the lock first, or finds the child gone (killed, or the
pins removed), rewrites the standby set in full, as after any interrupted
write. Nothing here is needed for correctness of the active set.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from ...config import Settings
from ...kernel import bpffs
from ..context import Context
from .tables import CatchUp, run_catch_up


def _lock(settings: Settings, wait: bool) -> bpffs.DirLock | None:
    """The writer lock, taken; None when the pin directory is gone (or,
    not waiting, when another writer holds it)."""
    try:
        return bpffs.DirLock(settings.pin_dir, wait=wait, create=False).__enter__()
    except (FileNotFoundError, NotADirectoryError, BlockingIOError):
        return None


def run(settings: Settings, job: CatchUp, lock: bpffs.DirLock | None = None) -> bool:
    """Run a deferred catch-up in this process, under the writer lock
    (``lock`` if taken already, else waiting for it; not Context.writer,
    which would take it again on a descriptor of its own): tables.run_catch_up.
    False when nothing was written (the pin directory or the maps gone, or
    a later change made it moot)."""
    lock = lock or _lock(settings, wait=True)
    if lock is None:
        return False
    try:
        with Context(settings) as ctx:
            return run_catch_up(ctx, job)
    finally:
        lock.__exit__(None, None, None)


def detach(settings: Settings, job: CatchUp) -> None:
    """Hand a deferred catch-up to a child process of its own (a new
    session, standard streams on /dev/null) and return once the child has
    tried the writer lock: from then on it holds the lock, or
    another writer got it first (the child waits for it), so whoever takes
    the lock after this returns comes after the catch-up. This process may
    exit at once. A process with other threads alive is not forked (a lock
    one of them holds would stay held in the child): the catch-up then runs
    here, before returning."""
    if threading.active_count() > 1:
        run(settings, job)
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    tried, told = os.pipe()
    pid = os.fork()
    if pid:
        os.close(told)
        try:
            os.read(tried, 1)  # a byte once it has tried; end of file if it died first
        finally:
            os.close(tried)
        return
    code = 1
    try:  # the child: never returns into the caller
        os.close(tried)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        logging.disable(logging.CRITICAL)  # its handlers write to the streams the parent had
        lock = _lock(settings, wait=False)
        os.write(told, b".")
        os.close(told)
        if lock is not None or os.path.isdir(settings.pin_dir):
            run(settings, job, lock)
        code = 0
    finally:
        os._exit(code)
