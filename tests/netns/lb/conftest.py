"""Fixtures of the load balancer's traffic tests: one bridge lab per module
(xdpctl.lb_lab: a client, the balancer, four DSR backends), and per test
its own pin and state directories, fresh name servers on every backend and
a teardown that detaches everything, pass or fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers_lb import PORT, LbEnv
from helpers_xdpctl import SMALL_CAPACITY, detach_all
from xdpctl.core.context import Context
from xdpctl.kernel import bpffs
from xdpctl.lb_lab import VIP4, VIP6, LbLab, NameServer
from tests.support.progs import temp_settings


@pytest.fixture(scope="module")
def lblab() -> Iterator[LbLab]:
    lab = LbLab(4)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def lbenv(lblab: LbLab, tmp_path: Path) -> Iterator[LbEnv]:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    ctx = Context(temp_settings(str(state_dir), **SMALL_CAPACITY))
    servers: dict[str, NameServer] = {}
    try:
        ctx.kernel_ready()
        for b in lblab.backends:
            servers[b.name] = NameServer(b.netns, b.name, [VIP4, VIP6], PORT)
        yield LbEnv(lblab, ctx, servers)
    finally:
        try:
            for s in servers.values():
                s.close()
            problems = detach_all(ctx)
            assert not problems, problems
        finally:
            ctx.close()
            bpffs.remove_tree(ctx.settings.pin_dir)
