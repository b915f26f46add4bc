"""Fleet mode over TLS with client certificates and etcd auth: the right
options write and the agent applies; a wrong password, no user, no client
certificate or no CA are each a clear error (exit 15) that changes nothing."""

from __future__ import annotations

import json

from xdpctl.core.fleet.kv import Etcd, EtcdOptions
from xdpctl.core.fleet.writer import Fleet

from .conftest import ROOT_PASSWORD, EtcdServer, FleetLab
from .test_fleet_traffic import assert_blocked, assert_open


def test_tls_and_auth_pass_through_and_refusals_change_nothing(etcd_tls: EtcdServer, fleet):
    tls = etcd_tls.tls
    certs = ("--etcd-ca", str(tls.ca), "--etcd-cert", str(tls.cert), "--etcd-key", str(tls.key))
    creds = (*certs, "--etcd-user", "root", "--etcd-password", ROOT_PASSWORD)
    fl: FleetLab = fleet(1, urls=etcd_tls.url, etcd_args=creds)
    host = fl.hosts[0]

    def xdpctl(*args: str, env: dict[str, str] | None = None):
        return fl.run_cli("--state-dir", str(host.env.tmp / "cli-state"), "--etcd", etcd_tls.url, "--prefix",
                          fl.prefix, *args, env=env)

    fleet_rs = Fleet(Etcd(EtcdOptions([etcd_tls.url], ca_cert=str(tls.ca), cert=str(tls.cert), key=str(tls.key),
                                      user="root", password=ROOT_PASSWORD)), fl.prefix)
    host.wait_applied(1)
    assert_open(fl)
    res = xdpctl(*creds, "block", "203.0.113.0/24", "--json")
    assert res.returncode == 0, res.stderr
    rev = json.loads(res.stdout)["revision"]
    host.wait_applied(rev)
    assert_blocked(fl)

    refusals = [
        ((*certs, "--etcd-user", "root", "--etcd-password", "wrong"), "etcd refused the credentials"),
        (certs, "user name is empty"),
        (("--etcd-ca", str(tls.ca), "--etcd-user", "root"), "TLS handshake failed"),
        (("--etcd-cert", str(tls.cert), "--etcd-key", str(tls.key)), "certificate is not trusted"),
    ]
    for args, words in refusals:
        res = xdpctl(*args, "block", "192.0.2.0/24", env={"XDPCTL_ETCD_PASSWORD": ROOT_PASSWORD})
        assert res.returncode == 15 and words in res.stderr, (args, res.stderr)
    assert fleet_rs.revision() == rev
    assert [r.prefix for r in fleet_rs.rules()] == ["203.0.113.0/24"]

    res = xdpctl(*certs, "--etcd-user", "root", "unblock", "203.0.113.0/24", "--json",
                 env={"XDPCTL_ETCD_PASSWORD": ROOT_PASSWORD})  # the password from the environment
    assert res.returncode == 0, res.stderr
    host.wait_applied(json.loads(res.stdout)["revision"])
    assert_open(fl)
    assert host.rule_prefixes() == set()
