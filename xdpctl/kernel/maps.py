"""BPF maps and programs by file descriptor: lookup, update, batches, info.

Keys and values are ``bytes`` laid out per xdpctl/abi.py; this layer does
not interpret them. Per-CPU maps return one value per possible CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from ..core.errors import BpfError, CapacityError
from . import libbpf as L

BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LPM_TRIE = 11
PERCPU_TYPES = {BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, 10}
ARRAY_TYPES = {BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PROG_ARRAY}

BATCH_CHUNK = 65536
PARALLEL_MIN = 2 * BATCH_CHUNK  # entries from which a hash is written on several threads
MAX_WRITERS = 4
TURN_CHUNK = 4096  # deletes, then as many writes, in turn (Map.replace_batch)
BPF_F_NO_PREALLOC = 1
BPF_F_MMAPABLE = 1 << 10
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
HASH_TYPES = {BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH}
ENOTSUPP = 524  # kernel-internal errno some map types return for batch ops


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _ProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("_rest", ctypes.c_uint8 * 160),
    ]


@dataclass(frozen=True)
class ProgInfo:
    id: int
    name: str
    tag: str
    type: int
    map_ids: tuple[int, ...] = ()


def prog_info(fd: int) -> ProgInfo:
    info = _ProgInfo()
    ln = ctypes.c_uint32(ctypes.sizeof(info))
    L.check(L.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(ln)), "prog info")
    map_ids: tuple[int, ...] = ()
    if info.nr_map_ids:
        n = info.nr_map_ids
        arr = (ctypes.c_uint32 * n)()
        info2 = _ProgInfo()
        info2.nr_map_ids = n
        info2.map_ids = ctypes.addressof(arr)
        ln2 = ctypes.c_uint32(ctypes.sizeof(info2))
        if L.bpf_obj_get_info_by_fd(fd, ctypes.byref(info2), ctypes.byref(ln2)) == 0:
            map_ids = tuple(arr)
    return ProgInfo(
        id=info.id,
        name=info.name.decode(errors="replace"),
        tag=bytes(info.tag).hex(),
        type=info.type,
        map_ids=map_ids,
    )


def prog_info_by_id(prog_id: int) -> ProgInfo | None:
    fd = L.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return None
    try:
        return prog_info(fd)
    finally:
        L.close_fd(fd)


def prog_fd_by_id(prog_id: int) -> int:
    return L.check(L.bpf_prog_get_fd_by_id(prog_id), f"program id {prog_id}")


def obj_get(path: str) -> int:
    return L.check(L.bpf_obj_get(path.encode()), f"open pinned object {path}")


def obj_pin(fd: int, path: str) -> None:
    L.check(L.bpf_obj_pin(fd, path.encode()), f"pin {path}")


def _read_only(data) -> tuple[int, object]:
    """The address of bytes a batch call only reads (keys, values), and the
    object that keeps them there. A bytes object is passed where it is,
    uncopied (a million entries are tens of MB); a writable buffer too;
    anything else is copied."""
    if isinstance(data, bytes):
        ptr = ctypes.c_char_p(data)  # points into the bytes object itself
        return ctypes.cast(ptr, ctypes.c_void_p).value or 0, ptr
    try:
        view = (ctypes.c_char * len(data)).from_buffer(data)
    except (TypeError, ValueError):
        view = ctypes.create_string_buffer(bytes(data), len(data))
    return ctypes.addressof(view), view


class Map:
    """An open BPF map. Owns its fd unless ``owned=False``."""

    def __init__(self, fd: int, owned: bool = True):
        self.fd = fd
        self.owned = owned
        info = _MapInfo()
        ln = ctypes.c_uint32(ctypes.sizeof(info))
        L.check(L.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(ln)), "map info")
        self.id = info.id
        self.type = info.type
        self.name = info.name.decode(errors="replace")
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.flags = info.map_flags
        self.percpu = self.type in PERCPU_TYPES
        self.ncpus = L.num_possible_cpus() if self.percpu else 1
        # per-CPU values are laid out 8-byte aligned, one per possible CPU
        self.slot_size = (self.value_size + 7) & ~7 if self.percpu else self.value_size
        self.buf_size = self.slot_size * self.ncpus

    # -- construction
    @classmethod
    def from_pin(cls, path: str) -> "Map":
        return cls(obj_get(path))

    @classmethod
    def from_id(cls, map_id: int) -> "Map":
        return cls(L.check(L.bpf_map_get_fd_by_id(map_id), f"map id {map_id}"))

    def close(self) -> None:
        if self.owned and self.fd >= 0:
            L.close_fd(self.fd)
        self.fd = -1

    def __enter__(self) -> "Map":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _what(self, op: str) -> str:
        return f"{op} on map {self.name}"

    def _key(self, key: bytes):
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key is {len(key)} bytes, want {self.key_size}")
        return ctypes.create_string_buffer(bytes(key), self.key_size)

    # -- single elements
    def lookup(self, key: bytes) -> bytes | None:
        k = self._key(key)
        v = ctypes.create_string_buffer(self.buf_size)
        ret = L.bpf_map_lookup_elem(self.fd, k, v)
        if ret == -errno.ENOENT:
            return None
        L.check(ret, self._what("lookup"))
        return v.raw

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        raw = self.lookup(key)
        if raw is None:
            return None
        return [raw[i * self.slot_size : i * self.slot_size + self.value_size] for i in range(self.ncpus)]

    def update(self, key: bytes, value: bytes, flags: int = L.BPF_ANY) -> None:
        k = self._key(key)
        if self.percpu and len(value) == self.value_size:
            value = b"".join(value.ljust(self.slot_size, b"\0") for _ in range(self.ncpus))
        v = ctypes.create_string_buffer(bytes(value), max(len(value), 1))
        ret = L.bpf_map_update_elem(self.fd, k, v, flags)
        if ret == -errno.E2BIG or ret == -errno.ENOSPC:
            raise CapacityError(self._full())
        L.check(ret, self._what("update"))

    def update_fd(self, key: int, fd: int) -> None:
        """PROG_ARRAY / map-in-map slot update with a file descriptor."""
        k = ctypes.c_uint32(key)
        v = ctypes.c_uint32(fd)
        L.check(L.bpf_map_update_elem(self.fd, ctypes.byref(k), ctypes.byref(v), L.BPF_ANY), self._what("update"))

    def delete(self, key: bytes) -> bool:
        ret = L.bpf_map_delete_elem(self.fd, self._key(key))
        if ret == -errno.ENOENT:
            return False
        L.check(ret, self._what("delete"))
        return True

    def has_entries(self) -> bool:
        """One syscall: does a hash/trie map hold anything?"""
        if self.type in ARRAY_TYPES:
            return True
        nxt = ctypes.create_string_buffer(self.key_size)
        ret = L.bpf_map_get_next_key(self.fd, None, nxt)
        if ret == -errno.ENOENT:
            return False
        L.check(ret, self._what("get_next_key"))
        return True

    def keys(self) -> Iterator[bytes]:
        if self.type in ARRAY_TYPES:
            for i in range(self.max_entries):
                yield i.to_bytes(4, "little")
            return
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = L.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret == -errno.ENOENT:
                return
            L.check(ret, self._what("get_next_key"))
            key = nxt.raw
            yield key
            prev = ctypes.create_string_buffer(key, self.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """All entries, by batch lookup where the map supports it."""
        if self.type != BPF_MAP_TYPE_PROG_ARRAY:
            try:
                yield from self._lookup_batch_all()
                return
            except BpfError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP):
                    raise
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def lookup_range(self, start: int, count: int) -> Iterator[tuple[int, bytes]]:
        """ARRAY maps: entries start .. start+count-1 by batch lookup."""
        end = min(start + count, self.max_entries)
        for key, val in self._lookup_batch_all(start_index=start, stop_index=end):
            yield int.from_bytes(key, "little"), val

    @contextlib.contextmanager
    def mapped(self, page: int = 0, pages: int | None = None) -> Iterator[memoryview | None]:
        """An ARRAY map made with BPF_F_MMAPABLE: its values as one writable
        shared mapping for the block (an aligned 8-byte store is one store
        into the map, as the data path sees it; no syscall per word); None
        for any other map (the caller writes by syscall). ``page``,
        ``pages``: only that run of pages of the values (the kernel maps
        every page of a mapping when it is made: a 32 MiB map takes about
        5 ms). Views of it must be dropped before the block ends."""
        if self.type != BPF_MAP_TYPE_ARRAY or not self.flags & BPF_F_MMAPABLE:
            yield None
            return
        size = self.max_entries * ((self.value_size + 7) & ~7) - page * mmap.PAGESIZE
        if pages is not None:
            size = min(size, pages * mmap.PAGESIZE)
        mm = mmap.mmap(self.fd, -(-size // mmap.PAGESIZE) * mmap.PAGESIZE, mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE, offset=page * mmap.PAGESIZE)
        view = memoryview(mm)[:size]
        try:
            yield view
        finally:
            try:
                view.release()
                mm.close()
            except BufferError:  # a view outlived the block (an error on its way up): unmapped when it goes
                pass

    def values_range(self, start: int, count: int) -> bytes:
        """ARRAY maps: the values of entries start .. start+count-1, packed
        (batch lookups; no object per entry)."""
        end = min(start + count, self.max_entries)
        parts = [v for _k, v, _n in self._batches(start_index=start, stop_index=end)]
        return b"".join(parts)[:(end - start) * self.buf_size]

    def _lookup_batch_all(self, start_index: int | None = None,
                          stop_index: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        seen = start_index or 0
        ks, bs = self.key_size, self.buf_size
        for kr, vr, n in self._batches(start_index, stop_index):
            for i in range(n):
                if stop_index is not None and seen >= stop_index:
                    return
                seen += 1
                yield kr[i * ks:(i + 1) * ks], vr[i * bs:(i + 1) * bs]

    def _batches(self, start_index: int | None = None,
                 stop_index: int | None = None) -> Iterator[tuple[bytes, bytes, int]]:
        """Batch lookups: (keys, values, count) per batch, packed."""
        chunk = min(max(self.max_entries, 1), 8192)
        if stop_index is not None and start_index is not None:
            chunk = max(1, min(chunk, stop_index - start_index))
        keys = ctypes.create_string_buffer(self.key_size * chunk)
        vals = ctypes.create_string_buffer(self.buf_size * chunk)
        in_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        out_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        opts = L.BatchOpts(ctypes.sizeof(L.BatchOpts), 0, 0)
        first = True
        if start_index:
            # in_batch is the key before the first one returned
            ctypes.memmove(in_batch, (start_index - 1).to_bytes(4, "little"), 4)
            first = False
        seen = start_index or 0
        while True:
            count = ctypes.c_uint32(chunk)
            ret = L.bpf_map_lookup_batch(
                self.fd, None if first else in_batch, out_batch, keys, vals, ctypes.byref(count), ctypes.byref(opts)
            )
            done = ret == -errno.ENOENT
            if ret < 0 and not done:
                L.check(ret, self._what("lookup_batch"))
            n = count.value
            seen += n
            yield keys.raw[:n * self.key_size], vals.raw[:n * self.buf_size], n
            if done or (stop_index is not None and seen >= stop_index):
                return
            ctypes.memmove(in_batch, out_batch, len(out_batch))
            first = False

    def dump(self) -> tuple[bytes, bytes, int]:
        """Every entry, packed: (keys, values, count); no object per entry
        where the map supports batch lookup."""
        if self.type != BPF_MAP_TYPE_PROG_ARRAY:
            try:
                parts = list(self._batches())
                return (b"".join(p[0] for p in parts), b"".join(p[1] for p in parts), sum(p[2] for p in parts))
            except BpfError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP):
                    raise
        entries = list(self.items())
        return b"".join(k for k, _v in entries), b"".join(v for _k, v in entries), len(entries)

    # -- batches
    @property
    def preallocated(self) -> bool:
        """A hash whose elements were allocated when it was made: an insert
        takes no allocation, and a deleted element goes to the next insert
        at once (xdpctl.core.rules.tables waits for running programs before
        a catch-up frees one)."""
        return self.type in HASH_TYPES and not self.flags & BPF_F_NO_PREALLOC

    def _spread(self, count: int, write: Callable[[int, int], None]) -> None:
        """Run write(start, end) over [0, count): in one call, or, for a
        big batch into a hash, in contiguous parts on several threads (the
        syscalls run without the GIL; buckets lock one by one, and elements
        come from per-CPU caches, preallocated or not). Every part runs to
        its end; the first failure is raised (a full map first)."""
        parts = min(os.cpu_count() or 1, MAX_WRITERS) if self.type in HASH_TYPES and count >= PARALLEL_MIN else 1
        if parts == 1:
            write(0, count)
            return
        cuts = [count * i // parts for i in range(parts + 1)]
        errors: list[BaseException] = []

        def run(a: int, b: int) -> None:
            try:
                write(a, b)
            except BaseException as exc:  # raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(cuts[i], cuts[i + 1]), name="xdpctl-batch")
                   for i in range(1, parts)]
        for t in threads:
            t.start()
        run(cuts[0], cuts[1])
        for t in threads:
            t.join()
        if errors:
            raise next((e for e in errors if isinstance(e, CapacityError)), errors[0])

    def _full(self) -> str:
        """The message of a full map, one for single and batch writes."""
        return f"map {self.name} is full: {self.max_entries} entries (raise its capacity in the xdpctl config)"

    def update_batch(self, keys: bytes, values: bytes, count: int, flags: int = 0) -> None:
        """Write ``count`` packed entries. Raises CapacityError when full.

        On failure part of the batch may have been written; the caller
        (the core) owns rollback.
        """
        if count == 0:
            return
        self._spread(count, self._writer(keys, values, count, flags))

    def delete_batch(self, keys: bytes, count: int) -> None:
        if count == 0:
            return
        self._spread(count, self._deleter(keys))

    def replace_batch(self, dels: bytes, n_del: int, keys: bytes, values: bytes, n_upd: int) -> None:
        """Delete ``n_del`` packed keys and write ``n_upd`` entries whose
        keys are not among them: the map ends as after delete_batch then
        update_batch, and never holds more than before or after.

        In a hash allocated on insert the first min(n_del, n_upd) of each
        go in turns, TURN_CHUNK deletes then as many writes in each part,
        where all the deletes first freed a million elements and the
        writes then allocated a million (measured faster: docs/internals.md,
        "Performance of the control plane"). A part writes only as many as
        it deleted, so nothing is added before the deletes are done; the
        rest of the longer side follows. Raises CapacityError when full; on
        failure part of it may have been done (the caller owns rollback).
        """
        n = min(n_del, n_upd) if self.type in HASH_TYPES and self.flags & BPF_F_NO_PREALLOC else 0
        write = self._writer(keys, values, n_upd) if n_upd else None
        delete = self._deleter(dels)

        def turns(a: int, b: int) -> None:
            for s in range(a, b, TURN_CHUNK):
                e = min(s + TURN_CHUNK, b)
                delete(s, e)
                write(s, e)

        if n:
            self._spread(n, turns)
        if n_del > n:  # first: a replace needs room for the result only, not old + new
            self._spread(n_del - n, lambda a, b: delete(n + a, n + b))
        if n_upd > n:
            self._spread(n_upd - n, lambda a, b: write(n + a, n + b))

    def _writer(self, keys: bytes, values: bytes, count: int, flags: int = 0) -> Callable[[int, int], None]:
        """write(start, end): entries start .. end - 1 of ``count`` packed
        entries, BATCH_CHUNK a call."""
        if len(keys) != count * self.key_size or len(values) != count * self.buf_size:
            raise ValueError(f"map {self.name}: batch of {count} has wrong key/value bytes")
        kin, vin = _read_only(keys), _read_only(values)  # (address, what keeps it alive)
        kaddr, vaddr = kin[0], vin[0]

        def write(start: int, end: int) -> None:
            opts = L.BatchOpts(ctypes.sizeof(L.BatchOpts), flags, 0)
            done = start
            while done < end:
                n = min(BATCH_CHUNK, end - done)
                cnt = ctypes.c_uint32(n)
                ret = L.bpf_map_update_batch(
                    self.fd,
                    kaddr + done * self.key_size,
                    vaddr + done * self.buf_size,
                    ctypes.byref(cnt),
                    ctypes.byref(opts),
                )
                if ret in (-errno.E2BIG, -errno.ENOSPC):
                    raise CapacityError(self._full())
                L.check(ret, self._what("update_batch"))
                done += n

        write.keep = (kin, vin)  # type: ignore[attr-defined]  # the bytes the addresses point into
        return write

    def _deleter(self, keys: bytes) -> Callable[[int, int], None]:
        """delete(start, end): keys start .. end - 1 of packed keys,
        BATCH_CHUNK a call; a key the map does not hold is skipped."""
        kin = _read_only(keys)
        kaddr = kin[0]

        def delete(start: int, end: int) -> None:
            opts = L.BatchOpts(ctypes.sizeof(L.BatchOpts), 0, 0)
            done = start
            while done < end:
                n = min(BATCH_CHUNK, end - done)
                cnt = ctypes.c_uint32(n)
                ret = L.bpf_map_delete_batch(self.fd, kaddr + done * self.key_size, ctypes.byref(cnt),
                                             ctypes.byref(opts))
                if ret == -errno.ENOENT:
                    # some key was absent: fall back to one by one, ignoring misses
                    for i in range(done, done + n):
                        self.delete(keys[i * self.key_size : (i + 1) * self.key_size])
                else:
                    L.check(ret, self._what("delete_batch"))
                done += n

        delete.keep = kin  # type: ignore[attr-defined]  # the bytes the address points into
        return delete

    def clear(self) -> None:
        if self.type in ARRAY_TYPES:
            zero = b"\0" * self.value_size
            if self.type == BPF_MAP_TYPE_PROG_ARRAY:
                for i in range(self.max_entries):
                    self.delete(i.to_bytes(4, "little"))
                return
            for k in self.keys():
                self.update(k, zero)
            return
        keys = [k for k in self.keys()]
        if keys:
            self.delete_batch(b"".join(keys), len(keys))


def pinned_id(path: str) -> int | None:
    """Id of the map or program pinned at ``path``; None if nothing is."""
    fd = L.bpf_obj_get(path.encode())
    if fd < 0:
        return None
    try:
        info = _MapInfo()
        ln = ctypes.c_uint32(ctypes.sizeof(info))
        L.check(L.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(ln)), f"info of {path}")
        return info.id
    finally:
        L.close_fd(fd)


_grace: list[int] = []  # [outer fd, inner fd]: the map-of-maps wait_for_programs updates
_grace_lock = threading.Lock()


def wait_for_programs() -> None:
    """Return once every BPF program that was running has finished (an RCU
    grace period): the kernel waits for them whenever a map of maps is
    updated, so this updates the one slot of a private array of maps."""
    with _grace_lock:
        if not _grace:
            inner = L.check(L.bpf_map_create(BPF_MAP_TYPE_ARRAY, b"xc_grace_in", 4, 4, 1, None),
                            "create the grace-period inner map")
            opts = L.MapCreateOpts(sz=ctypes.sizeof(L.MapCreateOpts), inner_map_fd=inner)
            try:
                outer = L.check(L.bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, b"xc_grace", 4, 4, 1,
                                                 ctypes.byref(opts)), "create the grace-period map")
            except BaseException:
                L.close_fd(inner)
                raise
            _grace[:] = [outer, inner]
        outer, inner = _grace
        key, val = ctypes.c_uint32(0), ctypes.c_uint32(inner)
        L.check(L.bpf_map_update_elem(outer, ctypes.byref(key), ctypes.byref(val), L.BPF_ANY),
                "wait for running BPF programs")
