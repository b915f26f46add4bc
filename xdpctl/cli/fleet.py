"""CLI verbs for fleet mode: `xdpctl agent` and the `xdpctl fleet` group.

`xdpctl fleet --etcd URL block|allow|unblock|policy|import|remove-list|status`
writes the fleet's rule set in etcd (one transaction each; --revision makes
it conditional) or shows every node; `xdpctl agent --etcd URL` makes this
host follow it. docs/fleet.md describes the design.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Optional

import typer
from rich.table import Table

from .app import app, ctx, emit_json, err, out, run

fleet_app = typer.Typer(no_args_is_help=True, help="Write the fleet's rule set in etcd; show its nodes.")
app.add_typer(fleet_app, name="fleet")

EtcdOpt = typer.Option(..., "--etcd", metavar="URL", help="etcd endpoints: URL[,URL...] (http://127.0.0.1:2379)")
PrefixOpt = typer.Option("/xdpctl/default", "--prefix", metavar="KEY", help="the fleet's key prefix: /xdpctl/CLUSTER")
CaOpt = typer.Option(None, "--etcd-ca", metavar="FILE", help="CA bundle to verify etcd's TLS certificate")
CertOpt = typer.Option(None, "--etcd-cert", metavar="FILE", help="client certificate for etcd")
KeyOpt = typer.Option(None, "--etcd-key", metavar="FILE", help="client certificate key for etcd")
UserOpt = typer.Option(None, "--etcd-user", metavar="NAME", help="etcd user (etcd auth)")
PassOpt = typer.Option(None, "--etcd-password", metavar="PASSWORD", help="etcd password")
RevOpt = typer.Option(None, "--revision", metavar="N", help="only apply if the fleet's rule set is at this revision")
JsonOpt = typer.Option(False, "--json", help="print the result as JSON (the REST API's document)")


class _Conn:
    opts = None
    prefix = "/xdpctl/default"


def _options(etcd, ca, cert, key, user, password):
    from ..core.fleet.kv import EtcdOptions

    return EtcdOptions.parse(etcd, ca_cert=ca, cert=cert, key=key, user=user, password=password)


@fleet_app.callback()
def _fleet(etcd: str = EtcdOpt, prefix: str = PrefixOpt, ca: Optional[str] = CaOpt,
           cert: Optional[str] = CertOpt, key: Optional[str] = KeyOpt, user: Optional[str] = UserOpt,
           password: Optional[str] = PassOpt) -> None:
    def body():
        _Conn.opts = _options(etcd, ca, cert, key, user, password)
        _Conn.prefix = prefix

    run(body)


def _fleet_obj():
    from ..core.fleet.kv import Etcd
    from ..core.fleet.writer import Fleet

    return Fleet(Etcd(_Conn.opts), _Conn.prefix)


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def _render(res, as_json: bool) -> None:
    if as_json:
        emit_json(res.to_json())
        return
    what = res.name or res.policy or ", ".join(res.rules)
    _say(f"{res.operation} {what}: fleet revision {res.revision}")


PrefixesArg = typer.Argument(None, metavar="PREFIX", help="IPv4/IPv6 prefixes or addresses")
DstOpt = typer.Option(False, "--dst", help="match the destination address instead of the source")
ProtoOpt = typer.Option(None, "--proto", metavar="PROTO", help="tcp | udp | sctp (with --port: an L4 rule)")
PortOpt = typer.Option(None, "--port", metavar="PORT", help="destination port 1-65535")
CommentOpt = typer.Option(None, "--comment", metavar="TEXT")


def _add(action, prefixes, dst, proto, port, comment, revision, as_json):
    from ..core.rules.validate import specs

    def body():
        rules = specs(prefixes, action=action, dst=dst, proto=proto, port=port, comment=comment)
        _render(_fleet_obj().add(rules, expected_revision=revision), as_json)

    run(body)


@fleet_app.command()
def block(prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
          port: Optional[str] = PortOpt, comment: Optional[str] = CommentOpt, revision: Optional[int] = RevOpt,
          as_json: bool = JsonOpt) -> None:
    """Deny prefixes on every node."""
    _add("deny", prefixes, dst, proto, port, comment, revision, as_json)


@fleet_app.command()
def allow(prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
          port: Optional[str] = PortOpt, comment: Optional[str] = CommentOpt, revision: Optional[int] = RevOpt,
          as_json: bool = JsonOpt) -> None:
    """Allow prefixes on every node."""
    _add("allow", prefixes, dst, proto, port, comment, revision, as_json)


@fleet_app.command()
def unblock(prefixes: Optional[list[str]] = PrefixesArg, dst: bool = DstOpt, proto: Optional[str] = ProtoOpt,
            port: Optional[str] = PortOpt, revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Remove rules from the fleet's rule set."""
    from ..core.rules.validate import specs

    def body():
        rules = specs(prefixes, dst=dst, proto=proto, port=port)
        _render(_fleet_obj().remove(rules, expected_revision=revision), as_json)

    run(body)


