"""Load precompiled BPF objects with libbpf, reusing or pinning their maps."""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

from .. import abi
from ..config import Settings
from ..core.errors import BpfError, MissingDependency
from . import libbpf as L
from .maps import Map, obj_pin


def object_path(name: str, bpf_dir: str | None = None) -> str:
    """Path of a compiled object, e.g. ``xdp_counter`` -> .../xdpctl/bpf/xdp_counter.o.

    The directory is ``bpf_dir``, else the settings' (XDPCTL_BPF_DIR), else
    the objects installed with the package."""
    base = bpf_dir or Settings().bpf_dir or str(resources.files("xdpctl") / "bpf")
    path = os.path.join(base, f"{name}.o")
    if not os.path.exists(path):
        raise MissingDependency(f"BPF object {path} is missing; build it with `make bpf`")
    return path


@dataclass
class Loaded:
    """Fds of a loaded object's programs and maps, independent of libbpf."""

    path: str
    progs: dict[str, int] = field(default_factory=dict)
    maps: dict[str, int] = field(default_factory=dict)

    def prog_fd(self, name: str) -> int:
        try:
            return self.progs[name]
        except KeyError:
            raise BpfError(f"{self.path}: no program {name}", errno.ENOENT) from None

    def map(self, name: str) -> Map:
        return Map(os.dup(self.maps[name]))

    def close(self) -> None:
        for fd in list(self.progs.values()) + list(self.maps.values()):
            L.close_fd(fd)
        self.progs.clear()
        self.maps.clear()

    def __enter__(self) -> "Loaded":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load(
    path: str,
    pin_path: Callable[[str], str | None] = lambda name: None,
    max_entries: dict[str, int] | None = None,
    pin_progs: dict[str, str] | None = None,
    map_flags: dict[str, int] | None = None,
    programs: bool = True,
    reuse: dict[str, int] | None = None,
) -> Loaded:
    """Open, configure and load one object.

    ``pin_path(map_name)`` says where a map lives in bpffs: an existing pin
    is reused as it was created (its size and flags are taken from it;
    libbpf checks type, key and value match), a missing one is created
    there after load with the size in ``max_entries`` and the flags in
    ``map_flags`` where they name it. ``pin_progs`` maps program names to
    pin paths (replacing what was pinned there). ``programs`` False:
    create the maps only, loading (and verifying) none of the programs.
    ``reuse`` names maps by the fd of one open already (libbpf checks
    they match): those are neither looked up in bpffs nor ever created.
    """
    return Opened(path, pin_path, max_entries, map_flags, programs, reuse).load(pin_progs)


class Opened:
    """An object opened and configured for :func:`load` (its arguments),
    not loaded yet. :meth:`load` makes it in the kernel; or
    :meth:`load_quietly`, in a thread of the caller's while it goes on, and
    then :meth:`load` takes its result. Closed by load()."""

    def __init__(self, path: str, pin_path: Callable[[str], str | None], max_entries: dict[str, int] | None,
                 map_flags: dict[str, int] | None, programs: bool, reuse: dict[str, int] | None = None):
        L.log_mark()
        self.path, self.programs = path, programs
        self._ret: int | None = None
        self.obj = L.bpf_object__open_file(path.encode(), None)
        if not self.obj:
            err = ctypes.get_errno() or errno.EINVAL
            raise BpfError(f"open BPF object {path}", err, _log_tail())
        try:
            for m, name in _maps(self.obj):
                if reuse and name in reuse:
                    L.check(L.bpf_map__reuse_fd(m, reuse[name]), f"reuse the open map {name}")
                else:
                    _configure_map(m, name, pin_path(name), max_entries or {}, map_flags or {})
            if not programs:
                _autoload_off(self.obj)
        except BaseException:
            self.close()
            raise

    def load_quietly(self) -> None:
        """The kernel side of load(), libbpf's messages off: no Python runs
        in it (libbpf.quiet_load)."""
        self._ret = L.quiet_load(self.obj)

    def load(self, pin_progs: dict[str, str] | None = None) -> Loaded:
        try:
            ret = L.bpf_object__load(self.obj) if self._ret is None else self._ret
            if ret < 0:
                raise BpfError(f"load {os.path.basename(self.path)}", -ret, _log_tail())
            out = Loaded(self.path)
            for p in _programs(self.obj) if self.programs else ():
                out.progs[L.bpf_program__name(p).decode()] = os.dup(L.bpf_program__fd(p))
            for m, name in _maps(self.obj):
                fd = L.bpf_map__fd(m)
                if fd >= 0:
                    out.maps[name] = os.dup(fd)
            for pname, ppath in (pin_progs or {}).items():
                os.makedirs(os.path.dirname(ppath), mode=0o700, exist_ok=True)
                if os.path.exists(ppath):
                    os.unlink(ppath)
                obj_pin(out.prog_fd(pname), ppath)
            return out
        finally:
            self.close()

    def close(self) -> None:
        if self.obj:
            L.bpf_object__close(self.obj)
            self.obj = None


