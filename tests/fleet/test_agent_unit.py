"""contrib/systemd/xdpctl-agent.service, checked like the other units
(tests/unit/test_systemd.py): systemd-analyze verify is silent on it and
its security exposure is in the OK band."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.test_systemd import EXECUTABLE, OK_UPPER, OVERALL, TIMEOUT, UNIT_DIR, VENV, analyze, directives

UNIT = "xdpctl-agent.service"


def test_agent_unit_runs_the_agent_of_the_documented_install() -> None:
    exec_start = directives(UNIT)[("Service", "ExecStart")]
    assert len(exec_start) == 1 and exec_start[0].split()[:2] == [EXECUTABLE, "agent"]


def test_agent_unit_verifies(tmp_path: Path) -> None:
    (tmp_path / UNIT).write_text((UNIT_DIR / UNIT).read_text().replace(VENV, sys.prefix))
    res = subprocess.run([analyze(), "verify", str(tmp_path / UNIT)], capture_output=True, text=True,
                         timeout=TIMEOUT)
    said = [line for line in (res.stdout + res.stderr).splitlines() if "xdpctl" in line]
    assert res.returncode == 0 and said == [], res.stdout + res.stderr


def test_agent_unit_exposure_is_ok() -> None:
    res = subprocess.run([analyze(), "security", "--offline=yes", "--no-pager", str(UNIT_DIR / UNIT)],
                         capture_output=True, text=True, timeout=TIMEOUT)
    found = OVERALL.search(res.stdout)
    assert found is not None, res.stdout + res.stderr
    assert float(found.group(2)) <= OK_UPPER and found.group(3) in ("OK", "SAFE", "PERFECT"), found.group(0)
