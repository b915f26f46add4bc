"""numpy's BLAS library without helper threads (xdpctl.core.blas): the
threads the process has once numpy is loaded, counted by the kernel
(/proc/self/task). Each case runs in a fresh interpreter, with the
variable removed from its environment unless the case sets it."""

from __future__ import annotations

import os
import subprocess
import sys

THREADS_AFTER_NUMPY = """
import os, sys
from xdpctl.core import blas
said = blas.one_thread() if sys.argv[1] == "ask" else None
import numpy
print(said, os.environ.get(blas.VAR), len(os.listdir("/proc/self/task")))
"""

# The CLI's entry point asks before any command imports numpy: its exit
# handlers see the variable and the threads.
THREADS_IN_THE_CLI = """
import atexit, os, sys
sys.argv = ["xdpctl", "version"]
def report():
    import numpy
    print(os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")), file=sys.stderr)
atexit.register(report)
from xdpctl.cli import main
main()
"""


def _run(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    return subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                          env={**base, **(env or {})})


def test_asked_first_numpy_starts_no_helper_thread():
    assert _run(THREADS_AFTER_NUMPY, "ask").stdout.split() == ["True", "1", "1"]


def test_unasked_numpy_starts_a_helper_per_other_cpu():
    # what the setting prevents (the library's default: one thread per CPU)
    assert _run(THREADS_AFTER_NUMPY, "none").stdout.split() == ["None", "None", str(os.cpu_count())]


def test_an_operators_setting_stands():
    out = _run(THREADS_AFTER_NUMPY, "ask", env={"OPENBLAS_NUM_THREADS": "2"}).stdout.split()
    assert out == ["False", "2", str(min(2, os.cpu_count() or 1))]


def test_too_late_once_numpy_is_loaded():
    code = "import numpy, os\nfrom xdpctl.core import blas\nprint(blas.one_thread(), os.environ.get(blas.VAR))"
    assert _run(code).stdout.split() == ["False", "None"]


def test_the_command_asks_before_numpy_loads():
    assert _run(THREADS_IN_THE_CLI).stderr.split()[-2:] == ["1", "1"]
