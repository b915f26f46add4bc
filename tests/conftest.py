"""Suite-wide check: tests that touch the kernel need root.

Everything outside tests/unit (and anything marked ``root``) loads BPF
programs, creates network namespaces or opens packet sockets. Without root
those tests would fail one by one with confusing EPERMs, or worse be skipped
and look green, so the session stops at once with one clear message.
tests/unit alone runs without root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.progs import temp_settings
from xdpctl.core.context import Context
from xdpctl.kernel import bpffs

_UNIT_DIR = Path(__file__).resolve().parent / "unit"


def _needs_root(item: pytest.Item) -> bool:
    if item.get_closest_marker("root") is not None:
        return True
    return _UNIT_DIR not in Path(item.path).resolve().parents


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if os.geteuid() == 0:
        return
    needing = [item for item in items if _needs_root(item)]
    if needing:
        pytest.exit(
            f"xdpctl tests need root: {len(needing)} selected tests (e.g. {needing[0].nodeid}) "
            f"load BPF programs or create network namespaces, but this is uid {os.geteuid()}. "
            "Run them as root (e.g. `sudo make test`), or select only tests/unit.",
            returncode=pytest.ExitCode.TESTS_FAILED,
        )


@pytest.fixture
def make_ctx(tmp_path):
    """make_ctx(prealloc=[...], **capacity): a core context on its own pin
    and state directories (root: it mounts bpffs if needed and creates the
    pin directory), with those map capacities and preallocated bands;
    every one made is closed and its pins removed afterwards."""
    made: list[Context] = []

    def make(prealloc: list[str] | None = None, **capacity) -> Context:
        settings = temp_settings(str(tmp_path / ("state" if not made else f"state{len(made)}")), **capacity)
        if prealloc is not None:
            settings.prealloc = prealloc
        c = Context(settings)
        made.append(c)
        c.kernel_ready()
        return c

    yield make
    for c in made:
        c.close()
        bpffs.remove_tree(c.settings.pin_dir)


@pytest.fixture
def ctx(make_ctx):
    """A core context with the default capacities (make_ctx())."""
    return make_ctx()
