"""Debian's HAProxy in front of several azfed receivers, as a control plane's balancer does it
(docs/install.md shows the same settings for production).

- `option httpchk GET /readyz`: a receiver whose store or sinks fail leaves the pool;
- `retry-on conn-failure empty-response` with `option redispatch`: a request that reached a
  receiver which died before answering is sent once more, to another one. That is safe for
  reports because the receivers dedupe them by key in the shared database;
- no stickiness: each agent sends one report at a time, so order holds without it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from testbed.procs import stop

HAPROXY = "/usr/sbin/haproxy"


def config(port: int, backends: list[int], host: str = "127.0.0.1") -> str:
    """The HAProxy configuration: one frontend on `port`, one server per backend port."""
    servers = "\n".join(
        f"    server receiver{i} {host}:{p} check inter 500ms fall 2 rise 2"
        for i, p in enumerate(backends, 1)
    )
    return f"""# written by the azfed test bed
global
    maxconn 512

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # the header timeout aiohttp lacks: a client that trickles its request line and headers
    timeout http-request 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend azfed_receivers
    bind {host}:{port}
    default_backend azfed_receivers

backend azfed_receivers
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


def binary() -> str:
    found = shutil.which("haproxy") or (HAPROXY if Path(HAPROXY).exists() else None)
    if found is None:
        raise RuntimeError("haproxy is not installed: run `make setup` (testbed/install.sh)")
    return found


class HAProxy:
    """HAProxy in the foreground as a child process, its config and log under `home`."""

    def __init__(self, home: Path, port: int, backends: list[int]) -> None:
        self.home, self.port, self.backends = home, port, backends
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> HAProxy:
        cfg = self.home / "haproxy.cfg"
        cfg.write_text(config(self.port, self.backends))
        subprocess.run([binary(), "-c", "-q", "-f", str(cfg)], check=True)
        with open(self.home / "haproxy.log", "ab") as log:
            self.proc = subprocess.Popen(
                [binary(), "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"haproxy did not start: see {self.home / 'haproxy.log'}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop(self.proc)
        self.proc = None
