"""Fixtures for traffic tests between network namespaces.

Every lab a test gets is torn down after the test, pass or fail. At session
start, labs left behind by crashed runs are removed; at session end the
session fails if any lab of this process is still there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# `import traffic` must work whether or not tests/ becomes a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import traffic  # noqa: E402

from xdpctl.lab import DEFAULT_PREFIX, Lab, TwoHostLab, cleanup_stale, lab_netns, remove_netns  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session", autouse=True)
def _lab_hygiene() -> Iterator[None]:
    """Remove stale labs before the session; fail it if labs leaked."""
    cleanup_stale(DEFAULT_PREFIX)
    yield
    mine = f"{DEFAULT_PREFIX}-{os.getpid()}-"
    leaked = [name for name in lab_netns(DEFAULT_PREFIX) if name.startswith(mine)]
    for name in leaked:
        remove_netns(name)
    if leaked:
        pytest.fail(f"lab namespaces were not torn down: {', '.join(leaked)}")


@pytest.fixture
def lab() -> Iterator[TwoHostLab]:
    """A fresh two-host lab (namespaces a and b, one veth pair)."""
    two = TwoHostLab()
    try:
        yield two
    finally:
        two.close()


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    """Factory for more labs: ``make_lab()`` (TwoHostLab), ``make_lab(Lab)``,
    ``make_lab(gro=True)``; all are closed after the test."""
    made: list[Lab] = []

    def make(cls: type[Lab] = TwoHostLab, **kwargs: object) -> Lab:
        new = cls(**kwargs)  # type: ignore[arg-type]
        made.append(new)
        return new

    yield make
    errors = []
    for each in made:
        try:
            each.close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def mark() -> bytes:
    """A marker unique to this test (see traffic.marker)."""
    return traffic.marker()


@pytest.fixture
def udp_receiver() -> Iterator[Callable[..., traffic.UdpReceiver]]:
    """Factory ``udp_receiver(netns, addr, port=0)``; sockets closed after the test."""
    opened: list[traffic.UdpReceiver] = []

    def make(netns: str, addr: str, port: int = 0) -> traffic.UdpReceiver:
        rx = traffic.UdpReceiver(netns, addr, port)
        opened.append(rx)
        return rx

    yield make
    for rx in opened:
        rx.close()


@pytest.fixture
def tcp_receiver() -> Iterator[Callable[..., traffic.TcpReceiver]]:
    """Factory ``tcp_receiver(netns, addr, port=0)``; sockets closed after the test."""
    opened: list[traffic.TcpReceiver] = []

    def make(netns: str, addr: str, port: int = 0) -> traffic.TcpReceiver:
        rx = traffic.TcpReceiver(netns, addr, port)
        opened.append(rx)
        return rx

    yield make
    for rx in opened:
        rx.close()
