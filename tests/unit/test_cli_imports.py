"""A verb loads only what it uses.

- the verb table (xdpctl/cli/verbs.py) names every verb the modules
  register, and ``xdpctl --help`` still lists them all;
- ``xdpctl block`` (a real one, on its own pin and state directories,
  once the first change has created the maps) runs in a fresh interpreter
  without importing the netlink, etcd, REST, validation-model or
  table-rendering libraries; ``xdpctl version`` without the settings
  either.

Module names, not times: speed is measured by ``make bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from typer.testing import CliRunner

from xdpctl import __version__
from xdpctl.kernel import bpffs

# Runs the CLI's entry point and writes the modules it loaded when it exits.
PROBE = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(out, "w")))
sys.argv[0] = "xdpctl"
from xdpctl.cli import main
main()
"""
# pydantic: the views and the settings are dataclasses; only the service and
# typer's fallback coercion of unusual values load it.
NEVER = ("pyroute2", "etcd3gw", "fastapi", "uvicorn", "starlette", "scapy", "numpy", "rich", "pydantic",
         "pydantic_core")


def _loaded(tmp_path, *argv: str) -> tuple[set[str], str]:
    out = tmp_path / f"modules-{uuid.uuid4().hex[:8]}.json"
    res = subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return set(json.loads(out.read_text())), res.stdout


def _families(modules: set[str], names) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names)


def test_verb_table_names_every_verb() -> None:
    import importlib

    import typer.main

    from xdpctl.cli import app
    from xdpctl.cli.verbs import MODULES, VERBS

    for name in MODULES:
        importlib.import_module(f"xdpctl.cli.{name}")
    registered = set(typer.main.get_command(app).commands)
    assert registered == set(VERBS)
    assert set(VERBS.values()) == set(MODULES)
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0, res.output
    listed = {line.split()[0] for line in res.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(VERBS)


@pytest.mark.root
def test_block_loads_no_netlink_etcd_rest_or_tables(tmp_path) -> None:
    pins = f"/sys/fs/bpf/xdpctl-test-{uuid.uuid4().hex[:10]}"
    try:
        where = ("--pin-dir", pins, "--state-dir", str(tmp_path / "state"))
        _loaded(tmp_path, *where, "block", "192.0.2.6")  # the first change creates the maps
        mods, said = _loaded(tmp_path, *where, "block", "192.0.2.7")
        assert said.startswith("added rule 2: deny 192.0.2.7/32\n") and said.endswith("revision 2\n")
        assert _families(mods, NEVER) == []
        assert "typer._adapters" not in mods  # plain values skip typer's pydantic adapters (cli/coerce.py)
        assert not any(m.startswith(("xdpctl.api", "xdpctl.core.lb", "xdpctl.core.hooks")) for m in mods)
    finally:
        bpffs.remove_tree(pins)


def test_version_loads_no_settings(tmp_path) -> None:
    mods, said = _loaded(tmp_path, "version")
    assert said == f"xdpctl {__version__}\n"
    assert _families(mods, NEVER) == []
    assert "xdpctl.config" not in mods
