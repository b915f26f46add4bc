"""CLI verbs for the drop list: block, allow, unblock, rules, import, export, policy, expire."""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer
from rich.table import Table

from .app import app, ctx, emit_json, err, out, run

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
    from ..core import droplist as dl

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
    from ..core.droplist import DropList

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
    from ..core.droplist import DropList, spec

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
    from ..core.droplist import DropList

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

    from ..core import prefixes as px
    from ..core.droplist import DropList
    from ..core.errors import ValidationError

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
    from ..core.droplist import DropList

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
    from ..core.droplist import DropList

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
    from ..core.droplist import DropList

    def body():
        with ctx() as c:
            removed = DropList(c).expire()
        if as_json:
            emit_json([r.as_dict() for r in removed])
        else:
            out.print(f"expired {len(removed)} rules", markup=False)

    run(body)
