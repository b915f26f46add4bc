"""CLI verbs for fleet mode: `xdpctl agent` and the `xdpctl fleet` group.

Fleet mode is the global `--etcd URL[,URL] [--prefix /xdpctl/CLUSTER]` (or
$XDPCTL_ETCD): the ordinary verbs then write and read the fleet's set in etcd
(xdpctl.core.fleet.mode). `xdpctl fleet [--etcd URL] block|allow|unblock|
policy|import|remove-list` are the same verbs under the older spelling;
`xdpctl fleet status` shows every node; `xdpctl agent` makes this host follow
the fleet. docs/fleet.md describes the design.
"""

from __future__ import annotations

import signal
import socket
from typing import Optional

import typer
from rich.table import Table

from . import rules
from .app import app, ctx, emit_json, err, out, run, settings

fleet_app = typer.Typer(no_args_is_help=True, help="The fleet's rule set in etcd (the ordinary verbs under "
                                                   "--etcd), and its nodes.")
app.add_typer(fleet_app, name="fleet")

EtcdOpt = typer.Option(None, "--etcd", metavar="URL", help="etcd endpoints: URL[,URL...] (default: the global "
                                                           "--etcd, else $XDPCTL_ETCD)")
PrefixOpt = typer.Option(None, "--prefix", metavar="KEY", help="the fleet's key prefix: /xdpctl/CLUSTER")
CaOpt = typer.Option(None, "--etcd-ca", metavar="FILE", help="CA bundle to verify etcd's TLS certificate")
CertOpt = typer.Option(None, "--etcd-cert", metavar="FILE", help="client certificate for etcd")
KeyOpt = typer.Option(None, "--etcd-key", metavar="FILE", help="client certificate key for etcd")
UserOpt = typer.Option(None, "--etcd-user", metavar="NAME", help="etcd user (etcd auth)")
PassOpt = typer.Option(None, "--etcd-password", metavar="PASSWORD", help="etcd password")


def _fleet_settings(etcd, prefix, ca, cert, key, user, password):
    """The run's settings with these etcd options on top; fleet mode required."""
    from ..core.errors import ValidationError

    s = settings()
    for name, value in (("etcd", etcd), ("etcd_prefix", prefix), ("etcd_ca", ca), ("etcd_cert", cert),
                        ("etcd_key", key), ("etcd_user", user), ("etcd_password", password)):
        if value:
            setattr(s, name, value)
    if not s.etcd:
        raise ValidationError("fleet mode needs etcd endpoints", field="etcd", hint="give {field:etcd} URL")
    return s


@fleet_app.callback()
def _fleet(etcd: Optional[str] = EtcdOpt, prefix: Optional[str] = PrefixOpt, ca: Optional[str] = CaOpt,
           cert: Optional[str] = CertOpt, key: Optional[str] = KeyOpt, user: Optional[str] = UserOpt,
           password: Optional[str] = PassOpt) -> None:
    run(lambda: _fleet_settings(etcd, prefix, ca, cert, key, user, password))


for _name, _verb in (("block", rules.block), ("allow", rules.allow), ("unblock", rules.unblock),
                     ("policy", rules.policy), ("import", rules.import_), ("rules", rules.rules),
                     ("lists", rules.lists)):
    fleet_app.command(_name, help=f"`xdpctl --etcd URL {_name}`: {_verb.__doc__}")(_verb)


@fleet_app.command("remove-list")
def remove_list(name: str = typer.Argument(..., metavar="NAME"), revision: Optional[int] = rules.RevOpt,
                as_json: bool = rules.JsonOpt) -> None:
    """Remove a list from the fleet (`xdpctl --etcd URL unblock --list NAME`)."""
    rules.unblock(prefixes=None, dst=False, proto=None, port=None, ids=None, list_name=name, revision=revision,
                  as_json=as_json)


@fleet_app.command()
def status(as_json: bool = rules.JsonOpt) -> None:
    """Every node of the fleet: in-sync, behind (with its lag) or gone."""
    from ..core.fleet.mode import fleet_of

    def body():
        view = fleet_of(settings()).status()
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


def run_agent(c, node: str | None, ttl: int):
    """An Agent for this host over the settings' etcd (the caller runs it)."""
    from ..core.fleet.agent import Agent
    from ..core.fleet.mode import etcd_options

    s = c.settings
    return Agent(c, etcd_options(s), s.etcd_prefix, node or socket.gethostname(), ttl=ttl,
                 log=lambda line: err.print(f"xdpctl agent: {line}", markup=False, highlight=False))


@app.command()
def agent(etcd: Optional[str] = EtcdOpt, node: Optional[str] = typer.Option(None, "--node", metavar="NAME",
                                                                            help="node name (default: hostname)"),
          prefix: Optional[str] = PrefixOpt,
          ttl: int = typer.Option(10, "--ttl", metavar="SECONDS", help="registration lease, seconds"),
          ca: Optional[str] = CaOpt, cert: Optional[str] = CertOpt, key: Optional[str] = KeyOpt,
          user: Optional[str] = UserOpt, password: Optional[str] = PassOpt) -> None:
    """Make this host's drop list and load balancer follow the fleet's in etcd (runs until stopped)."""

    def body():
        _fleet_settings(etcd, prefix, ca, cert, key, user, password)
        with ctx() as c:
            a = run_agent(c, node, ttl)

            def stop(_sig, _frame):
                a.stop()
                raise KeyboardInterrupt

            signal.signal(signal.SIGTERM, stop)
            try:
                a.run()
            except KeyboardInterrupt:
                a.stop()

    run(body)
