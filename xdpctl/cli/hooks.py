"""CLI verbs for hooks: attach, detach, status, stats, probe."""

from __future__ import annotations

import time
from typing import Optional

import typer
from rich.live import Live
from rich.table import Table

from .app import app, ctx, emit_json, err, out, run
from ..core import counters as counters_mod
from ..core.hooks import Hooks, probe as probe_iface

HookOpt = typer.Option("xdp", "--hook", help="xdp | tc-ingress | tc-egress")
NetnsOpt = typer.Option(None, "--netns", help="network namespace of the interface (ip netns name)")


@app.command()
def attach(
    iface: str = typer.Argument(..., help="interface name"),
    program: str = typer.Option("counter", "--program", "-p", help="counter | droplist"),
    hook: str = HookOpt,
    mode: Optional[str] = typer.Option(None, "--mode", "-m", help="XDP mode: generic | native | offload | auto"),
    netns: Optional[str] = NetnsOpt,
    force: bool = typer.Option(False, "--force", help="replace a program xdpctl did not attach"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attach a classifier to a hook (adds it to the hook's chain; replaces it if present)."""

    def body():
        with ctx() as c:
            res = Hooks(c).attach(iface, program, hook, mode, netns, force)
        if as_json:
            emit_json({"netns": netns, "ifname": iface, "hook": hook, "program": program, "mode": res.mode,
                       "prog_id": res.prog_id, "root_id": res.root_id, "replaced": res.replaced,
                       "notes": res.notes})
            return
        for n in res.notes:
            err.print(f"xdpctl: {n}", markup=False, highlight=False)
        verb = "replaced" if res.replaced else "attached"
        mode_s = f" ({res.mode} mode)" if res.mode else ""
        out.print(f"{verb} {program} on {res.hook.label()}{mode_s}: prog id {res.prog_id}, root id {res.root_id}",
                  markup=False, highlight=False)

    run(body)


@app.command()
def detach(
    iface: str = typer.Argument(...),
    program: Optional[str] = typer.Option(None, "--program", "-p", help="stage to remove (default: all)"),
    hook: Optional[str] = typer.Option(None, "--hook", help="hook (default: every hook of the interface)"),
    netns: Optional[str] = NetnsOpt,
) -> None:
    """Remove a classifier (or all of xdpctl's) from an interface."""

    def body():
        with ctx() as c:
            removed = Hooks(c).detach(iface, program, hook, netns)
        for ref, name in removed:
            out.print(f"detached {name} from {ref.label()}", markup=False, highlight=False)

    run(body)


@app.command()
def status(
    netns: Optional[str] = typer.Option(None, "--netns", help="only this namespace"),
    all_ifaces: bool = typer.Option(False, "--all", "-a", help="also interfaces with nothing attached"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every interface with what is attached: hook, mode, program ids, owner, chain."""

    def body():
        with ctx() as c:
            c.kernel_ready()
            h = Hooks(c)
            if netns:
                nss = [netns]
            else:
                nss = h.managed_netns()
            rows = h.interfaces_status(nss)
        if not all_ifaces:
            rows = [r for r in rows if r["hooks"]]
        if as_json:
            emit_json(rows)
            return
        t = Table(title="xdpctl status", show_lines=False)
        for col in ("netns", "interface", "hook", "mode", "prog id", "name", "owner", "chain"):
            t.add_column(col)
        for r in rows:
            if not r["hooks"]:
                t.add_row(r["netns"] or "-", r["ifname"], "-", "-", "-", "-", "-", "-")
            for hk in r["hooks"]:
                chain = ", ".join(f"{s['slot']}:{s['program']}#{s['id']}" for s in hk["stages"]) or "-"
                t.add_row(r["netns"] or "-", r["ifname"], hk["hook"], hk["mode"] or "-", str(hk["id"]),
                          hk["name"] or "-", hk["owner"], chain)
        out.print(t)

    run(body)


def _stats_rows(hcs, prev=None, dt=None):
    rows = []
    prevmap = {}
    if prev:
        for hc in prev:
            for k, v in hc.proto.items():
                prevmap[(hc.hook, k)] = v
    for hc in hcs:
        for (l3, l4), (pk, by) in sorted(hc.proto.items()):
            r = {"netns": hc.hook.netns, "ifname": hc.hook.ifname, "hook": hc.hook.hook, "l3": l3, "l4": l4,
                 "packets": pk, "bytes": by}
            if prev is not None and dt:
                p0, b0 = prevmap.get((hc.hook, (l3, l4)), (0, 0))
                r["pps"] = (pk - p0) / dt
                r["bps"] = (by - b0) * 8 / dt
            rows.append(r)
    return rows


def _stats_table(rows, hcs, rates: bool) -> Table:
    t = Table(title="xdpctl stats (summed over CPUs)")
    for col in ("netns", "interface", "hook", "l3", "l4", "packets", "bytes"):
        t.add_column(col, justify="right" if col in ("packets", "bytes") else "left")
    if rates:
        t.add_column("pkt/s", justify="right")
        t.add_column("bit/s", justify="right")
    for r in rows:
        cells = [r["netns"] or "-", r["ifname"], r["hook"], r["l3"], r["l4"], f"{r['packets']:,}", f"{r['bytes']:,}"]
        if rates:
            cells += [f"{r.get('pps', 0):,.0f}", f"{r.get('bps', 0):,.0f}"]
        t.add_row(*cells)
    for hc in hcs:
        if hc.verdicts:
            v = ", ".join(f"{k}={p}" for k, (p, _b) in sorted(hc.verdicts.items()))
            t.caption = (t.caption + "\n" if t.caption else "") + f"{hc.hook.label()} droplist: {v}"
    return t


@app.command()
def stats(
    iface: Optional[str] = typer.Argument(None, help="only this interface"),
    netns: Optional[str] = typer.Option(None, "--netns"),
    watch: bool = typer.Option(False, "--watch", "-w", help="refresh every --interval seconds with rates"),
    interval: float = typer.Option(1.0, "--interval"),
    count: int = typer.Option(0, "--count", help="with --watch: stop after N refreshes (0 = until ^C)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Packet and byte counters per hook and protocol (totals, and rates with --watch)."""

    def body():
        with ctx() as c:
            c.kernel_ready()
            kw = {"netns": netns, "ifname": iface}
            if not watch:
                hcs = counters_mod.read_all(c, **kw)
                rows = _stats_rows(hcs)
                if as_json:
                    emit_json({"counters": rows, "droplist": [
                        {"netns": h.hook.netns, "ifname": h.hook.ifname, "hook": h.hook.hook,
                         "verdicts": {k: {"packets": p, "bytes": b} for k, (p, b) in h.verdicts.items()}}
                        for h in hcs if h.verdicts]})
                else:
                    out.print(_stats_table(rows, hcs, rates=False))
                return
            t0, prev = counters_mod.snapshot(c, **kw)
            n = 0
            with Live(console=out, auto_refresh=False, transient=False) as live:
                while True:
                    time.sleep(interval)
                    t1, cur = counters_mod.snapshot(c, **kw)
                    rows = _stats_rows(cur, prev, t1 - t0)
                    if as_json:
                        emit_json({"time": time.time(), "counters": rows})
                    else:
                        live.update(_stats_table(rows, cur, rates=True), refresh=True)
                    t0, prev = t1, cur
                    n += 1
                    if count and n >= count:
                        return

    run(body)


@app.command()
def probe(
    iface: str = typer.Argument(...),
    netns: Optional[str] = NetnsOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Which hooks and modes work on an interface, and why not (leaves it as it was)."""

    def body():
        with ctx() as c:
            res = probe_iface(c, iface, netns)
        if as_json:
            emit_json(res)
            return
        t = Table(title=f"probe {iface} (driver {res['driver']})")
        for col in ("hook", "mode", "works", "detail"):
            t.add_column(col)
        for r in res["results"]:
            works = {True: "yes", False: "no", None: "?"}[r["ok"]]
            t.add_row(r["hook"], r["mode"] or "-", works, r["detail"])
        out.print(t)

    run(body)
