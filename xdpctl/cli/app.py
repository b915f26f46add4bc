"""xdpctl command line: the typer app, global options, output and error rendering.

Every command parses its arguments, calls one core function and renders the
result (a rich table, or JSON with --json). Errors are one line on stderr
and a non-zero exit code (see xdpctl/core/errors.py for the codes).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Optional

import typer
import typer.core

from ..core.errors import XdpctlError
from . import coerce
from .verbs import LazyVerbs

if TYPE_CHECKING:  # loaded when a verb asks for its settings
    from ..config import Settings
    from ..core.context import Context

_typed_argument = typer.core.TyperArgument.display_type_rich


def _argument_words(self, ctx):
    """An argument with a metavar (IFACE, PREFIX, FILE) is shown by that
    word alone in help; typer would add its Python type (``<str>``)."""
    return None if self.metavar is not None else _typed_argument(self, ctx)


typer.core.TyperArgument.display_type_rich = _argument_words
_usage_name = getattr(typer.core.TyperArgument, "_usage_display_name", None)


def _usage_words(self) -> str:
    """A required argument appears in the usage line as its word (FILE), as
    help lists it; recent typer versions wrap it in braces ({FILE})."""
    name = _usage_name(self)
    return name.replace("{", "", 1).replace("}", "", 1) if self.required else name


if _usage_name is not None:
    typer.core.TyperArgument._usage_display_name = _usage_words

# Plain values skip typer's per-parameter pydantic adapters (coerce.py).
coerce.install(getattr(typer.core, "_TyperParameter", object))

app = typer.Typer(
    cls=LazyVerbs,
    add_completion=False,
    no_args_is_help=True,
    help="Control XDP and TC classifiers: protocol counters and drop lists.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


class LazyConsole:
    """A rich Console made on first use (tables, live views, progress):
    importing rich costs every run start-up time that plain lines do not need."""

    def __init__(self, stderr: bool, width: int):
        self._stderr, self._width, self._console = stderr, width, None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            tty = (sys.stderr if self._stderr else sys.stdout).isatty()
            self._console = Console(stderr=self._stderr, width=None if tty else self._width)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)


out = LazyConsole(stderr=False, width=160)
err = LazyConsole(stderr=True, width=400)


def say(text: str, stream=None) -> None:
    """One line as it is (no markup, no highlighting, no wrapping), on
    stdout or ``stream``."""
    (stream or sys.stdout).write(text + "\n")


class Global:
    overrides: dict[str, str] = {}   # the global options given
    settings: Settings | None = None
    # A whole-image change's catch-up of the other rule set: handed to a
    # child process when the command ends (main(), not an in-process run),
    # unless --settle; pending here until then.
    detach = False
    settle = False
    deferring: list = []             # the contexts that may leave a catch-up (Context.pending_catch_up)


@app.callback()
def _global(
    pin_dir: Optional[str] = typer.Option(None, "--pin-dir", metavar="DIR",
                                          help="bpffs directory for xdpctl's pins "
                                               "(default: $XDPCTL_PIN_DIR, else /sys/fs/bpf/xdpctl)"),
    state_dir: Optional[str] = typer.Option(None, "--state-dir", metavar="DIR",
                                            help="directory of the state database "
                                                 "(default: $XDPCTL_STATE_DIR, else /var/lib/xdpctl)"),
    etcd: Optional[str] = typer.Option(None, "--etcd", metavar="URL[,URL]",
                                       help="fleet mode: write and read the rule set and the load balancer's "
                                            "VIPs in etcd (default: $XDPCTL_ETCD; docs/fleet.md)"),
    etcd_prefix: Optional[str] = typer.Option(None, "--prefix", "--etcd-prefix", metavar="KEY",
                                              help="fleet mode: the fleet's key prefix, /xdpctl/CLUSTER "
                                                   "(default: $XDPCTL_ETCD_PREFIX, else /xdpctl/default)"),
    etcd_ca: Optional[str] = typer.Option(None, "--etcd-ca", metavar="FILE", help="CA verifying etcd's certificate"),
    etcd_cert: Optional[str] = typer.Option(None, "--etcd-cert", metavar="FILE", help="client certificate for etcd"),
    etcd_key: Optional[str] = typer.Option(None, "--etcd-key", metavar="FILE", help="its key"),
    etcd_user: Optional[str] = typer.Option(None, "--etcd-user", metavar="NAME", help="etcd user (etcd auth)"),
    etcd_password: Optional[str] = typer.Option(None, "--etcd-password", metavar="PASSWORD",
                                                help="etcd password (prefer $XDPCTL_ETCD_PASSWORD)"),
    settle: bool = typer.Option(False, "--settle",
                                help="return only once both rule sets hold the change (by default a command "
                                     "that rewrote a whole rule set returns once the change is enforced, and a "
                                     "child process brings the standby set up to it; the next writer waits)"),
) -> None:
    given = (("pin_dir", pin_dir), ("state_dir", state_dir), ("etcd", etcd), ("etcd_prefix", etcd_prefix),
             ("etcd_ca", etcd_ca), ("etcd_cert", etcd_cert), ("etcd_key", etcd_key), ("etcd_user", etcd_user),
             ("etcd_password", etcd_password))
    Global.overrides = {name: value for name, value in given if value}
    Global.settings = None
    Global.settle = settle


def settings() -> Settings:
    """The run's settings (environment, then the global options), read
    when a verb first asks: a verb that needs none (version) never loads
    them, and a bad ``XDPCTL_*`` value fails the verbs that use it."""
    if Global.settings is None:
        from ..config import load_settings

        s = load_settings()
        for name, value in Global.overrides.items():
            setattr(s, name, value)
        Global.settings = s
    return Global.settings


def ctx(settle_later: bool = False) -> Context:
    """The command's context. ``settle_later``: a change that rewrites a
    whole rule set leaves the other set's catch-up to a child process
    started as the command ends (hand_off()), when run as the xdpctl
    command and without --settle."""
    from ..core.context import Context

    run_pending()  # a second context of one command starts from both sets in sync
    c = Context(settings())
    if settle_later and Global.detach and not Global.settle:
        c.defer_catch_up = True
        Global.deferring.append(c)
    return c


def _pending() -> list:
    """The catch-ups the command's contexts left, as (settings, job), taken."""
    jobs = [(c.settings, c.pending_catch_up) for c in Global.deferring if c.pending_catch_up is not None]
    for c in Global.deferring:
        c.pending_catch_up = None
    Global.deferring = []
    return jobs


