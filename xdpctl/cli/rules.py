"""CLI verbs for the drop list: block, allow, unblock, rules, lists, import,
export, policy, revision, expire.

With --json every verb prints its core view, the same document as the REST
answer (``xdpctl rules --json`` is GET /v1/rules, ``xdpctl lists NAME
--json`` is GET /v1/lists/NAME, ...).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Optional

import typer

from .app import app, ctx, emit_json, err, out, run, say

if TYPE_CHECKING:
    from rich.table import Table


def _fmt_time(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _render_change(res, as_json: bool) -> None:
    """A ChangeView: the rules added, updated and removed, the new revision."""
    if as_json:
        emit_json(res.to_json())
        return
    for verb, rows in (("added", res.added), ("updated", res.updated), ("removed", res.removed)):
        for r in rows:
            extra = f" {r.proto}/{r.port}" if r.proto else ""
            exp = f" expires {_fmt_time(r.expires)}" if r.expires else ""
            say(f"{verb} rule {r.id}: {r.action} {r.prefix or 'any'}{' (dst)' if r.dir == 'dst' else ''}"
                 f"{extra}{exp}")
    for n in res.notes:
        say(n)
    say(f"revision {res.revision}")


PrefixesArg = typer.Argument(None, metavar="PREFIX",
                             help="IPv4/IPv6 prefixes or addresses (none with --proto/--port: any address)")
DstOpt = typer.Option(False, "--dst", help="match the destination address instead of the source")
ProtoOpt = typer.Option(None, "--proto", metavar="PROTO", help="tcp | udp | sctp (with --port: an L4 rule)")
PortOpt = typer.Option(None, "--port", metavar="PORT", help="destination port 1-65535")
TtlOpt = typer.Option(None, "--ttl", metavar="DURATION", help="expire after a duration: 30s, 10m, 2h, 7d, 1h30m")
CommentOpt = typer.Option(None, "--comment", metavar="TEXT")
RevOpt = typer.Option(None, "--revision", metavar="N", min=0, max=2**63 - 1,
                      help="only apply if the rule set is at this revision")
UpdateOpt = typer.Option(False, "--update", help="update existing rules (action, TTL, comment) instead of failing")
JsonOpt = typer.Option(False, "--json", help="print the result as JSON (the REST API's document)")


def _add(action, prefixes, dst, proto, port, ttl, comment, revision, update, as_json, mgmt=False):
    from ..core.fleet.mode import rule_set
    from ..core.rules.validate import specs

    def body():
        rules = specs(prefixes, action=action, dst=dst, proto=proto, port=port, comment=comment, ttl=ttl,
                      mgmt=mgmt)
        with ctx(settle_later=True) as c:
            res = rule_set(c).add(rules, expected_revision=revision, source="cli", update=update)
        _render_change(res, as_json)

    run(body)


@app.command()
def block(
    prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
    port: Optional[str] = PortOpt, ttl: Optional[str] = TtlOpt, comment: Optional[str] = CommentOpt,
    revision: Optional[int] = RevOpt, update: bool = UpdateOpt, as_json: bool = JsonOpt,
) -> None:
    """Deny traffic from prefixes (or to them with --dst, or to a port with --proto/--port)."""
    _add("deny", prefixes, dst, proto, port, ttl, comment, revision, update, as_json)


@app.command()
def allow(
    prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
    port: Optional[str] = PortOpt, ttl: Optional[str] = TtlOpt, comment: Optional[str] = CommentOpt,
    mgmt: bool = typer.Option(False, "--mgmt", help="a management prefix: never locked out by policy deny"),
    revision: Optional[int] = RevOpt, update: bool = UpdateOpt, as_json: bool = JsonOpt,
) -> None:
    """Allow prefixes: carves a hole in a deny (longest prefix wins), or admits traffic under policy deny."""
    _add("allow", prefixes, dst, proto, port, ttl, comment, revision, update, as_json, mgmt)


@app.command()
def unblock(
    prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
    port: Optional[str] = PortOpt, ids: Optional[list[int]] = typer.Option(None, "--id", metavar="ID",
                                                                           min=1, max=2**32 - 1,
                                            help="rule id (repeatable)"),
    list_name: Optional[str] = typer.Option(None, "--list", metavar="NAME", help="remove a whole imported list"),
    revision: Optional[int] = RevOpt, as_json: bool = JsonOpt,
) -> None:
    """Remove rules (deny or allow) by match, by id, or a whole list."""
    from ..core.fleet.mode import rule_set
    from ..core.rules.validate import specs

    def body():
        with ctx(settle_later=True) as c:
            d = rule_set(c)
            if list_name:
                res = d.remove_list(list_name, expected_revision=revision)
            else:
                matches = specs(prefixes, dst=dst, proto=proto, port=port, required=False)
                res = d.remove(matches, ids=list(ids or []), expected_revision=revision)
        _render_change(res, as_json)

    run(body)


def _rules_table(view) -> Table:
    from rich.table import Table

    t = Table(title=f"rules (revision {view.revision}, policy {view.policy})")
    for col in ("id", "action", "match", "dir", "l4", "packets", "bytes", "last hit", "expires", "comment"):
        t.add_column(col, justify="right" if col in ("id", "packets", "bytes") else "left")
    for r in view.rules:
        action = r.action + (" (mgmt)" if r.mgmt else "")
        t.add_row(str(r.id), action, r.prefix or "any", r.dir, f"{r.proto}/{r.port}" if r.proto else "-",
                  f"{r.packets:,}", f"{r.bytes:,}", _fmt_time(r.last_hit),
                  "expired" if r.expired else _fmt_time(r.expires),
                  r.comment or (f"list {r.list}" if r.list else ""))
    return t


def _lists_table(lists) -> Table:
    from rich.table import Table

    lt = Table(title="lists")
    for col in ("name", "prefixes", "action", "dir", "packets", "bytes", "imported", "expires", "source"):
        lt.add_column(col)
    for x in lists:
        lt.add_row(x.name, f"{x.count:,}", x.action, x.dir, f"{x.packets:,}", f"{x.bytes:,}",
                   _fmt_time(x.created), _fmt_time(x.expires), x.source or "-")
    return lt


@app.command()
def rules(
    list_name: Optional[str] = typer.Option(None, "--list", metavar="NAME", help="members of an imported list"),
    prefix: Optional[str] = typer.Option(None, "--prefix", metavar="PREFIX", help="only rules on exactly this prefix"),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", min=1, max=2**32 - 1),
    after: Optional[int] = typer.Option(None, "--after", metavar="ID", min=0, max=2**32 - 1,
                                        help="only rules with ids above this (the previous page's next)"),
    as_json: bool = JsonOpt,
) -> None:
    """Rules with their hit counters, then imported lists (--json: the rules document only)."""
    from ..core.fleet.mode import rule_set

    def body():
        with ctx() as c:
            d = rule_set(c)
            view = d.rules_view(list_name=list_name, limit=limit, prefix=prefix, after=after)
            if as_json:
                emit_json(view.to_json())
                return
            ls = d.lists() if list_name is None and prefix is None else []
        out.print(_rules_table(view))
        if ls:
            out.print(_lists_table(ls))

    run(body)


@app.command()
def lists(
    name: Optional[str] = typer.Argument(None, metavar="NAME", help="one list: its details and members"),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", min=1, max=2**32 - 1,
                                        help="with NAME: at most this many members (default 1000)"),
    after: Optional[int] = typer.Option(None, "--after", metavar="ID", min=0, max=2**32 - 1,
                                        help="with NAME: only members with ids above this (the previous "
                                             "page's next)"),
    as_json: bool = JsonOpt,
) -> None:
    """Imported lists with their hits, or one list and its members."""
    from ..core.fleet.mode import rule_set
    from ..core.rules.service import DETAIL_LIMIT

    def body():
        with ctx() as c:
            d = rule_set(c)
            view = d.list_detail(name, limit or DETAIL_LIMIT, after=after) if name else d.lists_view()
        if as_json:
            emit_json(view.to_json())
        elif name:
            out.print(_lists_table([view.list]))
            for m in view.members:
                say(f"{m.id} {m.prefix} {m.packets:,} packets")
            if view.next is not None:
                say(f"... more after {view.next} (--after {view.next}, --limit)")
        else:
            out.print(_lists_table(view.lists))

    run(body)


def _read_prefixes(file: str):
    from ..core import prefixes as px
    from ..core.errors import ValidationError
    from ..core.rules.members import Members

    try:
        if file == "-":
            return Members.parse(sys.stdin.read())
        if not os.path.isfile(file):
            raise ValidationError(f"{file}: no such file", field="file", value=file)
        with open(file, "rb") as f:
            return Members.parse(f.read())
    except px.PrefixError as exc:
        raise ValidationError(f"{file}: {exc}; nothing was imported", field="file", value=exc.text) from None


BIG_FILE = 256 * 1024  # bytes of a block-list file (about 15,000 prefixes) worth a progress bar


class _NoProgress:
    """A progress bar's calls, showing nothing: a run without a bar does
    not import rich."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def refresh(self) -> None:
        pass

    def update(self, *args, **kwargs) -> None:
        pass


