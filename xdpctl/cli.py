"""xdpctl command line: thin over the core services.

Every command parses its arguments, calls one core function and renders the
result (a rich table, or JSON with --json). Errors are one line on stderr
and a non-zero exit code (see xdpctl/errors.py for the codes).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import __version__
from .config import Settings
from .core import counters as counters_mod
from .core.context import Context
from .core.hooks import Hooks, probe as probe_iface
from .errors import XdpctlError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Control XDP and TC classifiers: protocol counters, drop lists, load balancing.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 400)


class Global:
    settings = Settings()


@app.callback()
def _global(
    pin_dir: Optional[str] = typer.Option(None, "--pin-dir", envvar="XDPCTL_PIN_DIR",
                                          help="bpffs directory for xdpctl's pins (default: /sys/fs/bpf/xdpctl)"),
    state_dir: Optional[str] = typer.Option(None, "--state-dir", envvar="XDPCTL_STATE_DIR",
                                            help="directory of the state database (default: /var/lib/xdpctl)"),
) -> None:
    s = Settings()
    if pin_dir:
        s.pin_dir = pin_dir
    if state_dir:
        s.state_dir = state_dir
    Global.settings = s


def ctx() -> Context:
    return Context(Global.settings)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def run(fn):
    """Run a command body; XdpctlError -> one line on stderr + its exit code."""
    try:
        return fn()
    except XdpctlError as exc:
        err.print(f"xdpctl: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130)


# ------------------------------------------------------------------ attach
HookOpt = typer.Option("xdp", "--hook", help="xdp | tc-ingress | tc-egress")
NetnsOpt = typer.Option(None, "--netns", help="network namespace of the interface (ip netns name)")


@app.command()
def attach(
    iface: str = typer.Argument(..., help="interface name"),
    program: str = typer.Option("counter", "--program", "-p", help="counter | droplist"),
    hook: str = HookOpt,
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help="XDP mode: generic | native | offload | auto"),
    netns: Optional[str] = NetnsOpt,
    force: bool = typer.Option(False, "--force", help="replace a program xdpctl did not attach"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attach a classifier to a hook (adds it to the hook's chain; replaces it if present)."""

    def body():
        with ctx() as c:
            res = Hooks(c).attach(iface, program, hook, mode, netns, force)
        if as_json:
            emit_json({"netns": netns, "ifname": iface, "hook": hook, "program": program, "mode": res.mode,
                       "prog_id": res.prog_id, "root_id": res.root_id, "replaced": res.replaced,
                       "notes": res.notes})
            return
        for n in res.notes:
            err.print(f"xdpctl: {n}", markup=False, highlight=False)
        verb = "replaced" if res.replaced else "attached"
        mode_s = f" ({res.mode} mode)" if res.mode else ""
        out.print(f"{verb} {program} on {res.hook.label()}{mode_s}: prog id {res.prog_id}, root id {res.root_id}",
                  markup=False, highlight=False)

    run(body)


@app.command()
def detach(
    iface: str = typer.Argument(...),
    program: Optional[str] = typer.Option(None, "--program", "-p", help="stage to remove (default: all)"),
    hook: Optional[str] = typer.Option(None, "--hook", help="hook (default: every hook of the interface)"),
    netns: Optional[str] = NetnsOpt,
) -> None:
    """Remove a classifier (or all of xdpctl's) from an interface."""

    def body():
        with ctx() as c:
            removed = Hooks(c).detach(iface, program, hook, netns)
        for ref, name in removed:
            out.print(f"detached {name} from {ref.label()}", markup=False, highlight=False)

    run(body)


