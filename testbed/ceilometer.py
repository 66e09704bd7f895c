"""Ceilometer 27.0.0 from PyPI beside the bed (its own virtualenv: its pins clash with Nova's and
Gnocchi's), pointed at a Gnocchi without Keystone: gnocchiclient's `gnocchi-basic`
keystoneauth plugin gives the user (the identity under Gnocchi's auth_mode basic) and the
endpoint, which Ceilometer's gnocchi_client.py takes from the session instead of a catalog.

    conf = write_config(home, gnocchi_url)
    upgrade(conf)   # ceilometer-upgrade: Ceilometer's resource types in that Gnocchi
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from testbed.openstack import TestbedError, _ini, installed


@functools.cache
def venv() -> Path:
    """Ceilometer's virtualenv (install.sh builds it once, cached by its constraints; asked
    once per process)."""
    return installed()["CM_VENV"]


# The sample and event pipelines: everything to Gnocchi, as Ceilometer's default pipeline.yaml
# does for samples and deployments with Gnocchi do for events (the default event_pipeline.yaml
# publishes to notifier://; Gnocchi's publisher creates and ends `instance` resources from
# Nova's events: gnocchi_resources.yaml event_create, event_delete). Gnocchi's own-activity
# filter asks Keystone for the `service` project, and the Gnocchi here has no Keystone in front
# (auth_mode basic); the filter changes nothing the publisher writes.
PUBLISHER = "gnocchi://?enable_filter_project=false"
PIPELINES = {
    "pipeline.yaml": f"""---
sources:
    - name: meter_source
      meters:
          - "*"
      sinks:
          - meter_sink
sinks:
    - name: meter_sink
      publishers:
          - {PUBLISHER}
""",
    "event_pipeline.yaml": f"""---
sources:
    - name: event_source
      events:
          - "*"
      sinks:
          - event_sink
sinks:
    - name: event_sink
      publishers:
          - {PUBLISHER}
""",
}


def write_config(home: Path, gnocchi_url: str, user: str = "admin") -> Path:
    """A ceilometer.conf whose service credentials reach `gnocchi_url` as `user`, with its
    pipelines; its log in `home`."""
    home.mkdir(parents=True, exist_ok=True)
    for name, text in PIPELINES.items():
        (home / name).write_text(text)
    conf = home / "ceilometer.conf"
    conf.write_text(
        _ini(
            {
                "DEFAULT": {
                    "log_file": home / "ceilometer.log",
                    "debug": "false",
                    "pipeline_cfg_file": home / "pipeline.yaml",
                    "event_pipeline_cfg_file": home / "event_pipeline.yaml",
                },
                # gnocchi_client.get_gnocchiclient reads [gnocchi] auth_section, which
                # defaults to service_credentials
                "service_credentials": {
                    "auth_type": "gnocchi-basic",
                    "user": user,
                    "endpoint": gnocchi_url,
                },
            }
        )
    )
    return conf


def upgrade(conf: Path, timeout: float = 120, venv_dir: Path | None = None) -> None:
    """`ceilometer-upgrade` against the Gnocchi `conf` names (three tries on connection
    errors, not forever as by default), from `venv_dir` (Ceilometer's virtualenv if not given)."""
    argv = [
        str((venv_dir or venv()) / "bin" / "ceilometer-upgrade"),
        "--config-file",
        str(conf),
        "--retry",
        "3",
    ]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False
    )  # fmt: skip
    if out.returncode != 0:
        log = conf.parent / "ceilometer.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise TestbedError(
            f"ceilometer-upgrade failed (rc={out.returncode}):\n{out.stderr[-3000:]}\n{tail}"
        )
