"""The XDP attach kind: one program per interface and mode (generic,
native, offload), swapped atomically with XDP_FLAGS_REPLACE."""

from __future__ import annotations

import os

from ...kernel import maps, netlink, objects
from ..context import Context
from ..errors import Conflict, ForeignProgram, NetlinkError, Unsupported, ValidationError
from ..views import ProbeResultView
from .base import ROOT_PROG, XDP_MODES, AttachKind, HookRef, KernelProg, ProgRef, RootResult, Running, \
    pinned_prog_id
from .chain import load_root

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
    return (f"{where} (driver {drv}) can offload simple BPF programs, but xdpctl chains its classifiers "
            f"through a program array with tail calls, which hardware offload does not support",
            "use {field:mode} native")


class XdpKind(AttachKind):
    hook = "xdp"
    root_object = "xdp_root"

    def check_mode(self, mode: str | None) -> str | None:
        mode = mode or "auto"
        if mode not in XDP_MODES:
            raise ValidationError(f"unknown XDP mode {mode!r}", field="mode", value=mode,
                                  hint=f"choose one of: {', '.join(XDP_MODES)}")
        return mode

    # ------------------------------------------------------------ attach
    def ensure_root(self, ctx: Context, ref: HookRef, link: netlink.Link, mode: str | None,
                    force: bool) -> RootResult:
        ours = pinned_prog_id(ref.pin(ctx, "root"))
        attached = link.xdp_ids  # mode -> prog id
        if ours is not None and ours in attached.values():
            cur_mode = next(m for m, i in attached.items() if i == ours)
            if mode not in ("auto", cur_mode):
                raise Conflict(f"{ref.label()}: xdpctl's chain runs in {cur_mode} mode", field="mode", value=mode,
                               hint=f"{{action:detach}} every program from this hook before switching to {mode}")
            return RootResult(ours, cur_mode)
        foreign = {m: i for m, i in attached.items() if i != ours}
        if foreign and not force:
            m, pid = next(iter(foreign.items()))
            prog = ProgRef.by_id(pid)
            raise ForeignProgram(
                f"{ref.label()}: XDP program {prog.name or '?'!r} (id {pid}, {m} mode) was not attached by xdpctl",
                field="force", hint="pass {field:force} to replace it")
        if mode == "offload":
            msg, hint = offload_reason(ref.ifname, ref.netns, link)
            raise Unsupported(msg, field="mode", value=mode, hint=hint)
        return self._first_mode_that_works(ctx, ref, link, mode, foreign, ours)

    def _first_mode_that_works(self, ctx: Context, ref: HookRef, link: netlink.Link, mode: str,
                               foreign: dict[str, int], ours: int | None) -> RootResult:
        modes = list(AUTO_ORDER) if mode == "auto" else [mode]
        if mode == "auto" and foreign:
            # replace the foreign program in its own mode first: one atomic swap
            fm = next(iter(foreign))
            if fm in modes:
                modes.remove(fm)
                modes.insert(0, fm)
        last_exc: Unsupported | None = None
        for m in modes:
            try:
                rid = self.attach_root(ctx, ref, m, foreign)
            except Unsupported as exc:
                last_exc = exc
                root_pin = ref.pin(ctx, "root")
                if os.path.exists(root_pin):
                    os.unlink(root_pin)  # only what this attempt made; stage pins stay
                foreign = {mm: i for mm, i in netlink.get_link(ref.ifname, ref.netns).xdp_ids.items()
                           if i != ours}
                continue
            notes = []
            if mode == "auto" and m == "generic" and last_exc is not None:
                notes.append(f"native XDP not available on {link.name} ({last_exc}); using generic mode")
            return RootResult(rid, m, notes)
        assert last_exc is not None
        raise last_exc

    def attach_root(self, ctx: Context, ref: HookRef, mode: str, foreign: dict[str, int]) -> int:
        """Load a fresh root and put it on the hook in ``mode``: an atomic
        swap for a program in that mode (``foreign``: mode -> id of what runs
        there now), after removing programs of other modes. Returns its id."""
        loaded = load_root(ctx, ref, self.root_object)
        try:
            fd = loaded.prog_fd(ROOT_PROG)
            _swap_in(ref, fd, mode, foreign)
            return maps.prog_info(fd).id
        finally:
            loaded.close()

    # ------------------------------------------------------------ detach, read back
    def detach_root(self, ctx: Context, ref: HookRef, fd: int, root_id: int) -> None:
        link = netlink.get_link(ref.ifname, ref.netns)
        for m, pid in link.xdp_ids.items():
            if pid == root_id:
                netlink.xdp_set(ref.ifname, ref.netns, -1, m, expected_fd=fd)

    def running(self, ref: HookRef, root_id: int | None) -> Running:
        for m, pid in netlink.get_link(ref.ifname, ref.netns).xdp_ids.items():
            if pid == root_id:
                return Running(True, m)
        return Running(False)

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
        with objects.load(objects.object_path(self.root_object)) as loaded:
            fd = loaded.prog_fd(ROOT_PROG)
            try:
                netlink.xdp_set(link.name, netns, fd, mode, exclusive=True)
            except (Unsupported, NetlinkError, Conflict) as exc:
                return result(False, str(exc))
            netlink.xdp_set(link.name, netns, -1, mode, expected_fd=fd)
        return result(True, "attach and detach succeeded")


def _swap_in(ref: HookRef, fd: int, mode: str, foreign: dict[str, int]) -> None:
    """Attach ``fd`` in ``mode``, replacing what ``foreign`` says runs there;
    on failure put back what was taken off: never leave the hook empty."""
    expected = None
    removed: list[tuple[str, int]] = []
    try:
        if mode in foreign:  # forced: swap the foreign program atomically
            expected = maps.prog_fd_by_id(foreign[mode])
        else:
            for m, pid in foreign.items():  # forced, other mode: remove it first
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
