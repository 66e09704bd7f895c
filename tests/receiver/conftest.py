"""Receiver fixtures: a receiver app on aiohttp's test server with an in-memory sink
registered like any other, a SQLite store in tmp_path, and a fixed clock."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.config import AzfedConfig, parse_config
from azfed.receiver.app import RUNNER_KWARGS, STORE, create_app

from tests.receiver.memory_sink import MemorySink

DATA = Path(__file__).resolve().parents[1] / "data" / "wire"
# 2025-01-15T12:00:00Z: two hours after the examples' timestamps, within the receiver's horizons
NOW = 1_736_942_400.0
AGENT = "aws-vpc-1"
SECRET = b"agent-secret-1-0123456789abcdefghij"  # wire.MIN_SECRET_BYTES or more
OTHER_AGENT = "aws-vpc-2"
OTHER_SECRET = b"agent-secret-2-0123456789abcdefghij"


def example(name: str = "report-full") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return copy.deepcopy(data)


def restamp(report: dict[str, Any], now: float) -> dict[str, Any]:
    """`report` with every timestamp moved by the same amount, so `sent_at` is `now`: an
    example posted to a receiver that reads the real clock stays within its horizons."""
    shift = dt.datetime.fromtimestamp(now, dt.timezone.utc) - _when(report["sent_at"])
    times = [report, *report["instances"], *report["samples"]]
    for item in times:
        for key in ("sent_at", "observed_at", "launched_at", "timestamp"):
            if item.get(key) is not None:
                item[key] = (_when(item[key]) + shift).isoformat()
    return report


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def make_config(tmp_path: Path, **receiver: Any) -> AzfedConfig:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    # named as [receiver] secrets_prefix's default wants them
    (secrets / f"agents_{AGENT}").write_bytes(SECRET + b"\n")
    (secrets / f"agents_{OTHER_AGENT}").write_bytes(OTHER_SECRET)
    section = {
        "secrets_dir": str(secrets),
        "database_url": f"sqlite:///{tmp_path / 'state.db'}",
        "max_body_bytes": 256 * 1024,
        "sinks": ["null"],
        **receiver,
    }
    return parse_config({"receiver": section})


@dataclass
class Receiver:
    client: TestClient[Any, Any]
    sink: MemorySink
    app: web.Application

    async def post(
        self,
        report: dict[str, Any],
        *,
        gzip: bool = False,
        secret: bytes = SECRET,
        ts: float = NOW,
        headers: dict[str, str | None] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        raw, hdrs = wire.encode_report(
            report,
            secret=secret,
            agent_id=report["agent_id"],
            seq=report["seq"],
            now=ts,
            gzip=gzip,
            check=False,
        )
        if body is not None:  # a hand-made body, signed as is
            raw = body
            hdrs[wire.HEADER_SIGNATURE] = wire.sign(secret, "POST", wire.REPORTS_PATH, int(ts), raw)
        merged: dict[str, str | None] = {**hdrs, **(headers or {})}
        final = {k: v for k, v in merged.items() if v is not None}
        resp = await self.client.post(wire.REPORTS_PATH, data=raw, headers=final)
        answer = await resp.json() if resp.content_type == "application/json" else {}
        return resp.status, answer, dict(resp.headers)

    async def written(self) -> tuple[int, int, int]:
        """(batches in the sink, report keys in the store, instances in the state cache)."""
        store = self.app[STORE]
        return len(self.sink.batches), await store.count_reports(), len(await store.all_instances())


ReceiverFactory = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def make_receiver(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> ReceiverFactory:
    async def make(**receiver: Any) -> Receiver:
        sink = MemorySink()
        app = create_app(make_config(tmp_path, **receiver), sinks=[sink], clock=lambda: NOW)
        server = TestServer(app)
        # TestServer drops constructor kwargs: start it ourselves with the runner's options.
        await server.start_server(**RUNNER_KWARGS)
        client = await aiohttp_client(server)
        return Receiver(client, sink, app)

    return make


@pytest.fixture
async def receiver(make_receiver: ReceiverFactory) -> Receiver:
    return await make_receiver()
