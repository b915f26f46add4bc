"""Hooks: attach, detach and read back xdpctl's chains. The only place that
builds chains; the attach kinds (xdp.py, tc.py) do what differs per hook."""

from __future__ import annotations

import os

from ...kernel import bpffs, maps, netlink
from ..context import Context
from ..errors import NetlinkError, NotFound
from ..state import Attachment
from ..views import AttachView, DetachedView, DetachView
from . import chain
from .base import HOOKS, STAGES, AttachResult, HookRef, HookState, ProgRef, Running, pinned_hooks, \
    pinned_prog_id, stage
from .kinds import kind


class Hooks:
    """Attach, detach, read back."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    # ------------------------------------------------------------ attach
    def attach(self, ifname: str, program: str, hook: str = "xdp", mode: str | None = None,
               netns: str | None = None, force: bool = False, record: bool = True,
               expected_revision: int | None = None) -> AttachResult:
        """Put a stage in the hook's chain (replacing it atomically if there),
        attaching xdpctl's root first if the hook has none."""
        st = stage(program)
        k = kind(hook)
        mode = k.check_mode(mode)
        netlink.check_netns(netns)
        ref = HookRef(netns, ifname, hook)
        with self.ctx.writer() as state:
            state.check_revision(expected_revision)
            link = netlink.get_link(ifname, netns)  # InterfaceNotFound before anything changes
            created_dir = not os.path.isdir(ref.dir(self.ctx))
            try:
                root = k.ensure_root(self.ctx, ref, link, mode, force)
                prog_id, replaced = chain.install_stage(self.ctx, ref, st)
            except BaseException:
                if created_dir:
                    self.teardown(ref)
                raise
            if record:
                state.add_attachment(Attachment(netns, ifname, hook, program, root.mode))
                state.bump_revision()
            return AttachResult(ref, st.name, root.mode, prog_id, root.id, replaced, list(root.notes))

    # ------------------------------------------------------------ detach
    def detach(self, ifname: str, program: str | None = None, hook: str | None = None,
               netns: str | None = None, expected_revision: int | None = None) -> list[tuple[HookRef, str]]:
        """Remove one stage (or all) from one hook (or all hooks of the
        interface); a hook left without stages loses the root too."""
        if program is not None:
            stage(program)
        if hook is not None:
            kind(hook)
        removed: list[tuple[HookRef, str]] = []
        with self.ctx.writer() as state:
            state.check_revision(expected_revision)
            known = {(h.netns, h.ifname) for h in pinned_hooks(self.ctx)} | {
                (a.netns, a.ifname) for a in state.attachments()}
            if (netns, ifname) not in known:
                # nothing of ours there: say precisely why
                netlink.check_netns(netns)
                netlink.get_link(ifname, netns)
            for h in [hook] if hook else HOOKS:
                removed += self._detach_hook(HookRef(netns, ifname, h), program)
            if not removed:
                what = program or "any xdpctl program"
                where = f"{ifname} {hook}" if hook else ifname
                raise NotFound(f"{what} is not attached to {where}" + (f" in netns {netns}" if netns else ""),
                               field="program" if program else "ifname", value=program or ifname)
            state.bump_revision()
        return removed

    def _detach_hook(self, ref: HookRef, program: str | None) -> list[tuple[HookRef, str]]:
        state = self.ctx.state
        pinned = os.path.isdir(ref.dir(self.ctx))
        recorded = {a.program for a in state.attachments() if (a.netns, a.ifname, a.hook) == (
            ref.netns, ref.ifname, ref.hook)}
        present = set(chain.pinned_stages(self.ctx, ref)) if pinned else set()
        removed = []
        for name in [program] if program else sorted(recorded | present):
            done = pinned and chain.remove_stage(self.ctx, ref, STAGES[name])
            if name in recorded:
                state.remove_attachment(ref.netns, ref.ifname, ref.hook, name)
                done = True
            if done:
                removed.append((ref, name))
        if pinned and not chain.pinned_stages(self.ctx, ref):
            self.teardown(ref)
            for s in STAGES:
                state.remove_attachment(ref.netns, ref.ifname, ref.hook, s)
        return removed

    def teardown(self, ref: HookRef) -> None:
        """Detach our root (only if it is still ours) and drop the hook's pins."""
        root_pin = ref.pin(self.ctx, "root")
        if os.path.exists(root_pin):
            fd = maps.obj_get(root_pin)
            try:
                kind(ref.hook).detach_root(self.ctx, ref, fd, maps.prog_info(fd).id)
            except NotFound:
                pass  # interface or namespace gone: nothing to detach
            finally:
                os.close(fd)
        hdir = ref.dir(self.ctx)
        bpffs.remove_tree(hdir)
        # prune empty parents up to hooks/
        parent = os.path.dirname(hdir)
        stop = self.ctx.settings.hooks_dir
        while parent.startswith(stop) and parent != stop:
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)

    # ------------------------------------------------------------ read back
    def hook_status(self, ref: HookRef) -> HookState:
        """What the kernel says runs on one pinned hook."""
        root_id = pinned_prog_id(ref.pin(self.ctx, "root"))
        try:
            run = kind(ref.hook).running(ref, root_id) if root_id else Running(False)
        except (NotFound, NetlinkError):
            run = Running(False)
        root = ProgRef.by_id(root_id) if root_id else None
        return HookState(ref, run.attached, run.mode, root, chain.read_stages(self.ctx, ref))

    def managed_netns(self) -> list[str | None]:
        """The namespaces status covers by default: the host, and every
        namespace where xdpctl has pinned hooks."""
        return [None] + sorted({h.netns for h in pinned_hooks(self.ctx) if h.netns})


# ---------------------------------------------------------------- for the front ends
def attach(ctx: Context, ifname: str, program: str, hook: str = "xdp", mode: str | None = None,
           netns: str | None = None, force: bool = False, expected_revision: int | None = None) -> AttachView:
    """Attach a stage and record it; the resource view of what was done."""
    res = Hooks(ctx).attach(ifname, program, hook, mode, netns, force, expected_revision=expected_revision)
    return res.view(ctx.state.revision)


def detach(ctx: Context, ifname: str, program: str | None = None, hook: str | None = None,
           netns: str | None = None, expected_revision: int | None = None) -> DetachView:
    """Detach stages and forget them; the resource view of what was removed."""
    removed = Hooks(ctx).detach(ifname, program, hook, netns, expected_revision=expected_revision)
    return DetachView(removed=[DetachedView(netns=r.netns, ifname=r.ifname, hook=r.hook, program=name)
                               for r, name in removed], revision=ctx.state.revision)
