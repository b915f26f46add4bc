"""The collector is paused around big parses only when no other thread can
be affected. Each case runs in a fresh interpreter: the test session itself
may have threads of its own (servers of other tests)."""

from __future__ import annotations

import subprocess
import sys

PAUSED_ALONE = """
import gc, threading
from xdpctl.core.gcpause import collector_paused
assert threading.active_count() == 1 and gc.isenabled()
with collector_paused() as paused:
    assert paused and not gc.isenabled()
    with collector_paused() as inner:  # nested: the outer one re-enables
        assert not inner and not gc.isenabled()
    assert not gc.isenabled()
assert gc.isenabled()
try:
    with collector_paused():
        raise KeyError("x")
except KeyError:
    pass
assert gc.isenabled()
"""

NOT_PAUSED_WITH_ANOTHER_THREAD = """
import gc, threading
from xdpctl.core.gcpause import collector_paused
stop = threading.Event()
seen = []
other = threading.Thread(target=lambda: (stop.wait(), seen.append(gc.isenabled())))
other.start()
try:
    with collector_paused() as paused:
        assert not paused and gc.isenabled()
        stop.set()
        other.join()
finally:
    stop.set()
    other.join()
assert seen == [True] and gc.isenabled()
"""

PAUSED_BESIDE_A_BACKGROUND_JOB = """
import gc, threading
from xdpctl.core.background import Background
from xdpctl.core.gcpause import collector_paused
stop = threading.Event()
job = Background(stop.wait, "xdpctl-test")  # kernel work, as making maps: not counted
try:
    assert threading.active_count() == 2
    with collector_paused() as paused:
        assert paused and not gc.isenabled()
finally:
    stop.set()
    job.result()
assert gc.isenabled()
stop = threading.Event()
other = threading.Thread(target=stop.wait)  # any other thread still is
other.start()
job = Background(stop.wait, "xdpctl-test")
try:
    with collector_paused() as paused:
        assert not paused and gc.isenabled()
finally:
    stop.set()
    other.join()
    job.result()
"""


def run(code: str) -> None:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_paused_when_the_only_thread() -> None:
    run(PAUSED_ALONE)


def test_not_paused_while_another_thread_runs() -> None:
    run(NOT_PAUSED_WITH_ANOTHER_THREAD)


def test_paused_beside_background_jobs_only() -> None:
    run(PAUSED_BESIDE_A_BACKGROUND_JOB)
