"""A small fault layer in front of a real HTTP service of the bed (Nova, Gnocchi).

Test-only. It forwards every request to the real service unchanged and answers in its place
only when a rule matches (method and a path regex), with the status and JSON body the test
gives, so the real client code meets the real service's answers plus the injected failures.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

# hop-by-hop headers and those aiohttp recomputes for the body it sends on (aiohttp's server
# has decoded a compressed request body; an answer's body is passed on as it came)
_DROP_REQUEST = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}
_DROP_ANSWER = {"content-length", "transfer-encoding", "connection"}
SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass
class Rule:
    method: str
    path: re.Pattern[str]
    status: int | None  # None: forward to the real service (after `delay_s`)
    body: dict[str, Any]
    times: int | None = None  # None: until removed
    delay_s: float = 0.0
    waiting: int = 0  # requests held by the delay right now

    def matches(self, request: web.Request) -> bool:
        return request.method == self.method and bool(self.path.search(request.path))


@dataclass
class FaultProxy:
    upstream: str
    url: str = ""
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)

    def fail(
        self, method: str, path: str, status: int, body: dict[str, Any], times: int | None = None
    ) -> Rule:
        """Answer `status` + `body` to METHOD requests whose path matches the regex `path`."""
        rule = Rule(method, re.compile(path), status, body, times)
        self.rules.append(rule)
        return rule

    def slow(self, method: str, path: str, delay_s: float) -> Rule:
        """Forward METHOD requests whose path matches `path` only after `delay_s` seconds."""
        rule = Rule(method, re.compile(path), None, {}, delay_s=delay_s)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        for rule in self.rules:
            if rule.matches(request):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                rule.waiting += 1
                try:
                    await asyncio.sleep(rule.delay_s)
                finally:
                    rule.waiting -= 1
                if rule.status is None:
                    return await self._forward(request)
                self.seen.append((request.method, request.path, rule.status))
                return web.json_response(rule.body, status=rule.status)
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        session = request.app[SESSION]
        async with session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            # no body, not an empty one: aiohttp would label b"" application/octet-stream,
            # which Nova answers with 415
            data=await request.read() or None,
            allow_redirects=False,
        ) as resp:
            body = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _DROP_ANSWER}
            self.seen.append((request.method, request.path, resp.status))
            return web.Response(status=resp.status, body=body, headers=out)


@asynccontextmanager
async def serve_fault_proxy(upstream: str) -> AsyncIterator[FaultProxy]:
    """A FaultProxy for `upstream` (e.g. http://127.0.0.1:8774) on a free local port."""
    proxy = FaultProxy(upstream.rstrip("/"))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        app[SESSION] = session
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        proxy.url = f"http://127.0.0.1:{port}"
        try:
            yield proxy
        finally:
            await runner.cleanup()


@contextmanager
def fault_proxy_thread(upstream: str) -> Iterator[FaultProxy]:
    """`serve_fault_proxy` for blocking tests: on an event loop of its own in a thread."""
    loop = asyncio.new_event_loop()
    started: asyncio.Future[FaultProxy] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        async with serve_fault_proxy(upstream) as proxy:
            started.set_result(proxy)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    proxy = asyncio.run_coroutine_threadsafe(asyncio.wait_for(started, 30), loop).result()
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
