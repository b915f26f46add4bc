"""Fleet writes against a real etcd: conditional transactions, chunked
lists switched by their manifest, errors; GET /v1/fleet."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from xdpctl.core import prefixes as px
from xdpctl.core.errors import NotFound, RevisionConflict, ValidationError
from xdpctl.core.fleet import layout
from xdpctl.core.errors import EtcdUnavailable
from xdpctl.core.fleet.kv import Etcd, EtcdOptions
from xdpctl.core.fleet.layout import Manifest
from xdpctl.core.fleet.writer import Fleet
from xdpctl.core.rules.validate import spec
from xdpctl.kernel import bpffs
from tests.support.progs import temp_settings


@pytest.fixture
def fl(etcd) -> Fleet:
    return Fleet(Etcd(EtcdOptions([etcd.url])), "/xdpctl/store")


def test_every_write_is_one_revision_and_conditional(fl):
    assert fl.revision() == 0
    r1 = fl.add([spec("203.0.113.0/24"), spec("2001:db8:bad::/48", dst=True)]).revision
    assert fl.revision() == r1
    with pytest.raises(RevisionConflict):
        fl.add([spec("192.0.2.1")], expected_revision=r1 - 1)
    assert fl.revision() == r1
    r2 = fl.set_policy("deny", expected_revision=r1).revision
    assert r2 == r1 + 1 == fl.revision()
    r3 = fl.remove([spec("203.0.113.0/24")], expected_revision=r2).revision
    assert r3 == r2 + 1
    _r, kvs = fl.etcd.range(fl.layout.k("set", "rules", ""))
    assert [layout.rule_of(kv.value).describe() for kv in kvs] == [spec("2001:db8:bad::/48", dst=True).describe()]


def test_remove_of_a_missing_rule_or_list_changes_nothing(fl):
    rev = fl.add([spec("203.0.113.0/24")]).revision
    with pytest.raises(NotFound, match="198.51.100.0/24"):
        fl.remove([spec("203.0.113.0/24"), spec("198.51.100.0/24")])
    with pytest.raises(NotFound):
        fl.remove_list("nothere")
    assert fl.revision() == rev
    with pytest.raises(ValidationError):
        fl.add([spec("192.0.2.1", ttl="1h")])


def test_list_chunks_switch_with_the_manifest(fl, monkeypatch):
    monkeypatch.setattr("xdpctl.core.fleet.writer.cut", lambda blob: layout.cut(blob, 4096))
    members = [px.parse_prefix(f"10.{i // 256}.{i % 256}.0/24") for i in range(3000)] + \
              [px.parse_prefix(f"2001:db8:{i:x}::/48") for i in range(300)]
    res = fl.import_list("big", members)
    man = Manifest.decode(fl.etcd.get(fl.layout.manifest("big")).value)
    assert res.created and res.list.count == man.count == 3300 and man.chunks == 5 and man.format == "members"
    _r, chunks = fl.etcd.range(fl.layout.chunks("big"))
    assert len(chunks) == man.chunks
    assert all(len(c.value) <= 4096 for c in chunks)
    blob = b"".join(c.value for c in sorted(chunks, key=lambda c: c.key))
    assert layout.members_of(man, blob) == members
    assert [r.prefix for r in fl.list_detail("big", limit=2, after=2999).members] == ["10.11.183.0/24",
                                                                                      "2001:db8::/48"]
    fl.import_list("big", members[:10])  # the old version's chunks go with the switch
    _r, chunks = fl.etcd.range(fl.layout.chunks("big"))
    assert len(chunks) == 1
    with pytest.raises(RevisionConflict):  # a refused switch leaves no chunks behind
        fl.import_list("big", members, expected_revision=1)
    _r, chunks = fl.etcd.range(fl.layout.chunks("big"))
    assert len(chunks) == 1
    fl.remove_list("big")
    assert fl.etcd.range(fl.layout.k("set", "lists", ""))[1] == []


def test_lists_written_as_text_still_read(fl):
    """Lists stored before the packed format (one prefix a line) stay readable."""
    man = Manifest(fl.etcd.revision(), 2, 1)
    fl.etcd.put(fl.layout.chunks("old", man.version) + "000000", b"192.0.2.0/24\n2001:db8::1\n")
    fl.etcd.put(fl.layout.manifest("old"), man.encode())
    assert [r.prefix for r in fl.rules(list_name="old")] == ["192.0.2.0/24", "2001:db8::1/128"]


def test_etcd_down_is_one_clear_error(etcd, fl):
    etcd.kill()
    with pytest.raises(EtcdUnavailable, match="etcd is unreachable"):
        fl.add([spec("192.0.2.1")])


def test_rest_fleet_status(etcd, fl, tmp_path):
    from xdpctl.api.app import create_app
    from xdpctl.api.routers.fleet import configure

    settings = temp_settings(str(tmp_path / "api"))
    app = create_app(settings, token="t0ken", restore_on_start=False, expire_interval=0)
    auth = {"Authorization": "Bearer t0ken"}
    with TestClient(app) as client:
        r = client.get("/v1/fleet", headers=auth)
        assert r.status_code == 404 and r.json()["error"] == "fleet_not_configured"
        configure(app, fl.etcd.opts, "/xdpctl/store")
        rev = fl.add([spec("192.0.2.1")]).revision
        r = client.get("/v1/fleet", headers=auth)
        assert r.status_code == 200
        assert r.json() == {"prefix": "/xdpctl/store", "revision": rev, "etcd_revision": rev, "nodes": []}
    bpffs.remove_tree(settings.pin_dir)
