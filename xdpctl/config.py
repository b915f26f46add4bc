"""Settings: where xdpctl keeps things, map sizes, the REST service's options.

Every ``XDPCTL_*`` environment variable is read here, by :class:`Settings`,
and nowhere else; docs/settings.md lists them. The CLI's global options and
the service's arguments override what the environment says; tests and the
demo pass their own directories so they never touch a production instance.

The model is plain pydantic: each field takes the variable named after it
(``pin_dir`` from ``XDPCTL_PIN_DIR``; an empty one counts as unset) and
pydantic validates and converts it as it would a value passed in. A dict
field is given as JSON. pydantic-settings did the same, but importing it
(it pulls in asyncio and its cloud secret sources) cost every CLI run
about 0.1 s of its 0.3 s start.
"""

from __future__ import annotations

import json
import os

import pydantic
from pydantic import ConfigDict, Field, field_validator

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


def _from_environment() -> dict[str, str]:
    """The settings the environment gives: field name -> the variable's text."""
    out = {}
    for name in Settings.model_fields:
        value = os.environ.get(env_name(name))
        if value:
            out[name] = value
    return out


class Settings(pydantic.BaseModel):
    """One instance per process (the CLI run or the service); attributes may
    be assigned after construction (``settings.pin_dir = ...``). Values
    passed in win over the environment's."""

    model_config = ConfigDict(extra="forbid")

    def __init__(self, **values: object) -> None:
        super().__init__(**{**_from_environment(), **values})

    pin_dir: str = Field(DEFAULT_PIN_DIR, description="bpffs directory of xdpctl's pins")
    state_dir: str = Field(DEFAULT_STATE_DIR, description="directory of the state database and the API token")
    bpf_dir: str | None = Field(None, description="directory of the compiled BPF objects "
                                                  "(default: the objects installed with the package)")
    capacity: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CAPACITY),
                                     description="sizes of the resizable drop-list maps, by map name")
    prealloc: list[str] = Field(default_factory=list,
                                description="hash bands of the drop list whose memory is taken when they are "
                                            "made (faster bulk writes, memory held at full capacity): names "
                                            "from " + ", ".join(PREALLOCATABLE) + ", or all")
    api_token: str | None = Field(None, repr=False, description="the REST service's bearer token")
    api_token_file: str | None = Field(None, description="file holding the REST service's bearer token")
    api_read_token: str | None = Field(None, repr=False, description="a token that may only read")
    api_expire_interval: float = Field(1.0, ge=0, description="seconds between the service's expiry runs (0: off)")
    api_protect_reads: bool = Field(True, description="the service requires a token for GETs under /v1 too")
    api_protect_metrics: bool = Field(True, description="the service requires a token for /metrics")
    api_max_body: int = Field(DEFAULT_MAX_BODY, ge=1,
                              description="largest request body, in bytes, of a list (PUT /v1/lists: text/plain "
                                          "or JSON) or of a text/plain POST /v1/apply")
    api_max_json_body: int = Field(DEFAULT_MAX_JSON_BODY, ge=1, description="largest JSON request body, in bytes, "
                                                                             "of anything but a list")
    etcd: str | None = Field(None, description="fleet mode: etcd endpoints, URL[,URL...]; the rule set and the "
                                               "load balancer's VIPs are then written to and read from etcd")
    etcd_prefix: str = Field("/xdpctl/default", description="fleet mode: the fleet's key prefix, /xdpctl/CLUSTER")
    etcd_ca: str | None = Field(None, description="fleet mode: CA bundle that verifies etcd's TLS certificate")
    etcd_cert: str | None = Field(None, description="fleet mode: client certificate for etcd (TLS)")
    etcd_key: str | None = Field(None, description="fleet mode: the client certificate's key")
    etcd_user: str | None = Field(None, description="fleet mode: etcd user (etcd auth)")
    etcd_password: str | None = Field(None, repr=False, description="fleet mode: the etcd user's password")

    @field_validator("capacity", mode="before")
    @classmethod
    def _capacity_json(cls, value):
        if isinstance(value, str):  # XDPCTL_CAPACITY='{"xc_v4_l32": 4194304}'
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return value

    @field_validator("capacity")
    @classmethod
    def _known_maps(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(DEFAULT_CAPACITY))
        if unknown:
            raise ValueError(f"not resizable: {', '.join(unknown)} (resizable: {', '.join(RESIZABLE)})")
        bad = sorted(name for name, size in value.items() if size < 1)
        if bad:
            raise ValueError(f"sizes must be at least 1: {', '.join(bad)}")
        return {**DEFAULT_CAPACITY, **value}

    @field_validator("prealloc", mode="before")
    @classmethod
    def _prealloc_names(cls, value):
        if isinstance(value, str):  # XDPCTL_PREALLOC=xc_v4_l32,xc_v6_l128, all, or a JSON list
            value = json.loads(value) if value.lstrip().startswith("[") else value.split(",")
        names = [str(v).strip() for v in value if str(v).strip()]
        if names == ["all"]:
            return list(PREALLOCATABLE)
        unknown = sorted(set(names) - set(PREALLOCATABLE))
        if unknown:
            raise ValueError(f"cannot be preallocated: {', '.join(unknown)} (hash bands: "
                             f"{', '.join(PREALLOCATABLE)}, or all)")
        return sorted(set(names), key=PREALLOCATABLE.index)

    @field_validator("api_token", "api_read_token")
    @classmethod
    def _blank_token_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @property
    def db_path(self) -> str:
        return os.path.join(self.state_dir, "state.db")

    @property
    def shared_map_dir(self) -> str:
        return os.path.join(self.pin_dir, "maps")

    @property
    def hooks_dir(self) -> str:
        return os.path.join(self.pin_dir, "hooks")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``pin_dir`` -> ``XDPCTL_PIN_DIR``."""
    return ENV_PREFIX + field.upper()


def load_settings(**values: object) -> Settings:
    """Settings from the environment (and ``values``); a bad variable is a
    ValidationError naming it, not a pydantic traceback."""
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first.get("loc") else "?"
        what = env_name(name) if name not in values else name
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        raise ValidationError(f"setting {what}: {msg}", value=first.get("input")) from None
