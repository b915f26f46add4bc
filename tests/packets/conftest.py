import pytest

from tests.support.progs import ProgramBench


@pytest.fixture(params=["xdp", "tc"])
def kind(request):
    return request.param


@pytest.fixture
def counter_bench(ctx, kind):
    with ProgramBench(ctx, kind, ("counter",)) as b:
        yield b
