"""The load balancer's input checks: addresses, protocols, ports, table
sizes, weights, MACs, backend states; and which backends a VIP's Maglev
table holds. Pure: no state, no kernel."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ... import abi
from ..errors import ValidationError, choice
from ..rules.store import BackendRow, VipRow
from . import maglev

PROTOS = {"tcp": 6, "udp": 17}
PROTO_NAMES = {v: k for k, v in PROTOS.items()}
STATES = {"active": abi.LbState.ACTIVE, "draining": abi.LbState.DRAINING, "down": abi.LbState.DOWN}
WEIGHT_MAX = 1000
CHECKS = ("tcp", "udp", "none")
# A VIP's flow hash: l4 over addresses, protocol and ports; l3 over
# addresses and protocol only (XC_LB_VIP_HASH_L3: every fragment of a
# datagram, and every flow of a client, to one backend).
HASHES = {"l4": 0, "l3": abi.LB_VIP_HASH_L3}
INTERVAL_MAX = 3600.0
TIMEOUT_MAX = 60.0  # a round waits for its slowest probe
THRESHOLD_MAX = 100
_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")


def address(text: str, field: str = "address") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        raise ValidationError(f"not an IP address: {text!r}", field=field, value=text) from None


def proto(name: str) -> int:
    p = PROTOS.get(str(name).lower())
    if p is None:
        raise ValidationError(f"unknown protocol {name!r}", field="proto", value=name, hint="choose tcp or udp")
    return p


def port(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 65535:
        raise ValidationError("port must be 0 (every port) to 65535", field="port", value=n)
    return n


def table_size(n: int | None) -> int:
    n = abi.LB_RING_DEFAULT if n is None else n
    if not isinstance(n, int) or isinstance(n, bool) or not maglev.is_prime(n) or n > abi.LB_RING_MAX:
        raise ValidationError(f"table size must be a prime number up to {abi.LB_RING_MAX}", field="table_size",
                              value=n, hint=f"the default is {abi.LB_RING_DEFAULT}")
    return n


def weight(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= WEIGHT_MAX:
        raise ValidationError(f"weight must be an integer from 0 to {WEIGHT_MAX}", field="weight", value=n)
    return n


def mac(text: str | None) -> str | None:
    if text is None:
        return None
    m = str(text).strip().lower()
    if not _MAC.match(m):
        raise ValidationError(f"not a MAC address: {text!r}", field="mac", value=text,
                              hint="six hex bytes, e.g. 02:00:00:00:00:01")
    return m.replace("-", ":")


def state(name: str) -> str:
    return choice(name, STATES, field="state", what="backend state")


def hash_mode(name: str | None, default: str = "l4") -> str:
    """A VIP's flow hash (``None``: ``default``)."""
    return default if name is None else choice(name, HASHES, field="hash", what="flow hash")


def vip_flags(row: VipRow) -> int:
    """The xc_lb_vip flags of a VIP."""
    return HASHES[row.hash]


def check_kind(name: str) -> str:
    return choice(name, CHECKS, field="check", what="health check")


def check_port(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 65535:
        raise ValidationError("{field:check_port} must be 1 to 65535, or 0: the VIP's port", field="check_port",
                              value=n)
    return n


def seconds(x: float, field: str, most: float) -> float:
    """An interval or timeout: above 0, at most ``most`` seconds."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= most:
        raise ValidationError(f"{{field:{field}}} must be above 0 and at most {most:g} seconds",
                              field=field, value=x)
    return float(x)


def threshold(n: int, field: str) -> int:
    """rise or fall: checks in a row that change a backend's health."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= THRESHOLD_MAX:
        raise ValidationError(f"{{field:{field}}} must be an integer from 1 to {THRESHOLD_MAX}", field=field, value=n)
    return n


@dataclass(frozen=True)
class Check:
    """A VIP's health check, validated. port 0: the VIP's port."""

    kind: str = "none"
    port: int = 0
    interval: float = 5.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3

    @classmethod
    def of(cls, kind: str = "none", port: int = 0, interval: float = 5.0, timeout: float = 1.0, rise: int = 2,
           fall: int = 3) -> "Check":
        c = cls(check_kind(kind), check_port(port), seconds(interval, "interval", INTERVAL_MAX),
                seconds(timeout, "timeout", TIMEOUT_MAX),
                threshold(rise, "rise"), threshold(fall, "fall"))
        if c.timeout > c.interval:
            raise ValidationError("{field:timeout} must not exceed {field:interval}", field="timeout",
                                  value=timeout)
        return c

    @classmethod
    def of_row(cls, row: VipRow) -> "Check":
        return cls(row.check_kind, row.check_port, row.interval, row.timeout, row.rise, row.fall)

    def changed(self, check: str | None = None, check_port: int | None = None, interval: float | None = None,
                timeout: float | None = None, rise: int | None = None, fall: int | None = None) -> "Check":
        """This check with the given (not None) settings replaced, validated;
        the arguments are named as the front ends' fields."""
        given = {"kind": check, "port": check_port, "interval": interval, "timeout": timeout, "rise": rise,
                 "fall": fall}
        return Check.of(**{f: getattr(self, f) if x is None else x for f, x in given.items()})


@dataclass(frozen=True)
class VipKey:
    """A VIP as the user names it: address, protocol, port (validated)."""

    addr: str
    family: int
    proto: int
    port: int

    @classmethod
    def of(cls, addr: str, proto_name: str, port_no: int, field: str = "address") -> "VipKey":
        a = address(addr, field)
        return cls(str(a), a.version, proto(proto_name), port(port_no))

    def label(self) -> str:
        return f"{self.addr} {PROTO_NAMES[self.proto]} port {self.port}"


def usable(b: BackendRow) -> bool:
    """Active (admin), not down by its health check, with a MAC."""
    return b.state == "active" and b.health != "down" and bool(b.mac)


def kernel_state(b: BackendRow) -> int:
    """The backend's state in xc_lb_backends: the operator's down or drain
    wins over health; an active backend its check found down is DOWN."""
    if b.state == "active" and b.health == "down":
        return abi.LbState.DOWN
    return STATES[b.state]


def in_table(rows: list[BackendRow]) -> list[BackendRow]:
    """The backends a VIP's table holds, in address order: the table
    depends on the set of backends only, never on the order they were added
    (hosts of a fleet with different histories build the same table)."""
    chosen = [b for b in rows if usable(b) and b.weight > 0]
    return sorted(chosen, key=lambda b: ipaddress.ip_address(b.addr).packed)


def check_backends(rows: list[BackendRow], size: int) -> None:
    """Can these backends make a table of ``size`` slots? ValidationError if not."""
    active = [b for b in rows if b.state == "active"]
    if active and not any(b.weight for b in active):
        raise ValidationError("every active backend of the VIP has weight 0: give one a weight above 0",
                              field="weight", value=0)
    chosen = in_table(rows)
    if chosen:
        maglev.check([(b.addr, b.weight) for b in chosen], size)


def build(rows: list[BackendRow], size: int) -> tuple[list[int], list[int]]:
    """(backend ids, Maglev table as indexes into them) of a VIP."""
    chosen = in_table(rows)
    if not chosen:
        return [], []
    return [b.id for b in chosen], maglev.build([(b.addr, b.weight) for b in chosen], size)
