"""Status: every interface of the namespaces asked for, what the kernel runs
on each hook (ours or not), and the recorded attachments."""

from __future__ import annotations

from ...kernel import netlink
from ..context import Context
from ..errors import NotFound
from ..views import AttachmentView, HookStatusView, InterfaceView, StatusView
from .base import HookState
from .kinds import KINDS
from .service import Hooks

#: owner of a hook whose program xdpctl pinned but the kernel does not run
PINNED_NOT_ATTACHED = "xdpctl (pinned, not attached)"

Ours = dict[tuple[str | None, str, str], HookState]


def status(ctx: Context, netns: str | None = None, all_interfaces: bool = False) -> StatusView:
    """What runs where. Without ``netns``: the host and every namespace where
    xdpctl has pinned hooks. A namespace that went away while xdpctl still
    has pins there is listed in ``unreachable``; one that does not exist and
    never had xdpctl's hooks is NotFound. Interfaces with nothing attached
    only with ``all_interfaces``."""
    ctx.kernel_ready()
    hooks = Hooks(ctx)
    ours: Ours = {(h.netns, h.ifname, h.hook): hooks.hook_status(h) for h in hooks.known_hooks()}
    spaces = [netns] if netns is not None else hooks.managed_netns()
    interfaces: list[InterfaceView] = []
    unreachable: list[str] = []
    for ns in spaces:
        try:
            links = netlink.list_links(ns)
        except NotFound:
            if ns is None or not any(hns == ns for (hns, _i, _h) in ours):
                raise
            unreachable.append(ns)  # removed while its pins remain
            continue
        for link in links:
            iv = _interface(link, ns, ours)
            if all_interfaces or iv.hooks:
                interfaces.append(iv)
    recorded = [AttachmentView(netns=a.netns, ifname=a.ifname, hook=a.hook, program=a.program, mode=a.mode,
                               attached=_runs(ours.get((a.netns, a.ifname, a.hook)), a.program))
                for a in ctx.state.attachments()]
    from ..dump import sampling  # dump reads counters, which import this package

    return StatusView(revision=ctx.state.revision, interfaces=interfaces, recorded=recorded,
                      unreachable=unreachable, sampling=sampling(ctx, netns))


def _runs(st: HookState | None, program: str) -> bool:
    return bool(st and st.attached and any(s.program == program for s in st.stages))


def _interface(link: netlink.Link, ns: str | None, ours: Ours) -> InterfaceView:
    hooks: list[HookStatusView] = []
    for k in KINDS.values():
        st = ours.get((ns, link.name, k.hook))
        for p in k.programs(link, ns):
            mine = bool(st and st.prog and st.prog.id == p.id)
            hooks.append(HookStatusView(hook=p.hook, mode=p.mode, id=p.id, name=p.name, tag=p.tag,
                                        owner="xdpctl" if mine else "other", pref=p.pref,
                                        stages=st.stages if mine and st else []))
    for (hns, ifname, hook), st in ours.items():
        if hns == ns and ifname == link.name and not st.attached and st.stages:
            hooks.append(HookStatusView(hook=hook, mode=None, id=None, name=None, tag=None,
                                        owner=PINNED_NOT_ATTACHED, stages=st.stages))
    return InterfaceView(netns=ns, ifname=link.name, ifindex=link.index, up=link.up, driver=link.kind,
                         hooks=hooks)
