"""CLI verbs for operators: lookup (which rule decides), apply (make the
rule set a file's; `export` writes such a file), dump (packet samples).

`lookup --json` is GET /v1/lookup; `apply --json` is POST /v1/apply's body.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from .app import app, ctx, emit_json, out, run, say
from .rules import JsonOpt, PortOpt, ProtoOpt, RevOpt


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
        say(f"{view.verdict} ({view.reason}): {'to' if dst else 'from'} {view.address}{l4}, "
             f"revision {view.revision}")
        say(_rule_words(view.rule) if view.rule else f"no rule matches: policy {view.policy}")

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
            say(f"{would}{verb} {_rule_words(r)}")
    for lv in view.lists:
        if lv.was is None:
            say(f"{would}create list {lv.name}: {lv.action} {lv.dir}, {lv.count} prefixes")
        else:
            say(f"{would}replace list {lv.name}: {lv.action} {lv.dir}, {lv.was} -> {lv.count} prefixes")
    for name in view.lists_removed:
        say(f"{would}remove list {name}")
    if view.policy:
        say(f"{would}set policy {view.policy}")
    if not view.changed:
        say(f"no changes: the rule set is the file's (revision {view.revision})")
    elif not view.dry_run:
        say(f"revision {view.revision}")


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
        with ctx(settle_later=True) as c:
            view = core_apply(DropList(c), text, dry_run=dry_run, expected_revision=revision)
        _render_apply(view, as_json)

    run(body)


def _clear_sampling(iface: str | None, netns: str | None, as_json: bool) -> None:
    from ..core.dump import clear_stale

    def body():
        with ctx() as c:
            view = clear_stale(c, iface, netns)
        if as_json:
            emit_json(view.to_json())
            return
        for f in view.cleared:
            say(f"cleared the sampling flag of {f.netns or '-'}/{f.ifname} {f.hook} (pid {f.pid} is gone)")
        say(f"{len(view.cleared)} stale sampling flags cleared")

    run(body)


def _stop_on_term() -> None:
    """SIGTERM ends a dump like Ctrl-C: the listener turns the hooks' sample
    stage off on its way out."""
    import signal

    def stop(_sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


@app.command()
def dump(
    iface: Optional[str] = typer.Argument(None, metavar="IFACE",
                                          help="an interface xdpctl classifies (default: every hook)"),
    netns: Optional[str] = typer.Option(None, "--netns", metavar="NS", help="the interface's network namespace"),
    reason: Optional[str] = typer.Option(None, "--reason", metavar="REASON",
                                         help="only this reason (as stats names them: drop_src, drop_policy, ...)"),
    every: bool = typer.Option(False, "--all", help="every packet the drop list decides, passed ones too"),
    count: Optional[int] = typer.Option(None, "--count", "-c", metavar="N", min=1, help="stop after N samples"),
    write: Optional[str] = typer.Option(None, "--write", "-w", metavar="FILE",
                                        help="write the samples as pcap (tcpdump -r reads it)"),
    rate: int = typer.Option(1, "--rate", metavar="N", min=1, max=2**32 - 1, help="sample 1 in N packets"),
    cap: int = typer.Option(1000, "--cap", metavar="N", min=1, max=2**32 - 1,
                            help="at most N samples per second on each CPU"),
    seconds: Optional[float] = typer.Option(None, "--seconds", metavar="S", min=0, help="stop after S seconds"),
    clear: bool = typer.Option(False, "--clear", help="listen to nothing: clear the sampling flags whose listener "
                                                      "is gone (what `xdpctl status` calls stale)"),
    as_json: bool = JsonOpt,
) -> None:
    """Samples of dropped packets (or all with --all) from the data path: one line each, or pcap with -w."""
    import time

    from ..core.dump import Listener, PcapWriter, hooks_to_sample, reasons_mask

    if clear:
        _clear_sampling(iface, netns, as_json)
        return

    def body():
        mask = reasons_mask(reason, every)
        with ctx() as c:
            hooks = hooks_to_sample(c, iface, netns)
            fh = open(write, "wb") if write else None
            pcap = PcapWriter(fh) if fh else None
            n, end = 0, time.monotonic() + seconds if seconds is not None else None
            _stop_on_term()
            try:
                with Listener(c, hooks, mask, rate, cap) as lst:
                    say(f"listening on {', '.join(h.label() for h in hooks)}", sys.stderr)
                    while (count is None or n < count) and (end is None or time.monotonic() < end):
                        got = lst.poll(100)
                        for s in got if count is None else got[:count - n]:
                            if pcap:
                                pcap.write(s)
                            else:
                                out.print(s.line(), markup=False, highlight=False, soft_wrap=True)
                            n += 1
            except KeyboardInterrupt:
                pass
            finally:
                if fh:
                    fh.close()
            say(f"{n} samples", sys.stderr)

    run(body)
