"""Settings: where xdpctl keeps things, map sizes, the REST service's options.

Every ``XDPCTL_*`` environment variable is read here, by :class:`Settings`,
and nowhere else; docs/settings.md lists them. The CLI's global options and
the service's arguments override what the environment says; tests and the
demo pass their own directories so they never touch a production instance.

Each field takes the variable named after it (``pin_dir`` from
``XDPCTL_PIN_DIR``; an empty one counts as unset), converted by its kind
(text, integer, number, yes/no, or its own parser) as a value passed in
would be. A dict or list field is given as JSON (the list also as
comma-separated names). Settings is a plain dataclass, not a pydantic
model: every CLI run reads it, and importing pydantic cost each run about
0.1 s of its start (docs/latency.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

from .abi import MAP_SPECS, PREALLOCATABLE
from .core.errors import ValidationError

ENV_PREFIX = "XDPCTL_"
DEFAULT_PIN_DIR = "/sys/fs/bpf/xdpctl"
DEFAULT_STATE_DIR = "/var/lib/xdpctl"
DEFAULT_MAX_BODY = 64 << 20       # a text/plain block list: millions of prefixes
DEFAULT_MAX_JSON_BODY = 2 << 20   # JSON bodies: bulk requests are capped in items too

# Default capacities of the shared drop-list maps that may be resized: the
# sizes the BPF objects declare (xdpctl.abi.MAP_SPECS). Changing one after
# the maps exist needs the pins removed and `xdpctl restore`.
RESIZABLE = ("xc_v4_l24", "xc_v4_l32", "xc_v6_l128", "xc_v6_l64", "xc_v6_l48", "xc_v6_l32",
             "xc_v6_trie", "xc_port_trie", "xc_rule_stats")
DEFAULT_CAPACITY = {name: MAP_SPECS[name].max_entries for name in RESIZABLE}

_YES = {"1", "true", "yes", "on", "t", "y"}
_NO = {"0", "false", "no", "off", "f", "n"}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"should be text, not {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _token(value: Any) -> str | None:
    """A bearer token; a blank one is none."""
    return None if value is None else _text(value).strip() or None


def _at_least(kind: type[int] | type[float], least: int) -> Callable[[Any], Any]:
    """An integer (``kind`` int) or a number (float) of at least ``least``,
    given as such or as text."""
    what = "an integer" if kind is int else "a number"

    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (kind, int, str)):
            raise ValueError(f"should be {what}")
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"should be {what}, not {value!r}") from None
        if not number >= least:  # also refuses nan
            raise ValueError(f"should be at least {least}")
        return number
    return convert


def _yes_no(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _YES or word in _NO:
        return word in _YES
    raise ValueError(f"should be true or false (or 1/0, yes/no, on/off), not {value!r}")


def _from_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None


def _capacity(value: Any) -> dict[str, int]:
    if isinstance(value, str):  # XDPCTL_CAPACITY='{"xc_v4_l32": 4194304}'
        value = _from_json(value)
    if not isinstance(value, dict):
        raise ValueError("should be a JSON object of map name -> size")
    unknown = sorted(set(value) - set(DEFAULT_CAPACITY))
    if unknown:
        raise ValueError(f"not resizable: {', '.join(unknown)} (resizable: {', '.join(RESIZABLE)})")
    bad = sorted(name for name, size in value.items() if isinstance(size, bool) or not isinstance(size, int)
                 or size < 1)
    if bad:
        raise ValueError(f"sizes must be integers of at least 1: {', '.join(bad)}")
    return {**DEFAULT_CAPACITY, **value}


def _prealloc(value: Any) -> list[str]:
    if isinstance(value, str):  # XDPCTL_PREALLOC=xc_v4_l32,xc_v6_l128, all, or a JSON list
        value = _from_json(value) if value.lstrip().startswith("[") else value.split(",")
    if not isinstance(value, (list, tuple)):
        raise ValueError("should be a list of map names")
    names = [str(v).strip() for v in value if str(v).strip()]
    if names == ["all"]:
        return list(PREALLOCATABLE)
    unknown = sorted(set(names) - set(PREALLOCATABLE))
    if unknown:
        raise ValueError(f"cannot be preallocated: {', '.join(unknown)} (hash bands: "
                         f"{', '.join(PREALLOCATABLE)}, or all)")
    return sorted(set(names), key=PREALLOCATABLE.index)


def _setting(convert: Callable[[Any], Any], description: str, default: Any = None, *,
             default_factory: Any = dataclasses.MISSING, repr: bool = True) -> Any:
    if default_factory is not dataclasses.MISSING:
        default = dataclasses.MISSING
    return dataclasses.field(default=default, default_factory=default_factory, repr=repr,
                             metadata={"convert": convert, "description": description})


@dataclasses.dataclass(init=False)
class Settings:
    """One instance per process (the CLI run or the service); attributes may
    be assigned after construction (``settings.pin_dir = ...``). Values
    passed in win over the environment's; an unknown or bad one is a
    ValidationError naming the variable (or the value's name)."""

    pin_dir: str = _setting(_text, "bpffs directory of xdpctl's pins", DEFAULT_PIN_DIR)
    state_dir: str = _setting(_text, "directory of the state database and the API token", DEFAULT_STATE_DIR)
    bpf_dir: str | None = _setting(_optional_text, "directory of the compiled BPF objects "
                                                   "(default: the objects installed with the package)")
    capacity: dict[str, int] = _setting(_capacity, "sizes of the resizable drop-list maps, by map name",
                                        default_factory=lambda: dict(DEFAULT_CAPACITY))
    prealloc: list[str] = _setting(_prealloc, "hash bands of the drop list whose memory is taken when they are "
                                              "made (faster bulk writes, memory held at full capacity): names "
                                              "from " + ", ".join(PREALLOCATABLE) + ", or all",
                                   default_factory=list)
    api_token: str | None = _setting(_token, "the REST service's bearer token", repr=False)
    api_token_file: str | None = _setting(_optional_text, "file holding the REST service's bearer token")
    api_read_token: str | None = _setting(_token, "a token that may only read", repr=False)
    api_expire_interval: float = _setting(_at_least(float, 0), "seconds between the service's expiry runs "
                                                               "(0: off)", 1.0)
    api_protect_reads: bool = _setting(_yes_no, "the service requires a token for GETs under /v1 too", True)
    api_protect_metrics: bool = _setting(_yes_no, "the service requires a token for /metrics", True)
    api_max_body: int = _setting(_at_least(int, 1), "largest request body, in bytes, of a list (PUT /v1/lists: "
                                              "text/plain or JSON) or of a text/plain POST /v1/apply",
                                 DEFAULT_MAX_BODY)
    api_max_json_body: int = _setting(_at_least(int, 1), "largest JSON request body, in bytes, of anything but a list",
                                      DEFAULT_MAX_JSON_BODY)
    etcd: str | None = _setting(_optional_text, "fleet mode: etcd endpoints, URL[,URL...]; the rule set and "
                                                "the load balancer's VIPs are then written to and read from etcd")
    etcd_prefix: str = _setting(_text, "fleet mode: the fleet's key prefix, /xdpctl/CLUSTER", "/xdpctl/default")
    etcd_ca: str | None = _setting(_optional_text, "fleet mode: CA bundle that verifies etcd's TLS certificate")
    etcd_cert: str | None = _setting(_optional_text, "fleet mode: client certificate for etcd (TLS)")
    etcd_key: str | None = _setting(_optional_text, "fleet mode: the client certificate's key")
    etcd_user: str | None = _setting(_optional_text, "fleet mode: etcd user (etcd auth)")
    etcd_password: str | None = _setting(_optional_text, "fleet mode: the etcd user's password", repr=False)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(NAMES))
        if unknown:
            raise ValidationError(f"setting {unknown[0]}: unknown (settings: {', '.join(NAMES)})")
        for f in dataclasses.fields(self):
            if f.name in values:
                raw, what = values[f.name], f.name
            elif os.environ.get(env_name(f.name)):
                raw, what = os.environ[env_name(f.name)], env_name(f.name)
            else:
                setattr(self, f.name, f.default_factory() if f.default is dataclasses.MISSING else f.default)
                continue
            try:
                setattr(self, f.name, f.metadata["convert"](raw))
            except ValueError as exc:
                raise ValidationError(f"setting {what}: {exc}", value=raw) from None

    @property
    def db_path(self) -> str:
        return os.path.join(self.state_dir, "state.db")

    @property
    def shared_map_dir(self) -> str:
        return os.path.join(self.pin_dir, "maps")

    @property
    def hooks_dir(self) -> str:
        return os.path.join(self.pin_dir, "hooks")


NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def env_name(field: str) -> str:
    """The environment variable of a setting: ``pin_dir`` -> ``XDPCTL_PIN_DIR``."""
    return ENV_PREFIX + field.upper()


def load_settings(**values: object) -> Settings:
    """Settings from the environment (and ``values``); a bad variable is a
    ValidationError naming it."""
    return Settings(**values)