def _import_progress(file: str, as_json: bool):
    """One bar on stderr (a terminal only) for both phases of an import:
    reading the file, then writing the kernel's tables."""
    big = file == "-" or (os.path.isfile(file) and os.path.getsize(file) >= BIG_FILE)
    if as_json or not sys.stderr.isatty() or not big:
        return _NoProgress()
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    console=err.console)


@app.command("import")
def import_(
    file: str = typer.Argument(..., metavar="FILE",
                               help="one prefix per line; '#' and ';' start comments; '-' reads stdin"),
    list_name: Optional[str] = typer.Option(None, "--list", metavar="NAME",
                                            help="list name (default: the file name without extension)"),
    action: str = typer.Option("deny", "--action", metavar="ACTION", help="deny | allow"),
    dst: bool = DstOpt, ttl: Optional[str] = TtlOpt, comment: Optional[str] = CommentOpt,
    allow_empty: bool = typer.Option(False, "--allow-empty", help="an empty file empties (or creates) the list"),
    revision: Optional[int] = RevOpt, as_json: bool = JsonOpt,
) -> None:
    """Import a block list file as a named list (replacing that list atomically)."""
    from ..core.fleet.mode import rule_set
    from ..core.rules.members import Members
    from ..core.rules.validate import list_members

    def body():
        name = list_name or (os.path.splitext(os.path.basename(file))[0] if file != "-" else "stdin")
        with _import_progress(file, as_json) as prog:
            task = prog.add_task(f"read {name}", total=None)
            prog.refresh()
            pfx = Members.of(list_members(_read_prefixes(file), allow_empty))
            prog.update(task, description=f"write {name}", total=len(pfx), completed=0)
            with ctx(settle_later=True) as c:
                res = rule_set(c).import_list(
                    name, pfx, action=action, dst=dst, comment=comment, ttl=ttl,
                    source=os.path.abspath(file) if file != "-" else "stdin", expected_revision=revision,
                    progress=lambda done, total: prog.update(task, completed=min(done, len(pfx))))
        if as_json:
            emit_json(res.to_json())
            return
        for n in res.notes:
            say(n)
        say(f"{'created' if res.created else 'replaced'} list {res.list.name}, revision {res.revision}")

    run(body)


