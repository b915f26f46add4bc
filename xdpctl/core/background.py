"""A call run in a thread of its own while the caller goes on.

For work that spends its time in the kernel without the GIL (creating
maps, writing a batch of entries), beside Python work of the caller's."""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
_THREADS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()  # every Background's thread


def running() -> int:
    """Background threads alive now: they spend their time in the kernel
    and make few Python objects (gcpause does not count them)."""
    return sum(t.is_alive() for t in list(_THREADS))


class Background(Generic[T]):
    """``fn()`` started in a daemon thread named ``name``; :meth:`result`
    waits for it and returns its value or raises its exception."""

    def __init__(self, fn: Callable[[], T], name: str):
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        _THREADS.add(self._thread)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # re-raised by result()
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def wait(self) -> None:
        """Wait for it, whatever it did (a caller that no longer needs it)."""
        self._thread.join()
