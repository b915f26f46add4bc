"""The dashboard in a real browser over real traffic.

A server over the real kernel, a namespace lab with the counter and the
drop list attached to b over REST and one prefix blocked; headless chromium
signs in with the read-only token and shows the page while a sends frames
to b, some from the blocked prefix, some not. The plotted rates (each plot
keeps its last sample in ``data-last``, each hook card its totals in
``data-last-*``) and the counters shown (``data-value``) must follow the
traffic; every request of the page must go to the service; the console must
stay clean. DASHBOARD_SCREENSHOT=docs/dashboard.png keeps a screenshot taken
with the traffic running. /docs renders from the package's Swagger UI with
the same two checks.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from api_helpers import Running
from conftest import READ_TOKEN, TABLE_SIZE, add_vip_and_list
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from selenium.webdriver.common.by import By
from traffic import ether, marker, payload, send_frames

from xdpctl.lab import TwoHostLab

BLOCKED = "203.0.113.0/24"
VIP = "192.0.2.100"
DEADLINE = 30.0


def wait_for(what: str, check: Callable[[], object], deadline: float = DEADLINE) -> object:
    """check() until it returns something true; fail naming ``what``."""
    end = time.monotonic() + deadline
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"the page did not show {what} within {deadline:g}s")
        time.sleep(0.2)


class Traffic:
    """a sends b a burst every 0.2 s until stopped: 5 frames from a's own
    address (passed) and 3 from the blocked prefix (dropped in XDP)."""

    def __init__(self, lab: TwoHostLab) -> None:
        a, b, mark = lab.a, lab.b, marker()

        def frame(src: str, kind: str, seq: int):
            return ether(a, b) / IP(src=src, dst=b.ipv4) / UDP(sport=41000 + seq, dport=9) / Raw(
                payload(mark, kind, pad=200))

        self.burst = [frame(a.ipv4, "legit", i) for i in range(5)] + [
            frame(f"203.0.113.{7 + i}", "spoofed", i) for i in range(3)]
        self.lab, self.stop_event, self.error = lab, threading.Event(), None
        self.thread = threading.Thread(target=self._run, name="ui-traffic", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                send_frames(self.lab.a, self.burst)
                self.stop_event.wait(0.2)
        except Exception as exc:  # reported by stop()
            self.error = exc

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive() and self.error is None, self.error


@pytest.fixture
def attached(server: Running, lab: TwoHostLab) -> Iterator[httpx.Client]:
    """Counter and drop list on b's XDP hook, BLOCKED denied; all undone after."""
    with server.client() as c:
        try:
            for program in ("counter", "droplist"):
                r = c.post("/v1/attachments", json={"ifname": lab.b.ifname, "netns": lab.b.netns,
                                                    "program": program, "hook": "xdp"})
                assert r.status_code == 201, r.text
            r = c.post("/v1/block", json={"prefixes": [BLOCKED], "comment": "dashboard test"})
            assert r.status_code == 201, r.text
            add_vip_and_list(c, VIP, ("192.0.2.101", "192.0.2.102"), "ui-feed", "198.18.60.0/24\n198.18.61.0/24\n")
            yield c
        finally:
            c.delete("/v1/attachments", params={"ifname": lab.b.ifname, "netns": lab.b.netns})
            c.post("/v1/rules/delete", json={"rules": [{"prefix": BLOCKED}]})


def card_data(browser, key: str) -> dict | None:
    """The hook card's data attributes, its plots' last samples and its
    counters, read from the DOM in one script."""
    return browser.execute_script("""
        const card = document.querySelector(`article.hook[data-hook="${arguments[0]}"]`);
        if (!card) return null;
        const plots = {};
        for (const p of card.querySelectorAll("[data-plot]"))
            plots[p.dataset.plot] = {last: p.dataset.last ? JSON.parse(p.dataset.last) : null,
                                     samples: Number(p.dataset.samples || 0), canvas: !!p.querySelector("canvas")};
        const counters = {};
        for (const c of card.querySelectorAll("[data-counter]"))
            counters[c.dataset.counter] = {value: Number(c.dataset.value), text: c.textContent};
        return {pps: Number(card.dataset.lastPps || 0), drop_pps: Number(card.dataset.lastDropPps || 0),
                bps: Number(card.dataset.lastBps || 0), plots, counters};
    """, key)


