"""Where import time goes: wrap xdpctl's core functions with timers.

Nothing in xdpctl is edited: the wrappers replace module and class
attributes for the life of this process only. Each label gets its *self*
time (time inside the function minus time inside wrapped functions it
called), so the labels add up to the wall time of the wrapped entry point.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Callable

# (module path, attribute path, label); order = report order
TARGETS: list[tuple[str, str, str]] = [
    ("xdpctl.core.prefixes", "load_prefix_file", "read file"),
    ("xdpctl.core.prefixes", "parse_prefix_text", "parse text"),
    ("xdpctl.core.droplist", "DropList._expire_pending", "expiry check"),
    ("xdpctl.core.droplist", "_pack_members", "pack members blob"),
    ("xdpctl.core.state", "State.__init__", "open state db"),
    ("xdpctl.core.state", "State.allocate_ids", "allocate rule ids"),
    ("xdpctl.core.droplist", "KernelTables.ensure", "create/open maps"),
    ("xdpctl.core.droplist", "DropList._all_rules", "collect rules"),
    ("xdpctl.core.droplist", "_unpack_members", "unpack members -> Rule"),
    ("xdpctl.core.dlcompile", "compile_full", "compile"),
    ("xdpctl.core.droplist", "KernelTables.sync_to", "sync: other"),
    ("xdpctl.core.droplist", "KernelTables.read", "sync: read maps for diff"),
    ("xdpctl.core.dlcompile", "tables_to_state", "sync: image -> dicts"),
    ("xdpctl.kernel.maps", "Map.update_batch", "sync: map update_batch"),
    ("xdpctl.kernel.maps", "Map.delete_batch", "sync: map delete_batch"),
    ("xdpctl.core.droplist", "_split", "sync: undo key list"),
    ("xdpctl.core.droplist", "KernelTables.zero_stats", "zero rule stats"),
    ("xdpctl.core.droplist", "DropList._lists_index_get", "cfg flags: lists index"),
    ("xdpctl.core.droplist", "DropList._flags", "cfg flags: other"),
    ("xdpctl.core.droplist", "DropList.import_list", "import_list: other"),
]
SQLITE = "SQLite statements"


class Profiler:
    def __init__(self) -> None:
        self.self_s: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._stack: list[float] = []
        self._undo: list[Callable[[], None]] = []
        self.missing: list[str] = []

    def wrap(self, label: str, fn):
        prof = self

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            prof._stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                inner = prof._stack.pop()
                prof.self_s[label] += dt - inner
                prof.calls[label] += 1
                if prof._stack:
                    prof._stack[-1] += dt

        timed.__wrapped__ = fn
        return timed

    def install(self) -> "Profiler":
        import importlib

        for mod_name, attr, label in TARGETS:
            owner = importlib.import_module(mod_name)
            parts = attr.split(".")
            try:
                for p in parts[:-1]:
                    owner = getattr(owner, p)
                name = parts[-1]
                orig = getattr(owner, name)
            except AttributeError:  # the product moved on: time what is there
                self.missing.append(f"{mod_name}.{attr}")
                continue
            setattr(owner, name, self.wrap(label, orig))
            self._undo.append(lambda o=owner, n=name, f=orig: setattr(o, n, f))
        return self

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def watch_db(self, state) -> None:
        """Time every statement on a State's connection."""
        state.db = _DbProxy(state.db, self)

    def breakdown(self) -> list[dict]:
        order = [label for _m, _a, label in TARGETS] + [SQLITE]
        out = []
        for label in order:
            if self.calls.get(label):
                out.append({"step": label, "s": self.self_s[label], "calls": self.calls[label]})
        return out


class _DbProxy:
    """sqlite3.Connection stand-in: statements are timed, the rest passes."""

    def __init__(self, db, prof: Profiler):
        self._db = db
        self._exec = prof.wrap(SQLITE, db.execute)
        self._many = prof.wrap(SQLITE, db.executemany)

    def execute(self, *a, **k):
        return self._exec(*a, **k)

    def executemany(self, *a, **k):
        return self._many(*a, **k)

    def __getattr__(self, name):
        return getattr(self._db, name)
