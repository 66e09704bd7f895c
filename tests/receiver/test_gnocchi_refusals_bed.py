"""Against the bed's REAL Gnocchi: a resource Gnocchi refuses does not block another
instance's measures. The refused one carries a display_name longer than the `instance`
type's 255 characters (Gnocchi's own schema check answers 400), as a Nova server Gnocchi cannot
take would; the report is still accepted and the other instance's measures are readable."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.receiver.app import METRICS, RUNNER_KWARGS, create_app
from azfed.receiver.nova import ServerFacts
from azfed.receiver.sinks.gnocchi import GnocchiSink, basic_auth

from testbed.openstack import OpenStackBed
from tests.receiver.conftest import AGENT, SECRET, make_config

GNOCCHI = "http://127.0.0.1:8041"
GOOD, BAD = str(uuid.uuid4()), str(uuid.uuid4())
FACTS = ServerFacts(
    uuid=GOOD, name="burst-good", flavor_id="1", flavor_name="m1.tiny", host="compute-aws",
    image_ref="", az="aws-az", project_id="", user_id="", status="ACTIVE", created_at="",
    metadata={},
)  # fmt: skip


async def facts(server_id: str) -> ServerFacts | None:
    """Nova's facts as the sink would get them; BAD's name is one Gnocchi refuses."""
    name = "x" * 300 if server_id == BAD else "burst-good"
    return dataclasses.replace(FACTS, uuid=server_id, name=name)


@pytest.fixture
async def live(openstack_bed: OpenStackBed, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    sink = GnocchiSink(GNOCCHI, basic_auth("admin"), facts=facts)
    app = create_app(make_config(tmp_path), sinks=[sink], clock=time.time)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    client = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


def _report() -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    ts = (now - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")

    def inst(u: str) -> dict[str, Any]:
        return {"instance_uuid": u, "provider": "ec2", "remote_id": f"i-0{u[:16].replace('-', '')}",
                "state": "running", "ips": {"private": ["10.0.1.9"], "public": []},
                "observed_at": ts}  # fmt: skip

    def sample(u: str) -> dict[str, Any]:
        return {"resource_id": u, "meter": "cpu_util", "unit": "%", "type": "gauge",
                "volume": 42.0, "timestamp": ts}  # fmt: skip

    return {
        "version": 1, "agent_id": AGENT, "seq": int(time.time()) % 1_000_000, "sent_at": ts,
        "instances": [inst(BAD), inst(GOOD)], "samples": [sample(BAD), sample(GOOD)],
    }  # fmt: skip


async def test_a_resource_real_gnocchi_refuses_does_not_block_another_instances_measures(
    live: TestClient[Any, Any],
) -> None:
    from gnocchiclient import auth, client
    from gnocchiclient.exceptions import NotFound

    report = _report()
    body, headers = wire.encode_report(
        report, secret=SECRET, agent_id=AGENT, seq=report["seq"], now=time.time(), gzip=True
    )
    resp = await live.post(wire.REPORTS_PATH, data=body, headers=headers)
    assert resp.status == 200, await resp.text()

    gn = client.Client(
        "1", session_options={"auth": auth.GnocchiBasicPlugin(user="admin", endpoint=GNOCCHI)}
    )
    rows = gn.metric.get_measures("cpu_util", resource_id=GOOD, refresh=True)
    assert [value for _ts, _granularity, value in rows] == [42.0]
    with pytest.raises(NotFound):
        gn.resource.get("instance", BAD)
    registry = live.server.app[METRICS].registry
    labels = {"sink": "gnocchi", "reason": "resource_refused"}
    assert registry.get_sample_value("azfed_receiver_samples_dropped_total", labels) == 1
