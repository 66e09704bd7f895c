"""The capacity fallback against Nova's own scheduler objects and compute exceptions, in the
test bed's OpenStack venv (no OpenStack service is started): the module that runs there is
tests/nova/nova_capacity_fallback.py; this judges the JSON report it prints last."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from testbed.aws import MotoServer
from tests.nova.in_nova_venv import ROOT, nova_env, nova_python

TESTS = 6


def test_filter_weigher_and_driver_fall_back_as_nova_runs_them(
    moto: MotoServer, tmp_path: Path
) -> None:
    run = subprocess.run(
        [str(nova_python()), "-m", "tests.nova.nova_capacity_fallback"],
        cwd=ROOT,
        env=nova_env(moto),
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