def run_pending() -> None:
    """Run the catch-ups left so far, in this process."""
    jobs = _pending()
    if jobs:
        from ..core.rules import handoff

        for s, job in jobs:
            handoff.run(s, job)


def hand_off() -> None:
    """As the command ends: the last catch-up left to a child process of
    its own (earlier ones, if any, first, here)."""
    jobs = _pending()
    if jobs:
        from ..core.rules import handoff

        *first, (s, job) = jobs
        for s0, job0 in first:
            handoff.run(s0, job0)
        try:
            handoff.detach(s, job)
        except OSError as exc:  # no fork: the catch-up runs here
            say(f"xdpctl: note: catching up the standby rule set here ({exc})", sys.stderr)
            handoff.run(s, job)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


# REST field names that the CLI spells differently from ``--FIELD``.
FLAG_NAMES: dict[str, str] = {
    "dst": "--dst",
    "prefix": "PREFIX",
    "prefixes": "PREFIX",
    "ifname": "IFACE",
    "program": "--program",
    "ids": "--id",
    "id": "--id",
    "name": "--list",
    "file": "FILE",
    "address": "ADDR",
}


def flag_word(field: str) -> str:
    """A core error's field, as this CLI names it."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def action_word(action: str) -> str:
    """A core error's ``{action:x}``, as a command to type."""
    return f"`xdpctl {action}`"


def error_line(exc: XdpctlError) -> str:
    return f"xdpctl: error: {exc.render(flag_word, action_word)}"


def run(fn):
    """Run a command body; XdpctlError -> one line on stderr + its exit code."""
    try:
        return fn()
    except XdpctlError as exc:
        say(error_line(exc), sys.stderr)
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130)
