import pytest

from tests.support.progs import ProgramBench
from xdpctl.core.rules import service


@pytest.fixture(params=["xdp", "tc"])
def kind(request):
    return request.param


@pytest.fixture
def counter_bench(ctx, kind):
    with ProgramBench(ctx, kind, ("counter",)) as b:
        yield b


@pytest.fixture
def service_ctx(make_ctx, monkeypatch):
    """The service's kind of context: every change a whole image, its
    catch-up left for DropList.catch_up(); rule statistics kept small
    (a probe reads all of them per packet)."""
    monkeypatch.setattr(service, "BULK_THRESHOLD", 0)
    c = make_ctx(xc_rule_stats=65536)
    c.defer_catch_up = True
    return c
