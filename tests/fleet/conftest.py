"""Fixtures for fleet mode: real etcd servers and agent hosts.

``etcd`` is one etcd server on free loopback ports with a data directory
under the test's tmp_path, started and stopped by the fixture (and killable
and restartable by the test). ``fleet(n)`` builds n hosts on this machine:
each is a DlEnv (its own lab, pin directory and state directory) with the
drop list attached (XDP generic) on the lab's receiving side, and an
``xdpctl agent`` process of its own. A test that cannot find etcd fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))

from helpers_droplist import DlEnv, cli_env, wait_until  # noqa: E402
from tests.support.serve import free_port  # noqa: E402
from xdpctl.core.context import Context  # noqa: E402
from xdpctl.core.fleet.agent import META_REVISION  # noqa: E402
from xdpctl.core.fleet.kv import Etcd, EtcdOptions  # noqa: E402
from xdpctl.core.fleet.writer import Fleet  # noqa: E402
from xdpctl.core.rules.service import DropList  # noqa: E402
from xdpctl.lab import TwoHostLab  # noqa: E402
from tests.support.progs import temp_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BOUND = 60.0  # seconds: the most any convergence may take before the test fails
API_TOKEN = "fleet-test-token"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.root)


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        pytest.fail("etcd is not installed (make deps installs etcd-server)")
    return path


@dataclass
class EtcdServer:
    """One etcd member; several with the same ``cluster`` string form a cluster."""

    name: str
    data_dir: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    cluster: str | None = None
    proc: subprocess.Popen | None = None
    tls: "Tls | None" = None  # clients must show a certificate of this CA

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    def session(self) -> requests.Session:
        """A client session that etcd accepts (its TLS client certificate)."""
        s = requests.Session()
        if self.tls:
            s.trust_env = False
            s.verify, s.cert = str(self.tls.ca), (str(self.tls.cert), str(self.tls.key))
        return s

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self) -> "EtcdServer":
        args = [etcd_binary(), "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.cluster or f"{self.name}={self.peer_url}",
                "--initial-cluster-state", "new", "--heartbeat-interval", "50", "--election-timeout", "500"]
        if self.tls:
            args += ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                     "--client-cert-auth", "--trusted-ca-file", str(self.tls.ca)]
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        return self

    def wait_ready(self) -> None:
        def healthy() -> bool:
            assert self.proc.poll() is None, f"etcd {self.name} exited ({self.proc.returncode})"
            try:
                return self.session().get(self.url + "/health", timeout=2).json().get("health") == "true"
            except (requests.RequestException, ValueError):
                return False
        wait_until(healthy, f"etcd {self.name} to be healthy", timeout=BOUND, step=0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    (tmp_path / "etcd").mkdir()
    srv = EtcdServer("solo", tmp_path / "etcd" / "solo").start()
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.kill()


@dataclass
class Tls:
    """A CA, a server certificate for 127.0.0.1 and a client certificate
    (without a CommonName: etcd's JSON gateway refuses one under auth)."""

    dir: Path

    def __getattr__(self, name: str) -> Path:
        files = {"ca": "ca.crt", "server_cert": "server.crt", "server_key": "server.key", "cert": "client.crt",
                 "key": "client.key"}
        if name not in files:
            raise AttributeError(name)
        return self.dir / files[name]

    @classmethod
    def make(cls, where: Path) -> "Tls":
        where.mkdir()
        (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")

        def ssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=xdpctl test CA")
        for name, subj, ext in (("server", "/CN=etcd", ["-extfile", "san.ext"]), ("client", "/O=xdpctl", [])):
            ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                subj)
            ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "1", *ext)
        return cls(where)


ROOT_PASSWORD = "fleet-root-pw"


