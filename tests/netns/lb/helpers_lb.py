"""What the load balancer's traffic tests share: the environment of one
test (LbEnv) and the bounds they assert.

The balancer is driven through the CLI (a separate process, as an operator
would), with backend MACs read from the backend namespaces (``--mac``).
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers_xdpctl import cli_json, cli_ok, run_cli  # noqa: E402

from xdpctl.core import counters  # noqa: E402
from xdpctl.core.context import Context  # noqa: E402
from xdpctl.core.hooks import HookRef, Hooks  # noqa: E402
from xdpctl.core.lb.service import LoadBalancer  # noqa: E402
from xdpctl.lb_lab import Backend, LbLab, NameServer  # noqa: E402

#: The service port on every backend (TCP and UDP, both VIPs).
PORT = 8080

#: Maglev table size of the tests' VIPs: a prime far above MIN_ROUNDS x the
#: turns of a round, so slot shares equal weight shares within 0.2%.
TABLE = 4099

#: The hooks the balancer runs on: (hook, XDP mode).
HOOKS = [("xdp", "native"), ("xdp", "generic"), ("tc-ingress", None)]

#: Standard deviations a binomial count may stray from its mean. A test
#: assertion on k counts fails by chance with probability below k x 6e-7.
SIGMAS = 5


def binomial_bound(n: int, p: float) -> float:
    """Largest allowed |count - n p| for a Binomial(n, p) count."""
    return SIGMAS * math.sqrt(n * p * (1 - p)) + 1


@dataclass
class LbEnv:
    lab: LbLab
    ctx: Context
    servers: dict[str, NameServer]

    def cli(self, *args: str):
        return run_cli(self.ctx, *args)

    def attach(self, hook: str, mode: str | None, programs: tuple[str, ...] = ("lb",)) -> None:
        """Attach ``programs`` to the balancer's interface, the balancer with
        `xdpctl attach IFACE -p lb --netns NS`, the others through the core
        (each CLI run costs seconds on a loaded machine); in native mode the
        counter to the bridge's end of the interface too (xdpctl.lb_lab)."""
        ep = self.lab.balancer
        for prog in programs:
            if prog == "lb":
                args = ["attach", ep.ifname, "-p", "lb", "--hook", hook, "--netns", ep.netns]
                cli_ok(self.cli(*args, *(["-m", mode] if mode else [])))
            else:
                Hooks(self.ctx).attach(ep.ifname, prog, hook, mode, ep.netns)
        if mode == "native":
            port = self.lab.balancer_port
            Hooks(self.ctx).attach(port.ifname, "counter", "xdp", "native", port.netns)

    def hook_ref(self, hook: str) -> HookRef:
        return HookRef(self.lab.balancer.netns, self.lab.balancer.ifname, hook)

    def proto_counts(self, hook: str) -> dict[tuple[str, str], tuple[int, int]]:
        return counters.read(self.ctx, self.hook_ref(hook)).proto

    def verdicts(self, hook: str) -> dict[str, tuple[int, int]]:
        return counters.read(self.ctx, self.hook_ref(hook)).verdicts

    @property
    def lb(self) -> LoadBalancer:
        return LoadBalancer(self.ctx)

    def service(self, vip: str, proto: str, weights: dict[str, int]) -> None:
        """A VIP with backends by name and weight, MACs read from the
        backends' namespaces (as `xdpctl lb backend add --mac`)."""
        self.lb.add_vip(vip, proto, PORT, TABLE)
        for name, w in weights.items():
            b = self.lab.backend(name)
            self.lb.add_backend(self.address(b, vip), vip, proto, PORT, w, b.ep.mac)

    def set_backend(self, vip: str, proto: str, name: str, state: str) -> None:
        self.lb.set_backend(self.address(self.lab.backend(name), vip), vip, proto, PORT, state=state)

    def del_backend(self, vip: str, proto: str, name: str) -> None:
        self.lb.delete_backend(self.address(self.lab.backend(name), vip), vip, proto, PORT)

    @staticmethod
    def address(b: Backend, vip: str) -> str:
        return b.ep.ipv6 if ":" in vip else b.ep.ipv4

    def name_of(self, address: str) -> str:
        return next(b.name for b in self.lab.backends if address in (b.ep.ipv4, b.ep.ipv6))

    def slots(self, vip: str, proto: str) -> dict[str, int]:
        """Backend name -> slots of the VIP's table (`lb backend list`)."""
        doc = self.lb.backends_view().to_json()
        return {self.name_of(b["address"]): b["slots"] for b in doc["backends"]
                if b["vip"] == vip and b["proto"] == proto}

    def stats(self, vip: str, proto: str, *, cli: bool = False) -> tuple[dict, dict[str, dict]]:
        """(the VIP's counters, backend name -> its counters) from the
        document of `xdpctl lb stats --json` (run when ``cli``, else read
        through the core function it prints)."""
        doc = cli_json(self.cli("lb", "stats", "--json")) if cli else self.lb.stats_view().to_json()
        (v,) = [x for x in doc["vips"] if x["vip"] == vip and x["proto"] == proto]
        bes = {self.name_of(b["backend"]): b for b in doc["backends"] if b["vip"] == vip and b["proto"] == proto}
        return v, bes

    def assert_split(self, vip: str, proto: str, got: Counter[str], weights: dict[str, int]) -> None:
        """Every flow went to a backend of the table, each backend's count
        within binomial_bound of n x its slot share, and each slot share
        within one round's turns of its weight share (Maglev's exact rounds)."""
        n = sum(got.values())
        slots = self.slots(vip, proto)
        total_w = sum(weights.values())  # the turns of a round: the weights here have no common divisor
        assert set(got) <= {name for name, s in slots.items() if s}, (got, slots)
        for name, w in weights.items():
            assert abs(slots[name] / TABLE - w / total_w) <= total_w / TABLE, (name, slots)
            p = slots[name] / TABLE
            assert abs(got[name] - n * p) <= binomial_bound(n, p), (name, dict(got), slots)


def wait_for(cond, what: str, timeout: float = 10.0) -> None:
    """Wait until cond() is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)