def _configure_map(m, name: str, pp: str | None, max_entries: dict[str, int], map_flags: dict[str, int]) -> None:
    """Pin path, size and flags of one map of an object before load: a map
    pinned already keeps the size and flags it was made with."""
    size, flags = max_entries.get(name), map_flags.get(name)
    if pp:
        os.makedirs(os.path.dirname(pp), mode=0o700, exist_ok=True)
        L.check(L.bpf_map__set_pin_path(m, pp.encode()), f"set pin path of {name}")
        if os.path.exists(pp):
            with Map.from_pin(pp) as pinned:
                size, flags = pinned.max_entries, pinned.flags
    if size is not None:
        L.check(L.bpf_map__set_max_entries(m, size), f"set size of {name}")
    if flags is not None and flags != L.bpf_map__map_flags(m):
        L.check(L.bpf_map__set_map_flags(m, flags), f"set flags of {name}")


def _each(obj, step):
    """The object's maps or programs (libbpf handles), in order; ``step``
    is bpf_object__next_map or bpf_object__next_program."""
    h = step(obj, None)
    while h:
        yield h
        h = step(obj, h)


def _maps(obj):
    """(handle, name) of the object's maps: those in .maps and the data
    sections of abi.GLOBAL_MAPS, by their abi names (no other data
    section: the objects have none)."""
    for m in _each(obj, L.bpf_object__next_map):
        name = abi.map_name(L.bpf_map__name(m).decode())
        if name is not None:
            yield m, name


def _programs(obj):
    return _each(obj, L.bpf_object__next_program)


def _autoload_off(obj) -> None:
    for p in _programs(obj):
        L.check(L.bpf_program__set_autoload(p, False), f"skip program {L.bpf_program__name(p).decode()}")


def _log_tail() -> str | None:
    lines = [ln for ln in L.log_since_mark(60) if not ln.startswith("libbpf: prog") or "verifier" not in ln]
    if not lines:
        return None
    # the reason is usually in the last lines; keep the message one line long
    tail = [ln.strip() for ln in lines[-6:]]
    return " | ".join(tail)


BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_XDP = 6
# r0 = XDP_PASS; exit
_PASS_INSNS = bytes.fromhex("b700000002000000" "9500000000000000")
# r0 = TC_ACT_OK; exit
_TC_OK_INSNS = bytes.fromhex("b700000000000000" "9500000000000000")


def load_pass(kind: str, name: str = "xc_probe") -> int:
    """Load a two-instruction program that passes every packet, for the
    ``xdp`` or ``tc`` hook (probing a hook without loading any map).
    Returns its fd; the caller closes it."""
    ptype, code = (BPF_PROG_TYPE_XDP, _PASS_INSNS) if kind == "xdp" else (BPF_PROG_TYPE_SCHED_CLS, _TC_OK_INSNS)
    insns = ctypes.create_string_buffer(code, len(code))
    opts = L.ProgLoadOpts()
    opts.sz = ctypes.sizeof(L.ProgLoadOpts)
    fd = L.bpf_prog_load(ptype, name.encode(), b"Dual BSD/GPL", insns, 2, ctypes.byref(opts))
    if fd < 0:
        raise BpfError(f"load a pass-through {kind} program", -fd)
    return fd


def probe_offload(ifindex: int) -> int:
    """Load a two-instruction XDP program bound to a device for offload.

    Returns 0 if the kernel accepted it (the driver can offload), else the
    errno. The ifindex is resolved in the calling thread's namespace.
    """
    insns = ctypes.create_string_buffer(_PASS_INSNS, len(_PASS_INSNS))
    opts = L.ProgLoadOpts()
    opts.sz = ctypes.sizeof(L.ProgLoadOpts)
    opts.prog_ifindex = ifindex
    fd = L.bpf_prog_load(BPF_PROG_TYPE_XDP, b"xc_offload_prb", b"Dual BSD/GPL", insns, 2, ctypes.byref(opts))
    if fd < 0:
        return -fd
    L.close_fd(fd)
    return 0
