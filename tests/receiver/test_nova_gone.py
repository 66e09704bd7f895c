"""Against the bed's REAL Nova: a server deleted after the agent reported it (`openstack server
delete` of a burst VM) is not a backend failure: the Nova sink skips it, the report is
accepted, and the client's server cache forgets it. A Nova that fails metadata writes (a fault
layer in front of the real nova-api) makes /readyz say so until a write succeeds again."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openstack
import pytest
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.receiver.app import METRICS, RUNNER_KWARGS, create_app
from azfed.receiver.nova import NovaClient
from azfed.receiver.sinks.nova import NovaSink
from structlog.testing import capture_logs

from testbed.openstack import AUTH, IMAGE, PORTS, OpenStackBed
from tests.faultproxy import FaultProxy, serve_fault_proxy
from tests.receiver.conftest import AGENT, SECRET, make_config

Client = TestClient[Any, Any]


@pytest.fixture
def servers(openstack_bed: OpenStackBed) -> Iterator[list[Any]]:
    """Two servers of our own in local-az, deleted afterwards unless a test already did."""
    conn = openstack_bed.connect()
    made = [
        conn.compute.create_server(
            name=f"azfed-gone-{uuid.uuid4().hex[:8]}",
            flavor_id=conn.compute.find_flavor("m1.tiny").id,
            image_id=conn.image.find_image(IMAGE).id,
            networks="none",
            availability_zone="local-az",
        )
        for _ in range(2)
    ]
    try:
        yield [
            conn.compute.wait_for_server(s, status="ACTIVE", wait=180, interval=0.5) for s in made
        ]
    finally:
        for s in made:
            conn.compute.delete_server(s, ignore_missing=True)
        for s in made:
            conn.compute.wait_for_delete(s, wait=120, interval=0.5)
        conn.close()


@pytest.fixture
async def nova_api() -> AsyncIterator[FaultProxy]:
    async with serve_fault_proxy(f"http://127.0.0.1:{PORTS['nova-api']}") as proxy:
        yield proxy


@pytest.fixture
async def client(
    openstack_bed: OpenStackBed, nova_api: FaultProxy, tmp_path: Path
) -> AsyncIterator[Client]:
    """The real receiver with the Nova sink; its NovaClient reaches nova-api through the fault
    layer (Keystone is reached directly)."""

    def connect() -> Any:
        return openstack.connect(**AUTH, compute_endpoint_override=f"{nova_api.url}/v2.1")

    nova = NovaClient(connect, concurrency=4)
    app = create_app(make_config(tmp_path), sinks=[NovaSink(nova)], nova=nova, clock=time.time)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    client = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


def _report(server_ids: list[str], seq: int, state: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seq)
    ts = now.isoformat().replace("+00:00", "Z")

    def inst(i: int, u: str) -> dict[str, Any]:
        return {"instance_uuid": u, "provider": "ec2", "remote_id": f"i-0feedface000000{i}",
                "state": state, "ips": {"private": [f"10.0.1.{10 + i}"], "public": []},
                "observed_at": ts}  # fmt: skip

    return {"version": 1, "agent_id": AGENT, "seq": seq, "sent_at": ts,
            "instances": [inst(i, u) for i, u in enumerate(server_ids)], "samples": []}  # fmt: skip


async def _post(client: Client, report: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body, headers = wire.encode_report(
        report, secret=SECRET, agent_id=AGENT, seq=report["seq"], now=time.time(), gzip=False
    )
    resp = await client.post(wire.REPORTS_PATH, data=body, headers=headers)
    return resp.status, await resp.json()


def _skipped(client: Client) -> float:
    registry = client.app[METRICS].registry
    labels = {"sink": "nova", "reason": "server_gone"}
    return registry.get_sample_value("azfed_receiver_resources_skipped_total", labels) or 0.0


def _remote_state(conn: Any, server_id: str) -> str | None:
    meta: dict[str, str] = conn.compute.get_server_metadata(server_id).metadata
    return meta.get("azfed_remote_state")


async def test_a_server_deleted_since_it_was_cached_is_skipped_and_the_report_accepted(
    openstack_bed: OpenStackBed, servers: list[Any], client: Client, nova_api: FaultProxy
) -> None:
    """Nova's own 404 on the deleted server: logged as nova.server_gone, counted, the other
    server still written, the report 200, /readyz still ready; the cache forgets the server."""
    conn = openstack_bed.connect()
    ids = [s.id for s in servers]
    assert (await _post(client, _report(ids, 1, "running")))[0] == 200
    assert [_remote_state(conn, i) for i in ids] == ["running", "running"]

    conn.compute.delete_server(ids[0])  # the receiver's cache still has it
    conn.compute.wait_for_delete(servers[0], wait=120, interval=0.5)
    with capture_logs() as logs:
        status, answer = await _post(client, _report(ids, 2, "stopped"))
    assert (status, answer["accepted"]) == (200, True)
    assert [e["instance_uuid"] for e in logs if e["event"] == "nova.server_gone"] == [ids[0]]
    assert _skipped(client) == 1
    assert _remote_state(conn, ids[1]) == "stopped"

    # forgotten by the cache: the next report asks Nova again, learns it is gone, writes nothing
    before = len(nova_api.seen)
    assert (await _post(client, _report(ids, 3, "terminated")))[0] == 200
    mine = [(m, p, s) for m, p, s in nova_api.seen[before:] if ids[0] in p]
    assert mine == [("GET", f"/v2.1/servers/{ids[0]}", 404)]
    assert (await client.get("/readyz")).status == 200
    conn.close()


async def test_readyz_is_not_ready_while_nova_fails_writes_and_ready_again_after(
    servers: list[Any], client: Client, nova_api: FaultProxy
) -> None:
    """Nova answers its ping but its metadata writes fail: the report is 503 (the agent
    retries it) and /readyz names the Nova sink until a write succeeds."""
    ids = [s.id for s in servers]
    assert (await client.get("/readyz")).status == 200
    fault = {"computeFault": {"code": 500, "message": "injected by the test's fault layer"}}
    nova_api.fail("POST", r"/servers/[^/]+/metadata$", 500, fault)
    report = _report(ids, 1, "running")
    status, answer = await _post(client, report)
    assert (status, answer["error"]) == (503, "backend_failed")
    resp = await client.get("/readyz")
    ready = await resp.json()
    assert resp.status == 503
    assert ready["checks"]["nova"].startswith("failed: its last write failed")
    assert ready["checks"]["store"] == "ok"
    nova_api.clear()
    assert (await _post(client, report))[0] == 200  # the agent's retry of the same report
    assert (await client.get("/readyz")).status == 200