def sign_in(browser, url: str) -> None:
    browser.get(url + "/ui")
    assert browser.title == "xdpctl: sign in", browser.title
    # the refused first load is the one console entry so far (a 401)
    logs = browser.get_log("browser")
    assert all("401" in e["message"] for e in logs), logs
    browser.find_element(By.ID, "token").send_keys(READ_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    wait_for("the dashboard after signing in", lambda: browser.title == "xdpctl dashboard")


def counts(c: httpx.Client, lab: TwoHostLab) -> tuple[dict, int]:
    (hook,) = [h for h in c.get("/v1/stats").json()["hooks"] if h["netns"] == lab.b.netns]
    (rule,) = [r for r in c.get("/v1/rules").json()["rules"] if r["prefix"] == BLOCKED]
    return hook, rule["packets"]


def test_dashboard_follows_live_traffic(server: Running, lab: TwoHostLab, attached: httpx.Client, browser) -> None:
    key = f"{lab.b.netns}/{lab.b.ifname}/xdp"
    sign_in(browser, server.url)
    before = wait_for("the hook card", lambda: card_data(browser, key))
    shown_before = before["counters"]["packets"]["value"]

    with Traffic(lab):
        live = wait_for("rates of passed and dropped frames", lambda: (
            (d := card_data(browser, key)) and d["pps"] > 0 and d["drop_pps"] > 0
            and (d["plots"]["pps"]["last"] or {}).get("ipv4/udp", 0) > 0
            and (d["plots"]["verdicts"]["last"] or {}).get("drop_src", 0) > 0
            and (d["plots"]["verdicts"]["last"] or {}).get("pass_nomatch", 0) > 0 and d))
        assert live["bps"] > 8 * 200 * live["pps"] * 0.5, live  # 200-byte payloads: bits follow packets
        assert all(p["canvas"] and p["samples"] >= 1 for p in live["plots"].values()), live["plots"]
        assert live["counters"]["packets"]["value"] > shown_before
        assert live["counters"]["verdict:drop_src"]["value"] > 0
        shot = os.environ.get("DASHBOARD_SCREENSHOT")
        if shot:
            time.sleep(4)  # a few more samples on the plots for the picture (not asserted)
            browser.save_screenshot(shot)

    # traffic stopped: the counters shown settle on the kernel's, the rates fall to zero
    hook, rule_hits = counts(attached, lab)
    drops = hook["verdicts"]["drop_src"]["packets"]
    assert drops == rule_hits > 0 and drops % 3 == 0, (drops, rule_hits)
    settled = wait_for("the kernel's counters and zero rates", lambda: (
        (d := card_data(browser, key)) and d["counters"]["verdict:drop_src"]["value"] == drops
        and d["counters"]["packets"]["value"] == hook["total"]["packets"]
        and (d["plots"]["pps"]["last"] or {}).get("ipv4/udp") == 0 and d))
    assert settled["counters"]["verdict:drop_src"]["text"] == f"{drops:,}"
    rule_cell = browser.find_element(By.CSS_SELECTOR, "#top-rules td[data-rule]")
    assert int(rule_cell.get_attribute("data-value")) == rule_hits and rule_cell.text == f"{rule_hits:,}"
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#attachments tbody tr")]
    assert any(lab.b.ifname in r and "counter, droplist" in r for r in rows), rows
    assert browser.find_element(By.ID, "fleet-panel").get_attribute("hidden") is not None
    members = browser.find_element(By.CSS_SELECTOR, '#lists td[data-list="ui-feed"]')
    assert members.get_attribute("data-value") == "2" and members.text == "2"
    backends = {b["address"]: b["slots"] for b in attached.get("/v1/lb/backends").json()["backends"]}
    for addr, slots in backends.items():
        cell = browser.find_element(By.CSS_SELECTOR, f'#vips td[data-backend="{addr}"]')
        assert cell.text == f"{100 * slots / TABLE_SIZE:.1f} %", (addr, cell.text)

    assert browser.get_log("browser") == []
    assert any(u.endswith("/v1/dashboard") for u in requests_only_to(browser, server.url))


def requests_only_to(browser, url: str) -> set[str]:
    """Every URL the browser requested, checked to be on ``url``'s host."""
    urls = {json.loads(e["message"])["message"]["params"]["request"]["url"]
            for e in browser.get_log("performance")
            if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"}
    # chrome:// is the browser's own start page, before the test navigates
    assert {urlsplit(u).scheme for u in urls} <= {"http", "data", "chrome"}, urls
    assert {urlsplit(u).netloc for u in urls if urlsplit(u).scheme == "http"} == {urlsplit(url).netloc}, urls
    return urls


def test_docs_render_offline(server: Running, browser) -> None:
    """Swagger UI from the package renders the service's OpenAPI document."""
    browser.get(server.url + "/docs")
    wait_for("the API's title in Swagger UI", lambda: "xdpctl" in browser.execute_script(
        "const t = document.querySelector('.swagger-ui .info .title'); return t ? t.textContent : '';"))
    wait_for("the dashboard's operation", lambda: browser.find_elements(
        By.CSS_SELECTOR, '.opblock-summary-path[data-path="/v1/dashboard"]'))
    assert browser.get_log("browser") == []
    urls = requests_only_to(browser, server.url)
    assert any(u.endswith("/openapi.json") for u in urls) and any(u.endswith("swagger-ui-bundle.js") for u in urls)
