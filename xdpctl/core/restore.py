"""Reconcile the kernel to the desired state in the database.

Run after a reboot (bpffs is empty), after pins were removed, or any time.
First the maps of xdpctl's programs that still run are pinned again where
their pins are gone (the rules in them stay enforced, and writes reach the
maps the programs read); then the shared maps are rebuilt from the rules
(repairing entries missing from or extra in a map); then every recorded
hook is made to run xdpctl's program with its recorded stages. A program
that already is the one xdpctl would load is left running (only its stage
bits are set); any other is replaced atomically. Nothing needs forcing: a
foreign program in the way, or an interface that is gone, is an error of
that attachment, named in ``errors``; the others are restored all the same.
"""

from __future__ import annotations

from .context import Context
from .errors import XdpctlError
from .hooks import HookRef, Hooks, pinned_hooks
from .lb.service import LoadBalancer
from .rules.service import DropList
from .views import RestoreView

#: the exit code of a restore that left some attachment not restored
PARTIAL_EXIT = 13


def restore(ctx: Context) -> RestoreView:
    ctx.kernel_ready()
    log: list[str] = []
    errors: list[str] = []
    hooks = Hooks(ctx)
    wanted: dict[HookRef, tuple[list[str], str | None]] = {}
    for a in ctx.state.attachments():
        names, mode = wanted.get(HookRef(a.netns, a.ifname, a.hook), ([], None))
        wanted[HookRef(a.netns, a.ifname, a.hook)] = (names + [a.program], mode or a.mode)
    for ref in wanted:
        pinned = hooks.adopt(ref)
        if pinned:
            log.append(f"{ref.label()}: maps of the running program pinned again: {', '.join(pinned)}")
    rep = DropList(ctx).sync()
    log.insert(0, f"drop list: revision {rep.revision}, {rep.written} map entries written, "
                  f"{rep.deleted} deleted")
    log.insert(1, f"load balancer: {LoadBalancer(ctx).sync()} VIPs written")
    for ref, (names, mode) in wanted.items():
        try:
            log.append(hooks.reconcile(ref, sorted(names), mode))
        except XdpctlError as exc:
            msg = f"{','.join(sorted(names))} on {ref.label()}: {exc}"
            errors.append(msg)
            log.append("error: " + msg)
    for h in pinned_hooks(ctx):
        if h not in wanted:
            log.append(f"note: {h.label()} is pinned but not in the desired state; detaching it removes it")
    return RestoreView(revision=rep.revision, map_entries_written=rep.written, map_entries_deleted=rep.deleted,
                       errors=errors, log=log)
