"""CLI verbs for hooks: attach, detach, status, stats, probe.

Each prints the core's view: with --json exactly ``view.to_json()`` (the
body of the matching REST call), else a table or a line for people, where
an absent value shows as "-".
"""

from __future__ import annotations

import itertools
import json
import sys
from typing import Optional

import typer
from rich.live import Live
from rich.table import Table

from ..core import counters
from ..core import hooks as core_hooks
from ..core.views import StatsView, StatusView
from .app import action_word, app, ctx, emit_json, err, out, run

HookOpt = typer.Option("xdp", "--hook", metavar="HOOK", help="xdp | tc-ingress | tc-egress")
NetnsOpt = typer.Option(None, "--netns", metavar="NS", help="network namespace of the interface (ip netns name)")
JsonOpt = typer.Option(False, "--json", help="print the resource as JSON (the REST body)")


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


@app.command()
def attach(
    iface: str = typer.Argument(..., metavar="IFACE", help="interface name"),
    program: str = typer.Option("counter", "--program", "-p", metavar="PROGRAM",
                                help="counter | droplist | lb (lb: xdp and tc-ingress only)"),
    hook: str = HookOpt,
    mode: Optional[str] = typer.Option(None, "--mode", "-m", metavar="MODE",
                                       help="XDP mode: generic | native | offload | auto"),
    netns: Optional[str] = NetnsOpt,
    force: bool = typer.Option(False, "--force", help="replace a program xdpctl did not attach"),
    as_json: bool = JsonOpt,
) -> None:
    """Attach a classifier to a hook (adds it to the hook's chain; replaces it if present)."""

    def body():
        with ctx() as c:
            view = core_hooks.attach(c, iface, program, hook, mode, netns, force)
        if as_json:
            emit_json(view.to_json())
            return
        for n in view.notes:
            err.print(f"xdpctl: {n}", markup=False, highlight=False)
        verb = "replaced" if view.replaced else "attached"
        where = f"{view.netns}/" if view.netns else ""
        mode_s = f" ({view.mode} mode)" if view.mode else ""
        out.print(f"{verb} {program} on {where}{view.ifname} {view.hook}{mode_s}: prog id {view.prog_id}, "
                  f"root id {view.root_id}", markup=False, highlight=False)

    run(body)