@fleet_app.command()
def policy(value: str = typer.Argument(..., metavar="POLICY", help="allow | deny"), revision: Optional[int] = RevOpt,
           as_json: bool = JsonOpt) -> None:
    """Set the fleet's default policy."""
    run(lambda: _render(_fleet_obj().set_policy(value, expected_revision=revision), as_json))


@fleet_app.command("import")
def import_(file: str = typer.Argument(..., metavar="FILE", help="one prefix per line; '-' reads stdin"),
            list_name: Optional[str] = typer.Option(None, "--list", metavar="NAME",
                                                    help="list name (default: the file name)"),
            action: str = typer.Option("deny", "--action", metavar="ACTION", help="deny | allow"), dst: bool = DstOpt,
            comment: Optional[str] = CommentOpt, revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Import a list into the fleet (chunks, then one manifest switch)."""
    from ..core import prefixes as px
    from ..core.errors import ValidationError

    def body():
        name = list_name or (os.path.splitext(os.path.basename(file))[0] if file != "-" else "stdin")
        try:
            pfx = px.parse_prefix_text(sys.stdin.read()) if file == "-" else px.load_prefix_file(file)
        except OSError as exc:
            raise ValidationError(f"{file}: {exc.strerror}", field="file", value=file) from None
        except px.PrefixError as exc:
            raise ValidationError(f"{file}: {exc}; nothing was imported", field="file", value=exc.text) from None
        _render(_fleet_obj().import_list(name, pfx, action=action, dst=dst, comment=comment,
                                         expected_revision=revision), as_json)

    run(body)


@fleet_app.command("remove-list")
def remove_list(name: str = typer.Argument(..., metavar="NAME"),
                revision: Optional[int] = RevOpt, as_json: bool = JsonOpt) -> None:
    """Remove a list from the fleet."""
    run(lambda: _render(_fleet_obj().remove_list(name, expected_revision=revision), as_json))


@fleet_app.command()
def status(as_json: bool = JsonOpt) -> None:
    """Every node of the fleet: in-sync, behind (with its lag) or gone."""
    def body():
        view = _fleet_obj().status()
        if as_json:
            emit_json(view.to_json())
            return
        t = Table(title=f"fleet {view.prefix} (revision {view.revision})")
        for col in ("node", "state", "applied", "lag", "health", "attachments"):
            t.add_column(col)
        for n in view.nodes:
            t.add_row(n.name, n.state, str(n.applied_revision), str(n.lag), n.health or "",
                      ", ".join(n.attachments))
        out.print(t)

    run(body)


@app.command()
def agent(etcd: str = EtcdOpt, node: Optional[str] = typer.Option(None, "--node", metavar="NAME",
                                                                  help="node name (default: hostname)"),
          prefix: str = PrefixOpt, ttl: int = typer.Option(10, "--ttl", metavar="SECONDS",
                                                           help="registration lease, seconds"),
          ca: Optional[str] = CaOpt, cert: Optional[str] = CertOpt, key: Optional[str] = KeyOpt,
          user: Optional[str] = UserOpt, password: Optional[str] = PassOpt) -> None:
    """Make this host's drop list follow the fleet's rule set in etcd (runs until stopped)."""
    from ..core.fleet.agent import Agent

    def body():
        with ctx() as c:
            a = Agent(c, _options(etcd, ca, cert, key, user, password), prefix, node or socket.gethostname(),
                      ttl=ttl, log=lambda s: err.print(f"xdpctl agent: {s}", markup=False, highlight=False))

            def stop(_sig, _frame):
                a.stop()
                raise KeyboardInterrupt

            signal.signal(signal.SIGTERM, stop)
            try:
                a.run()
            except KeyboardInterrupt:
                a.stop()

    run(body)
