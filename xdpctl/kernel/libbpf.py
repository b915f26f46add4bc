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
import errno
import os
import threading
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p

from ..core.errors import BpfError, MissingDependency

LIB_NAMES = ("libbpf.so.1", "libbpf.so")
PACKAGE = "libbpf1"  # the Debian package that ships libbpf.so.1

_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None


def load() -> ctypes.CDLL:
    """Open libbpf and bind every function below (once per process).

    Called on first use of a binding (``libbpf.bpf_obj_get``, ...), never
    at import: a host without libbpf can still import xdpctl, and gets a
    MissingDependency (exit 78) naming the package when it needs the kernel.
    """
    global _LIB
    with _LOCK:
        if _LIB is None:
            lib = _open()
            _bind(lib)
            _LIB = lib
    return _LIB


def _open() -> ctypes.CDLL:
    last = None
    for name in LIB_NAMES:
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            last = exc
    raise MissingDependency(f"the libbpf shared library cannot be loaded ({last})",
                            hint=f"install the package {PACKAGE} (libbpf >= 1.1), e.g. with make deps")


def _bind(lib: ctypes.CDLL) -> None:
    bound = {}
    for name, (restype, *argtypes) in _SIGNATURES.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            raise MissingDependency(f"the libbpf library lacks {name}",
                                    hint=f"install the package {PACKAGE} (libbpf >= 1.1)") from None
        f.restype = restype
        f.argtypes = list(argtypes)
        bound[name] = f
    libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's C library, without running ldconfig
    libc.vsnprintf.restype = c_int
    libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
    _VSNPRINTF.append(libc.vsnprintf)
    globals().update(bound)
    bound["libbpf_set_print"](_print_cb)


def __getattr__(name: str):
    # The bindings appear as module attributes on first use.
    if name in _SIGNATURES:
        load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- logging
_LOG: collections.deque[str] = collections.deque(maxlen=400)
_LOG_LOCK = threading.Lock()
_PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_VSNPRINTF: list = []


@_PRINT_FN
def _print_cb(level, fmt, args):  # pragma: no cover - called from C
    buf = ctypes.create_string_buffer(4096)
    _VSNPRINTF[0](buf, len(buf), fmt, args)
    text = buf.value.decode(errors="replace")
    with _LOG_LOCK:
        for line in text.splitlines():
            if line.strip():
                _LOG.append(line.rstrip())
    return 0


def quiet_load(obj) -> int:
    """bpf_object__load with libbpf's messages off (each one would be handed
    to Python, taking the GIL): so it runs in a thread of its own without
    waiting for a busy one. A failure says only its errno. The print
    function is process-wide: another thread's libbpf messages in the
    meantime are not captured either (xdpctl loads one object at a time,
    under the writer lock)."""
    lib = load()
    lib.libbpf_set_print(_PRINT_FN())  # NULL: no messages
    try:
        return lib.bpf_object__load(obj)
    finally:
        lib.libbpf_set_print(_print_cb)


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


# ---------------------------------------------------------------- structures
class BatchOpts(Structure):
    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


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


class MapCreateOpts(Structure):
    """struct bpf_map_create_opts up to map_ifindex (libbpf takes the
    size it is given)."""

    _fields_ = [
        ("sz", c_size_t),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("inner_map_fd", c_uint32),
        ("map_flags", c_uint32),
        ("map_extra", c_uint64),
        ("numa_node", c_uint32),
        ("map_ifindex", c_uint32),
    ]


# int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size)
RINGBUF_SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)

# ---------------------------------------------------------------- signatures
# name: (restype, *argtypes); bound by load().
_SIGNATURES = {
    "libbpf_set_print": (c_void_p, _PRINT_FN),
    "libbpf_num_possible_cpus": (c_int,),
    # objects
    "bpf_object__open_file": (c_void_p, c_char_p, c_void_p),
    "bpf_object__load": (c_int, c_void_p),
    "bpf_object__close": (None, c_void_p),
    "bpf_object__next_map": (c_void_p, c_void_p, c_void_p),
    "bpf_object__next_program": (c_void_p, c_void_p, c_void_p),
    "bpf_map__name": (c_char_p, c_void_p),
    "bpf_map__fd": (c_int, c_void_p),
    "bpf_map__set_pin_path": (c_int, c_void_p, c_char_p),
    "bpf_map__reuse_fd": (c_int, c_void_p, c_int),
    "bpf_map__set_max_entries": (c_int, c_void_p, c_uint32),
    "bpf_map__map_flags": (c_uint32, c_void_p),
    "bpf_map__set_map_flags": (c_int, c_void_p, c_uint32),
    "bpf_program__name": (c_char_p, c_void_p),
    "bpf_program__fd": (c_int, c_void_p),
    "bpf_program__set_autoload": (c_int, c_void_p, ctypes.c_bool),
    # syscalls
    "bpf_obj_pin": (c_int, c_int, c_char_p),
    "bpf_map_create": (c_int, c_int, c_char_p, c_uint32, c_uint32, c_uint32, POINTER(MapCreateOpts)),
    "bpf_obj_get": (c_int, c_char_p),
    "bpf_obj_get_info_by_fd": (c_int, c_int, c_void_p, POINTER(c_uint32)),
    "bpf_prog_get_fd_by_id": (c_int, c_uint32),
    "bpf_map_get_fd_by_id": (c_int, c_uint32),
    "bpf_map_lookup_elem": (c_int, c_int, c_void_p, c_void_p),
    "bpf_map_update_elem": (c_int, c_int, c_void_p, c_void_p, c_uint64),
    "bpf_map_delete_elem": (c_int, c_int, c_void_p),
    "bpf_map_get_next_key": (c_int, c_int, c_void_p, c_void_p),
    "bpf_map_update_batch": (c_int, c_int, c_void_p, c_void_p, POINTER(c_uint32), POINTER(BatchOpts)),
    "bpf_map_delete_batch": (c_int, c_int, c_void_p, POINTER(c_uint32), POINTER(BatchOpts)),
    "bpf_map_lookup_batch": (c_int, c_int, c_void_p, c_void_p, c_void_p, c_void_p, POINTER(c_uint32),
                             POINTER(BatchOpts)),
    "bpf_prog_test_run_opts": (c_int, c_int, POINTER(TestRunOpts)),
    "bpf_prog_load": (c_int, c_int, c_char_p, c_char_p, c_void_p, c_size_t, POINTER(ProgLoadOpts)),
    # ring buffers
    "ring_buffer__new": (c_void_p, c_int, RINGBUF_SAMPLE_FN, c_void_p, c_void_p),
    "ring_buffer__add": (c_int, c_void_p, c_int, RINGBUF_SAMPLE_FN, c_void_p),
    "ring_buffer__poll": (c_int, c_void_p, c_int),
    "ring_buffer__free": (None, c_void_p),
}

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
    return check(load().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


__all__ = [*_SIGNATURES, "load", "RINGBUF_SAMPLE_FN", "BatchOpts", "MapCreateOpts", "TestRunOpts", "ProgLoadOpts", "check", "check_ptr", "close_fd",
           "num_possible_cpus", "log_mark", "log_since_mark", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST"]
