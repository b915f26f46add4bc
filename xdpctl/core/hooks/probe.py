"""Probe: which hooks and modes work on an interface, and why not."""

from __future__ import annotations

from ...kernel import bpffs, netlink
from ..context import Context
from ..views import ProbeView
from .kinds import KINDS


def probe(ctx: Context, ifname: str, netns: str | None = None) -> ProbeView:
    """Try every hook and mode on an interface; leave it exactly as found.

    Each free hook gets a pass-through program (no maps) attached and removed
    again; a hook in use is reported with what occupies it.
    """
    ctx.kernel_ready()
    link = netlink.get_link(ifname, netns)
    driver = netlink.driver_name(ifname, netns)
    with bpffs.DirLock(ctx.settings.pin_dir):
        results = [r for k in KINDS.values() for r in k.probe(link, netns)]
    return ProbeView(netns=netns, ifname=ifname, ifindex=link.index, driver=driver, results=results)
