"""CLI verbs for operators: lookup (which rule decides), apply (make the
rule set a file's; `export` writes such a file), dump (packet samples).

`lookup --json` is GET /v1/lookup; `apply --json` is POST /v1/apply's body.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from .app import app, ctx, emit_json, out, run
from .rules import JsonOpt, PortOpt, ProtoOpt, RevOpt


def _say(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def _rule_words(r) -> str:
    """'rule 7: deny 10.0.0.0/8 (dst) tcp/22 # note'; a rule without an id
    yet (a dry run's addition): 'rule: ...'."""
    where = r.prefix or "any"
    l4 = f" {r.proto}/{r.port}" if r.proto else ""
    side = " (dst)" if r.dir == "dst" else ""
    member = f" (member of list {r.list})" if r.list else ""
    note = f" # {r.comment}" if r.comment else ""
    rid = f" {r.id}" if r.id else ""
    return f"rule{rid}{member}: {r.action} {where}{side}{l4}{' mgmt' if r.mgmt else ''}{note}"


@app.command()
def lookup(
    address: str = typer.Argument(..., metavar="ADDR", help="an IPv4 or IPv6 address"),
    dst: bool = typer.Option(False, "--dst", help="the address is the packet's destination (default: source)"),
    proto: Optional[str] = ProtoOpt, port: Optional[str] = PortOpt, as_json: bool = JsonOpt,
) -> None:
    """Which rule decides a packet from ADDR (to it with --dst): the verdict and the rule or list member."""
    from ..core.rules.lookup import lookup as core_lookup
    from ..core.rules.service import DropList

    def body():
        with ctx() as c:
            view = core_lookup(DropList(c), address, dst=dst, proto=proto, port=port)
        if as_json:
            emit_json(view.to_json())
            return
        l4 = f" {view.proto}" + (f"/{view.port}" if view.port else "") if view.proto else ""
        _say(f"{view.verdict} ({view.reason}): {'to' if dst else 'from'} {view.address}{l4}, "
             f"revision {view.revision}")
        _say(_rule_words(view.rule) if view.rule else f"no rule matches: policy {view.policy}")

    run(body)


def _read_file(file: str) -> str:
    from ..core.errors import ValidationError

    if file == "-":
        return sys.stdin.read()
    if not os.path.isfile(file):
        raise ValidationError(f"{file}: no such file", field="file", value=file)
    with open(file, encoding="utf-8") as fh:
        return fh.read()


def _render_apply(view, as_json: bool) -> None:
    if as_json:
        emit_json(view.to_json())
        return
    would = "would " if view.dry_run else ""
    for verb, rules in (("add", view.added), ("update", view.updated), ("remove", view.removed)):
        for r in rules:
            _say(f"{would}{verb} {_rule_words(r)}")
    for lv in view.lists:
        if lv.was is None:
            _say(f"{would}create list {lv.name}: {lv.action} {lv.dir}, {lv.count} prefixes")
        else:
            _say(f"{would}replace list {lv.name}: {lv.action} {lv.dir}, {lv.was} -> {lv.count} prefixes")
    for name in view.lists_removed:
        _say(f"{would}remove list {name}")
    if view.policy:
        _say(f"{would}set policy {view.policy}")
    if not view.changed:
        _say(f"no changes: the rule set is the file's (revision {view.revision})")
    elif not view.dry_run:
        _say(f"revision {view.revision}")


@app.command()
def apply(
    file: str = typer.Argument(..., metavar="FILE", help="a rule-set file (as `xdpctl export` writes); '-' reads "
                                                        "stdin"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the changes and change nothing"),
    revision: Optional[int] = RevOpt, as_json: bool = JsonOpt,
) -> None:
    """Make the rule set the file's: rules, lists and policy, all or nothing, as one revision."""
    from ..core.ruleset_io import apply as core_apply
    from ..core.rules.service import DropList

    def body():
        text = _read_file(file)
        with ctx() as c:
            view = core_apply(DropList(c), text, dry_run=dry_run, expected_revision=revision)
        _render_apply(view, as_json)

    run(body)

