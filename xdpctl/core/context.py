"""The context every core service works in: settings, state, the lock."""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from ..config import Settings, load_settings
from ..kernel import bpffs
from .errors import NotRoot, StateError
from .state import State

# sqlite's words for a file it may not open or write
_DENIED_WORDS = ("unable to open", "readonly", "read-only", "permission", "access")


class Context:
    """Settings plus lazily opened state; one per CLI run or API process."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self._state: State | None = None

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = open_state(self.settings.db_path)
        return self._state

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    def kernel_ready(self) -> None:
        """Root, bpffs mounted, pin directory present."""
        bpffs.require_root()
        bpffs.ensure_bpffs(self.settings.pin_dir)
        bpffs.makedirs(self.settings.pin_dir)

    @contextmanager
    def writer(self) -> Iterator[State]:
        """Serialise writers: pin-directory lock, then one SQLite transaction."""
        self.kernel_ready()
        with bpffs.DirLock(self.settings.pin_dir):
            with self.state.tx():
                yield self.state

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
