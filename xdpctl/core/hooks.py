"""Hooks and their chains: the attach model.

A *hook* is one place packets are classified: an interface (in a network
namespace) at ``xdp``, ``tc-ingress`` or ``tc-egress``. xdpctl attaches one
small root program per hook and fills that hook's PROG_ARRAY ``xc_chain``
with stage programs in a fixed order (counter, drop list, load balancer).
Adding, replacing or removing a stage is one map update; the root stays.

Pins (under the pin directory)::

    maps/<name>                                   shared maps (rules, stats)
    hooks/host/<ifname>/<hook>/                   one hook in the root netns
    hooks/netns/<netns>/<ifname>/<hook>/          one hook in a named netns
        root, counter, droplist, ...              programs
        xc_chain, xc_proto, xc_dl_cnt             per-hook maps
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import abi
from .errors import (
    Conflict,
    ForeignProgram,
    NotFound,
    Unsupported,
    ValidationError,
    NetlinkError,
)
from ..kernel import bpffs, maps, netlink, objects
from .context import Context
from .state import Attachment

HOOKS = ("xdp", "tc-ingress", "tc-egress")
XDP_MODES = ("generic", "native", "offload", "auto")
PER_HOOK_MAPS = frozenset(abi.HOOK_MAPS)  # pinned per hook; the rest once, shared
ROOT_PROG = "xc_root"


@dataclass(frozen=True)
class Stage:
    name: str
    slot: int
    prog: str

    def object_name(self, hook: str) -> str:
        return ("xdp_" if hook == "xdp" else "tc_") + self.name


STAGES: dict[str, Stage] = {
    "counter": Stage("counter", int(abi.Stage.COUNTER), "xc_counter"),
    "droplist": Stage("droplist", int(abi.Stage.DROPLIST), "xc_droplist"),
}


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise ValidationError(
            f"unknown program {name!r}; choose one of: {', '.join(STAGES)}"
        ) from None


def check_hook(hook: str) -> str:
    if hook not in HOOKS:
        raise ValidationError(f"unknown hook {hook!r}; choose one of: {', '.join(HOOKS)}")
    return hook


@dataclass(frozen=True)
class HookRef:
    netns: str | None
    ifname: str
    hook: str

    def dir(self, ctx: Context) -> str:
        base = ctx.settings.hooks_dir
        if self.netns:
            return os.path.join(base, "netns", self.netns, self.ifname, self.hook)
        return os.path.join(base, "host", self.ifname, self.hook)

    def label(self) -> str:
        where = f"{self.netns}/" if self.netns else ""
        return f"{where}{self.ifname} {self.hook}"


def _clsact_key(ref: "HookRef") -> str:
    return f"clsact-created:{ref.netns or ''}:{ref.ifname}"


def offload_reason(ifname: str, netns: str | None, link: netlink.Link) -> str:
    drv = netlink.driver_name(ifname, netns)
    where = f"{netns}/{ifname}" if netns else ifname
    with netlink.in_netns(netns):  # the kernel resolves the ifindex in the caller's namespace
        err = objects.probe_offload(link.index)
    if err:
        return (f"offload XDP is not supported on {where} (driver {drv}): the kernel refused a device-bound "
                f"program ({os.strerror(err)}); offload needs a NIC whose driver runs BPF in hardware "
                f"(e.g. Netronome nfp); use --mode native or generic")
    return (f"{where} (driver {drv}) can offload simple BPF programs, but xdpctl chains its classifiers "
            f"through a program array with tail calls, which hardware offload does not support; "
            f"use --mode native")


def pinned_hooks(ctx: Context) -> list[HookRef]:
    """Every hook with a pin directory, read from bpffs."""
    out: list[HookRef] = []
    base = ctx.settings.hooks_dir
    host = os.path.join(base, "host")
    for ifname in _ls(host):
        for hook in _ls(os.path.join(host, ifname)):
            out.append(HookRef(None, ifname, hook))
    nsdir = os.path.join(base, "netns")
    for ns in _ls(nsdir):
        for ifname in _ls(os.path.join(nsdir, ns)):
            for hook in _ls(os.path.join(nsdir, ns, ifname)):
                out.append(HookRef(ns, ifname, hook))
    return out


def _ls(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def pin_path_for(ctx: Context, hdir: str):
    def pin(name: str) -> str:
        if name in PER_HOOK_MAPS:
            return os.path.join(hdir, name)
        return os.path.join(ctx.settings.shared_map_dir, name)

    return pin


def _pinned_prog_id(path: str) -> int | None:
    if not os.path.exists(path):
        return None
    fd = maps.obj_get(path)
    try:
        return maps.prog_info(fd).id
    finally:
        os.close(fd)


@dataclass
class AttachResult:
    hook: HookRef
    program: str
    mode: str | None
    prog_id: int
    root_id: int
    replaced: bool = False
    notes: list[str] = field(default_factory=list)


class Hooks:
    """Attach, detach, list. The only place that builds chains."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    # ------------------------------------------------------------ attach
    def attach(
        self,
        ifname: str,
        program: str,
        hook: str = "xdp",
        mode: str | None = None,
        netns: str | None = None,
        force: bool = False,
        record: bool = True,
        expected_revision: int | None = None,
    ) -> AttachResult:
        st = stage(program)
        check_hook(hook)
        if hook == "xdp":
            mode = mode or "auto"
            if mode not in XDP_MODES:
                raise ValidationError(f"unknown XDP mode {mode!r}; choose one of: {', '.join(XDP_MODES)}")
        elif mode not in (None, "auto"):
            raise ValidationError(f"--mode {mode} applies to the xdp hook only; {hook} has no modes")
        else:
            mode = None
        netlink.check_netns(netns)
        ref = HookRef(netns, ifname, hook)
        with self.ctx.writer() as state:
            state.check_revision(expected_revision)
            link = netlink.get_link(ifname, netns)  # InterfaceNotFound before anything changes
            hdir = ref.dir(self.ctx)
            created_dir = not os.path.isdir(hdir)
            try:
                root_id, mode, notes = self._ensure_root(ref, link, mode, force)
                res = self._install_stage(ref, st, mode)
            except BaseException:
                if created_dir:
                    self._teardown_hook(ref, detach_root=True)
                raise
            res.root_id = root_id
            res.notes = notes + res.notes
            if record:
                state.add_attachment(Attachment(netns, ifname, hook, program, mode))
                state.bump_revision()
            return res

    def _ensure_root(self, ref: HookRef, link: netlink.Link, mode: str | None, force: bool):
        """Make sure our root runs on the hook; returns (root id, mode, notes)."""
        hdir = ref.dir(self.ctx)
        root_pin = os.path.join(hdir, "root")
        ours = _pinned_prog_id(root_pin)
        notes: list[str] = []
        if ref.hook == "xdp":
            attached = link.xdp_ids  # mode -> prog id
            if ours is not None and ours in attached.values():
                cur_mode = next(m for m, i in attached.items() if i == ours)
                if mode not in ("auto", cur_mode):
                    raise Conflict(
                        f"{ref.label()}: xdpctl's chain runs in {cur_mode} mode; "
                        f"detach every program from this hook before switching to {mode}"
                    )
                return ours, cur_mode, notes
            foreign = {m: i for m, i in attached.items() if i != ours}
            if foreign and not force:
                m, pid = next(iter(foreign.items()))
                info = maps.prog_info_by_id(pid)
                pname = info.name if info else "?"
                raise ForeignProgram(
                    f"{ref.label()}: XDP program {pname!r} (id {pid}, {m} mode) was not attached by "
                    f"xdpctl; pass --force to replace it"
                )
            if mode == "offload":
                self._refuse_offload(ref, link)
            modes = ["native", "generic"] if mode == "auto" else [mode]
            if mode == "auto" and foreign:
                # replace the foreign program in its own mode first: one atomic swap
                fm = next(iter(foreign))
                if fm in modes:
                    modes.remove(fm)
                    modes.insert(0, fm)
            last_exc: Exception | None = None
            for m in modes:
                try:
                    rid = self._load_and_attach_xdp_root(ref, m, foreign)
                    if mode == "auto" and m == "generic" and last_exc is not None:
                        notes.append(f"native XDP not available on {link.name} ({last_exc}); using generic mode")
                    return rid, m, notes
                except Unsupported as exc:
                    last_exc = exc
                    if os.path.exists(root_pin):
                        os.unlink(root_pin)  # only what this attempt made; stage pins stay
                    foreign = {mm: i for mm, i in netlink.get_link(ref.ifname, ref.netns).xdp_ids.items()
                               if i != ours}
                    continue
            assert last_exc is not None
            raise last_exc
        # tc
        cur = netlink.tc_ours(ref.ifname, ref.netns, ref.hook)
        if cur is not None and ours is not None and cur.prog_id == ours:
            return ours, None, notes
        if cur is not None and not force:
            raise ForeignProgram(
                f"{ref.label()}: tc filter {cur.name!r} (id {cur.prog_id}) at xdpctl's priority "
                f"{netlink.TC_PREF} was not attached by xdpctl; pass --force to replace it"
            )
        if netlink.ensure_clsact_created(ref.ifname, ref.netns):
            self.ctx.state.set_meta(_clsact_key(ref), "1")
        loaded = self._load_root(ref)
        try:
            netlink.tc_set(ref.ifname, ref.netns, ref.hook, loaded.prog_fd(ROOT_PROG), f"{netlink.TC_NAME_PREFIX}root")
            return maps.prog_info(loaded.prog_fd(ROOT_PROG)).id, None, notes
        finally:
            loaded.close()

    def _load_root(self, ref: HookRef) -> objects.Loaded:
        hdir = ref.dir(self.ctx)
        bpffs.makedirs(hdir)
        name = "xdp_root" if ref.hook == "xdp" else "tc_root"
        return objects.load(
            objects.object_path(name),
            pin_path=pin_path_for(self.ctx, hdir),
            pin_progs={ROOT_PROG: os.path.join(hdir, "root")},
        )

    def _load_and_attach_xdp_root(self, ref: HookRef, mode: str, foreign: dict[str, int]) -> int:
        loaded = self._load_root(ref)
        try:
            fd = loaded.prog_fd(ROOT_PROG)
            expected = None
            removed: list[tuple[str, int]] = []
            try:
                if mode in foreign:  # --force: swap the foreign program atomically
                    expected = maps.prog_fd_by_id(foreign[mode])
                else:
                    for m, pid in foreign.items():  # --force, other mode: remove it first
                        efd = maps.prog_fd_by_id(pid)
                        netlink.xdp_set(ref.ifname, ref.netns, -1, m, expected_fd=efd)
                        removed.append((m, efd))
                netlink.xdp_set(ref.ifname, ref.netns, fd, mode, expected_fd=expected, exclusive=expected is None)
            except BaseException:
                for m, efd in removed:  # put back what we took away: never leave the hook empty
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
            return maps.prog_info(fd).id
        finally:
            loaded.close()

    def _refuse_offload(self, ref: HookRef, link: netlink.Link) -> None:
        """Offload cannot run xdpctl's chain: say whether the device could
        offload at all, and why xdpctl cannot use it."""
        raise Unsupported(offload_reason(ref.ifname, ref.netns, link))

    def _install_stage(self, ref: HookRef, st: Stage, mode: str | None) -> AttachResult:
        hdir = ref.dir(self.ctx)
        prog_pin = os.path.join(hdir, st.name)
        replaced = os.path.exists(prog_pin)
        caps = {k: v for k, v in self.ctx.settings.capacity.items()}
        loaded = objects.load(
            objects.object_path(st.object_name(ref.hook)),
            pin_path=pin_path_for(self.ctx, hdir),
            max_entries=caps,
        )
        try:
            fd = loaded.prog_fd(st.prog)
            with maps.Map.from_pin(os.path.join(hdir, "xc_chain")) as chain:
                chain.update_fd(st.slot, fd)  # atomic: the old program runs until this
            if replaced:
                os.unlink(prog_pin)
            maps.obj_pin(fd, prog_pin)
            pid = maps.prog_info(fd).id
        finally:
            loaded.close()
        return AttachResult(ref, st.name, mode, pid, 0, replaced)

    # ------------------------------------------------------------ detach
    def detach(
        self,
        ifname: str,
        program: str | None = None,
        hook: str | None = None,
        netns: str | None = None,
        expected_revision: int | None = None,
    ) -> list[tuple[HookRef, str]]:
        """Remove one stage (or all) from one hook (or all hooks of the interface)."""
        if program is not None:
            stage(program)
        if hook is not None:
            check_hook(hook)
        removed: list[tuple[HookRef, str]] = []
        with self.ctx.writer() as state:
            state.check_revision(expected_revision)
            known = {(h.netns, h.ifname) for h in pinned_hooks(self.ctx)} | {
                (a.netns, a.ifname) for a in state.attachments()}
            if (netns, ifname) not in known:
                # nothing of ours there: say precisely why
                netlink.check_netns(netns)
                netlink.get_link(ifname, netns)
            hooks = [hook] if hook else list(HOOKS)
            for h in hooks:
                ref = HookRef(netns, ifname, h)
                hdir = ref.dir(self.ctx)
                pinned = os.path.isdir(hdir)
                recorded = {a.program for a in state.attachments() if (a.netns, a.ifname, a.hook) == (netns, ifname, h)}
                present = {s for s in STAGES if pinned and os.path.exists(os.path.join(hdir, s))}
                names = [program] if program else sorted(recorded | present)
                for name in names:
                    done = pinned and self._remove_stage(ref, STAGES[name])
                    if name in recorded:
                        state.remove_attachment(netns, ifname, h, name)
                        done = True
                    if done:
                        removed.append((ref, name))
                if pinned and not any(os.path.exists(os.path.join(hdir, s)) for s in STAGES):
                    self._teardown_hook(ref, detach_root=True)
                    for s in STAGES:
                        state.remove_attachment(netns, ifname, h, s)
            if not removed:
                what = program or "any xdpctl program"
                where = f"{ifname} {hook}" if hook else ifname
                raise NotFound(f"{what} is not attached to {where}" + (f" in netns {netns}" if netns else ""))
            state.bump_revision()
        return removed

    def _remove_stage(self, ref: HookRef, st: Stage) -> bool:
        hdir = ref.dir(self.ctx)
        prog_pin = os.path.join(hdir, st.name)
        if not os.path.exists(prog_pin):
            return False
        chain_pin = os.path.join(hdir, "xc_chain")
        if os.path.exists(chain_pin):
            with maps.Map.from_pin(chain_pin) as chain:
                chain.delete(st.slot.to_bytes(4, "little"))
        os.unlink(prog_pin)
        return True

    def _teardown_hook(self, ref: HookRef, detach_root: bool) -> None:
        """Detach our root (only if it is still ours) and drop the hook's pins."""
        hdir = ref.dir(self.ctx)
        root_pin = os.path.join(hdir, "root")
        if detach_root and os.path.exists(root_pin):
            fd = maps.obj_get(root_pin)
            try:
                rid = maps.prog_info(fd).id
                try:
                    if ref.hook == "xdp":
                        link = netlink.get_link(ref.ifname, ref.netns)
                        for m, pid in link.xdp_ids.items():
                            if pid == rid:
                                netlink.xdp_set(ref.ifname, ref.netns, -1, m, expected_fd=fd)
                    else:
                        cur = netlink.tc_ours(ref.ifname, ref.netns, ref.hook)
                        if cur is not None and cur.prog_id == rid:
                            netlink.tc_del(ref.ifname, ref.netns, ref.hook)
                        # remove the clsact qdisc only if xdpctl added it and no filter
                        # of any kind is left on it
                        key = _clsact_key(ref)
                        if self.ctx.state.get_meta(key) and not any(
                                netlink.tc_filter_count(ref.ifname, ref.netns, h) for h in ("tc-ingress", "tc-egress")):
                            netlink.del_clsact(ref.ifname, ref.netns)
                            self.ctx.state.db.execute("DELETE FROM meta WHERE key=?", (key,))
                except NotFound:
                    pass  # interface or namespace gone: nothing to detach
            finally:
                os.close(fd)
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
    def hook_status(self, ref: HookRef) -> dict:
        """What the kernel says runs on one pinned hook."""
        hdir = ref.dir(self.ctx)
        out: dict = {
            "netns": ref.netns,
            "ifname": ref.ifname,
            "hook": ref.hook,
            "mode": None,
            "root": None,
            "stages": [],
            "attached": False,
        }
        root_id = _pinned_prog_id(os.path.join(hdir, "root"))
        try:
            if ref.hook == "xdp":
                link = netlink.get_link(ref.ifname, ref.netns)
                for m, pid in link.xdp_ids.items():
                    if pid == root_id:
                        out["mode"], out["attached"] = m, True
            else:
                cur = netlink.tc_ours(ref.ifname, ref.netns, ref.hook)
                out["attached"] = bool(cur and cur.prog_id == root_id)
        except (NotFound, NetlinkError):
            out["attached"] = False
        if root_id:
            info = maps.prog_info_by_id(root_id)
            out["root"] = {"id": root_id, "name": info.name if info else None, "tag": info.tag if info else None}
        chain_pin = os.path.join(hdir, "xc_chain")
        if os.path.exists(chain_pin):
            with maps.Map.from_pin(chain_pin) as chain:
                for st in sorted(STAGES.values(), key=lambda s: s.slot):
                    raw = chain.lookup(st.slot.to_bytes(4, "little"))
                    if raw is None:
                        continue
                    pid = int.from_bytes(raw[:4], "little")
                    info = maps.prog_info_by_id(pid)
                    out["stages"].append(
                        {"slot": st.slot, "program": st.name, "id": pid, "tag": info.tag if info else None}
                    )
        return out

    def managed_netns(self) -> list[str | None]:
        """The namespaces status covers by default: the host, and every
        namespace where xdpctl has pinned hooks."""
        return [None] + sorted({h.netns for h in pinned_hooks(self.ctx) if h.netns})

    def interfaces_status(self, netns_list: list[str | None]) -> list[dict]:
        """Every interface of the given namespaces: what is attached, ours or not."""
        ours = {(h.netns, h.ifname, h.hook): self.hook_status(h) for h in pinned_hooks(self.ctx)}
        rows = []
        for ns in netns_list:
            try:
                links = netlink.list_links(ns)
            except NotFound:
                # the namespace went away but xdpctl still has pins for it
                if not any(hns == ns for (hns, _i, _h) in ours):
                    raise
                for (hns, ifname, hook), st in ours.items():
                    if hns == ns:
                        rows.append({"netns": ns, "ifname": ifname, "ifindex": None, "up": False, "driver": None,
                                     "gone": True, "hooks": [{"hook": hook, "mode": None, "id": None, "name": None,
                                                              "tag": None, "owner": "xdpctl (stale)",
                                                              "stages": st["stages"]}]})
                continue
            for link in links:
                row = {"netns": ns, "ifname": link.name, "ifindex": link.index, "up": link.up,
                       "driver": link.kind, "hooks": []}
                for m, pid in link.xdp_ids.items():
                    st = ours.get((ns, link.name, "xdp"))
                    mine = bool(st and st["root"] and st["root"]["id"] == pid)
                    info = maps.prog_info_by_id(pid)
                    row["hooks"].append({
                        "hook": "xdp", "mode": m, "id": pid, "name": info.name if info else None,
                        "tag": info.tag if info else None, "owner": "xdpctl" if mine else "other",
                        "stages": st["stages"] if mine else [],
                    })
                for h in ("tc-ingress", "tc-egress"):
                    for f in netlink.tc_filters(link.name, ns, h):
                        st = ours.get((ns, link.name, h))
                        mine = bool(st and st["root"] and st["root"]["id"] == f.prog_id)
                        row["hooks"].append({
                            "hook": h, "mode": None, "id": f.prog_id, "name": f.name, "tag": f.tag,
                            "owner": "xdpctl" if mine else "other", "pref": f.pref,
                            "stages": st["stages"] if mine else [],
                        })
                for (hns, ifname, hook), st in ours.items():
                    if hns == ns and ifname == link.name and not st["attached"] and st["stages"]:
                        row["hooks"].append({
                            "hook": hook, "mode": None, "id": None, "name": None, "tag": None,
                            "owner": "xdpctl (pinned, not attached: run `xdpctl restore`)",
                            "stages": st["stages"],
                        })
                rows.append(row)
        return rows