@app.command()
def export(
    file: Optional[str] = typer.Argument(None, metavar="FILE", help="write here instead of stdout"),
) -> None:
    """Print the rule set (policy, rules, lists with members) as a file `xdpctl apply` reads."""
    from ..core.rules.service import DropList
    from ..core.ruleset_io import export_text

    def body():
        with ctx() as c:
            pieces = export_text(DropList(c))
            if file:
                with open(file, "w") as fh:
                    fh.writelines(pieces)
            else:
                sys.stdout.writelines(pieces)

    run(body)


@app.command()
def policy(
    value: Optional[str] = typer.Argument(None, metavar="POLICY",
                                         help="allow (default: pass what no rule denies) | deny (allow-list mode)"),
    revision: Optional[int] = RevOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show or set the drop list's default policy."""
    from ..core.fleet.mode import rule_set

    def body():
        with ctx() as c:
            d = rule_set(c)
            view = d.policy_view() if value is None else d.set_policy(value, expected_revision=revision)
        if as_json:
            emit_json(view.to_json())
        elif value is None:
            say(view.policy)
        elif not view.changed:
            say(f"policy already {view.policy}, revision {view.revision}")
        else:
            say(f"policy {view.policy}, revision {view.revision}")

    run(body)


@app.command("revision")
def revision_(as_json: bool = JsonOpt) -> None:
    """Print the revision of the desired state (every change increments it)."""
    from ..core.fleet.mode import rule_set

    def body():
        with ctx() as c:
            view = rule_set(c).revision_view()
        if as_json:
            emit_json(view.to_json())
        else:
            say(str(view.revision))

    run(body)


@app.command()
def expire(as_json: bool = JsonOpt) -> None:
    """Remove rules whose TTL has passed (the service does this by itself)."""
    from ..core.rules.service import DropList

    def body():
        with ctx() as c:
            view = DropList(c).expire()
        if as_json:
            emit_json(view.to_json())
            return
        lists = f" and {len(view.removed_lists)} lists" if view.removed_lists else ""
        say(f"expired {len(view.removed)} rules{lists}, revision {view.revision}")

    run(body)
