"""The capacity fallback against Nova's own scheduler objects and compute exceptions, in the
test bed's OpenStack venv (no OpenStack service is started): the module that runs there is
tests/nova/nova_capacity_fallback.py; this judges the JSON report it prints last."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from testbed.aws import FAKE_CREDENTIALS, MotoServer
from testbed.openstack import SOURCE, install

ROOT = Path(__file__).resolve().parents[2]
TESTS = 6


def test_filter_weigher_and_driver_fall_back_as_nova_runs_them(
    moto: MotoServer, tmp_path: Path
) -> None:
    os_venv, _ = install()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": f"{ROOT}:{SOURCE}",
        "PYTHONWARNINGS": "ignore",
        "OS_NOVA_DISABLE_EVENTLET_PATCHING": "1",
        "AWS_ENDPOINT_URL": moto.endpoint,
        **FAKE_CREDENTIALS,
    }
    run = subprocess.run(
        [str(os_venv / "bin" / "python"), "-m", "tests.nova.nova_capacity_fallback"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = run.stdout.splitlines()
    assert lines, run.stderr[-3000:]
    report = json.loads(lines[-1])
    assert report["failed"] == {}, "\n".join(report["failed"].values())
    assert report["run"] == TESTS, run.stderr[-3000:]
