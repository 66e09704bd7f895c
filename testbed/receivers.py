"""Several `azfed receiver run` processes on one database, behind HAProxy, as the HA layout in
docs/install.md has them: for the HA tests and bench/bench_receiver_ha.py.

Each receiver logs to `<home>/receiverN.log`; the database must exist (this brings it to the
schema's head with `azfed receiver db upgrade`, as an operator does before starting them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testbed.demo import _clouds_yaml
from testbed.haproxy import HAProxy
from testbed.openstack import DB_PASSWORD, HOST, PORTS
from testbed.procs import free_port, stop

MetricKey = tuple[str, tuple[tuple[str, str], ...]]


def mariadb_admin(statement: str) -> None:
    """One statement as root on the bed's MariaDB (create or drop a scratch database)."""
    import pymysql

    admin = pymysql.connect(host=HOST, port=PORTS["mariadb"], user="root", password=DB_PASSWORD)
    with admin, admin.cursor() as cur:
        cur.execute(statement)


def database_url(name: str) -> str:
    """The receiver's database_url for database `name` on the bed's MariaDB."""
    return f"mysql://root:{DB_PASSWORD}@{HOST}:{PORTS['mariadb']}/{name}?charset=utf8mb4"


def azfed(*args: str) -> list[str]:
    return [sys.executable, "-m", "azfed.cli", *args]


def scrape(port: int) -> dict[MetricKey, float]:
    """A process's /metrics as {(sample name, sorted labels): value}; {} if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(port: int, name: str, **labels: str) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), 0.0)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@dataclass
class Receiver:
    port: int
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def accepted(self) -> float:
        return metric(self.port, "azfed_receiver_reports_total", outcome="accepted")

    def inflight(self) -> float:
        return metric(self.port, "azfed_receiver_inflight")

    def holds_lease(self) -> bool:
        return metric(self.port, "azfed_receiver_lease_held", lease="reconcile") == 1.0

    def reconciled(self) -> float:
        return metric(self.port, "azfed_receiver_reconcile_runs_total", outcome="ok")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (Linux /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@dataclass
class ReceiverCluster:
    """`count` receivers sharing `database_url`, with `receiver_keys` in their [receiver]
    table, `sections` (TOML text) after it and the agents' `secrets` ({agent id: secret}),
    behind one HAProxy."""

    home: Path
    database_url: str
    secrets: dict[str, bytes]
    receiver_keys: str = 'sinks = ["null"]\n'
    sections: str = ""
    receivers: list[Receiver] = field(default_factory=list)
    haproxy: HAProxy | None = None

    def start(self, count: int = 2, timeout: float = 60.0) -> ReceiverCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        secrets_dir = self.home / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        for agent, secret in self.secrets.items():
            (secrets_dir / f"agents_{agent}").write_bytes(secret)
        clouds = self.home / "clouds.yaml"
        clouds.write_text(_clouds_yaml())
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "AZFED_LOG_FORMAT": "json"}
        upgrade = azfed("receiver", "db", "upgrade", "--config", str(self._config(0, "db")))
        subprocess.run(upgrade, check=True, capture_output=True, env=env)
        for i in range(1, count + 1):
            port = free_port()
            r = Receiver(port, self._config(port, f"receiver{i}"))
            # the child keeps its own copy of the log's descriptor; ours is closed at once
            with (self.home / f"receiver{i}.log").open("ab") as log:
                r.proc = subprocess.Popen(
                    azfed("receiver", "run", "--config", str(r.config)),
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            self.receivers.append(r)
        deadline = time.monotonic() + timeout
        while not all(ready(r.port) for r in self.receivers):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"receivers not ready after {timeout:.0f}s: see {self.home}")
            time.sleep(0.2)
        self.haproxy = HAProxy(self.home, free_port(), [r.port for r in self.receivers]).start()
        return self

    @property
    def url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.url

    def _config(self, port: int, name: str) -> Path:
        path = self.home / f"{name}.toml"
        path.write_text(
            f'[receiver]\nhost = "127.0.0.1"\nport = {port}\n'
            f'database_url = "{self.database_url}"\nsecrets_dir = "{self.home / "secrets"}"\n'
            f"{self.receiver_keys}\n{self.sections}"
        )
        return path

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for r in self.receivers:
            if r.proc is not None:
                stop(r.proc, timeout=30)