@app.command()
def status(
    netns: Optional[str] = typer.Option(None, "--netns", help="only this namespace"),
    all_ifaces: bool = typer.Option(False, "--all", "-a", help="also interfaces with nothing attached"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every interface with what is attached: hook, mode, program ids, owner, chain."""

    def body():
        with ctx() as c:
            c.kernel_ready()
            h = Hooks(c)
            if netns:
                nss = [netns]
            else:
                nss = h.managed_netns()
            rows = h.interfaces_status(nss)
        if not all_ifaces:
            rows = [r for r in rows if r["hooks"]]
        if as_json:
            emit_json(rows)
            return
        t = Table(title="xdpctl status", show_lines=False)
        for col in ("netns", "interface", "hook", "mode", "prog id", "name", "owner", "chain"):
            t.add_column(col)
        for r in rows:
            if not r["hooks"]:
                t.add_row(r["netns"] or "-", r["ifname"], "-", "-", "-", "-", "-", "-")
            for hk in r["hooks"]:
                chain = ", ".join(f"{s['slot']}:{s['program']}#{s['id']}" for s in hk["stages"]) or "-"
                t.add_row(r["netns"] or "-", r["ifname"], hk["hook"], hk["mode"] or "-", str(hk["id"]),
                          hk["name"] or "-", hk["owner"], chain)
        out.print(t)

    run(body)


def _stats_rows(hcs, prev=None, dt=None):
    rows = []
    prevmap = {}
    if prev:
        for hc in prev:
            for k, v in hc.proto.items():
                prevmap[(hc.hook, k)] = v
    for hc in hcs:
        for (l3, l4), (pk, by) in sorted(hc.proto.items()):
            r = {"netns": hc.hook.netns, "ifname": hc.hook.ifname, "hook": hc.hook.hook, "l3": l3, "l4": l4,
                 "packets": pk, "bytes": by}
            if prev is not None and dt:
                p0, b0 = prevmap.get((hc.hook, (l3, l4)), (0, 0))
                r["pps"] = (pk - p0) / dt
                r["bps"] = (by - b0) * 8 / dt
            rows.append(r)
    return rows


def _stats_table(rows, hcs, rates: bool) -> Table:
    t = Table(title="xdpctl stats (summed over CPUs)")
    for col in ("netns", "interface", "hook", "l3", "l4", "packets", "bytes"):
        t.add_column(col, justify="right" if col in ("packets", "bytes") else "left")
    if rates:
        t.add_column("pkt/s", justify="right")
        t.add_column("bit/s", justify="right")
    for r in rows:
        cells = [r["netns"] or "-", r["ifname"], r["hook"], r["l3"], r["l4"], f"{r['packets']:,}", f"{r['bytes']:,}"]
        if rates:
            cells += [f"{r.get('pps', 0):,.0f}", f"{r.get('bps', 0):,.0f}"]
        t.add_row(*cells)
    for hc in hcs:
        if hc.verdicts:
            v = ", ".join(f"{k}={p}" for k, (p, _b) in sorted(hc.verdicts.items()))
            t.caption = (t.caption + "\n" if t.caption else "") + f"{hc.hook.label()} droplist: {v}"
    return t


@app.command()
def stats(
    iface: Optional[str] = typer.Argument(None, help="only this interface"),
    netns: Optional[str] = typer.Option(None, "--netns"),
    watch: bool = typer.Option(False, "--watch", "-w", help="refresh every --interval seconds with rates"),
    interval: float = typer.Option(1.0, "--interval"),
    count: int = typer.Option(0, "--count", help="with --watch: stop after N refreshes (0 = until ^C)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Packet and byte counters per hook and protocol (totals, and rates with --watch)."""

    def body():
        with ctx() as c:
            c.kernel_ready()
            kw = {"netns": netns, "ifname": iface}
            if not watch:
                hcs = counters_mod.read_all(c, **kw)
                rows = _stats_rows(hcs)
                if as_json:
                    emit_json({"counters": rows, "droplist": [
                        {"netns": h.hook.netns, "ifname": h.hook.ifname, "hook": h.hook.hook,
                         "verdicts": {k: {"packets": p, "bytes": b} for k, (p, b) in h.verdicts.items()}}
                        for h in hcs if h.verdicts]})
                else:
                    out.print(_stats_table(rows, hcs, rates=False))
                return
            t0, prev = counters_mod.snapshot(c, **kw)
            n = 0
            with Live(console=out, auto_refresh=False, transient=False) as live:
                while True:
                    time.sleep(interval)
                    t1, cur = counters_mod.snapshot(c, **kw)
                    rows = _stats_rows(cur, prev, t1 - t0)
                    if as_json:
                        emit_json({"time": time.time(), "counters": rows})
                    else:
                        live.update(_stats_table(rows, cur, rates=True), refresh=True)
                    t0, prev = t1, cur
                    n += 1
                    if count and n >= count:
                        return

    run(body)


@app.command()
def probe(
    iface: str = typer.Argument(...),
    netns: Optional[str] = NetnsOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Which hooks and modes work on an interface, and why not (leaves it as it was)."""

    def body():
        with ctx() as c:
            res = probe_iface(c, iface, netns)
        if as_json:
            emit_json(res)
            return
        t = Table(title=f"probe {iface} (driver {res['driver']})")
        for col in ("hook", "mode", "works", "detail"):
            t.add_column(col)
        for r in res["results"]:
            works = {True: "yes", False: "no", None: "?"}[r["ok"]]
            t.add_row(r["hook"], r["mode"] or "-", works, r["detail"])
        out.print(t)

    run(body)


# ------------------------------------------------------------------ drop list
def _fmt_time(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _render_change(res, as_json: bool) -> None:
    if as_json:
        emit_json({"revision": res.revision, "added": [r.as_dict() for r in res.added],
                   "updated": [r.as_dict() for r in res.updated], "removed": [r.as_dict() for r in res.removed],
                   "notes": res.notes})
        return
    for verb, rows in (("added", res.added), ("updated", res.updated), ("removed", res.removed)):
        for r in rows:
            extra = f" {r.proto}/{r.port}" if r.proto else ""
            exp = f" expires {_fmt_time(r.expires)}" if r.expires else ""
            out.print(f"{verb} rule {r.id}: {r.action} {r.prefix or 'any'}{' (dst)' if r.dir == 'dst' else ''}"
                      f"{extra}{exp}", markup=False, highlight=False)
    for n in res.notes:
        out.print(n, markup=False, highlight=False)
    out.print(f"revision {res.revision}", markup=False, highlight=False)


def _specs(prefixes, action, dst, proto, port, comment, ttl, mgmt=False):
    from .core import droplist as dl

    items = list(prefixes or []) or ([None] if proto else [])
    return [dl.spec(p, action=action, dst=dst, proto=proto, port=port, comment=comment, ttl=ttl, mgmt=mgmt)
            for p in items]


PrefixesArg = typer.Argument(None, help="IPv4/IPv6 prefixes or addresses (none with --proto/--port: any address)")
DstOpt = typer.Option(False, "--dst", help="match the destination address instead of the source")
ProtoOpt = typer.Option(None, "--proto", help="tcp | udp | sctp (with --port: an L4 rule)")
PortOpt = typer.Option(None, "--port", help="destination port 1-65535")
TtlOpt = typer.Option(None, "--ttl", help="expire after a duration: 30s, 10m, 2h, 7d, 1h30m")
CommentOpt = typer.Option(None, "--comment")
RevOpt = typer.Option(None, "--revision", help="only apply if the rule set is at this revision")
UpdateOpt = typer.Option(False, "--update", help="update existing rules (action, TTL, comment) instead of failing")


def _add(action, prefixes, dst, proto, port, ttl, comment, revision, update, as_json, mgmt=False):
    from .core.droplist import DropList

    def body():
        specs = _specs(prefixes, action, dst, proto, port, comment, ttl, mgmt)
        with ctx() as c:
            res = DropList(c).add(specs, expected_revision=revision, source="cli", update=update)
        _render_change(res, as_json)

    run(body)


@app.command()
def block(
    prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
    port: Optional[str] = PortOpt, ttl: Optional[str] = TtlOpt, comment: Optional[str] = CommentOpt,
    revision: Optional[int] = RevOpt, update: bool = UpdateOpt, as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Deny traffic from prefixes (or to them with --dst, or to a port with --proto/--port)."""
    _add("deny", prefixes, dst, proto, port, ttl, comment, revision, update, as_json)


@app.command()
def allow(
    prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
    port: Optional[str] = PortOpt, ttl: Optional[str] = TtlOpt, comment: Optional[str] = CommentOpt,
    mgmt: bool = typer.Option(False, "--mgmt", help="a management prefix: never locked out by policy deny"),
    revision: Optional[int] = RevOpt, update: bool = UpdateOpt, as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Allow prefixes: carves a hole in a deny (longest prefix wins), or admits traffic under policy deny."""
    _add("allow", prefixes, dst, proto, port, ttl, comment, revision, update, as_json, mgmt)


@app.command()
def unblock(
    prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
    port: Optional[str] = PortOpt, ids: Optional[list[int]] = typer.Option(None, "--id", help="rule id (repeatable)"),
    list_name: Optional[str] = typer.Option(None, "--list", help="remove a whole imported list"),
    revision: Optional[int] = RevOpt, as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove rules (deny or allow) by match, by id, or a whole list."""
    from .core.droplist import DropList, spec

    def body():
        with ctx() as c:
            d = DropList(c)
            if list_name:
                res = d.remove_list(list_name, expected_revision=revision)
            else:
                items = list(prefixes or []) or ([None] if proto else [])
                specs = [spec(p, dst=dst, proto=proto, port=port) for p in items]
                res = d.remove(specs, ids=list(ids or []), expected_revision=revision)
        _render_change(res, as_json)

    run(body)


@app.command()
def rules(
    list_name: Optional[str] = typer.Option(None, "--list", help="members of an imported list"),
    limit: Optional[int] = typer.Option(None, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Rules with their hit counters, then imported lists."""
    from .core.droplist import DropList

    def body():
        with ctx() as c:
            d = DropList(c)
            rs = d.rules(list_name=list_name, limit=limit)
            ls = d.lists() if list_name is None else []
            meta = {"revision": d.revision(), "policy": d.policy()}
        if as_json:
            emit_json({**meta, "rules": [r.as_dict() for r in rs], "lists": [x.as_dict() for x in ls]})
            return
        t = Table(title=f"rules (revision {meta['revision']}, policy {meta['policy']})")
        for col in ("id", "action", "match", "dir", "l4", "packets", "bytes", "last hit", "expires", "comment"):
            t.add_column(col, justify="right" if col in ("id", "packets", "bytes") else "left")
        for r in rs:
            action = r.action + (" (mgmt)" if r.mgmt else "")
            t.add_row(str(r.id), action, r.prefix or "any", r.dir, f"{r.proto}/{r.port}" if r.proto else "-",
                      f"{r.packets:,}", f"{r.bytes:,}", _fmt_time(r.last_hit), _fmt_time(r.expires),
                      r.comment or (f"list {r.list}" if r.list else ""))
        out.print(t)
        if ls:
            lt = Table(title="lists")
            for col in ("name", "prefixes", "action", "dir", "packets", "bytes", "imported", "expires", "source"):
                lt.add_column(col)
            for x in ls:
                lt.add_row(x.name, f"{x.count:,}", x.action, x.dir, f"{x.packets:,}", f"{x.bytes:,}",
                           _fmt_time(x.created), _fmt_time(x.expires), x.source or "-")
            out.print(lt)

    run(body)


@app.command("import")
def import_(
    file: str = typer.Argument(..., help="one prefix per line; '#' and ';' start comments; '-' reads stdin"),
    list_name: Optional[str] = typer.Option(None, "--list", help="list name (default: the file name without extension)"),
    action: str = typer.Option("deny", "--action", help="deny | allow"),
    dst: bool = DstOpt, ttl: Optional[str] = TtlOpt, comment: Optional[str] = CommentOpt,
    revision: Optional[int] = RevOpt, as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import a block list file as a named list (replacing that list atomically)."""
    import os

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .core import prefixes as px
    from .core.droplist import DropList
    from .errors import ValidationError

    def body():
        name = list_name or (os.path.splitext(os.path.basename(file))[0] if file != "-" else "stdin")
        try:
            if file == "-":
                pfx = px.parse_prefix_text(sys.stdin.read())
            else:
                if not os.path.isfile(file):
                    raise ValidationError(f"{file}: no such file")
                pfx = px.load_prefix_file(file)
        except px.PrefixError as exc:
            raise ValidationError(f"{file}: {exc}; nothing was imported") from None
        show = not as_json and sys.stderr.isatty() and len(pfx) > 10000
        with ctx() as c, Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                                  TimeElapsedColumn(), console=err, disable=not show) as prog:
            task = prog.add_task(f"import {name}", total=len(pfx))
            res = DropList(c).import_list(
                name, pfx, action=action, dst=dst, comment=comment, ttl=ttl, source=os.path.abspath(file) if file != "-" else "stdin",
                expected_revision=revision, progress=lambda done, total: prog.update(task, completed=min(done, len(pfx))),
            )
        _render_change(res, as_json)

    run(body)


@app.command()
def export(
    file: Optional[str] = typer.Argument(None, help="write here instead of stdout"),
) -> None:
    """Print the rule set: rules as CLI lines, lists as prefixes."""
    from .core.droplist import DropList

    def body():
        with ctx() as c:
            lines = DropList(c).export()
        text = "\n".join(lines) + "\n"
        if file:
            with open(file, "w") as fh:
                fh.write(text)
        else:
            sys.stdout.write(text)

    run(body)


@app.command()
def policy(
    value: Optional[str] = typer.Argument(None, help="allow (default: pass what no rule denies) | deny (allow-list mode)"),
    revision: Optional[int] = RevOpt,
) -> None:
    """Show or set the drop list's default policy."""
    from .core.droplist import DropList

    def body():
        with ctx() as c:
            d = DropList(c)
            if value is None:
                out.print(d.policy(), markup=False)
                return
            rev = d.set_policy(value, expected_revision=revision)
        out.print(f"policy {value}, revision {rev}", markup=False)

    run(body)


@app.command()
def expire(as_json: bool = typer.Option(False, "--json")) -> None:
    """Remove rules whose TTL has passed (the service does this by itself)."""
    from .core.droplist import DropList

    def body():
        with ctx() as c:
            removed = DropList(c).expire()
        if as_json:
            emit_json([r.as_dict() for r in removed])
        else:
            out.print(f"expired {len(removed)} rules", markup=False)

    run(body)


@app.command()
def restore(as_json: bool = typer.Option(False, "--json")) -> None:
    """Rebuild programs, attachments and map contents from the state database
    (after a reboot, or when bpffs was emptied), repairing drift."""
    from .core.restore import restore as do_restore

    def body():
        with ctx() as c:
            rep = do_restore(c)
        if as_json:
            emit_json(rep)
            return
        for line in rep["log"]:
            out.print(line, markup=False, highlight=False)

    run(body)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="listen address (loopback by default)"),
    port: int = typer.Option(8077, "--port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="XDPCTL_API_TOKEN",
                                        help="bearer token for changes (default: generated under the state dir)"),
) -> None:
    """Run the REST API (FastAPI under uvicorn): rules, lists, VIPs, counters, /metrics."""

    def body():
        from api.app import serve as run_server

        run_server(Global.settings, host=host, port=port, token=token)

    run(body)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"xdpctl {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
