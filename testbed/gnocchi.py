"""A throwaway Gnocchi beside the bed's: its own database on the bed's MariaDB, its own file
storage, gnocchi-api served from the bed's Gnocchi virtualenv the way the bed serves its own.

For tests that need a Gnocchi in a state the shared one must not be put in (no archive policies
or resource types yet, an older `instance` type): other tests rely on the bed's Gnocchi as it is.
No metricd runs: readers ask with `refresh=true`, and the API processes the metric's pending
measures on read.

    with ThrowawayGnocchi(bed, tmp_path) as url:
        ...  # http://127.0.0.1:<port>, auth_mode basic
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from testbed.openstack import (
    DB_PASSWORD,
    HOST,
    PORTS,
    OpenStackBed,
    TestbedError,
    _db,
    _ini,
    _signal_group,
    _wait,
    gunicorn_argv,
)
from testbed.procs import free_port


@dataclass
class ThrowawayGnocchi:
    """A Gnocchi of its own in `home` (config, file storage, logs), started by start() and gone,
    process and database, after stop()."""

    bed: OpenStackBed
    home: Path
    database: str = field(default_factory=lambda: f"gnocchi_t_{secrets.token_hex(6)}")
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config(self) -> Path:
        return self.home / "gnocchi.conf"

    def start(self, timeout: float = 120) -> ThrowawayGnocchi:
        self.home.mkdir(parents=True, exist_ok=True)
        self._sql(f"CREATE DATABASE `{self.database}`")
        try:
            self._write_config()
            self._run("gnocchi-upgrade", [self._bin("gnocchi-upgrade"), *self._conf_args()])
            self.port = free_port(HOST)
            argv = gunicorn_argv(self._bin("gunicorn"), self.port, "wsgi_gnocchi")
            self._proc = self._spawn("gnocchi-api", argv)
            _wait(self._answers, timeout, f"gnocchi-api on {self.url}", self._log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop gnocchi-api by its pid (its gunicorn workers with it) and drop the database."""
        if self._proc is not None:
            _signal_group(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                _signal_group(self._proc.pid, signal.SIGKILL)
                self._proc.wait(5)
            # any worker that outlived its master
            _signal_group(self._proc.pid, signal.SIGKILL)
            self._proc = None
        self._sql(f"DROP DATABASE IF EXISTS `{self.database}`")

    def __enter__(self) -> str:
        return self.start().url

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- pieces --------------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        if self.bed.gn_venv is None:
            raise TestbedError("the bed has no Gnocchi virtualenv: start or attach it first")
        return str(self.bed.gn_venv / "bin" / name)

    def _conf_args(self) -> list[str]:
        return ["--config-file", str(self.config)]

    def _write_config(self) -> None:
        data = self.home / "data"
        self.config.write_text(
            _ini(
                {
                    "DEFAULT": {"debug": "false"},
                    "indexer": {"url": _db(self.database)},
                    "storage": {"driver": "file", "file_basepath": data},
                    "incoming": {"driver": "file", "file_basepath": data},
                    "api": {"auth_mode": "basic", "paste_config": self.bed._gnocchi_paste()},
                }
            )
        )

    def _env(self) -> dict[str, str]:
        # testbed/wsgi/wsgi_gnocchi.py reads its config file from here
        return {**self.bed.env(), "AZFED_GNOCCHI_CONF": str(self.config)}

    def _run(self, name: str, argv: list[str]) -> None:
        with open(self.home / f"{name}.log", "ab") as log:
            rc = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self._env(), check=False
            ).returncode
        if rc != 0:
            raise TestbedError(f"{name} failed (rc={rc}): see {self.home / f'{name}.log'}")

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        # the child keeps its own copy of the log's descriptor; ours is closed at once
        with open(self.home / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.home,
                # its own session: stop() signals the whole group (gunicorn master + workers)
                start_new_session=True,
            )

    def _answers(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise TestbedError(f"gnocchi-api exited during start-up:\n{self._log_tail()}")
        try:
            urllib.request.urlopen(self.url, timeout=5).close()
        except urllib.error.HTTPError:
            return True  # it answered, if only with 401
        except OSError:
            return False
        return True

    def _log_tail(self) -> str:
        path = self.home / "gnocchi-api.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    @staticmethod
    def _sql(stmt: str) -> None:
        import pymysql  # the project's test dependency, not the bed's

        conn = pymysql.connect(
            host=HOST, port=PORTS["mariadb"], user="root", password=DB_PASSWORD, autocommit=True
        )
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute(stmt)
