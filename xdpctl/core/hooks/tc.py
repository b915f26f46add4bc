"""The TC attach kind: a direct-action BPF filter at xdpctl's priority on a
clsact qdisc (ingress or egress), replaced in place with `tc filter replace`."""

from __future__ import annotations

from ...kernel import maps, netlink, objects
from ..context import Context
from ..errors import ForeignProgram, NetlinkError, ValidationError
from ..views import ProbeResultView
from .base import ROOT_PROG, AttachKind, HookRef, KernelProg, RootResult, Running, pinned_prog_id
from .chain import load_root

TC_HOOKS = ("tc-ingress", "tc-egress")


def _clsact_key(ref: HookRef) -> str:
    """The state key that says xdpctl added the interface's clsact qdisc."""
    return f"clsact-created:{ref.netns or ''}:{ref.ifname}"


class TcKind(AttachKind):
    root_object = "tc_root"

    def __init__(self, hook: str):
        self.hook = hook

    def check_mode(self, mode: str | None) -> str | None:
        if mode not in (None, "auto"):
            raise ValidationError(f"{{field:mode}} {mode} applies to the xdp hook only; {self.hook} has no modes",
                                  field="mode", value=mode)
        return None

    # ------------------------------------------------------------ attach
    def ensure_root(self, ctx: Context, ref: HookRef, link: netlink.Link, mode: str | None,
                    force: bool) -> RootResult:
        ours = pinned_prog_id(ref.pin(ctx, "root"))
        cur = netlink.tc_ours(ref.ifname, ref.netns, self.hook)
        if cur is not None and ours is not None and cur.prog_id == ours:
            return RootResult(ours, None)
        if cur is not None and not force:
            raise ForeignProgram(
                f"{ref.label()}: tc filter {cur.name!r} (id {cur.prog_id}) at xdpctl's priority "
                f"{netlink.TC_PREF} was not attached by xdpctl", field="force",
                hint="pass {field:force} to replace it")
        if netlink.ensure_clsact_created(ref.ifname, ref.netns):
            ctx.state.set_meta(_clsact_key(ref), "1")
        return RootResult(self.attach_root(ctx, ref), None)

    def attach_root(self, ctx: Context, ref: HookRef) -> int:
        """Load a fresh root and attach or replace xdpctl's filter with it;
        returns its id."""
        loaded = load_root(ctx, ref, self.root_object)
        try:
            fd = loaded.prog_fd(ROOT_PROG)
            netlink.tc_set(ref.ifname, ref.netns, self.hook, fd, f"{netlink.TC_NAME_PREFIX}root")
            return maps.prog_info(fd).id
        finally:
            loaded.close()

    # ------------------------------------------------------------ detach, read back
    def detach_root(self, ctx: Context, ref: HookRef, fd: int, root_id: int) -> None:
        cur = netlink.tc_ours(ref.ifname, ref.netns, self.hook)
        if cur is not None and cur.prog_id == root_id:
            netlink.tc_del(ref.ifname, ref.netns, self.hook)
        # remove the clsact qdisc only if xdpctl added it and no filter of
        # any kind is left on it
        key = _clsact_key(ref)
        if ctx.state.get_meta(key) and not any(
                netlink.tc_filter_count(ref.ifname, ref.netns, h) for h in TC_HOOKS):
            netlink.del_clsact(ref.ifname, ref.netns)
            ctx.state.delete_meta(key)

    def running(self, ref: HookRef, root_id: int | None) -> Running:
        cur = netlink.tc_ours(ref.ifname, ref.netns, self.hook)
        return Running(bool(cur and cur.prog_id == root_id))

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
        with objects.load(objects.object_path(self.root_object)) as loaded:
            try:
                netlink.tc_set(link.name, netns, self.hook, loaded.prog_fd(ROOT_PROG),
                               f"{netlink.TC_NAME_PREFIX}probe")
            except NetlinkError as exc:
                return result(False, str(exc))
            finally:
                netlink.tc_del(link.name, netns, self.hook)
                if not had_clsact:
                    netlink.del_clsact(link.name, netns)
        return result(True, "clsact filter attach and detach succeeded")
