"""bpffs: make sure it is mounted, make pin directories, lock them."""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import shutil

from ..core.errors import BpfError, NotRoot

BPF_FS_MAGIC = 0xCAFE4A11
DEFAULT_BPFFS = "/sys/fs/bpf"


@functools.cache
def _libc() -> ctypes.CDLL:
    # the C library the interpreter is linked with (find_library would run ldconfig)
    return ctypes.CDLL(None, use_errno=True)


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 120)]


def fs_type(path: str) -> int:
    st = _Statfs()
    if _libc().statfs(path.encode(), ctypes.byref(st)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return st.f_type & 0xFFFFFFFF


def is_bpffs(path: str) -> bool:
    """True when path exists and lies on a bpffs mount."""
    return os.path.isdir(path) and fs_type(path) == BPF_FS_MAGIC


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRoot("xdpctl needs root (CAP_BPF and CAP_NET_ADMIN) for this command")


def ensure_bpffs(pin_root: str) -> None:
    """Mount bpffs at /sys/fs/bpf if the pin root is not on a bpffs."""
    probe = pin_root
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "/"
    if fs_type(probe) == BPF_FS_MAGIC:
        return
    mnt = DEFAULT_BPFFS
    if not pin_root.startswith(mnt + "/") and pin_root != mnt:
        raise BpfError(f"pin directory {pin_root} is not on a bpffs mount", 22)
    os.makedirs(mnt, exist_ok=True)
    if fs_type(mnt) != BPF_FS_MAGIC:
        if _libc().mount(b"bpf", mnt.encode(), b"bpf", 0, None) != 0:
            err = ctypes.get_errno()
            raise BpfError(f"mount bpffs at {mnt}", err)


def makedirs(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)


def remove_tree(path: str) -> None:
    """Remove a pin directory: unlinking a pin drops its reference."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


class DirLock:
    """Exclusive flock on a directory: serialises xdpctl writers. With
    ``wait=False`` a lock held elsewhere is BlockingIOError at once; with
    ``create=False`` a missing directory is FileNotFoundError."""

    def __init__(self, path: str, wait: bool = True, create: bool = True):
        self.path = path
        self.wait = wait
        self.create = create
        self.fd = -1

    def __enter__(self) -> "DirLock":
        if self.create:
            makedirs(self.path)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
