"""Where xdpctl keeps things: pin directory, state database, map sizes.

Defaults can be changed by environment (XDPCTL_PIN_DIR, XDPCTL_STATE_DIR)
or by the CLI's global options; tests and the demo use their own
directories so they never touch a production instance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .abi import MAP_SPECS

DEFAULT_PIN_DIR = "/sys/fs/bpf/xdpctl"
DEFAULT_STATE_DIR = "/var/lib/xdpctl"

# Default capacities of the shared drop-list maps that may be resized: the
# sizes the BPF objects declare (xdpctl.abi.MAP_SPECS). Changing one after
# the maps exist needs the pins removed and `xdpctl restore`.
RESIZABLE = ("xc_v4_l24", "xc_v4_l32", "xc_v6_l128", "xc_v6_l64", "xc_v6_l48", "xc_v6_l32",
             "xc_v6_trie", "xc_port_trie", "xc_rule_stats")
DEFAULT_CAPACITY = {name: MAP_SPECS[name].max_entries for name in RESIZABLE}


@dataclass
class Settings:
    pin_dir: str = field(default_factory=lambda: os.environ.get("XDPCTL_PIN_DIR", DEFAULT_PIN_DIR))
    state_dir: str = field(default_factory=lambda: os.environ.get("XDPCTL_STATE_DIR", DEFAULT_STATE_DIR))
    capacity: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CAPACITY))

    @property
    def db_path(self) -> str:
        return os.path.join(self.state_dir, "state.db")

    @property
    def shared_map_dir(self) -> str:
        return os.path.join(self.pin_dir, "maps")

    @property
    def hooks_dir(self) -> str:
        return os.path.join(self.pin_dir, "hooks")
