"""The OpenStack test bed: real Keystone, Placement, Glance, Neutron (API only), Nova, Gnocchi
(provisioned by Ceilometer's `ceilometer-upgrade`, as in a cloud with Ceilometer), Aodh and
Horizon.

Everything runs on 127.0.0.1 from the virtualenvs `install.sh` builds, with MariaDB and RabbitMQ
from Debian's packages, all under one folder (`.testbed/` in the checkout unless
AZFED_TESTBED_DIR says otherwise): configs in etc/, state in data/ and mysql/, logs in logs/,
pid files in run/. Every process is started in its own session and stopped by its pid.

Nova runs api, conductor, scheduler and two computes: `compute-local` in AZ `local-az` (fake
driver: the "native" local hypervisor) and `compute-aws` in AZ `aws-az`, the public-AZ proxy
host. The proxy host's `compute_driver` and the scheduler's filters are the caller's choice, so
azfed's own driver and filter run inside the real Nova.

    python -m testbed start [--aws-driver DOTTED] [--filters A,B] [--boot]
    python -m testbed stop [--wipe]
    python -m testbed status
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azfed import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from testbed.aws import REGION as AWS_REGION

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
# the src layout: the bed's Nova services import azfed's driver and filter from this checkout
SOURCE = CHECKOUT / "agent"
HOST = "127.0.0.1"
DB_PASSWORD = "secret"
ADMIN_PASSWORD = "admin"
REGION = "RegionOne"

PORTS = {
    "mariadb": 3306,
    "rabbitmq": 5672,
    "keystone": 5000,
    "nova-api": 8774,
    "placement": 8778,
    "glance": 9292,
    "neutron": 9696,
    "gnocchi-api": 8041,
    "aodh-api": 8042,
    "horizon": 8080,
}
DATABASES = (
    "keystone",
    "placement",
    "glance",
    "nova_api",
    "nova_cell0",
    "nova_cell1",
    "neutron",
    "gnocchi",
    "aodh",
)
# Aodh in the bed: how often alarms are evaluated, and how far back their window reaches
ALARM_EVALUATION_INTERVAL_S = 5
ALARM_INGESTION_LAG_S = 900
COMPUTES = {"compute-local": "local-az", "compute-aws": "aws-az"}
# the public AZs' proxy hosts: azfed's ML2 driver binds the ports of VMs scheduled there
# (compute-os bursts into a public OpenStack, when a test adds it: tests/e2e/test_public_ports)
PROXY_HOSTS = "compute-aws,compute-os"
# The bed is its own public OpenStack: the account PUBLIC_AUTH (a user and project of their
# own, as a public cloud's customer has), whose clouds.yaml entry PUBLIC_CLOUD the bed's
# services find in etc/PUBLIC_CLOUDS (the proxy host's [azfed] cloud, the ML2 driver's
# public_cloud). One account for the bed's life: neutron-server keeps its connection to the
# public cloud, as a deployed one does.
PUBLIC_CLOUDS = "public-clouds.yaml"
PUBLIC_CLOUD = "public"
PUBLIC_PROJECT = "azfed-public"
# compute-local: Nova's fake hypervisor of 10 vCPUs and 8192 MB, the local AZ whose load the
# policy reads; it is never restarted
LOCAL_DRIVER = "fake.MediumFakeDriver"
# compute-aws before azfed's driver takes it over: Nova's fake driver with a stable node
# identity (the compute_id file), as a real single-node driver has. MediumFakeDriver makes a
# new node UUID at every start, so a restarted proxy host would refuse to start ("Duplicate
# compute node record"); this one can switch to azfed's driver and back.
FAKE_DRIVER = "fake.FakeDriverWithoutFakeNodes"
# azfed's driver and filter as nova.conf names them (the driver through its nova.virt shim)
AZFED_DRIVER = "azfed.FederationDriver"
AZFED_FILTER = "azfed.nova.filter.FederationFilter"
DEFAULT_FILTERS = ("ComputeFilter", "ComputeCapabilitiesFilter", "ImagePropertiesFilter")
# extra_nova sections only nova-scheduler reads; every other section goes to compute-aws
SCHEDULER_SECTIONS = frozenset({"filter_scheduler", "azfed_filter"})
# the services a reconfigure() may restart, and the config files each reads after nova.conf
RECONFIGURABLE = {
    "nova-scheduler": "nova-scheduler.conf",
    "nova-compute-aws": "nova-compute-aws.conf",
}
FLAVORS = {  # name: (ram MB, vcpus, disk GB)
    "m1.tiny": (512, 1, 1),
    "m1.small": (1024, 1, 1),
    "m1.medium": (2048, 2, 1),
}
IMAGE = "fake-img"

AUTH = {
    "auth_url": f"http://{HOST}:{PORTS['keystone']}/v3",
    "username": "admin",
    "password": ADMIN_PASSWORD,
    "project_name": "admin",
    "user_domain_name": "Default",
    "project_domain_name": "Default",
    "region_name": REGION,
}
PUBLIC_AUTH = {**AUTH, "username": PUBLIC_PROJECT, "project_name": PUBLIC_PROJECT}


# Popen handles of the processes this Python process started, by pid (see _spawn / _stop_one)
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class TestbedError(RuntimeError):
    """The test bed could not be installed, started or stopped; the message says where to look."""


def _log(msg: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("AZFED_CACHE", str(Path(base) / "azfed")))


def installed() -> dict[str, Path]:
    """Run install.sh (idempotent, fast when cached); the venvs it prints, by the name it
    gives them (OS_VENV, GN_VENV, CM_VENV)."""
    out = subprocess.run(
        ["bash", str(HERE / "install.sh")], check=False, stdout=subprocess.PIPE, text=True
    )
    if out.returncode != 0:
        raise TestbedError("install.sh failed: see the messages above")
    found = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {name: Path(path) for name, path in found.items()}


def install() -> tuple[Path, Path]:
    """Run install.sh; return the bed's two venvs (OpenStack, Gnocchi)."""
    found = installed()
    return found["OS_VENV"], found["GN_VENV"]


