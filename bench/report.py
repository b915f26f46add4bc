"""Results -> Markdown tables (bench/results/latest.md and stdout)."""

from __future__ import annotations

from . import targets

TARGET_RATIO = 1.5
TARGET_IMPORT_S = 2.0


def _n(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k"
    return str(count)


def _ns(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _x(v, base) -> str:
    if v is None or not base:
        return "-"
    return f"{v / base:.2f}x"


def _s(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or ("l" * 3 + "r" * (len(headers) - 3))
    sep = ["---:" if a == "r" else ":---" for a in align.ljust(len(headers), "r")]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def _get(d: dict, key: str):
    v = d.get(key)
    return v["ns"] if isinstance(v, dict) else None


def _by_set(raw: list[dict]) -> dict:
    base = {}
    for e in raw:
        k = (e["family"], e["kind"])
        if k not in base or e["count"] < base[k]["count"]:
            base[k] = e
    return base


# ---------------------------------------------------------------------------
def _ok(entries: list[dict]) -> list[dict]:
    return [e for e in entries if "failed" not in e]


def drop_path(res: dict, cfg: dict) -> str:
    raw = _ok(res["raw"])
    base = _by_set(raw)
    rows = []
    worst = {}
    for e in raw:
        b = base[(e["family"], e["kind"])]
        x, bx = e["xdpctl"], b["xdpctl"]
        cm, cmi = _get(x, "chain_match"), _get(x, "chain_miss")
        rows.append([f"IPv{e['family']}", e["kind"], _n(e["count"]),
                     _ns(cm), _x(cm, _get(bx, "chain_match")),
                     _ns(cmi), _x(cmi, _get(bx, "chain_miss")),
                     _ns(_get(x, "chain_prefix")),
                     _s(e.get("xdpctl_load_s"), 1)])
        if e["count"] == max(r["count"] for r in raw):
            for k in ("chain_match", "chain_miss"):
                if _get(x, k) and _get(bx, k):
                    worst[(e["family"], e["kind"], k)] = _get(x, k) / _get(bx, k)
    out = [table(["family", "set", "rules", "hook match", "×1", "miss", "×1", "prefix match", "load s"], rows)]
    if worst:
        top = max(worst.values())
        biggest = max(r["count"] for r in raw)
        verdict = "met" if top <= TARGET_RATIO else "MISSED"
        out.append(f"\nTarget ≤ {TARGET_RATIO}x at {_n(biggest)} vs 1 rule (hook program, match and miss): "
                   f"**{verdict}**, worst {top:.2f}x.")
    return "\n".join(out)


def lpm(res: dict, cfg: dict) -> str:
    raw = _ok(res["raw"])
    base = _by_set(raw)
    rows = []
    for e in raw:
        b = base[(e["family"], e["kind"])]
        l, bl = e["lpm"], b["lpm"]
        m, mi = _get(l, "match"), _get(l, "miss")
        xm = _get(e["xdpctl"], "chain_match")
        rows.append([f"IPv{e['family']}", e["kind"], _n(e["count"]),
                     _ns(m), _x(m, _get(bl, "match")), _ns(mi), _x(mi, _get(bl, "miss")),
                     _ns(_get(l, "prefix")), _x(xm, m), _s(e.get("lpm_load_s"), 2)])
    return table(["family", "set", "rules", "LPM match", "×1", "LPM miss", "×1", "prefix match",
                  "xdpctl/LPM (match)", "trie load s"], rows)


def spray(res: dict, cfg: dict) -> str:
    raw = [e for e in _ok(res["raw"]) if e.get("spray")]
    if not raw:
        return ""
    base = _by_set(raw)
    rows = []

    def net(sp, t, which):
        v, f = _get(sp, f"{t}_{which}"), _get(sp, f"floor_{which}")
        return None if v is None or f is None else max(0.0, v - f)

    for e in raw:
        sp, bsp = e["spray"], base[(e["family"], e["kind"])]["spray"]
        xm, lm, xmi, lmi = (net(sp, "xdpctl", "match"), net(sp, "lpm", "match"),
                            net(sp, "xdpctl", "miss"), net(sp, "lpm", "miss"))
        xw, lw = net(sp, "xdpctl", "wide"), net(sp, "lpm", "wide")
        rows.append([f"IPv{e['family']}", e["kind"], _n(e["count"]), f"{sp.get('match_n', 0):,}",
                     _ns(xm), _x(xm, net(bsp, "xdpctl", "match")), _ns(lm), _x(lm, net(bsp, "lpm", "match")),
                     _x(xm, lm),
                     _ns(xmi), _x(xmi, net(bsp, "xdpctl", "miss")), _ns(lmi), _x(lmi, net(bsp, "lpm", "miss")),
                     _x(xmi, lmi), _ns(xw), _ns(lw), _x(xw, lw), _ns(_get(sp, "floor_match"))])
    return table(["family", "set", "rules", "distinct sources", "xdpctl match", "×1", "LPM match", "×1",
                  "xdpctl/LPM", "xdpctl miss", "×1", "LPM miss", "×1", "xdpctl/LPM",
                  "xdpctl wide miss", "LPM wide miss", "xdpctl/LPM", "harness ns"], rows)


def sizing(res: dict, cfg: dict) -> str:
    rows = []
    for e in _ok(res.get("sizing", [])):
        def cold(label, which):
            v, f = _get(e[label], f"cold_{which}"), _get(e, f"floor_{which}")
            return None if v is None or f is None else max(0.0, v - f)

        cap = e["capacity"]
        bands = ("xc_v4_l32", "xc_v4_l24") if e["family"] == 4 else ("xc_v6_l128", "xc_v6_l64", "xc_v6_l48", "xc_v6_l32")
        caps = ", ".join(f"{b[3:]} {cap.get(b, 0):,}" for b in bands)
        rows.append([f"IPv{e['family']}", e["kind"], _n(e["count"]),
                     _ns(cold("default", "match")), _ns(cold("sized", "match")),
                     _ns(cold("default", "miss")), _ns(cold("sized", "miss")),
                     _ns(_get(e["default"], "warm_miss")), _ns(_get(e["sized"], "warm_miss")), caps])
    return table(["family", "set", "rules", "cold match, default maps", "cold match, sized maps",
                  "cold miss, default", "cold miss, sized", "warm miss, default", "warm miss, sized",
                  "sized capacities (entries)"], rows)


def attribution(res: dict, cfg: dict) -> str:
    p = res.get("probes", {})
    raw = _ok(res["raw"])
    rows = []
    for fam in (4, 6):
        if f"empty_v{fam}" not in p:
            continue
        empty = p[f"empty_v{fam}"]["ns"]
        e1 = next((e for e in raw if e["family"] == fam and e["kind"] == "exact"
                   and e["count"] == min(r["count"] for r in raw)), None)

        def add(what, ns, note=""):
            rows.append([f"IPv{fam}", what, _ns(ns), _ns(None if ns is None else ns - empty), note])

        add("empty XDP program (test-run loop)", empty)
        add("xdpctl parser alone (bpf/include/parse.h)", p[f"parse_v{fam}"]["ns"])
        if e1:
            x = e1["xdpctl"]
            add("hook program, drop list on, non-IP frame (parse, cfg, counters)", _get(x, "chain_nonip"))
            add("hook program, drop list on, miss (no rule covers the source)", _get(x, "chain_miss"))
            add("hook program, drop list on, match (lookup, rule stats)", _get(x, "chain_match"))
            add("LPM baseline, match (1 trie entry)", _get(e1["lpm"], "match"))
        for name, label in (("ktime8", "8 × bpf_ktime_get_boot_ns"), ("coarse8", "8 × bpf_ktime_get_coarse_ns"),
                            ("jiffies8", "8 × bpf_jiffies64"), ("atomic8", "8 × atomic add (array value)"),
                            ("add8", "8 × plain add (per-CPU value)"), ("lookup8", "8 × ARRAY lookup")):
            if f"{name}_v{fam}" in p:
                v = p[f"{name}_v{fam}"]["ns"]
                add(label, v, f"{(v - empty) / 8:.1f} ns each")
    return table(["family", "program", "ns/pkt", "minus empty", "note"], rows, "llrrl")


def xdpfilter(res: dict, cfg: dict) -> str:
    rows = []
    for r in res.get("rows", []):
        if r.get("errors") and "xdp_filter" not in r:
            rows.append([f"IPv{r['family']}", _n(r["count"]), "failed"] + [""] * 11)
            continue
        if not r.get("fits", True):
            cli = (f"{r['cli_ms_per_addr']:.2f} ms/addr ({r['cli_added']:,} by CLI)" if "cli_ms_per_addr" in r
                   else "-")
            rows.append([f"IPv{r['family']}", _n(r["count"]), "does not fit"] + [""] * 9 + [cli, "-"])
            continue
        xf, xa, xc, xd = (r.get(k, {}) for k in ("xdp_filter", "xdp_filter_all", "xdpctl", "xdp_drop"))
        cells = []
        for which in ("match", "miss"):
            f, a, c, d = _get(xf, which), _get(xa, which), _get(xc, which), _get(xd, which)
            above = "-" if None in (a, c, d) else _x(c - d, a - d)
            cells += [_ns(f), _ns(a), _ns(c), _ns(d), _x(c, f), above]
        batch = f"{r['batch_added']:,} in {r['batch_s'] * 1e3:.0f} ms" if r.get("batch_added") else "-"
        rows.append([f"IPv{r['family']}", _n(r["count"])] + cells +
                    [f"{r['cli_ms_per_addr']:.2f} ms/addr ({r['cli_added']:,} by CLI)", batch])
    head = []
    for which in ("match", "miss"):
        head += [f"{which}: xdp-filter ip", "xdp-filter default", "xdpctl", "trivial drop", "xdpctl/ip",
                 "above drop: xdpctl/default"]
    return table(["family", "addresses"] + head + ["xdp-filter ip (CLI)", "rest by batch map update"], rows, "ll")


def memory(res: dict, cfg: dict) -> str:
    rows = []
    for e in res.get("memory", []):
        if "failed" in e:
            rows.append([f"IPv{e['family']}", e["kind"], _n(e["count"]), "failed", e["failed"]])
            continue
        pm = e["per_map"]
        top = sorted(pm.items(), key=lambda kv: -kv[1])[:4]
        rows.append([f"IPv{e['family']}", e["kind"], _n(e["count"]), f"{e['total'] / 2**20:,.0f}",
                     ", ".join(f"{n} {v / 2**20:,.0f}" for n, v in top)])
    return table(["family", "set", "rules", "all shared maps MiB", "largest maps (MiB)"], rows, "lll")


def nft_load(res: dict, tr: dict | None, cfg: dict) -> str:
    xl = {}
    if tr:
        for e in tr["raw"]:
            xl[(e["family"], e["kind"], e["count"])] = e.get("xdpctl_load_s")
    rows = []
    for r in res.get("load", []):
        x = xl.get((r["family"], r["kind"], r["count"]))
        n = r.get("nft_s")
        rows.append([f"IPv{r['family']}", r["kind"], _n(r["count"]), _s(n) if n is not None else "failed",
                     _s(x), _x(n, x) if n and x else "-"])
    return table(["family", "set", "prefixes", "nft -f s", "xdpctl import_list s", "nft/xdpctl"], rows)


def traffic(res: dict, cfg: dict) -> str:
    rows = []
    for r in res.get("traffic", []):
        if "error" in r and "nft" not in r:
            rows.append([_n(r["count"]), "failed"] + [""] * 9)
            continue

        def g(name, k="ns_per_frame"):
            return r.get(name, {}).get(k)

        xn, xg, nf, hn = g("xdpctl-native"), g("xdpctl-generic"), g("nft"), g("hash-native")
        fn, fg, ff = g("floor-native"), g("floor-generic"), g("floor-nft")
        an = None if xn is None or fn is None else xn - fn
        ah = None if hn is None or fn is None else hn - fn
        rn = g("array-native")
        ar = None if rn is None or fn is None else rn - fn
        ag = None if xg is None or fg is None else xg - fg
        af = None if nf is None or ff is None else nf - ff
        mp = lambda name: "-" if g(name, "pps") is None else f"{g(name, 'pps') / 1e6:.2f}"  # noqa: E731
        share = lambda name: _x(g(name, "pps"), g("floor-native", "pps"))  # noqa: E731
        rows.append([_n(r["count"]), mp("xdpctl-native"), mp("xdpctl-generic"), mp("nft"),
                     _ns(an), _ns(ag), _ns(af), _x(af, an), _x(g("xdpctl-native", "pps"), g("nft", "pps")),
                     f"{mp('hash-native')}: {_ns(ah)} ns, {share('hash-native')} (xdpctl {share('xdpctl-native')})",
                     f"{mp('array-native')}: {_ns(ar)} ns, {share('array-native')}"
                     + (f", {g('array-native', 'overflow'):,} did not fit" if g('array-native', 'overflow') else ""),
                     f"{mp('floor-native')} / {mp('floor-generic')} / {mp('floor-nft')}"])
    return table(["rules", "xdpctl native Mpps", "xdpctl generic Mpps", "nft Mpps",
                  "xdpctl native ns above floor", "xdpctl generic ns above floor", "nft ns above floor",
                  "nft/xdpctl-native (ns)", "xdpctl-native/nft (pps)",
                  "plain hash, native: Mpps, ns above floor, share of the floor's pps",
                  "open-addressed array, native: Mpps, ns above floor, share",
                  "floors Mpps (native/generic/nft)"], rows, "l")


def imports(res: dict, cfg: dict) -> str:
    rows = []
    for e in res.get("sets", []):
        api, cli, nogc = e.get("api", {}), e.get("cli", {}), e.get("api_nogc", {})
        rows.append([f"IPv{e['family']}", e["kind"], _n(e["count"]),
                     _s(cli.get("s")) if "error" not in cli else "failed", _s(cli.get("settled_s")),
                     _s(api.get("total_s")), _s(api.get("parse_s")), _s(api.get("import_list_s")),
                     _s(nogc.get("total_s")) if nogc else "-",
                     "met" if (cli.get("s") or 99) < TARGET_IMPORT_S else "MISSED"])
    out = [table(["family", "set", "prefixes", "xdpctl import (CLI) s", "CLI, both rule sets in sync s",
                  "parse + import_list s", "parse s",
                  "import_list s", "same, GC off s", f"< {TARGET_IMPORT_S:g} s"], rows)]
    kw = res.get("kernel_write")
    if kw:
        a, b = kw.get("h_noprealloc", {}), kw.get("h_prealloc", {})
        out.append(f"\nKernel side alone: batch update of {kw['n']:,} random keys into an empty 2M-entry hash "
                   f"(xc_v4_l32 layout): {_s(a.get('s'))} s with BPF_F_NO_PREALLOC (xdpctl's bands; "
                   f"{a.get('per_s', 0) / 1e6:.2f}M/s), {_s(b.get('s'))} s preallocated "
                   f"({b.get('per_s', 0) / 1e6:.2f}M/s); creating both maps: {_s(a.get('create_s'))} s.")
    out.append(f"\nCLI fixed cost: `xdpctl version` {_s(res.get('cli_startup_s'))} s; "
               f"`xdpctl import` of a 1-prefix file (fresh dirs, maps created) {_s(res.get('cli_one_prefix_s'))} s.")
    return "\n".join(out)


def import_breakdown(res: dict, cfg: dict) -> str:
    sets = [e for e in res.get("sets", []) if "breakdown" in e.get("api", {})]
    if not sets:
        return ""
    steps: list[str] = []
    for e in sets:
        for b in e["api"]["breakdown"]:
            if b["step"] not in steps:
                steps.append(b["step"])
    headers = ["step"] + [f"IPv{e['family']} {e['kind']} s" for e in sets]
    rows = []
    threaded = False
    for st in steps:
        label = st
        for e in sets:
            b = next((x for x in e["api"]["breakdown"] if x["step"] == st), None)
            if b and b.get("threads"):
                label = f"{st} †"
                threaded = True
        row = [label]
        for e in sets:
            b = next((x for x in e["api"]["breakdown"] if x["step"] == st), None)
            row.append("-" if b is None else f"{b['s']:.2f}" + (f" ({b['calls']}×)" if b["calls"] > 1 else ""))
        rows.append(row)
    tot = ["**wall time (parse + import_list)**"] + [f"**{e['api']['total_s']:.2f}**" for e in sets]
    rows.append(tot)
    out = table(headers, rows, "l" + "r" * len(sets))
    if threaded:
        out += ("\n\n† runs in xdpctl's map-writer thread, at the same time as the main thread's steps, so the "
                "steps add up to more than the wall time; 'import_list: other' includes the main thread waiting "
                "for it.")
    return out


def lb_table(res: dict) -> str:
    rows = [[peer, f"{v['median']:,.0f}", f"{v['spread']:.0%}", f"{v['ratio']:.2f}x"]
            for peer, v in res.get("summary", {}).items()]
    return table(["peer", "conn/s (median)", "spread", "vs routing"], rows, "lrrr")


def _map_sizes(xf: dict) -> str:
    return ", ".join(f"{n}: {v['max_entries']:,}" for n, v in xf.get("maps", {}).items() if n.startswith("filter_ip"))


# ---------------------------------------------------------------------------
def _header(results: dict) -> list[str]:
    m = results["machine"]
    cfg = results["config"]
    out = [f"# xdpctl benchmarks{' (quick run)' if cfg.get('quick') else ''}", ""]
    out.append(f"- date: {m['date']}; `make bench` took {results.get('seconds', 0) / 60:.1f} min")
    out.append(f"- machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory_gb']} GB, kernel {m['kernel']}, "
               f"virtualization: {m['virtualization']}")
    out.append(f"- load average at start / end: {results.get('loadavg_start')} / {results.get('loadavg_end')} "
               f"(other work on the machine shows up as noise; peers are measured in alternating rounds)")
    out.append(f"- xdpctl: {results.get('product', {}).get('commit', '?')}"
               f"{' + uncommitted changes' if results.get('product', {}).get('dirty') else ' (clean tree)'}; "
               f"{m['xdp_tools']}; {m['nftables']}; {m['clang']}")
    out.append(f"- test-run: {cfg['repeat']:,} repeats per run, median of {cfg['runs']} runs, "
               f"pinned to CPU {cfg.get('cpu')}; 64-byte UDP frames (FCS not included)")
    out.append("")
    return out


def _testrun_sections(tr: dict, cfg: dict) -> list[str]:
    out = ["## 1. Drop path per packet, BPF_PROG_TEST_RUN (ns/pkt)", "",
           "xdpctl's real objects: the hook program `xdp_hook` with the drop-list stage on (the column "
           "'hook match'); maps filled by `DropList.import_list`. match = source has a /32 (/128) rule, "
           "miss = source in a range no rule covers, prefix match = source covered only by a shorter prefix "
           "(IPv4 /20-/24, IPv6 /49-/56). ×1 = ratio to the same column with 1 rule. "
           "load s = wall time of `DropList.import_list` in the bench process.", "",
           drop_path(tr, cfg), "",
           "## 2. Baseline: one kernel LPM trie lookup per packet (bench/bpf/lpm_baseline.c)", "",
           "Same frames, same prefixes (unexpanded) in a BPF_MAP_TYPE_LPM_TRIE; drop on a hit.", "",
           lpm(tr, cfg), ""]
    sp = spray(tr, cfg)
    if sp:
        out += ["## 2b. Cache-cold: a different source on every packet", "",
                "`bench/bpf/spray.c` writes the next source from a shuffled list into the frame and tail-calls "
                "the program under test (xdpctl: the hook program). match: every host rule of the set as "
                "sources (up to 1M); miss: 65,536 sources from the reserved miss range; wide miss (exact sets): "
                "1M random sources from the whole unicast space the rules are drawn from, none of them a rule "
                "(a flood from random sources, which reaches deep into the trie). ns/pkt "
                "above the harness (spray tail-calling an empty program). This is closer to real traffic than "
                "one repeated frame: map memory is not in cache. With 1 rule every match packet carries the "
                "same source, so the match ×1 columns compare cold lookups with one warm one; the "
                "xdpctl/LPM columns compare the two at the same size.", "", sp, ""]
    sz = sizing(tr, cfg)
    if tr.get("sizing"):
        out += ["## 2c. Map sizes: default capacities vs sized to the rule set", "",
                "The same rules and the same cache-cold harness as 2b, once with xdpctl's default map "
                "capacities (l32 2M, l24 1M, l128 1M, ... entries) and once with every hash/trie map and "
                "xc_rule_stats sized to the next power of two at or above 2 x what the rule set needs "
                "(Settings.capacity). A hash map's bucket array is sized by max_entries, not by its "
                "contents, so a lookup in a nearly empty default-size map still touches a random cache "
                "line of a many-MB array. ns/pkt above the harness; warm = one repeated frame.", "", sz, ""]
    out += ["## 2d. Where the per-packet time goes (cache-warm)", "",
            "Single ingredients priced with BPF_PROG_TEST_RUN (`bench/bpf/probe_ops.c`, `probe_parse.c`).", "",
            attribution(tr, cfg), ""]
    if tr.get("memory"):
        out += ["## 2e. Memory of the shared maps", "",
                "Every map pinned in the shared map directory (the drop list's: both rule sets, their "
                "presence bitmaps, the hit counters; and the load balancer's, about 32 MiB) after "
                "`DropList.import_list` of random exact IPv4 addresses, as the kernel accounts it (fdinfo "
                "memlock). Default capacities, raised where a set would not fit.", "", memory(tr, cfg), ""]
    return out


def _peer_sections(s: dict, tr: dict | None, cfg: dict) -> list[str]:
    out: list[str] = []
    xf = s.get("xdpfilter")
    if xf:
        progs = xf.get("program", {})
        out += ["## 3. xdp-filter (xdp-tools) vs xdpctl, same exact addresses (ns/pkt)", "",
                "xdp-filter in two configurations, each in its own namespace, run with BPF_PROG_TEST_RUN by id: "
                f"`xdp-filter load IF -m skb -f ipv4,ipv6` (ip: `{progs.get('ip') if isinstance(progs, dict) else progs}`) "
                f"and `xdp-filter load IF -m skb` as loaded by default (`{progs.get('all') if isinstance(progs, dict) else '-'}`). "
                f"{xf.get('version', '')}. Its address maps hold {_map_sizes(xf)} entries, fixed when xdp-filter "
                "was built. xdpctl (hook program, drop list on) and a trivial program that drops every frame "
                "(`bench/bpf/xdp_drop.c`) are measured in the same rounds; 'above drop' compares the cost above "
                "that trivial program.", "",
                xdpfilter(xf, cfg), ""]
    nf = s.get("nft")
    if nf:
        out += ["## 4a. nftables: loading the same prefixes", "",
                "`nft -f` of a netdev table: the set in nftables' natural form (exact addresses: a plain hash "
                "set; prefixes: an interval set, `flags interval; auto-merge`) + ingress chain "
                "`ip saddr @src counter drop`. xdpctl column: `DropList.import_list` of the same set (section 1).", "",
                nft_load(nf, tr, cfg), "",
                "## 4b. Real traffic over a veth pair: xdpctl vs nftables", "",
                "Generator: XDP program run with BPF_F_TEST_XDP_LIVE_FRAMES, redirecting 64-byte frames (source "
                "in the rule set, IPv4 exact set) out of veth a; receiver on veth b (GRO on) on the same CPU. "
                "Mpps = frames the receiver counted as dropped / generator time. ns above floor = ns per frame "
                "minus the same receive path with a drop-everything receiver (native XDP, generic XDP, bare nft "
                "`counter drop` chain): the classifier's own cost. xdpctl runs the counter and the drop list "
                "and is counted by its own verdict counter; nftables by its rule's own counter (read with a "
                "netlink rule dump), in the plain hash set of section 4a. Plain hash: `bench/bpf/xdp_hash_drop.c`, "
                "the least an exact-address drop list does (Ethernet + IPv4 header checks, one lookup of the "
                "source in an unpreallocated hash of the same addresses, a per-CPU count): the share of the "
                "floor no hash-based classifier passes on this machine. Open-addressed array: "
                "`bench/bpf/xdp_array_drop.c`, the same checks and count, the addresses in a table of 8-slot "
                "buckets held in an ARRAY map and probed by inlined code: no call into the kernel per frame "
                "(an address whose bucket is full is left out and counted; the measured one never is).", "",
                traffic(nf, cfg), ""]
    im = s.get("imports")
    if im:
        out += [f"## 5. Import time, {_n(cfg.get('import_count', 0))} prefixes", "",
                "Fresh state dir and pin dir each time. CLI: `xdpctl import FILE` as a subprocess (wall). "
                "parse + import_list: the file read and `Members.parse` (as the CLI and `PUT /v1/lists` parse a list) + "
                "`DropList.import_list` in a fresh Python process. GC off: the same with Python's garbage collector disabled.", "",
                imports(im, cfg), "",
                "### Where import time goes (self time per step, fresh process, GC on)", "",
                import_breakdown(im, cfg), ""]
        if im.get("control"):
            from . import control

            out += ["## 5b. Control plane: single changes beside big lists, CLI with CLI, REST", "",
                    "Every CLI row runs `xdpctl` as a child with fresh pin and state directories (wall time, the "
                    "child's peak RSS); REST rows use a real `xdpctl serve` (bench/control.py, "
                    "bench/control_rest.py).", "", control.table(im["control"]), ""]
    return out


def _lb_lab_section(s: dict) -> list[str]:
    out: list[str] = []
    lb = s.get("lb_lab")
    if lb:
        out += ["## 7. Load balancer: TCP connections per second (bridge lab)", "",
                f"{lb['conns']:,} connections per round (connect to the VIP, one message, the answer, close), one "
                f"after another, {lb['runs']} rounds per peer in alternation; the backends answer the client "
                "directly (DSR). routing: no program, the balancer namespace forwards the VIP to one backend. "
                "lb: the balancer stage on that hook spreads the VIP over three backends (bench/lb_lab.py).", "",
                lb_table(lb), ""]
    return out


def _fleet_section(s: dict) -> list[str]:
    out: list[str] = []
    fl = s.get("fleet")
    if fl:
        out += ["## 8. Fleet mode: acknowledged write to enforcement", "",
                "One etcd on loopback, N `xdpctl agent` processes with their own pins. Enforced = the node's "
                "pinned xc_cfg generation moved past the one read before the write.", "",
                fleet(fl), ""]
    return out


def _sample_section(s: dict) -> list[str]:
    rows = s.get("sample", {}).get("rows", [])
    if not rows:
        return []
    return ["## 9. Packet samples (`xdpctl dump`): the sample stage on the drop path (ns/pkt)", "",
            "The hook program with the drop list, a /24 deny matching the frame's source (BPF_PROG_TEST_RUN, "
            "median). off: no listener, the stage reads its per-hook settings and returns. on, no reader: a "
            "listener's flag set and nobody consuming (the ring buffer full: the worst case) (bench/sample.py).",
            "", table(["sample stage", "ns/pkt"], [[r["stage"], f"{r['ns']:.1f}"] for r in rows]), ""]


def fleet(res: dict) -> str:
    rows = [[str(e["agents"]), str(e["changes"]), f"{e['p50_ms']:.0f}", f"{e['p99_ms']:.0f}",
             "met" if e["p99_ms"] < 1000 else "MISSED"] for e in res.get("latency", [])]
    out = [table(["agents", "changes", "p50 ms", "p99 ms", "p99 < 1 s"], rows)]
    for e in res.get("lists", []):
        out.append(f"\nList of {_n(e['count'])} prefixes on {e['agents']} agents: written in "
                   f"{_s(e['written_s'])} s, enforced on every node {_s(e['enforced_after_ack_s'])} s after "
                   f"the acknowledgement.")
    return "\n".join(out)


def _footer(results: dict) -> list[str]:
    out: list[str] = []
    notes = results.get("notes", [])
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    errs = results.get("errors", [])
    if errs:
        out += ["## Problems during this run", ""] + [f"- {e}" for e in errs] + [""]
    secs = {k: v.get("seconds") for k, v in results.get("timing", {}).items()}
    if secs:
        out.append("Section times: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items() if v is not None))
    return out


def render(results: dict) -> str:
    cfg = results["config"]
    s = results["sections"]
    tr = s.get("testrun")
    out = _header(results)
    out += ["## Targets", "", targets.render(results, table), ""]
    if tr:
        out += _testrun_sections(tr, cfg)
    out += _peer_sections(s, tr, cfg)
    if s.get("lb"):
        from . import lb
        out += lb.render(s["lb"])
    out += _lb_lab_section(s)
    out += _fleet_section(s)
    out += _sample_section(s)
    out += _footer(results)
    return "\n".join(out) + "\n"
