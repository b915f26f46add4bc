"""Named network namespaces for one thread at a time.

setns(2) moves only the calling thread, so these helpers never change the
namespace of the rest of the process: ``in_netns`` moves the calling
thread for a with-block and back, ``run_in_netns`` runs a function in a
fresh thread inside the namespace, ``netns_socket`` makes a socket there
(a socket stays in the namespace it was made in, whichever thread uses
it). The lab (xdpctl.lab) and the kernel readers (neigh.py) build on them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def netns_path(name: str) -> str:
    """Path of the bind mount that keeps named namespace ``name`` alive."""
    from pyroute2 import netns as pr_netns

    return os.path.join(pr_netns.NETNS_RUN_DIR, name)


def netns_exists(name: str) -> bool:
    """True if a named network namespace ``name`` exists."""
    from pyroute2 import netns as pr_netns

    return name in pr_netns.listnetns()


def _setns(fd: int) -> None:
    # With an integer fd pyroute2's setns only calls setns(2) on the calling
    # thread; given a name it would create a missing namespace instead.
    from pyroute2 import netns as pr_netns

    pr_netns.setns(fd)


@contextlib.contextmanager
def in_netns(name: str | None) -> Iterator[None]:
    """Run the with-block with the calling thread in namespace ``name``.

    Only the calling thread moves (setns(2) is per thread); other threads and
    the rest of the process stay where they are. The thread returns to its
    previous namespace on exit, also when the block raises. ``None`` means
    "stay where you are", which lets callers pass an optional namespace.

    Sockets and netlink handles created inside the block belong to ``name``
    for good and may be used from any thread afterwards. Threads started
    inside the block start in ``name`` too. Do not call code that caches
    host-wide state (e.g. scapy's interface list) inside the block.
    """
    if name is None:
        yield
        return
    target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(saved)
        finally:
            os.close(saved)
    finally:
        os.close(target)


def run_in_netns(
    name: str | None, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Call ``fn(*args, **kwargs)`` in a fresh thread inside namespace ``name``.

    Blocks until ``fn`` returns; returns its result or re-raises its
    exception. The calling thread never changes namespace.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            with in_netns(name):
                result.append(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    thread = threading.Thread(target=target, name=f"netns:{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def netns_socket(
    name: str | None, family: int, type: int, proto: int = 0
) -> socket.socket:
    """A socket created in namespace ``name`` (usable from any thread)."""
    with in_netns(name):
        return socket.socket(family, type, proto)
