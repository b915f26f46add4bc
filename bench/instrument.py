"""Where import time goes: wrap xdpctl's core functions with timers.

Nothing in xdpctl is edited: the wrappers replace module and class
attributes for the life of this process only. Each label gets its *self*
time (time inside the function minus time inside wrapped functions it
called), so the labels add up to the wall time of the wrapped entry point.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import Counter, defaultdict
from typing import Callable

# (module path, attribute path, label); order = report order
# Targets that do not exist in the xdpctl being measured are skipped and
# listed (Profiler.missing; the report names them as problems of the run).
TARGETS: list[tuple[str, str, str]] = [
    ("xdpctl.core.rules.members", "Members.parse", "parse: other"),
    ("xdpctl.core.prefixes", "ipv4_columns", "parse plain IPv4 text to columns"),
    ("xdpctl.core.prefixes", "text_columns", "parse other text to columns"),
    ("xdpctl.core.prefixes", "parse_prefix_text", "parse text (line parser)"),
    ("xdpctl.core.rules.service", "DropList._expire_pending", "expiry check"),
    ("xdpctl.core.rules.members", "Members.of", "members -> columns"),
    ("xdpctl.core.rules.members", "Members.pack", "pack members blob"),
    ("xdpctl.core.rules.store", "State.__init__", "open state db"),
    ("xdpctl.core.rules.store", "State.allocate_ids", "allocate rule ids"),
    ("xdpctl.core.rules.tables", "KernelTables.ensure", "create/open maps"),
    ("xdpctl.core.rules.ruleset", "all_rules", "collect rules"),
    ("xdpctl.core.rules.ruleset", "compile_rules", "compile: other"),
    ("xdpctl.core.dlcompile", "compile_full", "compile"),
    ("xdpctl.core.rules.tables", "KernelTables.sync_to", "sync: other"),
    ("xdpctl.core.rules.tables", "KernelTables.read", "sync: read maps for diff"),
    ("xdpctl.core.rules.service", "DropList._write_split", "delta: other"),
    ("xdpctl.core.rules.listdelta", "split", "delta: find the hosts nothing else touches"),
    ("xdpctl.core.rules.listdelta", "Split.columns", "delta: entries from the sorted keys"),
    ("xdpctl.core.rules.tables", "KernelTables.write_columns", "delta: write columns"),
    ("xdpctl.kernel.maps", "Map.update_batch", "kernel: map update_batch"),
    ("xdpctl.kernel.maps", "Map.delete_batch", "kernel: map delete_batch"),
    ("xdpctl.core.rules.tables", "KernelTables.zero_stats", "zero rule stats"),
    ("xdpctl.core.rules.listindex", "sorted_keys", "store: sorted key columns"),
    ("xdpctl.core.rules.ruleset", "config_flags", "cfg flags: other"),
    ("xdpctl.core.rules.service", "DropList.import_list", "import_list: other"),
]
SQLITE = "SQLite statements"


class Profiler:
    def __init__(self) -> None:
        self.self_s: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self.threads: dict[str, set] = defaultdict(set)
        self._tls = threading.local()
        self._undo: list[Callable[[], None]] = []
        self.missing: list[str] = []

    def wrap(self, label: str, fn):
        prof = self

        def timed(*args, **kwargs):
            stack = prof._stack()
            t0 = time.perf_counter()
            stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                inner = stack.pop()
                prof.self_s[label] += dt - inner
                prof.calls[label] += 1
                prof.threads[label].add(threading.current_thread().name)
                if stack:
                    stack[-1] += dt

        timed.__wrapped__ = fn
        return timed

    def _stack(self) -> list[float]:
        """Nesting is tracked per thread: xdpctl may write maps in a thread
        of its own while the main thread stores the list."""
        st = getattr(self._tls, "stack", None)
        if st is None:
            st = self._tls.stack = []
        return st

    def install(self) -> "Profiler":
        import importlib

        for mod_name, attr, label in TARGETS:
            owner = importlib.import_module(mod_name)
            parts = attr.split(".")
            try:
                for p in parts[:-1]:
                    owner = getattr(owner, p)
                name = parts[-1]
                raw = inspect.getattr_static(owner, name)
            except AttributeError:  # the product moved on: time what is there
                self.missing.append(f"{mod_name}.{attr}")
                continue
            # keep static and class methods what they are
            if isinstance(raw, staticmethod):
                new = staticmethod(self.wrap(label, raw.__func__))
            elif isinstance(raw, classmethod):
                new = classmethod(self.wrap(label, raw.__func__))
            else:
                new = self.wrap(label, raw)
            had_own = isinstance(owner, type) and name in owner.__dict__
            setattr(owner, name, new)
            if had_own or not isinstance(owner, type):
                self._undo.append(lambda o=owner, n=name, f=raw: setattr(o, n, f))
            else:
                self._undo.append(lambda o=owner, n=name: delattr(o, n))
        return self

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def watch_db(self, state) -> None:
        """Time every statement on a State's connection."""
        state.db = _DbProxy(state.db, self)

    def breakdown(self) -> list[dict]:
        order = list(dict.fromkeys([label for _m, _a, label in TARGETS] + [SQLITE]))
        main = threading.main_thread().name
        out = []
        for label in order:
            if self.calls.get(label):
                other = sorted(t for t in self.threads[label] if t != main)
                out.append({"step": label, "s": self.self_s[label], "calls": self.calls[label],
                            "threads": other})
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
