"""The context every core service works in: settings, state, the lock."""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from ..config import Settings, load_settings
from ..kernel import bpffs
from .errors import NotRoot, StateError
from .state import State

if TYPE_CHECKING:
    from ..kernel.maps import Map

# sqlite's words for a file it may not open or write
_DENIED_WORDS = ("unable to open", "readonly", "read-only", "permission", "access")


class WouldBlock(Exception):
    """A change asked not to wait (``Context.no_wait``) would have to: the
    writer lock is held elsewhere, or it needs a whole-image write. Raised
    before anything is changed; the caller runs it again where it may wait."""


class Context:
    """Settings plus lazily opened state; one per CLI run or API process."""

    # Set by a caller that must not wait (the service's event loop): the
    # writer lock is only tried, and whole-image writes are refused, both
    # with WouldBlock before anything has changed.
    no_wait = False
    # Set by the service and by the xdpctl command: a change that wrote a
    # whole image flips xc_cfg and leaves the other set's catch-up
    # (rules.tables.CatchUp) here, for DropList.catch_up() once the change
    # is answered (the command's goes to a child process: rules.handoff);
    # until then that set is marked DEFERRED and a writer that gets the
    # lock first rewrites it in full.
    defer_catch_up = False
    pending_catch_up = None

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self._state: State | None = None
        self._pinned: dict[str, tuple[tuple[int, int] | None, Map]] = {}

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = open_state(self.settings.db_path)
        return self._state

    def pins_in(self, directory: str) -> dict[str, tuple[int, int]]:
        """The pins in a directory by name, each as (device, inode): one
        directory read (the inode comes with each entry), for
        :meth:`pinned_map`. Empty when the directory does not exist."""
        try:
            dev = os.stat(directory).st_dev
            with os.scandir(directory) as it:
                return {e.name: (dev, e.inode()) for e in it}
        except FileNotFoundError:
            return {}

    def pinned_map(self, path: str, pin: tuple[int, int] | None = None) -> Map:
        """The map pinned at ``path``, opened once for this context (the
        service's changes then open no map): opened again when the pin is a
        new one (pins removed and made again, ``restore``), checked by the
        pin's inode on every call (``pin``: as :meth:`pins_in` just read it)."""
        from ..kernel.maps import Map

        if pin is None:
            try:
                st = os.stat(path)
                pin = (st.st_dev, st.st_ino)
            except OSError:
                pass  # no pin: opening it fails with the kernel's error
        known = self._pinned.pop(path, None)
        if known is not None and pin is not None and known[0] == pin:
            self._pinned[path] = known
            return known[1]
        if known is not None:
            known[1].close()
        m = Map.from_pin(path)
        self._pinned[path] = (pin, m)
        return m

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None
        for _pin, m in self._pinned.values():
            m.close()
        self._pinned.clear()

    def kernel_ready(self) -> None:
        """Root, bpffs mounted, pin directory present."""
        bpffs.require_root()
        bpffs.ensure_bpffs(self.settings.pin_dir)
        bpffs.makedirs(self.settings.pin_dir)

    @contextmanager
    def writer(self) -> Iterator[State]:
        """Serialise writers: pin-directory lock, then one SQLite transaction."""
        self.kernel_ready()
        lock = bpffs.DirLock(self.settings.pin_dir, wait=not self.no_wait)
        try:
            lock.__enter__()
        except BlockingIOError:
            raise WouldBlock("another writer holds the pin directory") from None
        try:
            with self.state.tx():
                yield self.state
        finally:
            lock.__exit__(None, None, None)

    def long_write(self) -> None:
        """Called before a whole-image write (compile and sync of the rule
        set): a caller that must not wait gets WouldBlock."""
        if self.no_wait:
            raise WouldBlock("a whole-image write")

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_state(path: str) -> State:
    """Open the state database; a failure is NotRoot (exit 77) when a
    non-root user may not reach it, else StateError (exit 12)."""
    try:
        return State(path)
    except (OSError, sqlite3.Error) as exc:
        raise state_error(path, exc) from None


def state_error(path: str, exc: BaseException) -> NotRoot | StateError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    denied = (isinstance(exc, PermissionError)
              or (isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS))
              or (isinstance(exc, sqlite3.Error) and any(w in str(exc).lower() for w in _DENIED_WORDS)))
    if denied and os.geteuid() != 0:
        return NotRoot(f"xdpctl needs root for this command: the state database {path} is not accessible "
                       f"to uid {os.geteuid()} ({reason})")
    return StateError(f"cannot open the state database {path}: {reason}", value=path,
                      hint="check that the state directory ({field:state_dir}) is a writable directory")
