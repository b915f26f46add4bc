"""Hooks: attach, detach, repair and read back xdpctl's hook programs. The
only place that decides what runs on a hook; the attach kinds (xdp.py,
tc.py) do what differs per hook, program.py knows the program itself."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...kernel import bpffs, netlink
from ..context import Context
from ..errors import Conflict, ForeignProgram, KernelObjectsLost, NetlinkError, NotFound
from ..state import Attachment
from ..views import AttachView, DetachedView, DetachView
from . import program as hookprog
from .base import HOOK_PROG, HOOKS, PER_HOOK_MAPS, STAGES, AttachResult, HookRef, HookState, KernelProg, ProgRef, \
    check_stage_hook, pinned_hooks, stage
from .kinds import kind
from .program import HookProg


@dataclass
class OnHook:
    """What the kernel runs in xdpctl's place on a hook: ``ours`` when it is
    a program this instance loaded, else ``foreign`` (or neither)."""

    ref: HookRef
    cur: KernelProg | None
    ours: HookProg | None

    @property
    def foreign(self) -> KernelProg | None:
        return self.cur if self.cur is not None and self.ours is None else None


def on_hook(ctx: Context, ref: HookRef) -> OnHook:
    """Read the hook from the kernel (NotFound if its interface is gone)."""
    cur = kind(ref.hook).current(ref)
    hp = hookprog.inspect(cur.id) if cur is not None and cur.id else None
    return OnHook(ref, cur, hp if hp is not None and hp.ours(ctx) else None)


def foreign_error(ref: HookRef, cur: KernelProg) -> ForeignProgram:
    what = f"XDP program {cur.name or '?'!r} (id {cur.id}, {cur.mode} mode)" if ref.hook == "xdp" else \
        f"tc filter {cur.name!r} (id {cur.id}) at xdpctl's priority {netlink.TC_PREF}"
    return ForeignProgram(f"{ref.label()}: {what} was not attached by xdpctl", field="force",
                          hint="pass {field:force} to replace it")


class Hooks:
    """Attach, detach, repair, read back."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    # ------------------------------------------------------------ attach
    def attach(self, ifname: str, program: str, hook: str = "xdp", mode: str | None = None,
               netns: str | None = None, force: bool = False, record: bool = True,
               expected_revision: int | None = None) -> AttachResult:
        """Switch a stage on in the hook's program, loading and attaching the
        program first if the hook has none of xdpctl's."""
        st = stage(program)
        k = kind(hook)
        check_stage_hook(st.name, hook)
        mode = k.check_mode(mode)
        netlink.check_netns(netns)
        ref = HookRef(netns, ifname, hook)
        with self.ctx.writer() as state:
            state.check_revision(expected_revision)
            link = netlink.get_link(ifname, netns)  # InterfaceNotFound before anything changes
            now = on_hook(self.ctx, ref)
            if now.ours is not None:
                res = self._add_stage(now, st.name, mode)
            else:
                if now.foreign is not None and not force:
                    raise foreign_error(ref, now.foreign)
                check_shared_pins(self.ctx)
                res = self._load_and_attach(ref, link, hookprog.bits_of([st.name]), mode, now.cur)
                res.program = st.name
            if st.name == "lb":
                _lb_hook(self.ctx, ref, link)
            if record:
                state.add_attachment(Attachment(netns, ifname, hook, program, res.mode))
                _bump_revision(self.ctx)
            return res

    def _add_stage(self, now: OnHook, name: str, mode: str | None) -> AttachResult:
        hp, ref = now.ours, now.ref
        assert hp is not None and now.cur is not None
        cur_mode = now.cur.mode
        if mode not in (None, "auto", cur_mode):
            raise Conflict(f"{ref.label()}: xdpctl's program runs in {cur_mode} mode", field="mode", value=mode,
                           hint=f"{{action:detach}} every program from this hook before switching to {mode}")
        hookprog.adopt(self.ctx, ref, hp)
        if hookprog.mismatched(self.ctx, ref, hp):
            raise hookprog.lost(self.ctx, ref, hp)
        bit = hookprog.bits_of([name])
        replaced = bool(hp.stages & bit)
        hp.set_stages(self.ctx, hp.stages | bit)
        return AttachResult(ref, name, cur_mode, hp.id, hp.id, replaced)

    def _load_and_attach(self, ref: HookRef, link: netlink.Link, bits: int, mode: str | None,
                         replace: KernelProg | None) -> AttachResult:
        """Load a fresh program with ``bits`` and put it on the hook in place
        of ``replace`` (atomically); on failure leave no new pins behind."""
        created_dir = not os.path.isdir(ref.dir(self.ctx))
        try:
            with hookprog.load(self.ctx, ref, bits) as loaded:
                fd = loaded.prog_fd(HOOK_PROG)
                done = kind(ref.hook).install(self.ctx, ref, link, fd, mode, replace)
                pid = ProgRef.by_fd(fd).id
        except BaseException:
            if created_dir:
                self.drop_pins(ref)
            raise
        return AttachResult(ref, ",".join(hookprog.names_of(bits)), done.mode, pid, pid,
                            replace is not None, list(done.notes))

    # ------------------------------------------------------------ detach
    def detach(self, ifname: str, program: str | None = None, hook: str | None = None,
               netns: str | None = None, expected_revision: int | None = None) -> list[tuple[HookRef, str]]:
        """Switch one stage (or all) off on one hook (or all hooks of the
        interface); a hook left without stages loses its program."""
        if program is not None:
            stage(program)
        if hook is not None:
            kind(hook)
        removed: list[tuple[HookRef, str]] = []
        with self.ctx.writer() as state:
            state.check_revision(expected_revision)
            try:
                netlink.get_link(ifname, netns)
                gone = False
            except NotFound:
                known = {(h.netns, h.ifname) for h in pinned_hooks(self.ctx)} | {
                    (a.netns, a.ifname) for a in state.attachments()}
                if (netns, ifname) not in known:
                    raise  # nothing of ours there: say precisely why
                gone = True
            for h in [hook] if hook else HOOKS:
                removed += self._detach_hook(HookRef(netns, ifname, h), program, gone)
            if not removed:
                where = (f"{ifname} {hook}" if hook else ifname) + (f" in netns {netns}" if netns else "")
                msg = (f"{program} is not attached to {where}" if program
                       else f"xdpctl has nothing attached on {where}")
                raise NotFound(msg, field="program" if program else "ifname", value=program or ifname)
            _bump_revision(self.ctx)
        return removed

    def _detach_hook(self, ref: HookRef, name: str | None, gone: bool) -> list[tuple[HookRef, str]]:
        state = self.ctx.state
        recorded = {a.program for a in state.attachments() if (a.netns, a.ifname, a.hook) == (
            ref.netns, ref.ifname, ref.hook)}
        hp = None if gone else on_hook(self.ctx, ref).ours
        running = set(hookprog.names_of(hp.stages)) if hp else set()
        names = [name] if name else sorted(recorded | running)
        removed = [(ref, n) for n in names if n in recorded or n in running]
        for n in names:
            state.remove_attachment(ref.netns, ref.ifname, ref.hook, n)
        if hp is not None:
            left = hp.stages & ~hookprog.bits_of(names)
            if left:
                hp.set_stages(self.ctx, left)
                return removed
            self.take_off(ref, hp.id)
            others: set[str] = set()
        else:
            others = recorded - set(names)
        if not others:
            self.drop_pins(ref)
            for s in STAGES:
                state.remove_attachment(ref.netns, ref.ifname, ref.hook, s)
        return removed

    # ------------------------------------------------------------ repair
    def adopt(self, ref: HookRef) -> list[str]:
        """Pin again the maps of the program of ours that runs on the hook,
        where their pins are gone; the names pinned."""
        with self.ctx.writer():
            try:
                hp = on_hook(self.ctx, ref).ours
            except (NotFound, NetlinkError):
                return []
            return hookprog.adopt(self.ctx, ref, hp) if hp is not None else []

    def reconcile(self, ref: HookRef, names: list[str], mode: str | None) -> str:
        """Make the hook run xdpctl's program with exactly the stages
        ``names``: the running program is kept when it is the one xdpctl
        would load (same tag, reading the pinned maps), its stage bits set;
        otherwise a fresh program replaces it atomically. Never replaces a
        foreign program. Returns what was done, in words."""
        k = kind(ref.hook)
        mode = k.check_mode(mode)
        bits = hookprog.bits_of(names)
        with self.ctx.writer():
            link = netlink.get_link(ref.ifname, ref.netns)
            now = on_hook(self.ctx, ref)
            if now.foreign is not None:
                raise foreign_error(ref, now.foreign)
            hp = now.ours
            if "lb" in names:
                check_stage_hook("lb", ref.hook)
            if hp is not None and hookprog.same_program(self.ctx, ref, hp):
                if "lb" in names:
                    _lb_hook(self.ctx, ref, link)
                if hp.stages != bits:
                    hp.set_stages(self.ctx, bits)
                return f"kept {','.join(names)} on {ref.label()}: prog id {hp.id}"
            if hp is not None and now.cur is not None and mode == "auto":
                mode = now.cur.mode
            res = self._load_and_attach(ref, link, bits, mode, now.cur)
            if "lb" in names:
                _lb_hook(self.ctx, ref, link)
        how = f" ({res.mode})" if res.mode else ""
        return f"attached {res.program} on {ref.label()}{how}: prog id {res.prog_id}"

    def take_off(self, ref: HookRef, prog_id: int) -> None:
        """Detach our program and check the kernel no longer runs it there."""
        k = kind(ref.hook)
        k.remove(self.ctx, ref, prog_id)
        cur = k.current(ref)
        if cur is not None and cur.id == prog_id:
            raise NetlinkError(f"{ref.label()}: program {prog_id} is still attached after detaching it")

    def teardown(self, ref: HookRef) -> None:
        """Take xdpctl's program off the hook (if the kernel runs one there)
        and drop the hook's pins."""
        try:
            hp = on_hook(self.ctx, ref).ours
            if hp is not None:
                self.take_off(ref, hp.id)
        except NotFound:
            pass  # interface or namespace gone: nothing to detach
        self.drop_pins(ref)

    def drop_pins(self, ref: HookRef) -> None:
        """Remove the hook's pin directory and its empty parents."""
        hdir = ref.dir(self.ctx)
        bpffs.remove_tree(hdir)
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
        """What the kernel runs on one hook of xdpctl's."""
        try:
            now = on_hook(self.ctx, ref)
        except (NotFound, NetlinkError):
            now = OnHook(ref, None, None)
        hp = now.ours
        if hp is None:
            return HookState(ref, False, None, None, hookprog.read_pinned_stages(self.ctx, ref))
        return HookState(ref, True, now.cur.mode if now.cur else None, ProgRef(hp.id, hp.name, hp.tag),
                         hp.stage_views())

    def known_hooks(self) -> list[HookRef]:
        """Every hook xdpctl has pinned or recorded."""
        refs = {(h.netns, h.ifname, h.hook) for h in pinned_hooks(self.ctx)}
        refs |= {(a.netns, a.ifname, a.hook) for a in self.ctx.state.attachments()}
        return [HookRef(*r) for r in sorted(refs, key=lambda r: (r[0] or "", r[1], r[2]))]

    def managed_netns(self) -> list[str | None]:
        """The namespaces status covers by default: the host, and every
        namespace where xdpctl has pinned or recorded hooks."""
        return [None] + sorted({h.netns for h in self.known_hooks() if h.netns})


