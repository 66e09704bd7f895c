from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.aws import FAKE_CREDENTIALS, MotoServer
from testbed.openstack import AUTH, OpenStackBed
from tests.e2e.federation import Federation, federation_in


@pytest.fixture(scope="package")
def federation(openstack_bed: OpenStackBed, moto: MotoServer) -> Iterator[Federation]:
    """azfed switched on in the bed, once for the e2e tests (see federation.py): each module
    boots servers of its own, and leaves the proxy host as it found it."""
    yield from federation_in(openstack_bed, moto)


def _mirror_cli(federation: Federation, moto: MotoServer) -> dict[str, Any]:
    """`azfed network mirror` as an operator runs it: OS_* variables and AWS credentials."""
    env = {
        **os.environ,
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto.endpoint,
        **{f"OS_{k.upper()}": str(v) for k, v in AUTH.items()},
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "azfed"),
            "network",
            "mirror",
            "--json",
            "--subnet",
            federation.vpc["ports_subnet"],
            "--availability-zone",
            "aws-az",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


@pytest.fixture(scope="package")
def mirrored_network(federation: Federation, moto: MotoServer) -> dict[str, Any]:
    """The federation's VPC subnet for burst VMs on ports, mirrored by a Neutron network, as
    `azfed network mirror` makes it (run twice: the second run finds the first one's)."""
    first = _mirror_cli(federation, moto)
    again = _mirror_cli(federation, moto)
    # idempotent: the second run finds the first one's network
    assert (first["created"], again["created"]) == (True, False)
    assert again["subnet_id"] == first["subnet_id"]
    return first
