"""Reconcile the kernel to the desired state in the database.

Run after a reboot (bpffs is empty), after pins were removed, or any time:
it rebuilds the shared maps from the rules (repairing entries missing from
or extra in a map), then re-attaches every recorded attachment. Programs
already running are replaced atomically, so restore is safe on a live host.
"""

from __future__ import annotations

from .errors import XdpctlError
from .context import Context
from .hooks import Hooks, pinned_hooks
from .rules.service import DropList
from .views import RestoreView


def restore(ctx: Context) -> RestoreView:
    ctx.kernel_ready()
    log: list[str] = []
    errors: list[str] = []
    rep = DropList(ctx).sync()
    log.append(f"drop list: revision {rep.revision}, {rep.written} map entries written, "
               f"{rep.deleted} deleted")
    hooks = Hooks(ctx)
    wanted = set()
    for a in ctx.state.attachments():
        wanted.add((a.netns, a.ifname, a.hook))
        try:
            res = hooks.attach(a.ifname, a.program, a.hook, a.mode, a.netns, force=False, record=False)
            mode = f" ({res.mode})" if res.mode else ""
            log.append(f"attached {a.program} on {res.hook.label()}{mode}: prog id {res.prog_id}")
        except XdpctlError as exc:
            msg = f"{a.program} on {a.netns + '/' if a.netns else ''}{a.ifname} {a.hook}: {exc}"
            errors.append(msg)
            log.append("error: " + msg)
    for h in pinned_hooks(ctx):
        if (h.netns, h.ifname, h.hook) not in wanted:
            log.append(f"note: {h.label()} is pinned but not in the desired state; detaching it removes it")
    return RestoreView(revision=rep.revision, map_entries_written=rep.written, map_entries_deleted=rep.deleted,
                       errors=errors, log=log)