def _lb_hook(ctx: Context, ref: HookRef, link: netlink.Link) -> None:
    """The interface's MAC into the hook's xc_lb_hook (the load balancer's
    source MAC)."""
    from ..lb.kernel import write_hook  # the lb package imports this one

    write_hook(ctx, ref, link.mac)


def check_shared_pins(ctx: Context, names=None) -> None:
    """Refuse to create shared maps (``names``, default all) anew while a
    recorded hook runs a program of ours that reads the lost ones: new
    maps would never be read. KernelObjectsLost names the way out."""
    for a in {(a.netns, a.ifname, a.hook) for a in ctx.state.attachments()}:
        ref = HookRef(*a)
        try:
            hp = on_hook(ctx, ref).ours
        except (NotFound, NetlinkError):
            continue
        if hp is None:
            continue
        bad = [n for n in hookprog.mismatched(ctx, ref, hp) if names is None or n in names]
        if any(n not in PER_HOOK_MAPS for n in bad):
            raise KernelObjectsLost(f"kernel objects lost: the maps the program on {ref.label()} reads are not "
                                    f"pinned ({', '.join(bad)})", value=ref.label(), hint="run {action:restore}")


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


def _bump_revision(ctx: Context) -> int:
    """A change of attachments moves the revision; the kernel's rule set is
    labelled with it too (xc_cfg's generation), as after every change, so
    health keeps comparing like with like. The caller holds the writer."""
    from ..rules.service import DropList  # the drop list's kernel writer imports this package

    return DropList(ctx).bump_revision()
