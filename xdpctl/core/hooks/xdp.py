"""The XDP attach kind: one program per interface and mode (generic,
native, offload), swapped atomically with XDP_FLAGS_REPLACE."""

from __future__ import annotations

import os

from ...kernel import maps, netlink, objects
from ..context import Context
from ..errors import Conflict, NetlinkError, Unsupported, choice
from ..views import ProbeResultView
from .base import XDP_MODES, AttachKind, HookRef, Installed, KernelProg, ProgRef

#: modes ``auto`` tries, best first
AUTO_ORDER = ("native", "generic")


def offload_reason(ifname: str, netns: str | None, link: netlink.Link) -> tuple[str, str]:
    """Why xdpctl cannot offload on this device: (message, hint)."""
    drv = netlink.driver_name(ifname, netns)
    where = f"{netns}/{ifname}" if netns else ifname
    with netlink.in_netns(netns):  # the kernel resolves the ifindex in the caller's namespace
        err = objects.probe_offload(link.index)
    if err:
        return (f"offload XDP is not supported on {where} (driver {drv}): the kernel refused a device-bound "
                f"program ({os.strerror(err)}); offload needs a NIC whose driver runs BPF in hardware "
                f"(e.g. Netronome nfp)", "use {field:mode} native or generic")
    return (f"{where} (driver {drv}) can offload simple BPF programs, but xdpctl's program uses map types "
            f"(LRU and LPM tries, per-CPU arrays) that hardware offload does not support",
            "use {field:mode} native")


class XdpKind(AttachKind):
    hook = "xdp"

    def check_mode(self, mode: str | None) -> str | None:
        return choice(mode or "auto", XDP_MODES, field="mode", what="XDP mode")

    def current(self, ref: HookRef) -> KernelProg | None:
        for m, pid in netlink.get_link(ref.ifname, ref.netns).xdp_ids.items():
            prog = ProgRef.by_id(pid)
            return KernelProg(self.hook, m, pid, prog.name, prog.tag)
        return None

    # ------------------------------------------------------------ attach
    def install(self, ctx: Context, ref: HookRef, link: netlink.Link, fd: int, mode: str | None,
                replace: KernelProg | None) -> Installed:
        if mode == "offload":
            msg, hint = offload_reason(ref.ifname, ref.netns, link)
            raise Unsupported(msg, field="mode", value=mode, hint=hint)
        modes = list(AUTO_ORDER) if mode == "auto" else [mode]
        if mode == "auto" and replace is not None and replace.mode in modes:
            # replace what runs in its own mode first: one atomic swap
            modes.remove(replace.mode)
            modes.insert(0, replace.mode)
        last_exc: Unsupported | None = None
        for m in modes:
            try:
                _swap_in(ref, fd, m, netlink.get_link(ref.ifname, ref.netns).xdp_ids)
            except Unsupported as exc:
                last_exc = exc
                continue
            notes = []
            if mode == "auto" and m == "generic" and last_exc is not None:
                notes.append(f"native XDP not available on {link.name} ({last_exc}); using generic mode")
            return Installed(m, notes)
        assert last_exc is not None
        raise last_exc

    # ------------------------------------------------------------ detach, read back
    def remove(self, ctx: Context, ref: HookRef, prog_id: int) -> None:
        for m, pid in netlink.get_link(ref.ifname, ref.netns).xdp_ids.items():
            if pid != prog_id:
                continue
            fd = maps.prog_fd_by_id(pid)
            try:
                netlink.xdp_set(ref.ifname, ref.netns, -1, m, expected_fd=fd)
            finally:
                os.close(fd)

    def programs(self, link: netlink.Link, netns: str | None) -> list[KernelProg]:
        out = []
        for m, pid in link.xdp_ids.items():
            prog = ProgRef.by_id(pid)
            out.append(KernelProg(self.hook, m, pid, prog.name, prog.tag))
        return out

    # ------------------------------------------------------------ probe
    def probe(self, link: netlink.Link, netns: str | None) -> list[ProbeResultView]:
        out = [self._probe_mode(link, netns, m) for m in ("generic", "native")]
        msg, _hint = offload_reason(link.name, netns, link)
        out.append(ProbeResultView(hook=self.hook, mode="offload", ok=False, detail=msg))
        return out

    def _probe_mode(self, link: netlink.Link, netns: str | None, mode: str) -> ProbeResultView:
        def result(ok: bool | None, detail: str) -> ProbeResultView:
            return ProbeResultView(hook=self.hook, mode=mode, ok=ok, detail=detail)

        if link.xdp_ids:
            m, pid = next(iter(link.xdp_ids.items()))
            name = ProgRef.by_id(pid).name or "?"
            if m == mode:
                return result(True, f"in use by {name} (id {pid})")
            return result(None, f"not tested: {m} XDP program {name} (id {pid}) is attached and modes are exclusive")
        fd = objects.load_pass("xdp")
        try:
            try:
                netlink.xdp_set(link.name, netns, fd, mode, exclusive=True)
            except (Unsupported, NetlinkError, Conflict) as exc:
                return result(False, str(exc))
            netlink.xdp_set(link.name, netns, -1, mode, expected_fd=fd)
        finally:
            os.close(fd)
        return result(True, "attach and detach succeeded")


def _swap_in(ref: HookRef, fd: int, mode: str, attached: dict[str, int]) -> None:
    """Attach ``fd`` in ``mode``, replacing what ``attached`` says runs there
    (mode -> program id); on failure put back what was taken off: never
    leave the hook empty."""
    expected = None
    removed: list[tuple[str, int]] = []
    try:
        if mode in attached:  # swap atomically
            expected = maps.prog_fd_by_id(attached[mode])
        else:
            for m, pid in attached.items():  # other mode: remove it first
                efd = maps.prog_fd_by_id(pid)
                netlink.xdp_set(ref.ifname, ref.netns, -1, m, expected_fd=efd)
                removed.append((m, efd))
        netlink.xdp_set(ref.ifname, ref.netns, fd, mode, expected_fd=expected, exclusive=expected is None)
    except BaseException:
        for m, efd in removed:
            try:
                netlink.xdp_set(ref.ifname, ref.netns, efd, m, exclusive=True)
            except Exception:
                pass
        raise
    finally:
        for _m, efd in removed:
            os.close(efd)
        if expected is not None:
            os.close(expected)