@app.command()
def detach(
    iface: str = typer.Argument(..., metavar="IFACE"),
    program: Optional[str] = typer.Option(None, "--program", "-p", metavar="PROGRAM",
                                          help="stage to remove (default: all)"),
    hook: Optional[str] = typer.Option(None, "--hook", metavar="HOOK",
                                       help="hook (default: every hook of the interface)"),
    netns: Optional[str] = NetnsOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove a classifier (or all of xdpctl's) from an interface."""

    def body():
        with ctx() as c:
            view = core_hooks.detach(c, iface, program, hook, netns)
        if as_json:
            emit_json(view.to_json())
            return
        for d in view.removed:
            where = f"{d.netns}/" if d.netns else ""
            out.print(f"detached {d.program} from {where}{d.ifname} {d.hook}", markup=False, highlight=False)

    run(body)


@app.command()
def status(
    netns: Optional[str] = typer.Option(None, "--netns", metavar="NS", help="only this namespace"),
    all_ifaces: bool = typer.Option(False, "--all", "-a", help="also interfaces with nothing attached"),
    as_json: bool = JsonOpt,
) -> None:
    """Every interface with what is attached: hook, mode, program ids, owner, chain."""

    def body():
        with ctx() as c:
            view = core_hooks.status(c, netns, all_ifaces)
        if as_json:
            emit_json(view.to_json())
            return
        table, missing = _status_table(view, netns)
        if view.interfaces or missing:
            out.print(table)
        elif table.caption:
            out.print(table.caption, markup=False, highlight=False)
        if not missing and not any(r.hooks for r in view.interfaces):
            out.print(f"nothing attached; {action_word('attach')} IFACE attaches a classifier",
                      markup=False, highlight=False)

    run(body)


def _status_table(view: StatusView, netns: str | None) -> tuple[Table, list]:
    """The table, and the recorded attachments the kernel does not run."""
    t = Table(title="xdpctl status", show_lines=False)
    for col in ("netns", "interface", "hook", "mode", "prog id", "name", "tag", "owner", "chain"):
        t.add_column(col)
    for r in view.interfaces:
        if not r.hooks:
            t.add_row(_cell(r.netns), r.ifname, "-", "-", "-", "-", "-", "-", "-")
        for hk in r.hooks:
            chain = ", ".join(f"{s.slot}:{s.program}#{s.id}" for s in hk.stages) or "-"
            t.add_row(_cell(r.netns), r.ifname, hk.hook, _cell(hk.mode), _cell(hk.id), _cell(hk.name),
                      _cell(hk.tag), hk.owner, chain)
    missing = [a for a in view.recorded if not a.attached and (netns is None or a.netns == netns)]
    for a in missing:
        t.add_row(_cell(a.netns), a.ifname, a.hook, _cell(a.mode), "-", "-", "-", "recorded, not attached",
                  a.program)
    notes = [f"namespace {ns} is gone; its pins remain" for ns in view.unreachable]
    notes += [f"sampling on {_cell(f.netns)}/{f.ifname} {f.hook} is set for pid {f.pid}, which is gone: the hook "
              f"still spends the sampling cost until the next dump takes it over or "
              f"{action_word('dump --clear')} clears it" for f in view.sampling if not f.listener_alive]
    if missing or any(hk.id is None for r in view.interfaces for hk in r.hooks):
        notes.append(f"{action_word('restore')} re-attaches what is recorded but not attached")
    t.caption = "\n".join(notes) or None
    return t, missing


def scaled(value: float, unit: str, prefixes: str = "kMG") -> str:
    """A rate for people: 999 pkt/s, 1.5 kpkt/s, 12.3 Mbit/s, 1.00 Gbit/s."""
    if value < 999.5:
        return f"{value:.0f} {unit}"
    for i, p in enumerate(prefixes, 1):
        v = value / 1000 ** i
        if v < 999.5 or i == len(prefixes):
            return f"{v:.3g} {p}{unit}" if v < 999.5 else f"{v:,.0f} {p}{unit}"
    raise AssertionError("unreachable")


def _stats_table(view: StatsView) -> Table:
    rates = any(h.rates for h in view.hooks)
    t = Table(title="xdpctl stats (summed over CPUs)")
    for col in ("netns", "interface", "hook", "l3", "l4", "packets", "bytes"):
        t.add_column(col, justify="right" if col in ("packets", "bytes") else "left")
    if rates:
        t.add_column("packet rate", justify="right")
        t.add_column("bit rate", justify="right")
    captions = []
    for h in view.hooks:
        per_proto = {(r.l3, r.l4): r for r in h.rates.protocols} if h.rates else {}
        if not h.protocols:  # attached, nothing counted yet
            t.add_row(*[_cell(h.netns), h.ifname, h.hook, "-", "-", "0", "0"] + (["0", "0"] if rates else []))
        for p in h.protocols:
            cells = [_cell(h.netns), h.ifname, h.hook, p.l3, p.l4, f"{p.packets:,}", f"{p.bytes:,}"]
            if rates:
                r = per_proto.get((p.l3, p.l4))
                cells += ([scaled(r.packets_per_s, "pkt/s", "kM"), scaled(r.bits_per_s, "bit/s")] if r
                          else ["-", "-"])
            t.add_row(*cells)
        if h.verdicts:
            v = ", ".join(f"{k}={c.packets}" for k, c in h.verdicts.items())
            where = f"{h.netns}/" if h.netns else ""
            captions.append(f"{where}{h.ifname} {h.hook} droplist: {v}")
    t.caption = "\n".join(captions) or None
    return t


@app.command()
def stats(
    iface: Optional[str] = typer.Argument(None, metavar="IFACE", help="only this interface"),
    netns: Optional[str] = typer.Option(None, "--netns", metavar="NS"),
    watch: bool = typer.Option(False, "--watch", "-w", help="refresh every --interval seconds with rates"),
    interval: float = typer.Option(1.0, "--interval", metavar="SECONDS"),
    count: int = typer.Option(0, "--count", metavar="N", help="with --watch: stop after N refreshes (0 = until ^C)"),
    as_json: bool = typer.Option(False, "--json", help="print the resource as JSON (the REST body); with "
                                                       "--watch one compact document per line"),
    reset: bool = typer.Option(False, "--reset", help="zero the counters of the hooks selected, then show them"),
    hook: Optional[str] = typer.Option(None, "--hook", metavar="HOOK", help="with --reset: only this hook"),
    rules: bool = typer.Option(False, "--rules", help="with --reset: zero every rule's hit counter too"),
) -> None:
    """Packet and byte counters per hook and protocol (totals, and rates with --watch)."""

    def body():
        with ctx() as c:
            if reset:
                view = counters.reset(c, netns, iface, hook, rules)
                if as_json:
                    emit_json(view.to_json())
                else:
                    out.print(_stats_table(view))
                return
            if not watch:
                view = counters.stats(c, netns, iface)
                if as_json:
                    emit_json(view.to_json())
                else:
                    out.print(_stats_table(view))
                return
            samples = counters.watch(c, netns, iface, interval)
            if count:
                samples = itertools.islice(samples, count)
            if as_json:
                for view in samples:
                    sys.stdout.write(json.dumps(view.to_json(), separators=(",", ":")) + "\n")
                    sys.stdout.flush()
                return
            if not sys.stdout.isatty():  # a log or a pipe: every frame, one table per interval
                for view in samples:
                    out.print(_stats_table(view))
                    sys.stdout.flush()
                return
            with Live(console=out.console, auto_refresh=False, transient=False) as live:
                for view in samples:
                    live.update(_stats_table(view), refresh=True)

    run(body)


@app.command()
def probe(
    iface: str = typer.Argument(..., metavar="IFACE"),
    netns: Optional[str] = NetnsOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Which hooks and modes work on an interface, and why not (leaves it as it was)."""

    def body():
        with ctx() as c:
            view = core_hooks.probe(c, iface, netns)
        if as_json:
            emit_json(view.to_json())
            return
        t = Table(title=f"probe {iface} (driver {view.driver})")
        for col in ("hook", "mode", "works", "detail"):
            t.add_column(col)
        for r in view.results:
            works = {True: "yes", False: "no", None: "?"}[r.ok]
            t.add_row(r.hook, _cell(r.mode), works, r.detail)
        out.print(t)

    run(body)
