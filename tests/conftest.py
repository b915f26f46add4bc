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
