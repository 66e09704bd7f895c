"""A stand-in for Nova's compute API (the few calls the receiver's NovaClient makes), served
by aiohttp, for fast tests that need Nova to answer 404 for a deleted server or to fail.

Test-only. The receiver reaches it through its real client (openstacksdk, noauth, the compute
endpoint overridden); the real Nova is exercised by the bed's tests (tests/receiver/
test_openstack.py). `fail_metadata` makes metadata writes answer 500 (Nova broken)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from azfed.receiver.nova import NovaClient


@dataclass
class FakeNova:
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_metadata: bool = False
    url: str = ""

    def add(self, uuid: str) -> None:
        self.servers[uuid] = {
            "id": uuid, "name": f"vm-{uuid[:8]}", "status": "ACTIVE", "metadata": {},
            "flavor": {"original_name": "m1.small"}, "image": {"id": "img-1"},
            "OS-EXT-AZ:availability_zone": "aws-az", "tenant_id": "p1", "user_id": "u1",
            "created": "2025-01-15T09:00:00Z",
        }  # fmt: skip

    def client(self) -> NovaClient:
        def connect() -> Any:
            import openstack

            return openstack.connection.Connection(
                auth_type="none", compute_endpoint_override=self.url, compute_api_version="2.1"
            )

        return NovaClient(connect, concurrency=2)

    async def _version(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        doc = {"id": "v2.1", "status": "CURRENT", "version": "2.96", "min_version": "2.1",
               "links": [{"rel": "self", "href": str(request.url)}]}  # fmt: skip
        return web.json_response({"version": doc})

    async def _flavors(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        return web.json_response({"flavors": [{"id": "1", "name": "m1.small", "links": []}]})

    async def _server(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        server = self.servers.get(request.match_info["id"])
        if server is None:
            return _not_found()
        return web.json_response({"server": server})

    async def _metadata(self, request: web.Request) -> web.Response:
        self.calls.append((request.method, request.path))
        if self.fail_metadata:
            return web.json_response({"computeFault": {"code": 500, "message": "boom"}}, status=500)
        server = self.servers.get(request.match_info["id"])
        if server is None:
            return _not_found()
        server["metadata"].update((await request.json())["metadata"])
        return web.json_response({"metadata": server["metadata"]})


def _not_found() -> web.Response:
    body = {"itemNotFound": {"code": 404, "message": "Instance could not be found."}}
    return web.json_response(body, status=404)


@contextlib.asynccontextmanager
async def serve_fake_nova() -> AsyncIterator[FakeNova]:
    nova = FakeNova()
    app = web.Application()
    app.router.add_get("/v2.1", nova._version)
    app.router.add_get("/v2.1/", nova._version)
    app.router.add_get("/v2.1/flavors", nova._flavors)
    app.router.add_get("/v2.1/flavors/detail", nova._flavors)
    app.router.add_get("/v2.1/servers/{id}", nova._server)
    app.router.add_post("/v2.1/servers/{id}/metadata", nova._metadata)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        nova.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v2.1"
        yield nova
    finally:
        await runner.cleanup()
