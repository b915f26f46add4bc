"""CLI verbs for the whole system: restore, serve, version."""

from __future__ import annotations

import socket
from typing import Optional

import typer

from .. import __version__
from .app import app, ctx, emit_json, err, out, run, say, settings


@app.command()
def restore(as_json: bool = typer.Option(False, "--json")) -> None:
    """Rebuild programs, attachments and map contents from the state database
    (after a reboot, or when bpffs was emptied), repairing drift. Exits 13
    when some attachment could not be restored (each one is named)."""
    from ..core.restore import PARTIAL_EXIT, restore as do_restore

    def body():
        with ctx() as c:
            rep = do_restore(c)
        if as_json:
            emit_json(rep.to_json())
        else:
            for line in rep.log:
                out.print(line, markup=False, highlight=False)
        if rep.errors:
            raise typer.Exit(PARTIAL_EXIT)

    run(body)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDR", help="listen address (loopback by default)"),
    port: int = typer.Option(8077, "--port", metavar="PORT"),
    token: Optional[str] = typer.Option(None, "--token", metavar="TOKEN",
                                        help="bearer token (visible to every local user in the process list: "
                                             "prefer --token-file)"),
    token_file: Optional[str] = typer.Option(None, "--token-file", metavar="FILE",
                                             help="file holding the bearer token (default: "
                                                  "$XDPCTL_API_TOKEN_FILE, $XDPCTL_API_TOKEN, else the file "
                                                  "api-token in the state directory, generated if missing)"),
    etcd: Optional[str] = typer.Option(None, "--etcd", metavar="URL[,URL]",
                                       help="fleet mode: REST changes and reads of the desired set go to etcd"),
    prefix: Optional[str] = typer.Option(None, "--prefix", metavar="KEY", help="fleet mode: the fleet's key prefix"),
    agent: bool = typer.Option(False, "--agent", help="fleet mode: also run this host's agent in the service"),
    node: Optional[str] = typer.Option(None, "--node", metavar="NAME", help="the agent's node name (default: "
                                                                           "hostname)"),
) -> None:
    """Run the REST API (FastAPI under uvicorn): rules, lists, policy, attachments, counters, /metrics."""

    def body():
        # Imported here: the CLI does not load the service unless asked to.
        from ..api.app import serve as run_server
        from ..core.errors import ValidationError

        if token and token_file:
            raise ValidationError("give {field:token} or {field:token_file}, not both", field="token")
        if token:
            err.print("xdpctl: warning: --token is readable by every local user (ps, /proc); "
                      "use --token-file or $XDPCTL_API_TOKEN_FILE", markup=False, highlight=False)
        s = settings()
        if token_file:
            s.api_token_file = token_file
            s.api_token = None
        if etcd:
            s.etcd = etcd
        if prefix:
            s.etcd_prefix = prefix
        run_server(s, host=host, port=port, token=token,
                   agent_node=(node or socket.gethostname()) if agent else None)

    run(body)


@app.command()
def version() -> None:
    """Print the version."""
    say(f"xdpctl {__version__}")
