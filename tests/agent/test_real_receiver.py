"""End to end on real parts: moto (seeded CloudWatch) -> the agent -> the REAL receiver
(azfed.receiver, with its Gnocchi and Nova sinks) -> the test bed's Gnocchi and Nova."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azfed.agent.app import Agent
from azfed.config import parse_config
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.receiver.nova import NovaClient
from azfed.receiver.sinks.gnocchi import GnocchiSink, basic_auth
from azfed.receiver.sinks.nova import NovaSink

from testbed.aws import MotoServer
from testbed.openstack import OpenStackBed
from tests.agent.helpers import TAG, seed

GNOCCHI = "http://127.0.0.1:8041"
METERS = ["cpu", "network.incoming.bytes"]  # collected from ...
CLOUDWATCH = ["CPUUtilization", "NetworkIn"]  # ... what AWS calls them
SECRET = b"e2e-agent-secret-0123456789abcdef"


@pytest.fixture
def nova_server(openstack_bed: OpenStackBed) -> Iterator[Any]:
    """A Nova instance of our own in local-az, standing for a burst VM's Nova record."""
    conn = openstack_bed.connect()
    created = conn.compute.create_server(
        name=f"azfed-agent-e2e-{uuid.uuid4().hex[:8]}",
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


def measures(meter: str, resource_id: str) -> list[float]:
    from gnocchiclient import auth, client

    plugin = auth.GnocchiBasicPlugin(user="admin", endpoint=GNOCCHI)
    gn = client.Client("1", session_options={"auth": plugin})
    rows = gn.metric.get_measures(meter, resource_id=resource_id, refresh=True)
    return [r[2] for r in rows]


async def test_state_and_meters_reach_gnocchi_and_nova_through_the_real_receiver(
    aws: MotoServer, ec2: Any, openstack_bed: OpenStackBed, nova_server: Any, tmp_path: Path
) -> None:
    """An EC2 instance tagged with a Nova UUID: its CloudWatch datapoints become Gnocchi
    measures of that Nova instance, and its remote id, IP and state its Nova metadata."""
    run = await ec2.run_instances(
        ImageId="ami-760aaa0f", InstanceType="m5.large", MinCount=1, MaxCount=1
    )
    remote_id = run["Instances"][0]["InstanceId"]
    eni = run["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    await ec2.create_tags(Resources=[remote_id], Tags=[{"Key": TAG, "Value": nova_server.id}])
    seed(aws, [remote_id], CLOUDWATCH, points=2, period_s=300)

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "agents_agent-e2e").write_bytes(SECRET)
    (tmp_path / "push-secret").write_bytes(SECRET)
    receiver_cfg = parse_config({"receiver": {
        "secrets_dir": str(secrets), "database_url": f"sqlite:///{tmp_path / 'state.db'}",
        "sinks": ["null"],
    }})  # fmt: skip
    nova = NovaClient(openstack_bed.connect, concurrency=4)
    sinks = [GnocchiSink(GNOCCHI, basic_auth("admin"), facts=nova.server),
             NovaSink(nova, last_seen_interval_s=300)]  # fmt: skip
    runner = web.AppRunner(create_app(receiver_cfg, sinks=sinks, nova=nova), **RUNNER_KWARGS)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]

    agent = Agent(parse_config({
        "agent": {"id": "agent-e2e", "provider": "ec2"},
        "aws": {"region": "us-east-1", "endpoint_url": aws.endpoint},
        "collect": {"meters": METERS, "interval_s": 1.0, "jitter_s": 0.0},
        "push": {"url": f"http://127.0.0.1:{port}", "secret_file": str(tmp_path / "push-secret"),
                 "max_backoff_s": 0.5},
        "spool": {"path": str(tmp_path / "spool")},
        "health": {"port": 0},
    }))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:

        async def all_pushed() -> None:
            while agent.metrics.registry.get_sample_value(
                "azfed_agent_samples_total", {"stage": "pushed"}
            ) != 2 * len(METERS):
                agent.pusher.drained.clear()
                await agent.pusher.drained.wait()  # set each time the spool is found empty

        await asyncio.wait_for(all_pushed(), timeout=120)
    finally:
        stop.set()
        await task
        await runner.cleanup()
    # CPUUtilization 2% then 1% of an m5.large's 2 vCPUs over 300 s: CPU time, cumulative, ns
    assert await asyncio.to_thread(measures, "cpu", nova_server.id) == [1.2e10, 1.8e10]
    # CloudWatch's per-period sums become Ceilometer's running counter, on the primary ENI's
    # instance_network_interface resource
    vnic = f"{nova_server.id}-{eni}"
    assert await asyncio.to_thread(measures, "network.incoming.bytes", vnic) == [2.0, 3.0]
    conn = openstack_bed.connect()
    meta = conn.compute.get_server_metadata(nova_server.id).metadata
    conn.close()
    assert meta["azfed_remote_id"] == remote_id
    assert meta["azfed_remote_state"] == "running"
