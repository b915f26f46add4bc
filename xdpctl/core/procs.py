"""Processes named by id in state that outlives them (a lab's owner, a
sampling listener)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process ``pid`` exists (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