def probe(ctx: Context, ifname: str, netns: str | None = None) -> dict:
    """Try every hook and mode on an interface; leave it exactly as found.

    Each free hook gets a pass-through root program attached and removed
    again; a hook in use is reported with what occupies it.
    """
    ctx.kernel_ready()
    link = netlink.get_link(ifname, netns)
    driver = netlink.driver_name(ifname, netns)
    results: list[dict] = []
    with bpffs.DirLock(ctx.settings.pin_dir):
        for mode in ("generic", "native"):
            results.append(_probe_xdp(link, netns, mode))
        results.append(_probe_offload(link, netns, driver))
        for hook in ("tc-ingress", "tc-egress"):
            results.append(_probe_tc(link, netns, hook))
    return {"netns": netns, "ifname": ifname, "ifindex": link.index, "driver": driver, "results": results}


def _probe_xdp(link: netlink.Link, netns: str | None, mode: str) -> dict:
    res = {"hook": "xdp", "mode": mode}
    if link.xdp_ids:
        m, pid = next(iter(link.xdp_ids.items()))
        info = maps.prog_info_by_id(pid)
        if m == mode:
            return {**res, "ok": True, "detail": f"in use by {info.name if info else '?'} (id {pid})"}
        return {**res, "ok": None, "detail": f"not tested: {m} XDP program {info.name if info else '?'} "
                                              f"(id {pid}) is attached and modes are exclusive"}
    with objects.load(objects.object_path("xdp_root")) as loaded:
        fd = loaded.prog_fd(ROOT_PROG)
        try:
            netlink.xdp_set(link.name, netns, fd, mode, exclusive=True)
        except (Unsupported, NetlinkError, Conflict) as exc:
            return {**res, "ok": False, "detail": str(exc)}
        netlink.xdp_set(link.name, netns, -1, mode, expected_fd=fd)
    return {**res, "ok": True, "detail": "attach and detach succeeded"}


def _probe_offload(link: netlink.Link, netns: str | None, driver: str) -> dict:
    return {"hook": "xdp", "mode": "offload", "ok": False, "detail": offload_reason(link.name, netns, link)}


def _probe_tc(link: netlink.Link, netns: str | None, hook: str) -> dict:
    res = {"hook": hook, "mode": None}
    cur = netlink.tc_ours(link.name, netns, hook)
    if cur is not None:
        return {**res, "ok": True, "detail": f"in use by {cur.name} (id {cur.prog_id})"}
    had_clsact = netlink.has_clsact(link.name, netns)
    with objects.load(objects.object_path("tc_root")) as loaded:
        try:
            netlink.tc_set(link.name, netns, hook, loaded.prog_fd(ROOT_PROG), f"{netlink.TC_NAME_PREFIX}probe")
        except NetlinkError as exc:
            return {**res, "ok": False, "detail": str(exc)}
        finally:
            netlink.tc_del(link.name, netns, hook)
            if not had_clsact:
                netlink.del_clsact(link.name, netns)
    return {**res, "ok": True, "detail": "clsact filter attach and detach succeeded"}
