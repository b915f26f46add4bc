"""What every attach kind shares: hook references, stages, pins, typed results,
and the interface an attach kind implements (xdp.py, tc.py).

A *hook* is one place packets are classified: an interface (in a network
namespace) at ``xdp``, ``tc-ingress`` or ``tc-egress``. xdpctl attaches one
program per hook (program.py) that runs the stages switched on in its
per-hook map ``xc_stages``, in a fixed order (counter, drop list, load
balancer).

Pins (under the pin directory) only give access to the maps; the kernel
keeps an attached program and its maps alive without them::

    maps/<name>                                   shared maps (rules, stats)
    hooks/host/<ifname>/<hook>/                   one hook in the root netns
    hooks/netns/<netns>/<ifname>/<hook>/          one hook in a named netns
        xc_stages, xc_proto, xc_dl_cnt, ...       per-hook maps
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ... import abi
from ...kernel import maps, netlink
from ..context import Context
from ..errors import ValidationError, choice
from ..views import AttachView, ProbeResultView, StageView

HOOKS = ("xdp", "tc-ingress", "tc-egress")
XDP_MODES = ("generic", "native", "offload", "auto")
PER_HOOK_MAPS = frozenset(abi.HOOK_MAPS)  # pinned per hook; the rest once, shared
HOOK_PROG = "xc_hook"


@dataclass(frozen=True)
class Stage:
    name: str
    slot: int  # enum xc_stage: the order of the stages and their bit in xc_stages


#: the stages a front end may attach
STAGES: dict[str, Stage] = {
    "counter": Stage("counter", int(abi.Stage.COUNTER)),
    "droplist": Stage("droplist", int(abi.Stage.DROPLIST)),
    "lb": Stage("lb", int(abi.Stage.LB)),
}
#: hooks the load balancer may run on (on tc-egress its redirect would loop)
LB_HOOKS = ("xdp", "tc-ingress")


def stage(name: str) -> Stage:
    return STAGES[choice(name, STAGES, field="program", what="program")]


def check_stage_hook(name: str, hook: str) -> None:
    if name == "lb" and hook not in LB_HOOKS:
        raise ValidationError(f"the load balancer cannot run on {hook}: it sends frames back out of the "
                              f"interface they came in on", field="hook", value=hook,
                              hint=f"choose one of: {', '.join(LB_HOOKS)}")


def check_hook(hook: str) -> str:
    return choice(hook, HOOKS, field="hook", what="hook")


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
        """A pin of this hook: one of its per-hook maps."""
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

    @classmethod
    def by_fd(cls, fd: int) -> "ProgRef":
        info = maps.prog_info(fd)
        return cls(info.id, info.name, info.tag)


@dataclass(frozen=True)
class Installed:
    """What an attach kind did to put a program on a hook."""

    mode: str | None
    notes: list[str] = field(default_factory=list)


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
    """What runs on one hook: xdpctl's program (if the kernel runs it), its
    mode, and the stages it has switched on."""

    hook: HookRef
    attached: bool
    mode: str | None
    prog: ProgRef | None
    stages: list[StageView]


# ---------------------------------------------------------------- the interface
class AttachKind(ABC):
    """One way of attaching a program to a hook (XDP, TC)."""

    #: the hook this kind attaches to
    hook: str = ""

    @abstractmethod
    def check_mode(self, mode: str | None) -> str | None:
        """The mode to attach in (validated), or None for a kind without modes."""

    @abstractmethod
    def current(self, ref: HookRef) -> KernelProg | None:
        """The program in the place xdpctl attaches to on this hook (any XDP
        mode; the TC filter at xdpctl's priority), whoever put it there.
        NotFound when the interface or namespace is gone."""

    @abstractmethod
    def install(self, ctx: Context, ref: HookRef, link: netlink.Link, fd: int, mode: str | None,
                replace: KernelProg | None) -> Installed:
        """Attach program ``fd``, atomically replacing ``replace`` (what
        :meth:`current` returned; None: the hook is free)."""

    @abstractmethod
    def remove(self, ctx: Context, ref: HookRef, prog_id: int) -> None:
        """Take program ``prog_id`` off the hook if it is still the one
        attached; leave everything else alone."""

    @abstractmethod
    def programs(self, link: netlink.Link, netns: str | None) -> list[KernelProg]:
        """Every program the kernel runs on this hook of ``link``."""

    @abstractmethod
    def probe(self, link: netlink.Link, netns: str | None) -> list[ProbeResultView]:
        """Try the hook in every mode on ``link``; leave it as found."""
