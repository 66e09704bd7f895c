"""The REAL receiver (`azfed.receiver.app.create_app`) served on a free port for the agent's
tests, with an in-memory sink and the fault middleware of tests/agent/faults.py in front.

What the agent delivered is read where an operator would: the sink's writes, the receiver's
/metrics, and its store (dedupe keys, the agents' last sequence numbers).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from azfed import wire
from azfed.config import parse_config
from azfed.receiver.app import STORE, create_app
from azfed.receiver.run import runner_kwargs, ssl_context
from azfed.receiver.store import Store
from prometheus_client.parser import text_string_to_metric_families

from tests.agent.faults import Faults
from tests.receiver.memory_sink import MemorySink

SECRET = b"s3cret-for-tests-0123456789abcdef"  # wire.MIN_SECRET_BYTES or more


@dataclass
class LiveReceiver:
    url: str
    app: web.Application
    sink: MemorySink
    faults: Faults
    secrets_dir: Path

    @property
    def store(self) -> Store:
        return self.app[STORE]

    def samples(self) -> list[tuple[str, str, str]]:
        """Every sample the receiver wrote, as (resource, meter, timestamp), in write order."""
        return [
            (wire.resource_id(s["instance_uuid"], s.get("device")), s["meter"], s["timestamp"])
            for batch in self.sink.batches
            for s in batch.samples
        ]

    def seqs(self) -> list[int]:
        """The sequence numbers of the reports written, in write order."""
        return [batch.report["seq"] for batch in self.sink.batches]

    def series(self) -> dict[tuple[str, str], int]:
        """How many samples were written per (resource, meter)."""
        out: dict[tuple[str, str], int] = {}
        for r, m, _ in self.samples():
            out[(r, m)] = out.get((r, m), 0) + 1
        return out

    def set_secret(self, agent_id: str, secret: bytes) -> None:
        """What the operator does on a rotation: the receiver reads it at the next request."""
        (self.secrets_dir / f"agents_{agent_id}").write_bytes(secret)

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of the receiver's GET /metrics (0 when the series does not exist yet)."""
        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0


@contextlib.asynccontextmanager
async def serve_receiver(
    tmp: Path, agents: dict[str, bytes], **receiver: Any
) -> AsyncIterator[LiveReceiver]:
    """The receiver on 127.0.0.1 (an OS-chosen port), knowing `agents` {id: secret}; over
    HTTPS when `receiver` sets tls_cert_file and tls_key_file, as `azfed receiver run` does."""
    home = tmp / "receiver"
    secrets = home / "secrets"
    secrets.mkdir(parents=True)
    for agent_id, secret in agents.items():
        (secrets / f"agents_{agent_id}").write_bytes(secret)
    config = parse_config({"receiver": {
        "secrets_dir": str(secrets), "database_url": f"sqlite:///{home / 'state.db'}",
        "sinks": ["null"], **receiver,
    }})  # fmt: skip
    sink = MemorySink()
    faults = Faults()
    app = create_app(config, sinks=[sink])
    app.middlewares.append(faults.middleware)
    assert config.receiver is not None
    tls = ssl_context(config.receiver)
    runner = web.AppRunner(app, access_log=None, **runner_kwargs(config.receiver))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        port = runner.addresses[0][1]
        scheme = "https" if tls is not None else "http"
        yield LiveReceiver(f"{scheme}://127.0.0.1:{port}", app, sink, faults, secrets)
    finally:
        for rule in faults.rules:
            if rule.hold is not None:
                rule.hold.set()  # a held answer must not keep the receiver from stopping
        if sink.gate is not None:
            sink.gate.set()
        await runner.cleanup()
