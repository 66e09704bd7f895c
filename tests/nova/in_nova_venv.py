"""Running a test module of ours inside the bed's OpenStack venv (Nova's own test package and
objects there), with moto's EC2 behind azfed's driver; nothing of the bed is started."""

from __future__ import annotations

import os
from pathlib import Path

from testbed.aws import FAKE_CREDENTIALS, MotoServer
from testbed.openstack import SOURCE, install

ROOT = Path(__file__).resolve().parents[2]


def nova_python() -> Path:
    """The OpenStack venv's interpreter (built by install.sh if it is not yet)."""
    os_venv, _ = install()
    return os_venv / "bin" / "python"


def nova_env(moto: MotoServer) -> dict[str, str]:
    """The environment of such a run: this checkout's tests and azfed on the path, Nova's
    native threads (as nova-compute runs the driver), every AWS client at moto."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": f"{ROOT}:{SOURCE}",
        "PYTHONWARNINGS": "ignore",
        "OS_NOVA_DISABLE_EVENTLET_PATCHING": "1",
        "AWS_ENDPOINT_URL": moto.endpoint,
        **FAKE_CREDENTIALS,
    }
