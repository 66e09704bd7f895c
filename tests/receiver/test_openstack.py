"""The receiver against the REAL Gnocchi and Nova of the test bed: a signed report's
measures are readable through gnocchiclient under the right `instance` resource and meter,
the Nova server's metadata through openstacksdk, and a replay changes nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.receiver.nova import NovaClient
from azfed.receiver.sinks.gnocchi import GnocchiSink, basic_auth
from azfed.receiver.sinks.nova import NovaSink
from prometheus_client.parser import text_string_to_metric_families

from testbed.openstack import OpenStackBed
from tests.receiver.conftest import AGENT, NOW, SECRET, make_config

GNOCCHI = "http://127.0.0.1:8041"


@pytest.fixture
def server(openstack_bed: OpenStackBed) -> Iterator[Any]:
    """Our own server in local-az (deleted afterwards; never anyone else's)."""
    conn = openstack_bed.connect()
    created = conn.compute.create_server(
        name=f"azfed-receiver-{uuid.uuid4().hex[:8]}",
        flavor_id=conn.compute.find_flavor("m1.tiny").id,
        image_id=conn.image.find_image("fake-img").id,
        networks="none",
        availability_zone="local-az",
    )
    try:
        yield conn.compute.wait_for_server(created, status="ACTIVE", wait=180, interval=0.5)
    finally:
        conn.compute.delete_server(created)
        conn.compute.wait_for_delete(created, wait=120)
        conn.close()


@pytest.fixture
async def live(openstack_bed: OpenStackBed, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    nova = NovaClient(openstack_bed.connect, concurrency=4)
    gnocchi = GnocchiSink(GNOCCHI, basic_auth("admin"), facts=nova.server)
    nova_sink = NovaSink(nova, last_seen_interval_s=300)
    app = create_app(make_config(tmp_path), sinks=[gnocchi, nova_sink], nova=nova, clock=time.time)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    client = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


def _gnocchi() -> Any:
    from gnocchiclient import auth, client

    plugin = auth.GnocchiBasicPlugin(user="admin", endpoint=GNOCCHI)
    return client.Client("1", session_options={"auth": plugin})


ENI = "eni-0feedfacecafe0001"


def _report(
    server_id: str, seq: int, cpu: float, state: str = "running", minutes_ago: int = 4
) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    t1 = (now - timedelta(minutes=minutes_ago + 6)).isoformat().replace("+00:00", "Z")
    t2 = (now - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    return {
        "version": wire.CONTRACT_VERSION,
        "agent_id": AGENT,
        "seq": seq,
        "sent_at": t2,
        "instances": [
            {
                "instance_uuid": server_id,
                "provider": "ec2",
                "remote_id": "i-0feedfacecafe0001",
                "state": state,
                "ips": {"private": ["10.0.1.9"], "public": ["198.51.100.7"]},
                "instance_type": "t3.micro",
                "az": "us-east-1a",
                "launched_at": t1,
                "status_checks": "ok",
                "observed_at": t2,
            }
        ],
        "samples": [
            {
                "instance_uuid": server_id,
                "resource_type": "instance",
                "meter": "cpu",
                "unit": "ns",
                "type": "cumulative",
                "volume": cpu,
                "timestamp": t1,
            },
            {
                "instance_uuid": server_id,
                "resource_type": "instance_network_interface",
                "device": ENI,
                "meter": "network.incoming.bytes",
                "unit": "B",
                "type": "cumulative",
                "volume": 4096,
                "timestamp": t1,
            },
        ],
    }


async def _post(client: TestClient[Any, Any], report: dict[str, Any]) -> tuple[int, Any]:
    body, headers = wire.encode_report(
        report, secret=SECRET, agent_id=AGENT, seq=report["seq"], now=time.time(), gzip=True
    )
    resp = await client.post(wire.REPORTS_PATH, data=body, headers=headers)
    return resp.status, await resp.json()


async def _sink_writes(client: TestClient[Any, Any]) -> dict[str, float]:
    """Reports written, per sink, as the receiver's /metrics counts them."""
    text = await (await client.get("/metrics")).text()
    return {
        s.labels["sink"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "azfed_receiver_write_seconds_count"
    }


def _measures(gn: Any, server_id: str, meter: str) -> list[float]:
    rows = gn.metric.get_measures(meter, resource_id=server_id, refresh=True)
    return [value for _ts, _granularity, value in rows]


async def test_a_signed_report_lands_in_real_gnocchi_and_nova_and_a_replay_changes_nothing(
    live: TestClient[Any, Any],
    server: Any,
    openstack_bed: OpenStackBed,
) -> None:
    """Measures under the instance resource and meter; metadata on the Nova server; the same
    key again is answered from the store (no new write); another body under it is refused."""
    client = live
    report = _report(server.id, seq=int(NOW) % 1_000_000, cpu=37.5e9)
    status, answer = await _post(client, report)
    assert status == 200, answer

    gn = _gnocchi()
    resource = gn.resource.get("instance", server.id)
    conn = openstack_bed.connect()
    flavor_id = conn.compute.find_flavor("m1.tiny").id
    conn.close()
    assert resource["display_name"] == server.name
    assert (resource["flavor_id"], resource["flavor_name"]) == (flavor_id, "m1.tiny")
    assert resource["availability_zone"] == "local-az"
    assert resource["launched_at"] is not None
    assert _measures(gn, server.id, "cpu") == [37.5e9]
    metric = gn.metric.get("cpu", resource_id=server.id)
    assert (metric["unit"], metric["archive_policy"]["name"]) == ("ns", "ceilometer-low-rate")
    vnic = gn.resource.get("instance_network_interface", f"{server.id}-{ENI}")
    assert (vnic["name"], vnic["instance_id"]) == (ENI, server.id)
    assert _measures(gn, vnic["id"], "network.incoming.bytes") == [4096.0]
    metric = gn.metric.get("network.incoming.bytes", resource_id=vnic["id"])
    assert (metric["unit"], metric["archive_policy"]["name"]) == ("B", "ceilometer-low-rate")

    conn = openstack_bed.connect()
    meta = conn.compute.get_server_metadata(server.id).metadata
    conn.close()
    assert meta["azfed_remote_id"] == "i-0feedfacecafe0001"
    assert meta["azfed_public_ip"] == "198.51.100.7"
    assert meta["azfed_remote_state"] == "running"
    assert meta["azfed_last_seen"] == report["instances"][0]["observed_at"]

    writes = await _sink_writes(client)
    assert writes == {"gnocchi": 1.0, "nova": 1.0}
    assert await _post(client, report) == (200, answer)
    changed = dict(report, samples=[dict(report["samples"][0], volume=99.0)])
    status, refused = await _post(client, changed)
    assert (status, refused["error"]) == (422, "key_conflict")
    assert await _sink_writes(client) == writes
    assert _measures(gn, server.id, "cpu") == [37.5e9]


async def test_a_rename_is_patched_and_a_deleted_server_gets_ended_at(
    openstack_bed: OpenStackBed, server: Any, tmp_path: Path
) -> None:
    """Nova renames the server: the next report PATCHes display_name. Nova deletes it and the
    public cloud reports it shutting down: the instance and its vNIC get ended_at."""
    nova = NovaClient(openstack_bed.connect, concurrency=4, cache_ttl_s=0)
    sink = GnocchiSink(GNOCCHI, basic_auth("admin"), facts=nova.server)
    app = create_app(make_config(tmp_path), sinks=[sink], nova=nova, clock=time.time)
    test_server = TestServer(app)
    await test_server.start_server(**RUNNER_KWARGS)
    client = TestClient(test_server)
    await client.start_server()
    try:
        seq = int(NOW) % 1_000_000 + 10
        assert (await _post(client, _report(server.id, seq, 1e9, minutes_ago=12)))[0] == 200
        conn = openstack_bed.connect()
        renamed = server.name + "-renamed"
        # (openstacksdk updates `server` in place)
        conn.compute.update_server(server, name=renamed)
        assert (await _post(client, _report(server.id, seq + 1, 2e9, minutes_ago=8)))[0] == 200
        gn = _gnocchi()
        assert gn.resource.get("instance", server.id)["display_name"] == renamed
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=120)
        conn.close()
        report = _report(server.id, seq + 2, 3e9, state="shutting-down")
        assert (await _post(client, report))[0] == 200
        assert gn.resource.get("instance", server.id)["ended_at"] is not None
        vnic = gn.resource.get("instance_network_interface", f"{server.id}-{ENI}")
        assert vnic["ended_at"] is not None
    finally:
        await client.close()
