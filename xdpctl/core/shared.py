"""Maps shared by every hook, pinned under ``<pin>/maps/``.

A service that owns a group of shared maps (the drop list's rule tables,
the load balancer's VIPs and ring) opens them through a subclass of
:class:`SharedMaps` as a context manager; the caller holds the writer lock.
The maps stay open in the context (``Context.pinned_map``) for the next use.
Missing maps are created by loading the object that defines them with only
the group's maps pinned and none of its programs (no verifier run), after
checking that no running program still reads maps whose pins were lost
(that would make a new map that nothing reads).
"""

from __future__ import annotations

import errno
import os

from .. import abi
from ..kernel import bpffs, maps, objects
from .background import Background
from .context import Context
from .errors import BpfError


class PinsGone(Exception):
    """A group opened with ``create`` False found some of its pins missing
    (removed since the caller last saw them): nothing was created."""


class SharedMaps:
    NAMES: tuple[str, ...] = ()   # the group's maps

    def __init__(self, ctx: Context, create: bool = True):
        self.ctx = ctx
        self.create = create  # False: open what is pinned, or raise PinsGone
        self.dir = ctx.settings.shared_map_dir
        self._maps: dict[str, maps.Map] = {}
        self._making: tuple[objects.Opened, Background[None]] | None = None  # ensure(early=True)
        self._missing: frozenset[str] = frozenset()  # the maps this opening made (or is making)

    def object_name(self) -> str:
        """The object whose load creates the group's maps."""
        raise NotImplementedError

    def pin_path(self, name: str) -> str | None:
        """Where a map of the group is pinned (None: not one of the group's):
        a loader's pin_path, so an object loaded over the group reuses its maps."""
        return os.path.join(self.dir, name) if name in self.NAMES else None

    @property
    def maps(self) -> dict[str, maps.Map]:
        """The group's maps by name (made first, if they are being made)."""
        if self._making is not None:
            self._made()
        return self._maps

    @property
    def making(self) -> bool:
        """Are missing maps of the group being made (in a thread:
        ensure(early=True))? Until the first use of :attr:`maps` or of one
        of them; they start empty."""
        return self._making is not None

    def being_made(self, name: str) -> bool:
        """Is this map one of those being made (not pinned when the group was opened)?"""
        return self._making is not None and self.made_here(name)

    def made_here(self, name: str) -> bool:
        """Was this map made by this opening of the group (empty until
        its caller writes it)?"""
        return name in self._missing

    def max_entries(self, name: str) -> int:
        """A map's size; while it is being made, the size it is made with."""
        if self.being_made(name):
            return abi.with_sets(self.ctx.settings.capacity).get(name) or abi.MAP_SPECS[name].max_entries
        return self[name].max_entries

    def ensure(self, early: bool = False):
        """Open the group's maps, making the missing ones. ``early``: the
        making (libbpf creating and pinning maps: in the kernel, without the
        GIL) runs in a thread while the caller goes on; the first use of
        :attr:`maps` waits for it."""
        pins = self.ctx.pins_in(self.dir)
        missing = [m for m in self.NAMES if m not in pins]
        if missing and not self.create:
            raise PinsGone(", ".join(missing))
        if missing:
            if self.ctx.state.attachments():  # the attach model (netlink) only when hooks are recorded
                from .hooks import check_shared_pins

                check_shared_pins(self.ctx, missing)
            bpffs.makedirs(self.dir)
            if early:
                self._open(pins, [m for m in self.NAMES if m in pins])  # what is pinned: usable at once
                opened = self._opened()  # the Python side here: the thread runs one C call
                quietly = Background(opened.load_quietly, "xdpctl-map-create")
                self._making, self._missing = (opened, quietly), frozenset(missing)
                return self
            self._opened().load().close()
            self._missing = frozenset(missing)
            pins = self.ctx.pins_in(self.dir)
        self._open(pins, self.NAMES)
        return self

    def _opened(self) -> objects.Opened:
        """The group's object, opened to make the missing maps (no programs)."""
        return objects.Opened(objects.object_path(self.object_name()), self.pin_path,
                              abi.with_sets(self.ctx.settings.capacity),
                              abi.prealloc_flags(self.ctx.settings.prealloc), programs=False)

    def _made(self) -> None:
        """Wait for the maps being made and open them. A failure there said
        only its errno: the making is tried again here, libbpf's messages
        on, so the error says why (a failed load has unpinned what it made)."""
        (opened, quietly), self._making = self._making, None
        try:
            quietly.result()
            opened.load().close()
        except BpfError:
            self._opened().load().close()
        finally:
            opened.close()
        self._open(self.ctx.pins_in(self.dir), self.NAMES)

    def _open(self, pins: dict[str, tuple[int, int]], names) -> None:
        for m in names:
            if m not in self._maps:
                path = os.path.join(self.dir, m)
                try:
                    self._maps[m] = self.ctx.pinned_map(path, pins.get(m))
                except BpfError as exc:  # removed since the directory was read
                    if self.create or exc.errno != errno.ENOENT:
                        raise
                    raise PinsGone(m) from exc
                check_layout(self._maps[m], path)

    def __getitem__(self, name: str) -> maps.Map:
        """One map: at once if it was pinned already, else once made."""
        return self._maps[name] if name in self._maps else self.maps[name]

    def close(self) -> None:
        if self._making is not None:  # made for a change that failed before it used them
            (opened, quietly), self._making = self._making, None
            quietly.wait()
            opened.close()  # the maps it made stay pinned
        self._maps.clear()  # the context keeps them open

    def __enter__(self):
        return self.ensure()

    def __exit__(self, *exc) -> None:
        self.close()


def check_layout(m: maps.Map, path: str) -> None:
    """Refuse a pinned map whose entries are not this version's (pinned by
    an xdpctl of another layout): reading or writing it would go wrong.
    Checked once per opened map (the context keeps it open)."""
    if getattr(m, "layout_checked", False):
        return
    name = os.path.basename(path)
    spec = abi.MAP_SPECS.get(name) or abi.MAP_SPECS.get(name.removesuffix(abi.STANDBY_SUFFIX))
    # a one-entry map of abi.GLOBAL_MAPS is a data section of the programs: mmapable
    mm = abi.BPF_F_MMAPABLE if spec is not None and spec.name in abi.GLOBAL_MAPS else 0
    if spec is None or (m.key_size, m.value_size, m.flags & mm) == (spec.key_size, spec.value_size, spec.flags & mm):
        m.layout_checked = True
        return
    raise BpfError(f"the map pinned at {path} was made by another version of xdpctl ({m.key_size}-byte keys, "
                   f"{m.value_size}-byte values{_mmapable(m.flags, mm)}; this version's are {spec.key_size} and "
                   f"{spec.value_size} bytes{_mmapable(spec.flags, mm)}): nothing was changed", errno.EINVAL,
                   hint="detach its hooks ({action:detach}), remove the pinned maps in "
                        f"{os.path.dirname(path)} and run {{action:restore}}: it makes them anew and refills them")


def _mmapable(flags: int, checked: int) -> str:
    """How check_layout names the mmapable flag, when it checks it."""
    return "" if not checked else (", mmapable" if flags & checked else ", not mmapable")
