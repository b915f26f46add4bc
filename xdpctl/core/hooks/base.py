"""What every attach kind shares: hook references, stages, pins, typed results,
and the interface an attach kind implements (xdp.py, tc.py).

A *hook* is one place packets are classified: an interface (in a network
namespace) at ``xdp``, ``tc-ingress`` or ``tc-egress``. xdpctl attaches one
small root program per hook and fills that hook's PROG_ARRAY ``xc_chain``
with stage programs in a fixed order (counter, drop list, load balancer).

Pins (under the pin directory)::

    maps/<name>                                   shared maps (rules, stats)
    hooks/host/<ifname>/<hook>/                   one hook in the root netns
    hooks/netns/<netns>/<ifname>/<hook>/          one hook in a named netns
        root, counter, droplist, ...              programs
        xc_chain, xc_proto, xc_dl_cnt             per-hook maps
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ... import abi
from ...kernel import maps, netlink
from ..context import Context
from ..errors import ValidationError
from ..views import AttachView, ProbeResultView, StageView

HOOKS = ("xdp", "tc-ingress", "tc-egress")
XDP_MODES = ("generic", "native", "offload", "auto")
PER_HOOK_MAPS = frozenset(abi.HOOK_MAPS)  # pinned per hook; the rest once, shared
ROOT_PROG = "xc_root"


@dataclass(frozen=True)
class Stage:
    name: str
    slot: int
    prog: str

    def object_name(self, hook: str) -> str:
        """The compiled object of this stage for a hook: xdp_NAME or tc_NAME."""
        return f"{hook.split('-', 1)[0]}_{self.name}"


STAGES: dict[str, Stage] = {
    "counter": Stage("counter", int(abi.Stage.COUNTER), "xc_counter"),
    "droplist": Stage("droplist", int(abi.Stage.DROPLIST), "xc_droplist"),
}


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValidationError(f"unknown program {name!r}", field="program", value=name,
                              hint=f"choose one of: {', '.join(STAGES)}") from None


def check_hook(hook: str) -> str:
    if hook not in HOOKS:
        raise ValidationError(f"unknown hook {hook!r}", field="hook", value=hook,
                              hint=f"choose one of: {', '.join(HOOKS)}")
    return hook


@dataclass(frozen=True)
class HookRef:
    netns: str | None
    ifname: str
    hook: str

    def dir(self, ctx: Context) -> str:
        base = ctx.settings.hooks_dir
        if self.netns:
            return os.path.join(base, "netns", self.netns, self.ifname, self.hook)
        return os.path.join(base, "host", self.ifname, self.hook)

    def pin(self, ctx: Context, name: str) -> str:
        """A pin of this hook: ``root``, a stage name, or a per-hook map."""
        return os.path.join(self.dir(ctx), name)

    def label(self) -> str:
        where = f"{self.netns}/" if self.netns else ""
        return f"{where}{self.ifname} {self.hook}"


def pinned_hooks(ctx: Context) -> list[HookRef]:
    """Every hook with a pin directory, read from bpffs."""
    out: list[HookRef] = []
    base = ctx.settings.hooks_dir
    host = os.path.join(base, "host")
    for ifname in _ls(host):
        for hook in _ls(os.path.join(host, ifname)):
            out.append(HookRef(None, ifname, hook))
    nsdir = os.path.join(base, "netns")
    for ns in _ls(nsdir):
        for ifname in _ls(os.path.join(nsdir, ns)):
            for hook in _ls(os.path.join(nsdir, ns, ifname)):
                out.append(HookRef(ns, ifname, hook))
    return out


def _ls(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def pin_path_for(ctx: Context, hdir: str):
    """Where a map of an object loaded for the hook at ``hdir`` is pinned."""
    def pin(name: str) -> str:
        if name in PER_HOOK_MAPS:
            return os.path.join(hdir, name)
        return os.path.join(ctx.settings.shared_map_dir, name)

    return pin


def pinned_prog_id(path: str) -> int | None:
    if not os.path.exists(path):
        return None
    fd = maps.obj_get(path)
    try:
        return maps.prog_info(fd).id
    finally:
        os.close(fd)


# ---------------------------------------------------------------- typed results
@dataclass(frozen=True)
class ProgRef:
    """A program the kernel knows, by id."""

    id: int
    name: str | None
    tag: str | None

    @classmethod
    def by_id(cls, prog_id: int) -> "ProgRef":
        info = maps.prog_info_by_id(prog_id)
        return cls(prog_id, info.name if info else None, info.tag if info else None)


@dataclass(frozen=True)
class RootResult:
    """What an attach kind did to put xdpctl's root on a hook."""

    id: int
    mode: str | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Running:
    """Whether the kernel runs a given root on a hook, and in which mode."""

    attached: bool
    mode: str | None = None


@dataclass(frozen=True)
class KernelProg:
    """A program the kernel runs on a hook, whoever attached it."""

    hook: str
    mode: str | None
    id: int | None
    name: str | None
    tag: str | None
    pref: int | None = None


@dataclass
class AttachResult:
    hook: HookRef
    program: str
    mode: str | None
    prog_id: int
    root_id: int
    replaced: bool = False
    notes: list[str] = field(default_factory=list)

    def view(self, revision: int) -> AttachView:
        ref = self.hook
        return AttachView(netns=ref.netns, ifname=ref.ifname, hook=ref.hook, program=self.program,
                          mode=self.mode, prog_id=self.prog_id, root_id=self.root_id,
                          replaced=self.replaced, notes=list(self.notes), revision=revision)


@dataclass
class HookState:
    """What runs on one pinned hook: xdpctl's root (if the kernel still runs
    it), its mode, and the stages in the hook's chain."""

    hook: HookRef
    attached: bool
    mode: str | None
    root: ProgRef | None
    stages: list[StageView]


# ---------------------------------------------------------------- the interface
class AttachKind(ABC):
    """One way of attaching xdpctl's root program to a hook (XDP, TC)."""

    #: the hook this kind attaches to
    hook: str = ""
    #: the compiled root object for the hook
    root_object: str = ""

    @abstractmethod
    def check_mode(self, mode: str | None) -> str | None:
        """The mode to attach in (validated), or None for a kind without modes."""

    @abstractmethod
    def ensure_root(self, ctx: Context, ref: HookRef, link: netlink.Link, mode: str | None,
                    force: bool) -> RootResult:
        """Make sure xdpctl's root runs on the hook (loading and attaching it
        if needed); never replaces a program xdpctl did not attach unless
        ``force``."""

    @abstractmethod
    def detach_root(self, ctx: Context, ref: HookRef, fd: int, root_id: int) -> None:
        """Take xdpctl's root (``fd``, ``root_id``) off the hook if it is
        still the one attached; leave everything else alone."""

    @abstractmethod
    def running(self, ref: HookRef, root_id: int | None) -> Running:
        """Does the kernel run ``root_id`` on the hook, and in which mode?"""

    @abstractmethod
    def programs(self, link: netlink.Link, netns: str | None) -> list[KernelProg]:
        """Every program the kernel runs on this hook of ``link``."""

    @abstractmethod
    def probe(self, link: netlink.Link, netns: str | None) -> list[ProbeResultView]:
        """Try the hook in every mode on ``link``; leave it as found."""
