import pytest

from tests.support.progs import ProgramBench, temp_settings
from xdpctl.core.context import Context
from xdpctl.kernel import bpffs


@pytest.fixture
def ctx(tmp_path):
    c = Context(temp_settings(str(tmp_path / "state")))
    c.kernel_ready()
    yield c
    c.close()
    bpffs.remove_tree(c.settings.pin_dir)


@pytest.fixture(params=["xdp", "tc"])
def kind(request):
    return request.param


@pytest.fixture
def counter_bench(ctx, kind):
    with ProgramBench(ctx, kind, ("counter",)) as b:
        yield b
