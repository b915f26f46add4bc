"""ctypes binding to the system libbpf (libbpf1 >= 1.1).

Only this module knows libbpf's C signatures. Every pointer-returning
function gets ``restype = c_void_p``; functions returning int give -errno
on failure (libbpf 1.x semantics), which :func:`check` turns into
:class:`BpfError`.

libbpf's own log lines (verifier output on a failed load, pin reuse
mismatches) are captured through ``libbpf_set_print`` into a ring so an
error can say *why* instead of printing to stderr.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_size_t,
    c_uint,
    c_uint32,
    c_uint64,
    c_void_p,
)

from ..core.errors import BpfError, MissingDependency

_LIB_NAMES = ("libbpf.so.1", "libbpf.so")


def _load() -> ctypes.CDLL:
    last = None
    for name in _LIB_NAMES:
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError as exc:  # pragma: no cover - depends on the host
            last = exc
    raise MissingDependency(
        f"libbpf shared library not found ({last}); install libbpf1 (make deps)"
    )


lib = _load()
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _fn(name: str, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


# ---------------------------------------------------------------- logging
_LOG: collections.deque[str] = collections.deque(maxlen=400)
_LOG_LOCK = threading.Lock()
_PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
libc.vsnprintf.restype = c_int
libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]


@_PRINT_FN
def _print_cb(level, fmt, args):  # pragma: no cover - called from C
    buf = ctypes.create_string_buffer(4096)
    libc.vsnprintf(buf, len(buf), fmt, args)
    text = buf.value.decode(errors="replace")
    with _LOG_LOCK:
        for line in text.splitlines():
            if line.strip():
                _LOG.append(line.rstrip())
    return 0


_fn("libbpf_set_print", c_void_p, _PRINT_FN)(_print_cb)


def log_mark() -> int:
    with _LOG_LOCK:
        _LOG.append("\x00mark")
        return len(_LOG)


def log_since_mark(limit: int = 40) -> list[str]:
    """Lines libbpf printed since the last :func:`log_mark`, newest last."""
    with _LOG_LOCK:
        lines = list(_LOG)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] == "\x00mark":
            lines = lines[i + 1 :]
            break
    return lines[-limit:]


# ---------------------------------------------------------------- objects
bpf_object__open_file = _fn("bpf_object__open_file", c_void_p, c_char_p, c_void_p)
bpf_object__load = _fn("bpf_object__load", c_int, c_void_p)
bpf_object__close = _fn("bpf_object__close", None, c_void_p)
bpf_object__next_map = _fn("bpf_object__next_map", c_void_p, c_void_p, c_void_p)
bpf_object__next_program = _fn("bpf_object__next_program", c_void_p, c_void_p, c_void_p)
bpf_object__find_program_by_name = _fn(
    "bpf_object__find_program_by_name", c_void_p, c_void_p, c_char_p
)
bpf_map__name = _fn("bpf_map__name", c_char_p, c_void_p)
bpf_map__fd = _fn("bpf_map__fd", c_int, c_void_p)
bpf_map__set_pin_path = _fn("bpf_map__set_pin_path", c_int, c_void_p, c_char_p)
bpf_map__set_max_entries = _fn("bpf_map__set_max_entries", c_int, c_void_p, c_uint32)
bpf_map__max_entries = _fn("bpf_map__max_entries", c_uint32, c_void_p)
bpf_map__set_ifindex = _fn("bpf_map__set_ifindex", None, c_void_p, c_uint32)
bpf_map__reuse_fd = _fn("bpf_map__reuse_fd", c_int, c_void_p, c_int)
bpf_program__name = _fn("bpf_program__name", c_char_p, c_void_p)
bpf_program__fd = _fn("bpf_program__fd", c_int, c_void_p)
bpf_program__set_ifindex = _fn("bpf_program__set_ifindex", None, c_void_p, c_uint32)
libbpf_num_possible_cpus = _fn("libbpf_num_possible_cpus", c_int)

# ---------------------------------------------------------------- syscalls
bpf_obj_pin = _fn("bpf_obj_pin", c_int, c_int, c_char_p)
bpf_obj_get = _fn("bpf_obj_get", c_int, c_char_p)
bpf_obj_get_info_by_fd = _fn("bpf_obj_get_info_by_fd", c_int, c_int, c_void_p, POINTER(c_uint32))
bpf_prog_get_fd_by_id = _fn("bpf_prog_get_fd_by_id", c_int, c_uint32)
bpf_map_get_fd_by_id = _fn("bpf_map_get_fd_by_id", c_int, c_uint32)
bpf_map_lookup_elem = _fn("bpf_map_lookup_elem", c_int, c_int, c_void_p, c_void_p)
bpf_map_update_elem = _fn("bpf_map_update_elem", c_int, c_int, c_void_p, c_void_p, c_uint64)
bpf_map_delete_elem = _fn("bpf_map_delete_elem", c_int, c_int, c_void_p)
bpf_map_get_next_key = _fn("bpf_map_get_next_key", c_int, c_int, c_void_p, c_void_p)


class BatchOpts(Structure):
    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


bpf_map_update_batch = _fn(
    "bpf_map_update_batch", c_int, c_int, c_void_p, c_void_p, POINTER(c_uint32), POINTER(BatchOpts)
)
bpf_map_delete_batch = _fn(
    "bpf_map_delete_batch", c_int, c_int, c_void_p, POINTER(c_uint32), POINTER(BatchOpts)
)
bpf_map_lookup_batch = _fn(
    "bpf_map_lookup_batch",
    c_int,
    c_int,
    c_void_p,
    c_void_p,
    c_void_p,
    c_void_p,
    POINTER(c_uint32),
    POINTER(BatchOpts),
)


class TestRunOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


bpf_prog_test_run_opts = _fn("bpf_prog_test_run_opts", c_int, c_int, POINTER(TestRunOpts))

class ProgLoadOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("attempts", c_int),
        ("expected_attach_type", c_int),
        ("prog_btf_fd", c_uint32),
        ("prog_flags", c_uint32),
        ("prog_ifindex", c_uint32),
        ("kern_version", c_uint32),
        ("attach_btf_id", c_uint32),
        ("attach_prog_fd", c_uint32),
        ("attach_btf_obj_fd", c_uint32),
        ("fd_array", c_void_p),
        ("func_info", c_void_p),
        ("func_info_cnt", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("line_info", c_void_p),
        ("line_info_cnt", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("log_level", c_uint32),
        ("log_size", c_uint32),
        ("log_buf", c_char_p),
    ]


bpf_prog_load = _fn("bpf_prog_load", c_int, c_int, c_char_p, c_char_p, c_void_p, c_size_t, POINTER(ProgLoadOpts))

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2


def check(ret: int, what: str) -> int:
    """Raise BpfError for a libbpf -errno return; pass other values through."""
    if ret < 0:
        err = -ret
        raise BpfError(what, err)
    return ret


def check_ptr(ptr, what: str):
    if not ptr:
        err = ctypes.get_errno() or errno.EINVAL
        raise BpfError(what, err)
    return ptr


def close_fd(fd: int) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def num_possible_cpus() -> int:
    return check(libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


__all__ = [name for name in globals() if name.startswith(("bpf_", "libbpf_"))] + [
    "BatchOpts",
    "TestRunOpts",
    "ProgLoadOpts",
    "check",
    "check_ptr",
    "close_fd",
    "num_possible_cpus",
    "log_mark",
    "log_since_mark",
    "BPF_ANY",
    "BPF_NOEXIST",
    "BPF_EXIST",
    "c_uint",
]
