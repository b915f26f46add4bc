"""The context every core service works in: settings, state, the lock."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..config import Settings
from ..kernel import bpffs
from .state import State


class Context:
    """Settings plus lazily opened state; one per CLI run or API process."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self._state: State | None = None

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = State(self.settings.db_path)
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
