"""A Nova server deleted after the agent reported it (`openstack server delete` of a burst
VM) is not a backend failure: the Nova sink skips it, the report is accepted, and the client's
server cache forgets it. A Nova that really fails writes makes /readyz say so."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.receiver.app import METRICS, RUNNER_KWARGS, create_app
from azfed.receiver.sinks.nova import NovaSink
from structlog.testing import capture_logs

from tests.receiver.conftest import AGENT, NOW, SECRET, example, make_config
from tests.receiver.fake_nova import FakeNova, serve_fake_nova

Client = TestClient[Any, Any]


@pytest.fixture
async def nova() -> AsyncIterator[FakeNova]:
    async with serve_fake_nova() as fake:
        yield fake


@pytest.fixture
async def client(
    tmp_path: Path, nova: FakeNova, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    """The real receiver app with the Nova sink, its NovaClient talking to the stand-in."""
    nova_client = nova.client()
    app = create_app(
        make_config(tmp_path), sinks=[NovaSink(nova_client)], nova=nova_client, clock=lambda: NOW
    )
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    return await aiohttp_client(server)


async def _post(client: Client, seq: int, state: str) -> tuple[int, dict[str, Any]]:
    report = example()
    report["seq"] = seq
    for inst in report["instances"]:
        inst["state"] = state
    body, headers = wire.encode_report(
        report, secret=SECRET, agent_id=AGENT, seq=seq, now=NOW, gzip=False, check=False
    )
    resp = await client.post(wire.REPORTS_PATH, data=body, headers=headers)
    return resp.status, await resp.json()


def _skipped(client: Client) -> float:
    registry = client.app[METRICS].registry
    labels = {"sink": "nova", "reason": "server_gone"}
    return registry.get_sample_value("azfed_receiver_resources_skipped_total", labels) or 0.0


async def test_a_server_deleted_since_it_was_cached_is_skipped_and_the_report_accepted(
    client: Client, nova: FakeNova
) -> None:
    """set_metadata gets Nova's 404: logged as nova.server_gone, counted, the other server
    still written, the report 200, /readyz still ready."""
    uuids = [i["instance_uuid"] for i in example()["instances"]]
    for u in uuids:
        nova.add(u)
    assert (await _post(client, 1, "running"))[0] == 200
    assert nova.servers[uuids[0]]["metadata"]["azfed_remote_state"] == "running"

    del nova.servers[uuids[0]]  # openstack server delete; the receiver's cache still has it
    with capture_logs() as logs:
        status, answer = await _post(client, 2, "stopped")
    assert (status, answer["accepted"]) == (200, True)
    gone = [e for e in logs if e["event"] == "nova.server_gone"]
    assert [e["instance_uuid"] for e in gone] == [uuids[0]]
    assert _skipped(client) == 1
    assert nova.servers[uuids[1]]["metadata"]["azfed_remote_state"] == "stopped"

    # forgotten by the cache: the next report asks Nova again, learns it is gone, writes nothing
    before = len(nova.calls)
    assert (await _post(client, 3, "terminated"))[0] == 200
    mine = [c for c in nova.calls[before:] if uuids[0] in c[1]]
    assert mine == [("GET", f"/v2.1/servers/{uuids[0]}")]
    assert (await client.get("/readyz")).status == 200


async def test_readyz_is_not_ready_while_nova_fails_writes_and_ready_again_after(
    client: Client, nova: FakeNova
) -> None:
    """Nova answers its ping but fails metadata writes: the report is 503 (retried by the
    agent) and /readyz names the Nova sink until a write succeeds."""
    for inst in example()["instances"]:
        nova.add(inst["instance_uuid"])
    assert (await client.get("/readyz")).status == 200
    nova.fail_metadata = True
    status, answer = await _post(client, 1, "running")
    assert (status, answer["error"]) == (503, "backend_failed")
    resp = await client.get("/readyz")
    ready = await resp.json()
    assert resp.status == 503
    assert ready["checks"]["nova"].startswith("failed: its last write failed")
    assert ready["checks"]["store"] == "ok"
    nova.fail_metadata = False
    assert (await _post(client, 1, "running"))[0] == 200
    assert (await client.get("/readyz")).status == 200
