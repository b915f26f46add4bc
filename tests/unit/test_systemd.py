"""The systemd units in contrib/systemd, checked by systemd's own tools.

- ``systemd-analyze verify`` loads each unit and reports nothing. It checks
  that ExecStart= names an executable, and the units name the documented
  install (``/opt/xdpctl/venv/bin/xdpctl``), which a test machine does not
  have. So verify reads copies in which only that virtualenv prefix is
  replaced by this test's own virtualenv (``sys.prefix``, where the package
  is installed just as in /opt/xdpctl/venv): every other line is the
  shipped one, and ExecStart= is checked against a real xdpctl entry point.
  (``--root`` would need a whole fake root holding the system's units and
  /bin/sh.)
- ``systemd-analyze security --offline=yes`` on the shipped files rates
  each unit at most 4.9, the upper end of the "OK" band.
- The units name the install path the README documents, the restore is a
  oneshot that stays active and fails when ``xdpctl restore`` fails, and
  both units wait for bpffs.

systemd-analyze comes with the ``systemd`` package (``make deps``); without
it these tests fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
UNITS = ("xdpctl-restore.service", "xdpctl-api.service")
VENV = "/opt/xdpctl/venv"
EXECUTABLE = f"{VENV}/bin/xdpctl"
OK_UPPER = 4.9  # systemd-analyze: 1.0-4.9 "OK", 5.0 and up "MEDIUM" or worse
TIMEOUT = 60
OVERALL = re.compile(r"Overall exposure level for (\S+): (\d+\.\d) (\w+)")


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: install the systemd package (make deps does)")
    return path


def directives(unit: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in file order, comments and blanks left out."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in (UNIT_DIR / unit).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


@pytest.mark.parametrize("unit", UNITS)
def test_unit_starts_the_documented_install(unit: str) -> None:
    exec_start = directives(unit)[("Service", "ExecStart")]
    assert len(exec_start) == 1 and exec_start[0].split()[0] == EXECUTABLE
    readme = (UNIT_DIR / "README.md").read_text()
    assert f"python3 -m venv {VENV}" in readme
    assert f"{VENV}/bin/pip install" in readme


def test_verify_reports_nothing(tmp_path: Path) -> None:
    here = Path(sys.prefix) / "bin" / "xdpctl"
    assert here.is_file(), f"{here}: the package is not installed in the test virtualenv"
    for unit in UNITS:
        text = (UNIT_DIR / unit).read_text()
        assert VENV in text
        (tmp_path / unit).write_text(text.replace(VENV, sys.prefix))
    res = subprocess.run([analyze(), "verify", *(str(tmp_path / u) for u in UNITS)],
                         capture_output=True, text=True, timeout=TIMEOUT)
    # verify exits 0 on unknown keys and unparsable values: only a clean
    # report counts.
    said = [line for line in (res.stdout + res.stderr).splitlines() if "xdpctl" in line]
    assert res.returncode == 0 and said == [], res.stdout + res.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_is_ok(unit: str) -> None:
    res = subprocess.run([analyze(), "security", "--offline=yes", "--no-pager", str(UNIT_DIR / unit)],
                         capture_output=True, text=True, timeout=TIMEOUT)
    found = OVERALL.search(res.stdout)
    assert found is not None, res.stdout + res.stderr
    assert found.group(1) == unit
    exposure, band = float(found.group(2)), found.group(3)
    assert exposure <= OK_UPPER and band in ("OK", "SAFE", "PERFECT"), found.group(0)


def test_restore_is_a_oneshot_that_fails_when_restore_fails() -> None:
    d = directives("xdpctl-restore.service")
    assert d[("Service", "Type")] == ["oneshot"]
    assert d[("Service", "RemainAfterExit")] == ["yes"]
    # A "-" prefix would ignore the exit status; SuccessExitStatus= would
    # count a partial restore as success.
    assert not d[("Service", "ExecStart")][0].startswith("-")
    assert ("Service", "SuccessExitStatus") not in d


@pytest.mark.parametrize("unit", UNITS)
def test_units_wait_for_bpffs_and_the_state_directory(unit: str) -> None:
    d = directives(unit)
    assert "/sys/fs/bpf" in d[("Unit", "RequiresMountsFor")][0].split()
    assert d[("Service", "StateDirectory")] == ["xdpctl"]
    assert "/sys/fs/bpf" in d[("Service", "ReadWritePaths")][0].split()


def test_api_waits_for_the_restore() -> None:
    d = directives("xdpctl-api.service")
    assert "xdpctl-restore.service" in d[("Unit", "After")][0].split()
    assert "xdpctl-restore.service" in d[("Unit", "Wants")][0].split()
