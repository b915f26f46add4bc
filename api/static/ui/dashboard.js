// The xdpctl dashboard: polls GET /v1/dashboard (and GET /v1/fleet in fleet
// mode), plots rates computed from two consecutive samples, fills tables.
// Every value comes from the service; nothing is sent anywhere else.
"use strict";

(function () {
  const POLL_MS = 1000;
  const FLEET_MS = 5000;
  const KEEP = 300; // samples kept per plot (5 minutes at 1 s)
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#17becf", "#7f7f7f", "#bcbd22"];
  const hooks = new Map(); // "netns/ifname/hook" -> hook panel
  let previous = null; // the last dashboard document

  // ---- formatting -------------------------------------------------------
  function scaled(value, unit) {
    const steps = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [f, p] of steps) {
      if (Math.abs(value) >= f) return (value / f).toPrecision(3) + " " + p + unit;
    }
    return (value === null || value === undefined ? "-" : value.toFixed(value < 10 ? 1 : 0)) + " " + unit;
  }
  const count = (n) => Number(n).toLocaleString("en-US");
  const when = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "never");

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function fillTable(id, rows) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(...rows.map((cells) => {
      const tr = el("tr");
      for (const c of cells) tr.append(c instanceof Node ? c : el("td", c));
      return tr;
    }));
  }
  const num = (text, attrs) => el("td", text, Object.assign({ class: "num" }, attrs || {}));

  // ---- rates between two samples -----------------------------------------
  function protoName(p) { return p.l4 === "-" ? p.l3 : p.l3 + "/" + p.l4; }

  function hookRates(cur, before, seconds) {
    const out = { pps: {}, bps: {}, verdicts: {}, total: [0, 0] };
    const diff = (a, b) => Math.max(0, a - (b || 0)) / seconds;
    const old = new Map((before ? before.protocols : []).map((p) => [protoName(p), p]));
    for (const p of cur.protocols) {
      const o = old.get(protoName(p)) || {};
      out.pps[protoName(p)] = diff(p.packets, o.packets);
      out.bps[protoName(p)] = diff(p.bytes, o.bytes) * 8;
    }
    for (const [reason, c] of Object.entries(cur.verdicts)) {
      const o = before && before.verdicts[reason];
      out.verdicts[reason] = diff(c.packets, o && o.packets);
    }
    if (before) {
      out.total = [diff(cur.total.packets, before.total.packets), diff(cur.total.bytes, before.total.bytes) * 8];
    }
    return out;
  }

  // ---- one plot: a time series per name, rebuilt when a name appears ------
  class Plot {
    constructor(box, title, unit) {
      this.box = box; this.title = title; this.unit = unit;
      this.names = []; this.times = []; this.values = {}; this.chart = null;
    }

    push(t, sample) {
      for (const name of Object.keys(sample).sort()) {
        if (!(name in this.values)) {
          this.values[name] = this.times.map(() => null);
          this.names.push(name);
          this.destroy();
        }
      }
      this.times.push(t);
      for (const name of this.names) this.values[name].push(name in sample ? sample[name] : null);
      if (this.times.length > KEEP) {
        this.times.shift();
        for (const name of this.names) this.values[name].shift();
      }
      this.box.dataset.last = JSON.stringify(sample);
      this.box.dataset.samples = String(this.times.length);
      this.draw();
    }

    data() { return [this.times, ...this.names.map((n) => this.values[n])]; }

    draw() {
      if (this.chart) { this.chart.setData(this.data()); return; }
      const unit = this.unit;
      const opts = {
        title: this.title, width: Math.max(300, this.box.clientWidth || 420), height: 170,
        scales: { x: { time: true } },
        series: [{}, ...this.names.map((n, i) => ({
          label: n, stroke: COLORS[i % COLORS.length], width: 1.5,
          value: (u, v) => (v === null ? "-" : scaled(v, unit)),
        }))],
        axes: [{}, { size: 90, values: (u, vals) => vals.map((v) => scaled(v, unit)) }],
      };
      this.chart = new uPlot(opts, this.data(), this.box);
    }

    destroy() { if (this.chart) { this.chart.destroy(); this.chart = null; } }
  }

  // ---- a hook: three plots and its counters --------------------------------
  function hookPanel(key) {
    const card = el("article", null, { class: "hook", "data-hook": key });
    card.append(el("h3", key));
    const plots = el("div", null, { class: "plots" });
    const boxes = ["pps", "bps", "verdicts"].map((k) => el("div", null, { class: "plot", "data-plot": k }));
    plots.append(...boxes);
    const table = el("table", null, { class: "counters" });
    card.append(plots, table);
    document.getElementById("hooks").append(card);
    return {
      card, table,
      pps: new Plot(boxes[0], "packets/s by protocol", "pkt/s"),
      bps: new Plot(boxes[1], "bits/s by protocol", "bit/s"),
      verdicts: new Plot(boxes[2], "drop-list verdicts/s by reason", "pkt/s"),
    };
  }

  function showCounters(panel, h) {
    const rows = [["all frames", h.total.packets, h.total.bytes, "packets"]];
    for (const p of h.protocols) rows.push([protoName(p), p.packets, p.bytes, "proto:" + protoName(p)]);
    for (const [r, c] of Object.entries(h.verdicts)) rows.push(["verdict " + r, c.packets, c.bytes, "verdict:" + r]);
    const head = el("tr");
    head.append(el("th", "counter"), el("th", "packets", { class: "num" }), el("th", "bytes", { class: "num" }));
    panel.table.replaceChildren(head, ...rows.map(([name, pk, by, key]) => {
      const tr = el("tr");
      tr.append(el("td", name), num(count(pk), { "data-counter": key, "data-value": pk }), num(count(by)));
      return tr;
    }));
  }

  function showHooks(d) {
    const seen = new Set();
    const before = new Map(previous ? previous.stats.hooks.map((h) => [hookKey(h), h]) : []);
    const seconds = previous ? d.time - previous.time : 0;
    for (const h of d.stats.hooks) {
      const key = hookKey(h);
      seen.add(key);
      if (!hooks.has(key)) hooks.set(key, hookPanel(key));
      const panel = hooks.get(key);
      showCounters(panel, h);
      if (seconds <= 0) continue;
      const r = hookRates(h, before.get(key), seconds);
      panel.pps.push(d.time, r.pps);
      panel.bps.push(d.time, r.bps);
      if (Object.keys(r.verdicts).length) panel.verdicts.push(d.time, r.verdicts);
      const drops = Object.entries(r.verdicts).filter(([k]) => k.startsWith("drop")).reduce((a, [, v]) => a + v, 0);
      Object.assign(panel.card.dataset, { lastPps: r.total[0], lastBps: r.total[1], lastDropPps: drops });
    }
    for (const [key, panel] of hooks) {
      if (!seen.has(key)) { panel.card.remove(); hooks.delete(key); }
    }
    document.getElementById("hooks-empty").hidden = hooks.size > 0;
  }
  function hookKey(h) { return (h.netns || "host") + "/" + h.ifname + "/" + h.hook; }

  // ---- tables ------------------------------------------------------------
  function showAttachments(st) {
    const rows = [];
    for (const i of st.interfaces) {
      for (const h of i.hooks) {
        rows.push([i.netns || "host", i.ifname, h.hook, h.mode || "-", h.owner,
          h.stages.map((s) => s.program).join(", ") || "-"]);
      }
    }
    fillTable("attachments", rows);
    const missing = st.recorded.filter((a) => !a.attached);
    const warn = document.getElementById("not-attached");
    warn.hidden = missing.length === 0;
    warn.textContent = "Recorded but not running (xdpctl restore): " +
      missing.map((a) => (a.netns || "host") + "/" + a.ifname + "/" + a.hook + " " + a.program).join("; ");
  }

  function ruleText(r) {
    const where = r.prefix || "any address";
    return (r.dir === "dst" ? "to " : "from ") + where + (r.proto ? " " + r.proto + "/" + r.port : "") +
      (r.list ? " (list " + r.list + ")" : "");
  }

  function showRules(d) {
    document.getElementById("rules-count").textContent = "(" + count(d.rules) + (d.rules === 1 ? " rule" : " rules") + ", policy " + d.policy + ")";
    fillTable("top-rules", d.top_rules.map((r) => [r.id, ruleText(r), r.action,
      num(count(r.packets), { "data-rule": r.id, "data-value": r.packets }), num(count(r.bytes)), when(r.last_hit)]));
    fillTable("lists", d.lists.map((l) => [l.name, l.action, l.dir,
      num(count(l.count), { "data-list": l.name, "data-value": l.count }), num(count(l.packets)),
      l.expires ? when(l.expires) : "never"]));
  }

  function showLb(d) {
    const key = (s) => s.vip + " " + s.proto + "/" + s.port;
    const vipStats = new Map(d.lb_stats.vips.map((s) => [key(s), s]));
    const beStats = new Map(d.lb_stats.backends.map((s) => [s.backend + "@" + key(s), s]));
    const rows = [];
    for (const v of d.vips) {
      const k = v.address + " " + v.proto + "/" + v.port;
      const s = vipStats.get(k) || {};
      rows.push([el("td", k, { class: "vip" }), v.in_table + " of " + v.backends + " in the table", "", "", "",
        num(count(s.packets || 0)), num(count(s.new_flows || 0))]);
      for (const b of d.backends.filter((b) => b.vip === v.address && b.proto === v.proto && b.port === v.port)) {
        const bs = beStats.get(b.address + "@" + k) || {};
        const share = v.table_size ? (100 * b.slots / v.table_size).toFixed(1) + " %" : "-";
        const checked = b.health && b.health !== "unknown" ? ", check " + b.health : "";
        const health = b.state + checked + (b.mac ? "" : ", no MAC");
        const good = b.state === "active" && b.health !== "down" && b.mac;
        rows.push(["", b.address, b.weight, num(share, { "data-backend": b.address }),
          el("td", health, { class: good ? "ok" : "warn" }),
          num(count(bs.packets || 0)), num(count(bs.new_flows || 0))]);
      }
    }
    fillTable("vips", rows);
  }

  // ---- polling -----------------------------------------------------------
  function setState(text, ok) {
    const s = document.getElementById("state");
    s.textContent = text;
    s.className = "state " + (ok ? "ok" : "warn");
  }

  async function get(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { window.location.assign("/ui"); throw new Error("signed out"); }
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  async function poll() {
    try {
      const d = await get("/v1/dashboard");
      const summary = document.getElementById("summary");
      summary.textContent = "revision " + d.revision + ", policy " + d.policy;
      Object.assign(summary.dataset, { revision: d.revision, policy: d.policy });
      showHooks(d);
      showAttachments(d.status);
      showRules(d);
      showLb(d);
      document.getElementById("fleet-panel").hidden = !d.fleet;
      previous = d;
      setState("live, " + new Date(d.time * 1000).toLocaleTimeString(), true);
    } catch (e) {
      setState("no answer from the service (" + e.message + ")", false);
    }
    setTimeout(poll, POLL_MS);
  }

  async function pollFleet() {
    if (previous && previous.fleet) {
      try {
        const f = await get("/v1/fleet");
        document.getElementById("fleet-revision").textContent = "(cluster revision " + f.revision + ")";
        fillTable("fleet", f.nodes.map((n) => [n.name, n.state, num(n.applied_revision ?? "-"),
          num(n.lag ?? "-"), n.error ? n.health + ": " + n.error : (n.health || "-")]));
      } catch (e) {
        document.getElementById("fleet-revision").textContent = "(etcd: " + e.message + ")";
      }
    }
    setTimeout(pollFleet, FLEET_MS);
  }

  poll();
  pollFleet();
})();
