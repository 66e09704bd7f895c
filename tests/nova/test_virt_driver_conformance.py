"""Nova's own virt-driver conformance suite against FederationDriver, with moto's EC2 behind it.

The suite (`_VirtDriverTestCase`, 64 tests, shipped in the nova wheel) runs in the test bed's
OpenStack venv, where Nova and its test fixtures are installed (testbed/install.sh); no
OpenStack service is started: Nova's fixtures stand in for its database and Glance. The
subclass that runs it is tests/nova/nova_virt_conformance.py; what each test should come to
is tests/nova/conformance_verdicts.py. It is CPU-bound (Nova's fixtures, botocore, moto), so
it runs in one shard per CPU side by side, up to four (a shard has a moto region of its own):
about 30 seconds on one CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from testbed.aws import MotoServer
from tests.nova.conformance_verdicts import PENDING, REFUSED, SUITE_SIZE, WITH_REPORT
from tests.nova.in_nova_venv import ROOT, nova_env, nova_python

# at most tests/nova/nova_virt_conformance.REGIONS: one moto region per shard
SHARDS = min(4, os.cpu_count() or 1)
SHARD_TIMEOUT_S = 150


def _run_shards(moto: MotoServer, logs: Path) -> list[dict[str, Any]]:
    """Run every shard at once; each one's report (the last line it prints)."""
    python = nova_python()
    # the diagnostics tests' receiver runs in this venv: Nova's has no aiosqlite
    env = {**nova_env(moto), "AZFED_RECEIVER_PYTHON": sys.executable}
    procs = []
    try:
        for i in range(SHARDS):
            out, err = logs / f"shard{i}.out", logs / f"shard{i}.err"
            with out.open("w") as stdout, err.open("w") as stderr:
                proc = subprocess.Popen(
                    [str(python), "-m", "tests.nova.nova_virt_conformance"],
                    cwd=ROOT,
                    env={**env, "AZFED_CONFORMANCE_SHARD": f"{i}/{SHARDS}"},
                    stdout=stdout,
                    stderr=stderr,
                )
            procs.append(proc)
        for proc in procs:
            proc.wait(SHARD_TIMEOUT_S)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    reports = []
    for i in range(SHARDS):
        lines = (logs / f"shard{i}.out").read_text().splitlines()
        tail = (logs / f"shard{i}.err").read_text()[-3000:]
        assert lines, f"shard {i} printed nothing:\n{tail}"
        assert lines[-1].startswith("{"), f"shard {i} printed no report:\n{tail}"
        reports.append(json.loads(lines[-1]))
    return reports


def test_every_nova_driver_test_passes_or_meets_its_documented_refusal(
    moto: MotoServer, tmp_path: Path
) -> None:
    reports = _run_shards(moto, tmp_path)
    nova_tests = set(reports[0]["nova_tests"])
    passed = {n for r in reports for n in r["passed"]}
    skipped = {n: why for r in reports for n, why in r["skipped"].items()}
    failed = {n: tb for r in reports for n, tb in r["failed"].items()}

    assert failed == {}, "\n".join(f"{n}:\n{tb}" for n, tb in failed.items())
    assert len(nova_tests) == SUITE_SIZE
    # the subclass replaces exactly the refused and pending tests and those that need the
    # agent's report first: all others run as Nova wrote
    assert set(reports[0]["replaced"]) == set(REFUSED) | set(PENDING) | set(WITH_REPORT)
    assert skipped == PENDING
    assert nova_tests - set(PENDING) <= passed
    assert {n for n in passed - nova_tests if not n.startswith("test_ours_")} == set()


def test_docs_list_every_refused_and_pending_test_of_the_suite() -> None:
    """docs/driver.md is where an operator reads what the public AZ refuses, and why."""
    doc = (ROOT / "docs" / "driver.md").read_text()
    missing = [name for name in [*REFUSED, *PENDING] if f"`{name}`" not in doc]
    assert missing == []
