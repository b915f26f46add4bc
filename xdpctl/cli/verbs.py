"""Which module holds each verb, and the command group that loads it on use.

A run imports only the module of the verb it runs (``xdpctl block`` loads
rules.py and what its body needs, never the netlink, etcd or REST code);
the help and a mistyped verb load every module, so ``xdpctl --help`` lists
all of them and a typo still gets suggestions.
tests/unit/test_cli_imports.py checks this table against the modules.
"""

from __future__ import annotations

import importlib

import typer.core
import typer.main

# Modules in the order their verbs appear in the help.
MODULES = ("rules", "fleet", "hooks", "lb", "ops", "system")

VERBS: dict[str, str] = {
    **dict.fromkeys(("block", "allow", "unblock", "rules", "lists", "import", "export", "policy", "revision",
                     "expire"), "rules"),
    **dict.fromkeys(("agent", "fleet"), "fleet"),
    **dict.fromkeys(("attach", "detach", "status", "stats", "probe"), "hooks"),
    "lb": "lb",
    **dict.fromkeys(("lookup", "apply", "dump"), "ops"),
    **dict.fromkeys(("restore", "serve", "version"), "system"),
}


class LazyVerbs(typer.core.TyperGroup):
    """The top-level group: a verb's module is imported when it is asked for."""

    def _load(self, modules) -> None:
        from .app import app

        for name in modules:
            importlib.import_module(f"{__package__}.{name}")
        # typer builds click commands from what the modules registered on app
        self.commands.update(typer.main.get_command(app).commands)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands:
            module = VERBS.get(cmd_name)
            self._load((module,) if module else MODULES)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx) -> list[str]:
        self._load(MODULES)
        return super().list_commands(ctx)
