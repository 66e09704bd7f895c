"""Helpers for the packaging tests: a settings file and an agent config an operator would write."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEEL_URL = "https://downloads.example.org/azfed/azfed-0.1.0-py3-none-any.whl"
SHA = "ab" * 32

AGENT_TOML = {
    "ec2": """\
# the operator's agent config, with a comment that must survive the trip
[agent]
id = "vpc-main"
provider = "ec2"

[aws]
region = "eu-west-1"

[push]
url = "https://receiver.example.org:8790/v1/reports"
secret_file = "/run/credentials/azfed-agent.service/push-secret"

[spool]
path = "/var/lib/azfed-agent/spool"
""",
    "openstack": """\
[agent]
id = "public-os"
provider = "openstack"

[openstack]
cloud = "public"

[push]
url = "https://receiver.example.org:8790/v1/reports"
secret_file = "/run/credentials/azfed-agent.service/push-secret"

[spool]
path = "/var/lib/azfed-agent/spool"
""",
}

INSTALL = {
    "wheel": f'install = "wheel"\nwheel_url = "{WHEEL_URL}"\nwheel_sha256 = "{SHA}"\n',
    "index": 'install = "index"\nindex_url = "https://pypi.org/simple"\nversion = "0.1.0"\n',
    "baked": 'install = "baked"\npackages = []\n',
}

WriteSettings = Callable[..., Path]


@pytest.fixture
def write_settings(tmp_path: Path) -> WriteSettings:
    """Write agent.toml and bootstrap.toml for a target and install method; return the latter.

    `extra` lines are appended to [bootstrap]; `agent_toml` replaces the agent config.
    """

    def write(
        target: str = "ec2", install: str = "wheel", extra: str = "", agent_toml: str | None = None
    ) -> Path:
        (tmp_path / "agent.toml").write_text(agent_toml or AGENT_TOML[target])
        secret = 'secret_parameter = "/azfed/agent/push-secret"\n' if target == "ec2" else ""
        text = (
            f'[bootstrap]\ntarget = "{target}"\nagent_config = "agent.toml"\n'
            f"{INSTALL[install]}{secret}{extra}"
        )
        path = tmp_path / "bootstrap.toml"
        path.write_text(text)
        return path

    return write


def cloud_init_schema(user_data: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run cloud-init's own validator (Debian's cloud-init package) on the user data."""
    exe = shutil.which("cloud-init")
    assert exe, "cloud-init is not installed: run `make setup` (Debian package cloud-init)"
    f = tmp_path / "user-data.yaml"
    f.write_text(user_data)
    return subprocess.run(
        [exe, "schema", "--config-file", str(f)], capture_output=True, text=True, check=False
    )
