"""Health-check settings and state of the load balancer: validation of the
check settings, the rise/fall counting, the schema migration that adds the
columns, and `restore` rebuilding the LB maps (health included) after the
pins are gone."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import astuple

import pytest

from tests.unit.test_lb_service import kernel_state
from xdpctl import abi
from xdpctl.core.errors import ValidationError
from xdpctl.core.lb import validate as v
from xdpctl.core.lb.health import next_health
from xdpctl.core.lb.kernel import SHARED_LB_MAPS, LbKernel
from xdpctl.core.lb.service import LoadBalancer
from xdpctl.core.restore import restore
from xdpctl.core.rules.store import SCHEMA_VERSION, BackendRow, State, VipRow


@pytest.mark.parametrize("given,field", [
    ({"check": "icmp"}, "check"), ({"check": None, "interval": 0}, "interval"), ({"interval": -0.5}, "interval"),
    ({"interval": True}, "interval"), ({"rise": 0}, "rise"), ({"fall": 0}, "fall"), ({"rise": 1.5}, "rise"),
    ({"check_port": 65536}, "check_port"), ({"check_port": -1}, "check_port"), ({"timeout": 0}, "timeout"),
    ({"interval": 1, "timeout": 3}, "timeout"), ({"interval": 600, "timeout": 61}, "timeout"),
    ({"interval": 3601}, "interval")])
def test_bad_check_settings(given, field):
    with pytest.raises(ValidationError) as ei:
        v.Check().changed(**given)
    assert ei.value.field == field


def test_check_defaults_and_changes():
    assert v.Check().changed() == v.Check("none", 0, 5.0, 1.0, 2, 3)
    assert v.Check().changed(check="udp", check_port=53, rise=1) == v.Check("udp", 53, 5.0, 1.0, 1, 3)


def _rows(health: str, streak: int) -> tuple[BackendRow, VipRow]:
    vip = VipRow(1, 4, "192.0.2.1", 6, 80, 211, 0, 0, 0.0, "tcp", 0, 1.0, 0.5, 2, 3)
    return BackendRow(1, 1, 4, "10.0.0.1", 1, "active", None, 0.0, health, streak), vip


@pytest.mark.parametrize("health,streak,ok,want", [
    ("unknown", 0, True, ("up", 1)),       # a first success is enough from unknown
    ("unknown", -2, False, ("down", -3)),  # fall 3
    ("up", 5, False, ("up", -1)),
    ("up", -2, False, ("down", -3)),
    ("down", -3, True, ("down", 1)),       # rise 2
    ("down", 1, True, ("up", 2)),
    ("up", v.THRESHOLD_MAX, True, ("up", v.THRESHOLD_MAX)),  # a steady backend's row stops changing
])
def test_rise_and_fall(health, streak, ok, want):
    b, vip = _rows(health, streak)
    assert next_health(b, vip, ok) == want


def test_schema_1_gains_the_health_columns(tmp_path):
    path = str(tmp_path / "state.db")
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE lb_vips (id INTEGER PRIMARY KEY, family INTEGER NOT NULL, addr TEXT NOT NULL,
            proto INTEGER NOT NULL, port INTEGER NOT NULL, table_size INTEGER NOT NULL,
            ring_base INTEGER NOT NULL DEFAULT 0, ring_size INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
            UNIQUE (addr, proto, port));
        CREATE TABLE lb_backends (id INTEGER PRIMARY KEY, vip INTEGER NOT NULL REFERENCES lb_vips(id)
            ON DELETE CASCADE, family INTEGER NOT NULL, addr TEXT NOT NULL, weight INTEGER NOT NULL,
            state TEXT NOT NULL, mac TEXT, created REAL NOT NULL, UNIQUE (vip, addr));
        INSERT INTO lb_vips VALUES (1, 4, '192.0.2.1', 6, 80, 211, 0, 0, 1.0);
        INSERT INTO lb_backends VALUES (1, 1, 4, '10.0.0.1', 1, 'active', '02:00:00:00:00:01', 1.0);
    """)
    db.close()
    st = State(path)
    try:
        assert st.get_meta("schema_version") == str(SCHEMA_VERSION) == "3"
        assert st.lb_vips() == [VipRow(1, 4, "192.0.2.1", 6, 80, 211, 0, 0, 1.0, *astuple(v.Check()))]
        assert st.lb_backends() == [BackendRow(1, 1, 4, "10.0.0.1", 1, "active", "02:00:00:00:00:01", 1.0)]
    finally:
        st.close()
    State(path).close()  # opening again changes nothing


@pytest.mark.root
def test_restore_rebuilds_the_lb_maps(ctx):
    lb = LoadBalancer(ctx)
    lb.add_vip("192.0.2.10", "tcp", 80, 1009, check="tcp")
    for i in (1, 2, 3):
        lb.add_backend(f"10.9.0.{i}", "192.0.2.10", "tcp", 80, mac=f"02:00:00:00:01:0{i}")
    lb.add_backend("10.9.0.4", "192.0.2.10", "tcp", 80)  # no MAC: in no table
    with ctx.writer() as st, LbKernel(ctx) as k:  # what a health round does when 10.9.0.2 fails
        old = st.lb_backend(1, "10.9.0.2")
        st.lb_set_health(old.id, "down", -3, 1, "test")
        lb.apply(st, k, st.lb_vips()[0], old, st.lb_backend(1, "10.9.0.2"))
    want = kernel_state(ctx)
    (_, _, ring), = want["vips"].values()
    assert set(ring) == {1, 3}
    assert abi.LB_BACKEND.unpack(want["backends"][2])[3] == abi.LbState.DOWN
    for name in SHARED_LB_MAPS:  # a reboot: bpffs is empty
        os.unlink(os.path.join(ctx.settings.shared_map_dir, name))
    rep = restore(ctx)
    assert "load balancer: 1 VIPs written" in rep.log
    assert kernel_state(ctx) == want