@pytest.fixture
def etcd_tls(tmp_path: Path) -> Iterator[EtcdServer]:
    """One etcd that takes only TLS clients with a certificate of its CA,
    with etcd auth on (user root, ROOT_PASSWORD)."""
    (tmp_path / "etcd-tls").mkdir()
    srv = EtcdServer("tls", tmp_path / "etcd-tls" / "tls", tls=Tls.make(tmp_path / "tls")).start()
    try:
        srv.wait_ready()
        s = srv.session()
        for path, body in (("role/add", {"name": "root"}), ("user/add", {"name": "root", "password": ROOT_PASSWORD}),
                           ("user/grant", {"user": "root", "role": "root"}), ("enable", {})):
            s.post(f"{srv.url}/v3/auth/{path}", json=body, timeout=10).raise_for_status()
        yield srv
    finally:
        srv.kill()


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[list[EtcdServer]]:
    """Three etcd members on loopback forming one cluster."""
    (tmp_path / "cluster").mkdir()
    members = [EtcdServer(f"m{i}", tmp_path / "cluster" / f"m{i}") for i in range(3)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    try:
        for m in members:
            m.cluster = initial
            m.start()
        for m in members:
            m.wait_ready()
        yield members
    finally:
        for m in members:
            m.kill()


@dataclass
class Host:
    """One fleet node: its own lab, pins, state and agent process."""

    env: DlEnv
    node: str
    etcd_urls: str
    prefix: str
    proc: subprocess.Popen | None = None
    api_port: int | None = None  # the agent runs inside `xdpctl serve --etcd --agent` on this port
    etcd_args: tuple[str, ...] = ()  # TLS and auth options of the agent

    def start_agent(self) -> None:
        log = open(self.env.tmp / f"agent-{self.node}.log", "ab")
        if self.api_port is None:
            argv = self.env.cli_args("agent", "--etcd", self.etcd_urls, "--prefix", self.prefix, "--node",
                                     self.node, "--ttl", "2", *self.etcd_args)
        else:
            argv = self.env.cli_args("serve", "--etcd", self.etcd_urls, "--prefix", self.prefix, "--agent",
                                     "--node", self.node, "--port", str(self.api_port), "--token", API_TOKEN)
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO, env=cli_env())
        log.close()

    def api(self, method: str, path: str, **kw) -> requests.Response:
        """A request to this host's service (fleet mode), once it answers."""
        url = f"http://127.0.0.1:{self.api_port}{path}"
        wait_until(lambda: self._answers(url), f"{self.node}'s service to answer", timeout=BOUND)
        return requests.request(method, url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30, **kw)

    def _answers(self, url: str) -> bool:
        assert self.alive(), f"{self.node}'s service exited"
        try:
            requests.get(url, timeout=2)
            return True
        except requests.ConnectionError:
            return False

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _ctx(self) -> Context:
        return Context(self.env.settings)

    def applied(self) -> int:
        with self._ctx() as c:
            return int(c.state.get_meta(META_REVISION, "0") or 0)

    def local_revision(self) -> int:
        with self._ctx() as c:
            return DropList(c).revision()

    def rule_prefixes(self) -> set[str]:
        with self._ctx() as c:
            return {r.prefix for r in DropList(c).rules(with_stats=False) if r.list is None}

    def wait_applied(self, rev: int, bound: float = BOUND) -> None:
        assert self.alive(), f"agent {self.node} is not running"
        wait_until(lambda: self.applied() >= rev, f"{self.node} to apply revision {rev}", timeout=bound)


@dataclass
class FleetLab:
    etcd: EtcdServer
    prefix: str
    hosts: list[Host]

    def fleet(self) -> Fleet:
        return Fleet(Etcd(EtcdOptions(self.hosts[0].etcd_urls.split(","))), self.prefix)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """`xdpctl fleet --etcd URL --prefix P ARGS`."""
        return self.run_cli("fleet", "--etcd", self.etcd.url, "--prefix", self.prefix, *args)

    def global_cli(self, *args: str) -> subprocess.CompletedProcess:
        """`xdpctl --etcd URL --prefix P ARGS`: the ordinary verbs in fleet mode."""
        return self.run_cli("--etcd", self.etcd.url, "--prefix", self.prefix, *args)

    @staticmethod
    def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "xdpctl.cli", *args], capture_output=True, text=True,
                              cwd=REPO, env={**cli_env(), **(env or {})}, timeout=120)

    def wait_all(self, rev: int, bound: float = BOUND) -> None:
        for h in self.hosts:
            h.wait_applied(rev, bound)


@pytest.fixture
def fleet(etcd: EtcdServer, tmp_path: Path) -> Iterator[Callable[[int], FleetLab]]:
    """Factory ``fleet(n)``: n hosts with the drop list attached and agents running."""
    labs: list[TwoHostLab] = []
    hosts: list[Host] = []

    def make(n: int = 3, urls: str | None = None, services: int = 0, etcd_args: tuple[str, ...] = ()) -> FleetLab:
        """n hosts whose agents use ``urls`` (default: the ``etcd`` fixture's);
        the first ``services`` run theirs inside `xdpctl serve --etcd --agent`."""
        prefix = f"/xdpctl/test-{os.getpid()}-{len(labs)}"
        for i in range(n):
            lab = TwoHostLab()
            labs.append(lab)
            env = DlEnv(lab, temp_settings(str(tmp_path / f"state-h{i}")), tmp_path)
            env.attach(lab.b)
            host = Host(env, f"h{i}", urls or etcd.url, prefix, api_port=free_port() if i < services else None,
                        etcd_args=etcd_args)
            hosts.append(host)
            host.start_agent()
        return FleetLab(etcd, prefix, hosts[-n:])

    try:
        yield make
    finally:
        for h in hosts:
            h.stop_agent(signal.SIGKILL)
        for h in hosts:
            h.env.close()
        for lab in labs:
            lab.close()
