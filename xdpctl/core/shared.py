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
        self.maps: dict[str, maps.Map] = {}

    def object_name(self) -> str:
        """The object whose load creates the group's maps."""
        raise NotImplementedError

    def pin_path(self, name: str) -> str | None:
        """Where a map of the group is pinned (None: not one of the group's):
        a loader's pin_path, so an object loaded over the group reuses its maps."""
        return os.path.join(self.dir, name) if name in self.NAMES else None

    def ensure(self):
        pins = self.ctx.pins_in(self.dir)
        missing = [m for m in self.NAMES if m not in pins]
        if missing and not self.create:
            raise PinsGone(", ".join(missing))
        if missing:
            if self.ctx.state.attachments():  # the attach model (netlink) only when hooks are recorded
                from .hooks import check_shared_pins

                check_shared_pins(self.ctx, missing)
            bpffs.makedirs(self.dir)
            objects.load(objects.object_path(self.object_name()), pin_path=self.pin_path,
                         max_entries=abi.with_sets(self.ctx.settings.capacity),
                         map_flags=abi.prealloc_flags(self.ctx.settings.prealloc), programs=False).close()
            pins = self.ctx.pins_in(self.dir)
        for m in self.NAMES:
            if m not in self.maps:
                try:
                    self.maps[m] = self.ctx.pinned_map(os.path.join(self.dir, m), pins.get(m))
                except BpfError as exc:  # removed since the directory was read
                    if self.create or exc.errno != errno.ENOENT:
                        raise
                    raise PinsGone(m) from exc
        return self

    def __getitem__(self, name: str) -> maps.Map:
        return self.maps[name]

    def close(self) -> None:
        self.maps.clear()  # the context keeps them open

    def __enter__(self):
        return self.ensure()

    def __exit__(self, *exc) -> None:
        self.close()
