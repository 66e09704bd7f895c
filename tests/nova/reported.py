"""The real receiver (`azfed.receiver.app.create_app`) in a process of its own, for callers
that block (the driver, Nova's unittest suite): start it, post the agent's report of an
instance to it as the agent does (signed), point nova.conf [azfed] receiver_url at `url`.

Plain asyncio and aiohttp, no pytest: Nova's venv runs the client side too. Usage is read back
from a UsageMemorySink, where Gnocchi stands in production."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from azfed import wire
from azfed.config import parse_config
from azfed.receiver.app import create_app

from tests.receiver.memory_sink import MemorySink
from tests.receiver.usage_sink import UsageMemorySink

ROOT = Path(__file__).resolve().parents[2]
AGENT = "aws-vpc-diag"
SECRET = b"diagnostics-agent-secret-0123456789"  # wire.MIN_SECRET_BYTES or more

# what the agent reports of a burst instance: (resource type, device, meter, unit, type, volume)
USAGE = (
    ("instance", None, "cpu", "ns", "cumulative", 90_000_000_000),
    ("instance", None, "memory", "MiB", "gauge", 1024),
    ("instance", None, "memory.usage", "MiB", "gauge", 612),
    ("instance_network_interface", "eni-0a1b2c3d", "network.incoming.bytes", "B", "cumulative",
     1_048_576),
    ("instance_network_interface", "eni-0a1b2c3d", "network.outgoing.bytes", "B", "cumulative",
     524_288),
    ("instance_network_interface", "eni-0a1b2c3d", "network.incoming.packets", "packet",
     "cumulative", 900),
    ("instance_network_interface", "eni-0a1b2c3d", "network.outgoing.packets", "packet",
     "cumulative", 600),
    ("instance_disk", "xvda", "disk.device.read.bytes", "B", "cumulative", 4096),
    ("instance_disk", "xvda", "disk.device.write.bytes", "B", "cumulative", 8192),
    ("instance_disk", "xvda", "disk.device.read.requests", "request", "cumulative", 3),
    ("instance_disk", "xvda", "disk.device.write.requests", "request", "cumulative", 7),
)  # fmt: skip


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat()


def agent_report(
    instance_uuid: str, remote_id: str, seq: int, state: str = "running"
) -> dict[str, Any]:
    """One version 2 report of one EC2 instance and its USAGE, observed now."""
    now = time.time()
    samples = [
        {"instance_uuid": instance_uuid, "resource_type": rtype, "meter": meter, "unit": unit,
         "type": mtype, "volume": volume, "timestamp": _iso(now - 60),
         **({"device": device} if device else {})}
        for rtype, device, meter, unit, mtype, volume in USAGE
    ]  # fmt: skip
    instance = {
        "instance_uuid": instance_uuid, "provider": "ec2", "remote_id": remote_id,
        "state": state, "ips": {"private": ["10.0.1.15"], "public": []},
        "instance_type": "t3.micro", "az": "us-east-1a", "launched_at": _iso(now - 600),
        "status_checks": "ok", "observed_at": _iso(now - 5),
    }  # fmt: skip
    return {
        "version": 2, "agent_id": AGENT, "seq": seq, "sent_at": _iso(now),
        "instances": [instance], "samples": samples,
    }  # fmt: skip


class ReceiverProcess:
    """The receiver on 127.0.0.1 (an OS-chosen port), in a process of the project's venv
    (`AZFED_RECEIVER_PYTHON`, else this interpreter): Nova's venv has no aiosqlite."""

    def __init__(self, *, usage: bool = True) -> None:
        """`usage=False`: a receiver without a usage store (no Gnocchi): /usage answers 503."""
        python = os.environ.get("AZFED_RECEIVER_PYTHON") or sys.executable
        self._proc = subprocess.Popen(
            [python, "-m", "tests.nova.reported", *([] if usage else ["--no-usage"])],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.url = line
        self._seq = 0

    def report(self, instance_uuid: str, remote_id: str, state: str = "running") -> None:
        """Post the agent's report of the instance, signed; the receiver must accept it."""
        self._seq += 1
        doc = agent_report(instance_uuid, remote_id, self._seq, state)
        raw, headers = wire.encode_report(
            doc, secret=SECRET, agent_id=AGENT, seq=self._seq, now=time.time(), gzip=False
        )
        status = asyncio.run(self._post(raw, headers))
        if status not in (200, 202):
            raise AssertionError(f"the receiver refused the report: HTTP {status}")

    async def _post(self, raw: bytes, headers: dict[str, str]) -> int:
        url = self.url + wire.REPORTS_PATH
        async with aiohttp.ClientSession() as http, http.post(url, data=raw, headers=headers) as r:
            await r.read()
            return r.status

    def stop(self) -> None:
        """Closing its stdin stops it (and a test killed mid-way leaves no receiver behind)."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.close()
        self._proc.wait(10)
        self._proc.stdout.close()


async def _serve(home: Path, usage: bool) -> None:
    """Serve until stdin closes; print the URL once listening."""
    secrets = home / "secrets"
    secrets.mkdir()
    (secrets / f"agents_{AGENT}").write_bytes(SECRET)
    config = parse_config({"receiver": {
        "secrets_dir": str(secrets), "database_url": f"sqlite:///{home / 'state.db'}",
        "sinks": ["null"],
    }})  # fmt: skip
    sink = UsageMemorySink() if usage else MemorySink()
    runner = web.AppRunner(create_app(config, sinks=[sink]), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.to_thread(sys.stdin.read)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="azfed-receiver-") as tmp:
        asyncio.run(_serve(Path(tmp), usage="--no-usage" not in sys.argv))
