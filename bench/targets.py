"""The drop path's targets, each with what this run measured next to it.

Reported, never asserted: a missed target is a line in the table, not an
exit code. Every row is computed from the run's results; a row whose
measurement was not part of the run says so.
"""

from __future__ import annotations

XF_COUNT = 10_000    # addresses in the xdp-filter rows (its maps hold 10k)
BIG = 1_000_000      # rules in the traffic and cache-cold rows


def _ns(d: dict, key: str):
    v = d.get(key)
    return v["ns"] if isinstance(v, dict) else None


def _ratio(a, b):
    return None if a is None or not b else a / b


def _xf_rows(xf: dict) -> list[tuple]:
    """xdpctl vs xdp-filter: IP-only config, and default config above a
    trivial XDP_DROP."""
    out = []
    for r in xf.get("rows", []):
        if r.get("count") != XF_COUNT or "xdpctl" not in r:
            continue
        fam = f"IPv{r['family']}"
        for which in ("match", "miss"):
            x, ip, alw, drop = (_ns(r.get(k, {}), which) for k in ("xdpctl", "xdp_filter", "xdp_filter_all",
                                                                     "xdp_drop"))
            out.append((f"drop path / xdp-filter `-f ipv4,ipv6` (xdpfilt_alw_ip), {fam} 10k, {which}",
                        _ratio(x, ip), "<=", 1.0, f"{x} / {ip} ns"))
            above = None if None in (x, alw, drop) else _ratio(x - drop, alw - drop)
            out.append((f"drop path / xdp-filter default (xdpfilt_alw_all), cost above a trivial XDP_DROP, "
                        f"{fam} 10k, {which}", above, "<=", 0.5, f"({x} - {drop}) / ({alw} - {drop}) ns"))
    return out


def _traffic_rows(nf: dict) -> list[tuple]:
    out = []
    for r in nf.get("traffic", []):
        if r.get("count") != BIG:
            continue
        x, f = r.get("xdpctl-native", {}).get("pps"), r.get("floor-native", {}).get("pps")
        h = r.get("hash-native", {}).get("pps")
        a = r.get("array-native", {}).get("pps")
        out.append(("live frames, native XDP, counter + drop list, 1M rules: share of the drop-everything "
                    "floor (pps)", _ratio(x, f), ">=", 0.9,
                    "-" if None in (x, f) else f"{x / 1e6:.2f} / {f / 1e6:.2f} Mpps"
                    + ("" if None in (h, f) else f"; one plain hash lookup: {h / 1e6:.2f} Mpps = {h / f:.2f}x")
                    + ("" if None in (a, f)
                       else f"; one open-addressed array probe: {a / 1e6:.2f} Mpps = {a / f:.2f}x")))
    return out


# the cache-cold miss rows: spray key -> what its sources are
_COLD_MISSES = (("miss", "cache-cold miss"), ("wide", "cache-cold miss from 1M random sources"))


def _cold_rows(tr: dict) -> list[tuple]:
    out = []
    for e in tr.get("raw", []):
        sp = e.get("spray") or {}
        if e.get("count") != BIG or e.get("kind") != "exact" or not sp:
            continue
        for which, label in _COLD_MISSES:
            floor, x, lpm = _ns(sp, f"floor_{which}"), _ns(sp, f"xdpctl_{which}"), _ns(sp, f"lpm_{which}")
            if None in (x, lpm, floor):
                continue
            xn, ln = max(0.0, x - floor), max(0.0, lpm - floor)
            out.append((f"{label}, IPv{e['family']} 1M rules: xdpctl / plain LPM trie (ns above harness)",
                        _ratio(xn, ln) if ln else (0.0 if xn == 0 else None), "<=", 1.0,
                        f"{xn:.0f} / {ln:.0f} ns"))
    return out


def rows(results: dict) -> list[tuple]:
    """(what, measured ratio or None, comparison, target, figures)."""
    s = results.get("sections", {})
    out = _xf_rows(s.get("xdpfilter", {})) + _traffic_rows(s.get("nft", {})) + _cold_rows(s.get("testrun", {}))
    return out


def _shown(ratio: float, target: float) -> str:
    """A ratio to two decimals, or three where two would round it onto
    its target and hide on which side of it the run fell."""
    return f"{ratio:.3f}x" if f"{ratio:.2f}" == f"{target:.2f}" else f"{ratio:.2f}x"


def render(results: dict, table) -> str:
    body = []
    for what, ratio, cmp, target, figs in rows(results):
        if ratio is None:
            verdict, shown = "not measured", "-"
        else:
            met = ratio <= target if cmp == "<=" else ratio >= target
            verdict, shown = ("met" if met else "**missed**"), _shown(ratio, target)
        body.append([what, shown, f"{cmp} {target:.1f}x", verdict, figs])
    if not body:
        return "No target row was part of this run (the full run measures every one)."
    return table(["what", "measured", "target", "", "figures"], body, "lrrll")
