"""The collector is paused around big parses only when no other thread can
be affected."""

from __future__ import annotations

import gc
import threading

from xdpctl.core.gcpause import collector_paused


def test_paused_when_the_only_thread() -> None:
    assert threading.active_count() == 1 and gc.isenabled()
    with collector_paused() as paused:
        assert paused and not gc.isenabled()
        with collector_paused() as inner:  # nested: the outer one re-enables
            assert not inner and not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_not_paused_while_another_thread_runs() -> None:
    stop = threading.Event()
    seen: list[bool] = []
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


def test_enabled_again_after_an_error() -> None:
    try:
        with collector_paused():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.isenabled()
