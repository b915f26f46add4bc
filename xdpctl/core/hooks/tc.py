"""The TC attach kind (ingress, egress): xdpctl's filter at its own priority
on the clsact qdisc, replaced in place (same priority and handle)."""

from __future__ import annotations

import os

from ...kernel import netlink, objects
from ..context import Context
from ..errors import NetlinkError, ValidationError
from ..views import ProbeResultView
from .base import AttachKind, HookRef, Installed, KernelProg

TC_HOOKS = ("tc-ingress", "tc-egress")


def _clsact_key(ref: HookRef) -> str:
    """The state key that says xdpctl added the interface's clsact qdisc."""
    return f"clsact-created:{ref.netns or ''}:{ref.ifname}"


class TcKind(AttachKind):
    def __init__(self, hook: str):
        self.hook = hook

    def check_mode(self, mode: str | None) -> str | None:
        if mode not in (None, "auto"):
            raise ValidationError(f"{{field:mode}} {mode} applies to the xdp hook only; {self.hook} has no modes",
                                  field="mode", value=mode)
        return None

    def current(self, ref: HookRef) -> KernelProg | None:
        f = netlink.tc_ours(ref.ifname, ref.netns, self.hook)
        return KernelProg(self.hook, None, f.prog_id, f.name, f.tag, f.pref) if f else None

    def install(self, ctx: Context, ref: HookRef, link: netlink.Link, fd: int, mode: str | None,
                replace: KernelProg | None) -> Installed:
        if netlink.ensure_clsact_created(ref.ifname, ref.netns):
            ctx.state.set_meta(_clsact_key(ref), "1")
        netlink.tc_set(ref.ifname, ref.netns, self.hook, fd, f"{netlink.TC_NAME_PREFIX}hook")
        return Installed(None)

    def remove(self, ctx: Context, ref: HookRef, prog_id: int) -> None:
        cur = netlink.tc_ours(ref.ifname, ref.netns, self.hook)
        if cur is not None and cur.prog_id == prog_id:
            netlink.tc_del(ref.ifname, ref.netns, self.hook)
        # remove the clsact qdisc only if xdpctl added it and no filter of
        # any kind is left on it
        key = _clsact_key(ref)
        if ctx.state.get_meta(key) and not any(
                netlink.tc_filter_count(ref.ifname, ref.netns, h) for h in TC_HOOKS):
            netlink.del_clsact(ref.ifname, ref.netns)
            ctx.state.delete_meta(key)

    def programs(self, link: netlink.Link, netns: str | None) -> list[KernelProg]:
        return [KernelProg(self.hook, None, f.prog_id, f.name, f.tag, f.pref)
                for f in netlink.tc_filters(link.name, netns, self.hook)]

    # ------------------------------------------------------------ probe
    def probe(self, link: netlink.Link, netns: str | None) -> list[ProbeResultView]:
        def result(ok: bool, detail: str) -> list[ProbeResultView]:
            return [ProbeResultView(hook=self.hook, mode=None, ok=ok, detail=detail)]

        cur = netlink.tc_ours(link.name, netns, self.hook)
        if cur is not None:
            return result(True, f"in use by {cur.name} (id {cur.prog_id})")
        had_clsact = netlink.has_clsact(link.name, netns)
        fd = objects.load_pass("tc")
        try:
            netlink.tc_set(link.name, netns, self.hook, fd, f"{netlink.TC_NAME_PREFIX}probe")
        except NetlinkError as exc:
            return result(False, str(exc))
        finally:
            os.close(fd)
            netlink.tc_del(link.name, netns, self.hook)
            if not had_clsact:
                netlink.del_clsact(link.name, netns)
        return result(True, "clsact filter attach and detach succeeded")
