"""A test double of OUR OWN receiver protocol (the wire contract), for the agent's push tests.

It checks signatures with `wire.verify`, validates with `wire.validate_report`, dedupes by
Idempotency-Key like the real receiver, and can be told to answer what a test needs: down (503),
a script of statuses, 413 above a size, 429 with Retry-After, or to hold answers (so a test can
kill the agent while a POST is in flight). The real receiver is tested in test_real_receiver.py.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from azfed import wire

SECRET = b"s3cret-for-tests"


@dataclass
class Double:
    secret: bytes = SECRET
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> report
    order: list[str] = field(default_factory=list)  # keys in the order first accepted
    requests: list[tuple[str, int]] = field(default_factory=list)  # (key, status answered)
    down: bool = False
    script: list[int] = field(default_factory=list)  # statuses to answer first, in order
    max_body: int | None = None
    retry_after: str = "0"
    hold: asyncio.Event | None = None  # when set to an unset Event: record, then wait on it
    got: asyncio.Event = field(default_factory=asyncio.Event)

    def samples(self) -> list[tuple[str, str, str]]:
        """Every accepted sample as (resource, meter, timestamp), in acceptance order."""
        return [
            (s["resource_id"], s["meter"], s["timestamp"])
            for key in self.order
            for s in self.accepted[key]["samples"]
        ]

    def seqs(self) -> list[int]:
        return [self.accepted[k]["seq"] for k in self.order]

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get(wire.HEADER_KEY, "")
        status = await self._answer(request, key)
        self.requests.append((key, status))
        self.got.set()
        if status == 429:
            return web.Response(status=429, headers={"Retry-After": self.retry_after})
        return web.json_response({"status": status}, status=status)

    async def _answer(self, request: web.Request, key: str) -> int:
        if self.down:
            return 503
        if self.script:
            return self.script.pop(0)
        body = await request.read()
        if self.max_body is not None and len(body) > self.max_body:
            return 413
        if not self._signed(request, body):
            return 401
        raw = gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body
        report = wire.validate_report(wire.loads(raw))
        if key != wire.idempotency_key(report["agent_id"], report["seq"]):
            return 400
        if key not in self.accepted:
            self.accepted[key] = report
            self.order.append(key)
        if self.hold is not None:
            self.got.set()  # stored: a test may act now, while the answer is held
            await self.hold.wait()
        return 200

    def _signed(self, request: web.Request, body: bytes) -> bool:
        ts = int(request.headers.get(wire.HEADER_TIMESTAMP, "0"))
        sig = request.headers.get(wire.HEADER_SIGNATURE, "")
        fresh = abs(time.time() - ts) < 300
        return fresh and wire.verify(self.secret, "POST", request.path, ts, body, sig)


async def serve(double: Double) -> tuple[web.AppRunner, str]:
    """Run the double on 127.0.0.1 (OS-chosen port); answer the runner and the base URL."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(wire.REPORTS_PATH, double.handle)
    # the signature covers the body as sent: aiohttp must not gunzip it for us
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"