def _ini(sections: Mapping[str, Mapping[str, object]]) -> str:
    out = []
    for name, opts in sections.items():
        out.append(f"[{name}]")
        for k, v in opts.items():
            # oslo.config's multi-valued options (MultiStrOpt) repeat the key, once per value;
            # indented continuation lines would join the values into one string instead
            out.extend(f"{k} = {x}" for x in (v if isinstance(v, list | tuple) else [v]))
        out.append("")
    return "\n".join(out)


def _auth_section() -> dict[str, str]:
    return {
        "auth_type": "password",
        "auth_url": AUTH["auth_url"],
        "username": "admin",
        "password": ADMIN_PASSWORD,
        "project_name": "admin",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "region_name": REGION,
    }


def _db(name: str) -> str:
    return f"mysql+pymysql://root:{DB_PASSWORD}@{HOST}/{name}?charset=utf8"


@dataclass
class OpenStackBed:
    """One test bed, in one folder. Start it, use it, stop it.

    aws_driver:    nova `compute_driver` of the compute-aws proxy host (a dotted path for
                   out-of-tree drivers, which are imported from this checkout).
    filters:       nova-scheduler `enabled_filters`.
    extra_nova:    extra nova.conf sections/options: the scheduler's sections (SCHEDULER_SECTIONS,
                   e.g. `[azfed_filter]`) go to nova-scheduler, every other one (e.g. `[azfed]`)
                   to compute-aws; reconfigure() restarts only the service whose file changed.
    extra_env:     extra environment for the Nova services (e.g. AWS_ENDPOINT_URL for moto).
    """

    base: Path = field(
        default_factory=lambda: Path(os.environ.get("AZFED_TESTBED_DIR", CHECKOUT / ".testbed"))
    )
    aws_driver: str = FAKE_DRIVER
    filters: Sequence[str] = DEFAULT_FILTERS
    extra_nova: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    os_venv: Path | None = None
    gn_venv: Path | None = None
    cm_venv: Path | None = None  # Ceilometer and Aodh
    hz_venv: Path | None = None  # Horizon
    # the fingerprint of what each Nova service was last started with (see _fingerprint)
    _started_with: dict[str, str] = field(default_factory=dict, repr=False)

    # --- paths -------------------------------------------------------------------------------

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    @property
    def dist(self) -> Path:
        """Where azfed's entry points are declared for the bed's services (on PYTHONPATH)."""
        return self.base / "python"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    @property
    def run(self) -> Path:
        return self.base / "run"

    @property
    def state_file(self) -> Path:
        return self.run / "bed.json"

    def _bin(self, name: str, venv: Path | None = None) -> str:
        v = venv or self.os_venv
        assert v is not None, "install() first"
        return str(v / "bin" / name)

    # --- environment -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment every OpenStack process runs in."""
        assert self.os_venv is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OS_", "PYTHON", "VIRTUAL_ENV", "RABBITMQ_"))
        }
        env.update(
            PATH=f"{self.os_venv}/bin:/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            HOME=os.environ.get("HOME", "/root"),
            # out-of-tree drivers and filters come from this checkout, never from the cache
            PYTHONPATH=f"{SOURCE}:{self.dist}",
            PYTHONWARNINGS="ignore",
            OS_KEYSTONE_CONFIG_FILES=str(self.etc / "keystone.conf"),
            OS_PLACEMENT_CONFIG_DIR=str(self.etc / "placement"),
            OS_NOVA_CONFIG_DIR=str(self.etc / "nova"),
            OS_GLANCE_CONFIG_DIR=str(self.etc / "glance"),
            OS_NEUTRON_CONFIG_DIR="/",
            OS_NEUTRON_CONFIG_FILES=str(self.etc / "neutron.conf"),
            OS_CLIENT_CONFIG_FILE=str(self.etc / PUBLIC_CLOUDS),
            AZFED_GNOCCHI_CONF=str(self.etc / "gnocchi.conf"),
            AZFED_AODH_CONF=str(self.etc / "aodh.conf"),
            RABBITMQ_MNESIA_BASE=str(self.base / "rabbit" / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "rabbit" / "log"),
            RABBITMQ_NODENAME="rabbit@localhost",
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(PORTS["rabbitmq"]),
            RABBITMQ_PID_FILE=str(self.base / "rabbit" / "rabbit.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "rabbit" / "enabled_plugins"),
        )
        env.update(self.extra_env)
        return env

    # --- configs -----------------------------------------------------------------------------

    def write_configs(self) -> None:
        """Render every service's config into etc/ (the driver and filters included)."""
        b, e = self.base, self.etc
        for d in ("nova", "placement", "glance"):
            (e / d).mkdir(parents=True, exist_ok=True)
        keystone_mw = {"www_authenticate_uri": AUTH["auth_url"], **_auth_section()}
        (e / "keystone.conf").write_text(
            _ini(
                {
                    "DEFAULT": {"log_dir": self.logs},
                    "database": {"connection": _db("keystone")},
                    "token": {"provider": "fernet"},
                    "fernet_tokens": {"key_repository": b / "data/fernet-keys"},
                    "fernet_receipts": {"key_repository": b / "data/fernet-keys"},
                    "credential": {"key_repository": b / "data/credential-keys"},
                }
            )
        )
        (e / "placement" / "placement.conf").write_text(
            _ini(
                {
                    "DEFAULT": {"debug": "false"},
                    "placement_database": {"connection": _db("placement")},
                    "api": {"auth_strategy": "keystone"},
                    "keystone_authtoken": keystone_mw,
                }
            )
        )
        (e / "glance" / "glance-api.conf").write_text(
            _ini(
                {
                    "DEFAULT": {"enabled_backends": "fs:file", "bind_host": HOST},
                    "glance_store": {"default_backend": "fs"},
                    "fs": {"filesystem_store_datadir": b / "data/glance/images"},
                    "os_glance_staging_store": {
                        "filesystem_store_datadir": b / "data/glance/staging"
                    },
                    "os_glance_tasks_store": {"filesystem_store_datadir": b / "data/glance/tasks"},
                    "database": {"connection": _db("glance")},
                    "paste_deploy": {
                        "flavor": "keystone",
                        "config_file": HERE / "etc/glance-api-paste.ini",
                    },
                    "keystone_authtoken": keystone_mw,
                    "oslo_concurrency": {"lock_path": b / "data/locks"},
                }
            )
        )
        (e / PUBLIC_CLOUDS).write_text(public_clouds_yaml())
        (e / "neutron.conf").write_text(
            _ini(
                {
                    "DEFAULT": {
                        "core_plugin": "ml2",
                        "service_plugins": "router,port_forwarding",
                        "auth_strategy": "keystone",
                        "transport_url": f"rabbit://guest:guest@{HOST}:{PORTS['rabbitmq']}/",
                        "api_paste_config": HERE / "etc/neutron-api-paste.ini",
                        "state_path": b / "data/neutron",
                        "notify_nova_on_port_status_changes": "false",
                        "notify_nova_on_port_data_changes": "false",
                    },
                    "database": {"connection": _db("neutron")},
                    "keystone_authtoken": keystone_mw,
                    "nova": _auth_section(),
                    # ML2 tells Placement of a deleted network's segment (a background thread
                    # that logged MissingAuthPlugin at every network deletion without it)
                    "placement": _auth_section(),
                    "oslo_concurrency": {"lock_path": b / "data/locks"},
                    "ml2": {
                        "type_drivers": "flat",
                        "tenant_network_types": "",
                        # azfed's ML2 driver, through the entry point of its package
                        "mechanism_drivers": "azfed",
                        "extension_drivers": "port_security",
                    },
                    # one flat network per mirrored VPC subnet (`azfed network mirror`)
                    "ml2_type_flat": {"flat_networks": "*"},
                    # EC2 is reached at AWS_ENDPOINT_URL (moto), from the bed's environment
                    "ml2_azfed": {
                        "proxy_hosts": PROXY_HOSTS,
                        "region": AWS_REGION,
                        "public_cloud": PUBLIC_CLOUD,
                    },
                }
            )
        )
        self._write_entry_points()
        (e / "gnocchi.conf").write_text(
            _ini(
                {
                    "DEFAULT": {"debug": "false"},
                    "indexer": {"url": _db("gnocchi")},
                    "storage": {"driver": "file", "file_basepath": b / "data/gnocchi"},
                    "incoming": {"driver": "file", "file_basepath": b / "data/gnocchi"},
                    # Gnocchi would otherwise pick up a stray api-paste.ini from a shared folder
                    "api": {"auth_mode": "basic", "paste_config": self._gnocchi_paste()},
                    # readers ask with refresh=True: a slow pace costs no freshness, spares a core
                    "metricd": {"workers": 1, "metric_processing_delay": 10},
                }
            )
        )
        (e / "aodh.conf").write_text(_ini(self._aodh_conf()))
        self._write_nova_configs()

    def _write_entry_points(self) -> None:
        """azfed's entry points, as installing its package would declare them, where the bed's
        services look (PYTHONPATH): neutron-server loads the ML2 driver by its name."""
        project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
        lines = []
        for group, points in project.get("entry-points", {}).items():
            lines += [f"[{group}]", *(f"{k} = {v}" for k, v in points.items()), ""]
        dist = self.dist / f"azfed-{__version__}.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: azfed\nVersion: {__version__}\n"
        )
        (dist / "entry_points.txt").write_text("\n".join(lines))

    def _aodh_conf(self) -> dict[str, dict[str, object]]:
        """Aodh as a cloud runs it: Keystone in front of its API, its own database, the bus
        between evaluator and notifier; it reads Gnocchi as Ceilometer does (the bed's Gnocchi
        takes basic auth, not Keystone tokens: testbed/ceilometer.py)."""
        return {
            "DEFAULT": {
                "transport_url": f"rabbit://guest:guest@{HOST}:{PORTS['rabbitmq']}/",
                # CloudWatch closes a 5-minute period only when it ends, and the agent sends it
                # then: a burst VM's newest `cpu` point is up to two periods old, and without
                # this lag Aodh's window (granularity x (evaluation_periods + 1)) misses it
                # (docs/metering.md, "Alarms on burst VMs")
                "additional_ingestion_lag": ALARM_INGESTION_LAG_S,
                "debug": "false",
            },
            "database": {"connection": _db("aodh")},
            "api": {"auth_mode": "keystone", "paste_config": self._aodh_paste()},
            "keystone_authtoken": {"www_authenticate_uri": AUTH["auth_url"], **_auth_section()},
            "service_credentials": {
                "auth_type": "gnocchi-basic",
                "user": "admin",
                "endpoint": f"http://{HOST}:{PORTS['gnocchi-api']}",
            },
            # a test bed evaluates often (default 60 s): tests wait on state changes
            "evaluator": {"evaluation_interval": ALARM_EVALUATION_INTERVAL_S},
        }

    def _aodh_paste(self) -> Path:
        """Aodh's own api-paste.ini, its Keystone middleware pointed at aodh.conf: with
        `oslo_config_project` alone it reads only /etc/aodh/aodh.conf."""
        assert self.cm_venv is not None
        found = sorted(self.cm_venv.glob("lib/python3*/site-packages/aodh/api/api-paste.ini"))
        if not found:
            raise TestbedError(f"aodh's api-paste.ini not found under {self.cm_venv}")
        text = found[0].read_text()
        section = "[filter:authtoken]\n"
        if section not in text:
            raise TestbedError(f"no {section.strip()} in {found[0]}")
        ours = self.etc / "aodh-api-paste.ini"
        extra = f"oslo_config_file = {self.etc / 'aodh.conf'}\n"
        ours.write_text(text.replace(section, section + extra))
        return ours

    def _gnocchi_paste(self) -> Path:
        assert self.gn_venv is not None
        found = sorted(self.gn_venv.glob("lib/python3*/site-packages/gnocchi/rest/api-paste.ini"))
        if not found:
            raise TestbedError(f"gnocchi's api-paste.ini not found under {self.gn_venv}")
        return found[0]

    def _write_nova_configs(self) -> None:
        b, e = self.base, self.etc
        # nova's WSGI app looks for api-paste.ini beside nova.conf, whatever the option says
        shutil.copyfile(HERE / "etc/nova-api-paste.ini", e / "nova/api-paste.ini")
        nova: dict[str, dict[str, object]] = {
            "DEFAULT": {
                "transport_url": f"rabbit://guest:guest@{HOST}:{PORTS['rabbitmq']}/",
                "compute_driver": LOCAL_DRIVER,
                "state_path": b / "data/nova",
                "my_ip": HOST,
                "debug": "false",
                # the proxy host is its AZ's only host: resize happens in place on it
                "allow_resize_to_same_host": "true",
                # a restart between tests has nothing in flight to drain: oslo.service's
                # 60 s default makes every restart wait seconds for idle threads
                "graceful_shutdown_timeout": 2,
                "log_dir": self.logs,
            },
            "wsgi": {"api_paste_config": e / "nova/api-paste.ini"},
            "api": {"auth_strategy": "keystone"},
            "api_database": {"connection": _db("nova_api")},
            "database": {"connection": _db("nova_cell1")},
            "keystone_authtoken": {"www_authenticate_uri": AUTH["auth_url"], **_auth_section()},
            "placement": _auth_section(),
            "glance": _auth_section(),
            "neutron": _auth_section(),
            "service_user": {"send_service_user_token": "false"},
            "oslo_concurrency": {"lock_path": b / "data/locks"},
            "scheduler": {"discover_hosts_in_cells_interval": 2, "workers": 1},
            "conductor": {"workers": 1},
            "vnc": {"enabled": "false"},
            "oslo_messaging_notifications": {"driver": "noop"},
        }
        (e / "nova" / "nova.conf").write_text(_ini(nova))
        (e / "nova-scheduler.conf").write_text(_ini(self._scheduler_conf()))
        for host in COMPUTES:
            (e / f"nova-{host}.conf").write_text(_ini(self._compute_conf(host)))

    def _scheduler_conf(self) -> dict[str, dict[str, object]]:
        """What only nova-scheduler reads: its filters, and the filter's own options."""
        custom = [f for f in self.filters if "." in f]
        conf: dict[str, dict[str, object]] = {
            "filter_scheduler": {
                # out-of-tree filters must be listed as available by their dotted path
                "available_filters": ["nova.scheduler.filters.all_filters", *custom],
                "enabled_filters": ",".join(f.rsplit(".", 1)[-1] for f in self.filters),
            }
        }
        for section, opts in self.extra_nova.items():
            if section in SCHEDULER_SECTIONS:
                conf.setdefault(section, {}).update(opts)
        return conf

    def _compute_conf(self, host: str) -> dict[str, dict[str, object]]:
        """What one compute host reads on top of nova.conf.

        Each compute has its own state_path: Nova keeps the node's identity there (the
        `compute_id` file), and two computes sharing it cannot both keep their node.
        """
        own: dict[str, object] = {
            "host": host,
            "state_path": self.base / f"data/nova-{host}",
            "log_file": f"nova-{host}.log",  # in log_dir, where tail() looks
        }
        if host != "compute-aws":
            return {"DEFAULT": {**own, "compute_driver": LOCAL_DRIVER}}
        conf: dict[str, dict[str, object]] = {"DEFAULT": {**own, "compute_driver": self.aws_driver}}
        for section, opts in self.extra_nova.items():
            if section not in SCHEDULER_SECTIONS:
                conf.setdefault(section, {}).update(opts)
        return conf

    # --- process management ------------------------------------------------------------------

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Start NAME detached in its own session; `env` adds to the bed's environment."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env(), **(env or {})},
                cwd=cwd or self.base,
                # its own session: stop() signals the whole group (gunicorn master + workers)
                start_new_session=True,
            )
        (self.run / f"{name}.pid").write_text(f"{proc.pid}\n")
        # kept so that stop() reaps it: no zombie, no "subprocess still running" warning
        _CHILDREN[proc.pid] = proc
        return proc.pid

    def _gunicorn(self, name: str, port: int, module: str, venv: Path | None = None) -> None:
        self._spawn(name, gunicorn_argv(self._bin("gunicorn", venv), port, module))

    def _run(self, name: str, argv: Sequence[str]) -> None:
        """Run a one-shot command (db sync...), its output appended to logs/NAME.log."""
        with open(self.logs / f"{name}.log", "ab") as log:
            rc = subprocess.run(
                list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.env(), check=False
            ).returncode
        if rc != 0:
            raise TestbedError(f"{' '.join(argv[:3])}... failed (rc={rc}):\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        """The end of a service's log, for failure messages."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return f"(no log at {path})"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text)

    def pids(self) -> dict[str, int]:
        out = {}
        for f in sorted(self.run.glob("*.pid")) if self.run.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                out[f.stem] = int(f.read_text().split()[0])
        return out

    def running(self) -> dict[str, bool]:
        return {name: _alive(pid) for name, pid in self.pids().items()}

    # --- start -------------------------------------------------------------------------------

    def start(self, boot: bool = False) -> OpenStackBed:
        """Start everything from empty state; return when servers can be booted in both AZs."""
        t0 = time.monotonic()
        if any(self.running().values()):
            raise TestbedError(f"a test bed is already running in {self.base}: stop it first")
        busy = [f"{n}:{p}" for n, p in PORTS.items() if _port_busy(p)]
        if busy:
            raise TestbedError(f"ports already in use on {HOST}: {', '.join(busy)}")
        if None in (self.os_venv, self.gn_venv, self.cm_venv, self.hz_venv):
            found = installed()
            self.os_venv, self.gn_venv = found["OS_VENV"], found["GN_VENV"]
            self.cm_venv, self.hz_venv = found["CM_VENV"], found["HZ_VENV"]
        self._fresh_dirs()
        self.write_configs()
        step = _Stepper(t0)
        try:
            self._start_infra()
            step("rabbitmq + mariadb up")
            self._start_keystone()
            step("keystone up, all schemas synced")
            self._start_services()
            step("all APIs answering")
            # ceilometer-upgrade needs only Gnocchi: it runs while the computes register
            with ThreadPoolExecutor(max_workers=1) as pool:
                provisioned = pool.submit(self._provision_gnocchi)
                self._bootstrap()
                provisioned.result()
            step(
                "computes registered with inventory, AZs, flavors, image ready; Gnocchi provisioned"
            )
            if boot:
                for az in COMPUTES.values():
                    self.smoke_boot(az)
                step("one server ACTIVE in each AZ")
        except BaseException:
            _log(f"start failed: logs are kept in {self.logs}")
            self.stop()
            raise
        self._save_state()
        return self

    def _fresh_dirs(self) -> None:
        for d in ("data", "mysql", "rabbit", "run", "logs", "demo"):
            shutil.rmtree(self.base / d, ignore_errors=True)
        for d in (
            "fernet-keys",
            "credential-keys",
            "locks",
            "nova",
            *(f"nova-{host}" for host in COMPUTES),
            "glance",
            "gnocchi",
            "neutron",
        ):
            (self.base / "data" / d).mkdir(parents=True, exist_ok=True)
        for d in ("rabbit/mnesia", "rabbit/log", "mysql", "run", "logs"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "rabbit" / "enabled_plugins").write_text("[].\n")

    def _start_infra(self) -> None:
        sock = self.base / "mysql" / "mysql.sock"
        self._run(
            "mariadb-install",
            [
                "mariadb-install-db",
                "--user=root",
                f"--datadir={self.base / 'mysql/data'}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
        )
        self._spawn(
            "mariadb",
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={self.base / 'mysql/data'}",
                f"--socket={sock}",
                f"--port={PORTS['mariadb']}",
                f"--bind-address={HOST}",
                f"--pid-file={self.base / 'mysql/mariadb.pid'}",
                "--innodb-buffer-pool-size=64M",
                # a test bed: durability is worth less than speed
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-log-bin",
                "--max-connections=500",
                "--performance-schema=OFF",
            ],
        )
        # rabbitmq-server in the foreground under our own session: stopped by its pid like the rest
        self._spawn("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"])
        _wait(lambda: sock.exists() and self._sql("select 1", socket_path=sock), 60, "mariadb")
        grants = (
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';"
            f"CREATE USER IF NOT EXISTS 'root'@'{HOST}' IDENTIFIED BY '{DB_PASSWORD}';"
            f"GRANT ALL ON *.* TO 'root'@'{HOST}' WITH GRANT OPTION; FLUSH PRIVILEGES;"
            + "".join(f"CREATE DATABASE IF NOT EXISTS {d};" for d in DATABASES)
        )
        if not self._sql(grants, socket_path=sock):
            raise TestbedError(f"could not set up MariaDB:\n{self.tail('mariadb')}")
        _wait(self._rabbit_ready, 90, "rabbitmq", lambda: self.tail("rabbitmq"))

    def _sql(self, stmt: str, socket_path: Path) -> bool:
        argv = ["mariadb", "--no-defaults", "-S", str(socket_path), "-uroot", "-e", stmt]
        r = subprocess.run(argv, capture_output=True, check=False)
        if r.returncode != 0:  # after the first run root has a password
            argv[4:4] = [f"-p{DB_PASSWORD}"]
            r = subprocess.run(argv, capture_output=True, check=False)
        return r.returncode == 0

    def _rabbit_ready(self) -> bool:
        if not _port_busy(PORTS["rabbitmq"]):
            return False
        r = subprocess.run(
            ["rabbitmqctl", "-n", "rabbit@localhost", "await_startup", "--timeout", "5"],
            env=self.env(),
            capture_output=True,
            check=False,
        )
        return r.returncode == 0

    def _start_keystone(self) -> None:
        km = [self._bin("keystone-manage"), "--config-file", str(self.etc / "keystone.conf")]
        self._run("keystone-manage", [*km, "db_sync"])
        for what in ("fernet_setup", "credential_setup"):
            self._run(
                "keystone-manage",
                [*km, what, "--keystone-user", "root", "--keystone-group", "root"],
            )
        url = AUTH["auth_url"]
        self._run(
            "keystone-manage",
            [
                *km,
                "bootstrap",
                "--bootstrap-password",
                ADMIN_PASSWORD,
                "--bootstrap-region-id",
                REGION,
                "--bootstrap-admin-url",
                url,
                "--bootstrap-internal-url",
                url,
                "--bootstrap-public-url",
                url,
            ],
        )
        self._gunicorn("keystone", PORTS["keystone"], "wsgi_keystone")
        # the other schemas sync while keystone warms up
        with ThreadPoolExecutor(max_workers=5) as pool:
            syncs = [pool.submit(self._run, name, argv) for name, argv in self._db_syncs()]
            self._wait_http("keystone", url)
            self._catalog()
            for s in syncs:
                s.result()

    def _db_syncs(self) -> list[tuple[str, list[str]]]:
        nm = [self._bin("nova-manage"), "--config-file", str(self.etc / "nova/nova.conf")]
        nova = " && ".join(
            [
                " ".join([*nm, "api_db", "sync"]),
                " ".join([*nm, "cell_v2", "map_cell0", "--database_connection", _db("nova_cell0")]),
                " ".join([*nm, "cell_v2", "create_cell", "--name", "cell1"]),
                " ".join([*nm, "db", "sync"]),
            ]
        )
        return [
            (
                "placement-manage",
                [
                    self._bin("placement-manage"),
                    "--config-file",
                    str(self.etc / "placement/placement.conf"),
                    "db",
                    "sync",
                ],
            ),
            (
                "glance-manage",
                [
                    self._bin("glance-manage"),
                    "--config-file",
                    str(self.etc / "glance/glance-api.conf"),
                    "db_sync",
                ],
            ),
            (
                "neutron-db-manage",
                [
                    self._bin("neutron-db-manage"),
                    "--config-file",
                    str(self.etc / "neutron.conf"),
                    "upgrade",
                    "heads",
                ],
            ),
            (
                "gnocchi-upgrade",
                [
                    self._bin("gnocchi-upgrade", self.gn_venv),
                    "--config-file",
                    str(self.etc / "gnocchi.conf"),
                ],
            ),
            (
                "aodh-dbsync",
                [
                    self._bin("aodh-dbsync", self.cm_venv),
                    "--config-file",
                    str(self.etc / "aodh.conf"),
                ],
            ),
            ("nova-manage", ["bash", "-c", nova]),
        ]

    def _catalog(self) -> None:
        """Register the services in Keystone; give admin the `service` role.

        keystonemiddleware requires the `service` role on service tokens (nova -> neutron).
        """
        import openstack

        conn = openstack.connect(**AUTH)
        services = [
            ("placement", "placement", f"http://{HOST}:{PORTS['placement']}"),
            ("nova", "compute", f"http://{HOST}:{PORTS['nova-api']}/v2.1"),
            ("glance", "image", f"http://{HOST}:{PORTS['glance']}"),
            ("neutron", "network", f"http://{HOST}:{PORTS['neutron']}"),
            ("gnocchi", "metric", f"http://{HOST}:{PORTS['gnocchi-api']}"),
            ("aodh", "alarming", f"http://{HOST}:{PORTS['aodh-api']}"),
        ]
        for name, kind, url in services:
            svc = conn.identity.create_service(name=name, type=kind)
            for iface in ("public", "internal", "admin"):
                conn.identity.create_endpoint(
                    service_id=svc.id, interface=iface, url=url, region_id=REGION
                )
        # keystone-manage bootstrap creates the role in recent releases, not in older ones
        role = conn.identity.find_role("service") or conn.identity.create_role(name="service")
        admin = conn.identity.find_user("admin", domain_id="default")
        project = conn.identity.find_project("admin", domain_id="default")
        conn.identity.assign_project_role_to_user(project, admin, role)
        conn.close()

    def _start_services(self) -> None:
        self._gunicorn("placement", PORTS["placement"], "wsgi_placement")
        self._gunicorn("glance", PORTS["glance"], "wsgi_glance")
        self._start_neutron()
        self._gunicorn("nova-api", PORTS["nova-api"], "wsgi_nova_api")
        self._gunicorn("gnocchi-api", PORTS["gnocchi-api"], "wsgi_gnocchi", self.gn_venv)
        self._spawn(
            "gnocchi-metricd",
            [
                self._bin("gnocchi-metricd", self.gn_venv),
                "--config-file",
                str(self.etc / "gnocchi.conf"),
            ],
        )
        nova_conf = ["--config-file", str(self.etc / "nova/nova.conf")]
        self._spawn("nova-conductor", [self._bin("nova-conductor"), *nova_conf])
        self._start_nova_service("nova-scheduler")
        for host in COMPUTES:
            self._start_nova_service(f"nova-{host}")
        self._start_aodh()
        self._gunicorn("horizon", PORTS["horizon"], "wsgi_horizon", self.hz_venv)
        for name in (
            "placement", "glance", "neutron", "nova-api", "gnocchi-api", "aodh-api", "horizon",
        ):  # fmt: skip
            self._wait_http(name, f"http://{HOST}:{PORTS[name]}/")

    def _start_aodh(self) -> None:
        aodh_conf = ["--config-file", str(self.etc / "aodh.conf")]
        self._gunicorn("aodh-api", PORTS["aodh-api"], "wsgi_aodh", self.cm_venv)
        for name in ("aodh-evaluator", "aodh-notifier"):
            self._spawn(name, [self._bin(name, self.cm_venv), *aodh_conf])

    def _provision_gnocchi(self) -> None:
        """Ceilometer's archive policies, rules and resource types in the bed's Gnocchi, by
        Ceilometer's own `ceilometer-upgrade`, as every cloud with Ceilometer has them (the
        receiver then finds them, as it would there)."""
        from testbed import ceilometer

        assert self.cm_venv is not None
        conf = ceilometer.write_config(
            self.etc / "ceilometer", f"http://{HOST}:{PORTS['gnocchi-api']}"
        )
        ceilometer.upgrade(conf, venv_dir=self.cm_venv)

    def _start_neutron(self) -> None:
        self._gunicorn("neutron", PORTS["neutron"], "wsgi_neutron")
        self._started_with["neutron"] = self._fingerprint("neutron")

    def _start_nova_service(self, name: str) -> None:
        """nova-scheduler or a nova-compute: nova.conf, then the file only it reads."""
        binary = "nova-compute" if name.startswith("nova-compute") else name
        own = self.etc / f"{name}.conf"
        self._spawn(
            name,
            [
                self._bin(binary),
                "--config-file",
                str(self.etc / "nova/nova.conf"),
                "--config-file",
                str(own),
            ],
        )
        self._started_with[name] = self._fingerprint(name)

    def _fingerprint(self, name: str) -> str:
        """What a running service was started with: its config files and its environment."""
        files = [self.etc / "nova/nova.conf", self.etc / RECONFIGURABLE.get(name, f"{name}.conf")]
        text = "".join(f.read_text() for f in files) + json.dumps(
            dict(self.extra_env), sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def _wait_http(self, name: str, url: str, timeout: float = 180) -> None:
        def answers() -> bool:
            if not _alive(self.pids().get(name, -1)):
                raise TestbedError(f"{name} exited during start-up:\n{self.tail(name)}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
            except urllib.error.HTTPError:
                return True  # it answered, if only with 401/404
            except OSError:
                return False
            return True

        _wait(answers, timeout, name, lambda: self.tail(name))

    # --- bootstrap: cells, AZs, flavors, image -------------------------------------------------

    def connect(self) -> Any:
        """An openstacksdk connection as the admin."""
        import openstack

        return openstack.connect(**AUTH)

    def _bootstrap(self) -> None:
        conn = self.connect()
        try:
            self.wait_computes(conn)
            self._discover_hosts()
            for host, az in COMPUTES.items():
                agg = conn.compute.create_aggregate(name=f"agg-{az}", availability_zone=az)
                conn.compute.add_host_to_aggregate(agg, host)
            for name, (ram, vcpus, disk) in FLAVORS.items():
                conn.compute.create_flavor(name=name, ram=ram, vcpus=vcpus, disk=disk)
            conn.image.create_image(
                name=IMAGE,
                disk_format="raw",
                container_format="bare",
                visibility="public",
                data=b"\0" * 1024,
            )
            # Nova's default project quota (10 instances) is smaller than one test session's
            # boots; a real cloud's admin sets its own. `azfed quota` tests work on their own
            # projects and compare before/after.
            admin = conn.identity.find_project("admin", domain_id="default")
            conn.compute.update_quota_set(admin, instances=200, cores=400, ram=1024 * 1024)
            self._make_public_project(conn)
        finally:
            conn.close()

    @staticmethod
    def _make_public_project(conn: Any) -> None:
        """The public cloud's account. Its user has the admin role there, so it may choose a
        port's address on the shared network as the network's owner could."""
        project = conn.identity.create_project(name=PUBLIC_PROJECT, domain_id="default")
        user = conn.identity.create_user(
            name=PUBLIC_AUTH["username"],
            password=PUBLIC_AUTH["password"],
            domain_id="default",
            default_project_id=project.id,
        )
        conn.identity.assign_project_role_to_user(project, user, conn.identity.find_role("admin"))
        conn.compute.update_quota_set(project, instances=200, cores=400, ram=1024 * 1024)

    def wait_computes(self, conn: Any, hosts: Sequence[str] = tuple(COMPUTES)) -> None:
        """Wait until each compute is up and its provider has MEMORY_MB inventory in Placement."""

        def ready() -> bool:
            for host in hosts:
                if not _alive(self.pids().get(f"nova-{host}", -1)):
                    raise TestbedError(f"nova-{host} exited:\n{self.tail(f'nova-{host}')}")
            up = {s.host for s in conn.compute.services(binary="nova-compute") if s.state == "up"}
            if not set(hosts) <= up:
                return False
            with_mem = {
                rp.name
                for rp in conn.placement.resource_providers()
                if any(
                    i.resource_class == "MEMORY_MB"
                    for i in conn.placement.resource_provider_inventories(rp)
                )
            }
            return set(hosts) <= with_mem

        _wait(ready, 180, "computes in placement", lambda: self.tail("nova-compute-aws"))

    # --- more public AZs ---------------------------------------------------------------------

    def add_proxy_host(self, host: str, az: str, azfed: Mapping[str, object]) -> None:
        """Another public AZ: nova-compute `host` running azfed's driver with these [azfed]
        options, in a new aggregate that makes `az`; remove_proxy_host() takes it away."""
        (self.base / f"data/nova-{host}").mkdir(parents=True, exist_ok=True)
        own = {
            "DEFAULT": {
                "host": host,
                "state_path": self.base / f"data/nova-{host}",
                "log_file": f"nova-{host}.log",
                "compute_driver": AZFED_DRIVER,
            },
            "azfed": dict(azfed),
        }
        (self.etc / f"nova-{host}.conf").write_text(_ini(own))
        self._start_nova_service(f"nova-{host}")
        conn = self.connect()
        try:
            self.wait_computes(conn, [host])
            self._discover_hosts()
            agg = conn.compute.create_aggregate(name=f"agg-{az}", availability_zone=az)
            conn.compute.add_host_to_aggregate(agg, host)
        finally:
            conn.close()
        self._save_state()

    def remove_proxy_host(self, host: str, az: str) -> None:
        """Stop `host` and take it out of Nova (its service, node and Placement provider) and
        its AZ out of the aggregates."""
        self._stop_one(f"nova-{host}")
        self._started_with.pop(f"nova-{host}", None)
        conn = self.connect()
        try:
            agg = conn.compute.find_aggregate(f"agg-{az}")
            if agg is not None:
                conn.compute.remove_host_from_aggregate(agg, host)
                conn.compute.delete_aggregate(agg)
            for svc in conn.compute.services(binary="nova-compute", host=host):
                conn.compute.delete_service(svc)
        finally:
            conn.close()
        self._save_state()

    def _discover_hosts(self) -> None:
        self._run(
            "nova-manage",
            [
                self._bin("nova-manage"),
                "--config-file",
                str(self.etc / "nova/nova.conf"),
                "cell_v2",
                "discover_hosts",
            ],
        )

    def smoke_boot(self, az: str, flavor: str = "m1.tiny", name: str | None = None) -> Any:
        """Boot a server in `az` and wait for ACTIVE; return it."""
        conn = self.connect()
        try:
            fl = conn.compute.find_flavor(flavor)
            im = conn.image.find_image(IMAGE)
            server = conn.compute.create_server(
                name=name or f"smoke-{az}",
                flavor_id=fl.id,
                image_id=im.id,
                networks="none",
                availability_zone=az,
            )
            return conn.compute.wait_for_server(server, status="ACTIVE", wait=180, interval=0.5)
        finally:
            conn.close()

    # --- reconfigure / restart one service -----------------------------------------------------

    def reconfigure(
        self,
        *,
        aws_driver: str | None = None,
        filters: Sequence[str] | None = None,
        extra_nova: Mapping[str, Mapping[str, object]] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """Change the proxy host's driver or the scheduler's filters; restart what uses them.

        `extra_nova` and `extra_env` are merged into what the bed already has. Several test
        sessions share one bed: the change is made under a file lock and on top of the settings
        the last reconfigure saved, so two sessions never both restart a service (orphaning one
        copy) and one session's filters never revert another's driver.
        """
        with self._reconfigure_lock():
            self._load_saved_settings()
            self._reconfigure(aws_driver, filters, extra_nova, extra_env)

    @contextlib.contextmanager
    def _reconfigure_lock(self) -> Iterator[None]:
        import fcntl

        self.run.mkdir(parents=True, exist_ok=True)
        with open(self.run / "reconfigure.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load_saved_settings(self) -> None:
        if self.state_file.exists():
            st = json.loads(self.state_file.read_text())
            self.aws_driver, self.filters = st["aws_driver"], tuple(st["filters"])
            self.extra_nova, self.extra_env = st["extra_nova"], st["extra_env"]
            self._started_with = dict(st.get("started_with", {}))

    def _reconfigure(
        self,
        aws_driver: str | None,
        filters: Sequence[str] | None,
        extra_nova: Mapping[str, Mapping[str, object]] | None,
        extra_env: Mapping[str, str] | None,
    ) -> None:
        if aws_driver is not None:
            self.aws_driver = aws_driver
        if filters is not None:
            self.filters = filters
        # merged, not replaced: the driver's and the filter's options live side by side
        if extra_nova is not None:
            merged = {k: dict(v) for k, v in self.extra_nova.items()}
            for section, opts in extra_nova.items():
                merged.setdefault(section, {}).update(opts)
            self.extra_nova = merged
        if extra_env is not None:
            self.extra_env = {**self.extra_env, **extra_env}
        self._write_nova_configs()
        # restart only the services whose files or environment changed: a restart costs
        # seconds of waiting for the service to report in, and tests reconfigure often
        self._restart_neutron_if_changed()
        changed = [n for n in RECONFIGURABLE if self._started_with.get(n) != self._fingerprint(n)]
        if not changed:
            self._save_state()
            return
        for name in changed:
            self._stop_one(name)
        restarted_at = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        for name in changed:
            self._start_nova_service(name)
        conn = self.connect()
        try:
            self._wait_reported_since(conn, restarted_at, changed)
            if "nova-compute-aws" in changed:
                self.wait_computes(conn, ["compute-aws"])
        finally:
            conn.close()
        self._save_state()

    def _restart_neutron_if_changed(self) -> None:
        """neutron-server reaches EC2 (its ML2 driver) through the bed's environment: a new
        AWS endpoint (another session's moto) needs a new neutron-server."""
        if self._started_with.get("neutron") == self._fingerprint("neutron"):
            return
        self._stop_one("neutron")
        self._start_neutron()
        self._wait_http("neutron", f"http://{HOST}:{PORTS['neutron']}/")

    def _wait_reported_since(
        self, conn: Any, since: datetime.datetime, names: Sequence[str]
    ) -> None:
        """Wait until each restarted service (nova-scheduler, nova-compute-aws) has reported in.

        Their old service records still say "up" for a minute after the restart. A boot sent
        before the new scheduler listens fails, and so does one whose compute host publishes
        to the scheduler's fanout exchange before the new scheduler has declared it.
        """
        wanted = {("nova-compute", "compute-aws") if n == "nova-compute-aws" else n for n in names}

        def fresh() -> bool:
            for name in names:
                if not _alive(self.pids().get(name, -1)):
                    raise TestbedError(f"{name} exited after the restart:\n{self.tail(name)}")
            seen: set[object] = set()
            for svc in conn.compute.services():
                if svc.updated_at and (
                    datetime.datetime.fromisoformat(svc.updated_at.rstrip("Z")) > since
                ):
                    seen.add(svc.binary)
                    seen.add((svc.binary, svc.host))
            return wanted <= seen

        _wait(fresh, 120, f"{', '.join(names)} to report in after the restart")

    # --- stop --------------------------------------------------------------------------------

    def _stop_one(self, name: str, timeout: float = 15) -> None:
        pidfile = self.run / f"{name}.pid"
        pid = self.pids().get(name)
        if pid is not None and _alive(pid):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                _signal_group(pid, signal.SIGKILL)
        # also any group member that outlived its leader (gunicorn workers)
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
            child = _CHILDREN.pop(pid, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(5)
        pidfile.unlink(missing_ok=True)

    def stop(self, wipe: bool = False) -> list[str]:
        """Stop every process this bed started, by pid; keep logs unless `wipe`."""
        names = list(self.pids())
        # Nova first (it talks to everything), infrastructure last
        order = sorted(names, key=lambda n: (n in ("rabbitmq", "mariadb"), n))
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._stop_one, [n for n in order if n not in ("rabbitmq", "mariadb")]))
        for n in ("rabbitmq", "mariadb"):
            if n in names:
                self._stop_one(n, timeout=30)
        self._stop_epmd()
        self.state_file.unlink(missing_ok=True)
        if wipe:
            for d in ("data", "mysql", "rabbit", "run", "etc"):
                shutil.rmtree(self.base / d, ignore_errors=True)
        return names

    def _stop_epmd(self) -> None:
        """rabbitmq's Erlang port mapper daemonizes itself out of our process group."""
        if _port_busy(4369):
            subprocess.run(["epmd", "-kill"], capture_output=True, check=False)

    # --- state -------------------------------------------------------------------------------

    def _save_state(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "os_venv": str(self.os_venv),
                    "gn_venv": str(self.gn_venv),
                    "cm_venv": str(self.cm_venv),
                    "hz_venv": str(self.hz_venv),
                    "aws_driver": self.aws_driver,
                    "filters": list(self.filters),
                    "extra_nova": {
                        k: {kk: str(vv) for kk, vv in v.items()} for k, v in self.extra_nova.items()
                    },
                    "extra_env": dict(self.extra_env),
                    "started_with": self._started_with,
                },
                indent=2,
            )
        )

    @classmethod
    def attach(cls, base: Path | None = None) -> OpenStackBed | None:
        """The bed already running in `base`, if any (for reuse across test runs)."""
        bed = cls(base=base) if base else cls()
        if not bed.state_file.exists() or not all(bed.running().values()):
            return None
        st = json.loads(bed.state_file.read_text())
        bed.os_venv, bed.gn_venv = Path(st["os_venv"]), Path(st["gn_venv"])
        bed.cm_venv = Path(st["cm_venv"]) if "cm_venv" in st else None
        bed.hz_venv = Path(st["hz_venv"]) if "hz_venv" in st else None
        bed.aws_driver, bed.filters = st["aws_driver"], tuple(st["filters"])
        bed.extra_nova, bed.extra_env = st["extra_nova"], st["extra_env"]
        bed._started_with = dict(st.get("started_with", {}))
        return bed


def public_clouds_yaml() -> str:
    """The clouds.yaml entry of the bed's public cloud."""
    auth = {k: v for k, v in PUBLIC_AUTH.items() if k != "region_name"}
    lines = [f"clouds:\n  {PUBLIC_CLOUD}:\n    auth:\n"]
    lines += [f"      {k}: {v}\n" for k, v in auth.items()]
    lines.append(f"    region_name: {PUBLIC_AUTH['region_name']}\n")
    return "".join(lines)


def gunicorn_argv(gunicorn: str, port: int, module: str) -> list[str]:
    """How the bed serves a WSGI service: one gunicorn worker of 8 threads on HOST:port,
    `module` from testbed/wsgi."""
    return [
        gunicorn,
        "-b",
        f"{HOST}:{port}",
        "-w",
        "1",
        "--threads",
        "8",
        "--timeout",
        "300",
        # longer than any client keeps an idle connection: with gunicorn's 2 s default
        # the server closes a connection just as keystoneauth reuses it
        # ("Remote end closed connection without response")
        "--keep-alive",
        "75",
        # Apache's and gunicorn's largest: Nova asks Neutron for the ports of up to 150
        # servers in one query string (~7 KB), past gunicorn's 4094-byte default
        "--limit-request-line",
        "8190",
        "--chdir",
        str(HERE / "wsgi"),
        "--no-control-socket",
        f"{module}:application",
    ]


class _Stepper:
    def __init__(self, t0: float) -> None:
        self.t0 = t0

    def __call__(self, what: str) -> None:
        _log(f"{what} (+{time.monotonic() - self.t0:.1f}s)")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive: it only waits for its parent to reap it
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _wait(
    ready: Any, timeout: float, what: str, details: Any = None, interval: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details else ""
            raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)
