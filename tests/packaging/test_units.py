"""The systemd units: valid for systemd itself, and hardened to an exposure score of 2.0 or less.

`systemd-analyze verify` insists that ExecStart's binary exists. The shipped units point at
/opt/azfed/bin/azfed, the install prefix on a real host; the test writes a copy whose ExecStart
names this checkout's own `azfed` (the venv's console script) instead, changing nothing else.
`systemd-analyze security --offline=true` reads the unit file alone, no running systemd needed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT

SYSTEMD = ROOT / "packaging" / "systemd"
UNITS = ["azfed-agent.service", "azfed-receiver.service"]
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: run `make setup` (Debian package systemd)"
    return exe


def local_copy(unit: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's azfed, so verify can find it."""
    azfed = Path(sys.executable).with_name("azfed")
    assert azfed.exists(), f"{azfed}: install the project (pip install -e .)"
    text = (SYSTEMD / unit).read_text()
    assert "ExecStart=/opt/azfed/bin/azfed " in text
    out = tmp_path / unit
    out.write_text(text.replace("/opt/azfed/bin/azfed", str(azfed)))
    return out


def exposure(unit_file: Path) -> float:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", str(local_copy(unit, tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is reported."""
    unit = local_copy("azfed-agent.service", tmp_path)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert "NoNewPrivilege" in result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_score_is_at_most_2(unit: str, tmp_path: Path) -> None:
    score = exposure(local_copy(unit, tmp_path))
    print(f"{unit}: exposure {score}")
    assert score <= MAX_EXPOSURE


def test_an_unhardened_unit_scores_far_above_2(tmp_path: Path) -> None:
    """The score is read correctly: a bare unit is reported as exposed."""
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(bare) > 9.0


@pytest.mark.parametrize("unit", UNITS)
def test_unit_keeps_the_promised_settings(unit: str) -> None:
    text = (SYSTEMD / unit).read_text()
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ]:
        assert line in text, line
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)
    assert re.search(r"^MemoryMax=\d+[MG]$", text, re.M)
    assert re.search(r"^StateDirectory=azfed-(agent|receiver)$", text, re.M)


def test_openstack_drop_in_with_the_agent_unit_passes_verify(tmp_path: Path) -> None:
    """verify reads drop-ins beside the unit (it reports unknown keys in them on stderr)."""
    unit = local_copy("azfed-agent.service", tmp_path)
    dropin = tmp_path / "azfed-agent.service.d"
    dropin.mkdir()
    shutil.copy(SYSTEMD / "azfed-agent-openstack.conf", dropin / "openstack.conf")
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
