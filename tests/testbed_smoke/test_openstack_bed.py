"""The OpenStack test bed is real: Nova schedules into both AZs, Placement counts, Gnocchi stores
measures."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from testbed.aws import REGION, MotoServer
from testbed.openstack import (
    AZFED_DRIVER,
    COMPUTES,
    DEFAULT_FILTERS,
    FAKE_DRIVER,
    IMAGE,
    PORTS,
    OpenStackBed,
)
from tests.waiting import until_sync


@pytest.fixture
def nova_own_parts(openstack_bed: OpenStackBed) -> None:
    """Nova's fake driver on both hosts and Nova's own filters, whatever ran before.

    Other modules switch the proxy host to azfed's driver and the scheduler to azfed's filter;
    this restarts only what differs, so the smoke tests pass in any order.
    """
    openstack_bed.reconfigure(aws_driver=FAKE_DRIVER, filters=list(DEFAULT_FILTERS))


def _boot(conn: Any, az: str, flavor: str = "m1.tiny") -> Any:
    server = conn.compute.create_server(
        name=f"smoke-{az}-{uuid.uuid4().hex[:6]}",
        flavor_id=conn.compute.find_flavor(flavor).id,
        image_id=conn.image.find_image(IMAGE).id,
        networks="none",
        availability_zone=az,
    )
    return conn.compute.wait_for_server(server, status="ACTIVE", wait=180, interval=0.5)


def _provider_uuid(conn: Any, host: str) -> str:
    (rp,) = [rp for rp in conn.placement.resource_providers() if rp.name == host]
    return str(rp.id)


@pytest.mark.usefixtures("nova_own_parts")
@pytest.mark.parametrize(("az", "host"), [("local-az", "compute-local"), ("aws-az", "compute-aws")])
def test_a_server_booted_in_an_az_goes_active_on_that_azs_host(
    os_conn: Any, az: str, host: str
) -> None:
    server = _boot(os_conn, az)
    assert server.compute_host == host
    assert server.availability_zone == az


@pytest.mark.usefixtures("nova_own_parts")
def test_the_proxy_host_switches_to_azfeds_driver_and_back_keeping_its_node(
    openstack_bed: OpenStackBed, os_conn: Any, moto: MotoServer
) -> None:
    """Each compute keeps its node identity in its own state_path: compute-aws goes from Nova's
    fake driver to FederationDriver and back, keeps its Placement provider, and boots again."""
    node = _provider_uuid(os_conn, "compute-aws")
    openstack_bed.reconfigure(
        aws_driver=AZFED_DRIVER,
        extra_nova={"azfed": {"provider": "ec2", "region": REGION, "endpoint_url": moto.endpoint}},
    )
    assert _provider_uuid(os_conn, "compute-aws") == node
    openstack_bed.reconfigure(aws_driver=FAKE_DRIVER)
    assert _provider_uuid(os_conn, "compute-aws") == node
    server = _boot(os_conn, "aws-az")
    assert server.compute_host == "compute-aws"


def _memory_used_by_az(conn: Any) -> dict[str, int]:
    used: dict[str, int] = {}
    for agg in conn.compute.aggregates():
        if not agg.availability_zone:
            continue
        providers = conn.placement.get(
            f"/resource_providers?member_of={agg.uuid}", microversion="1.39"
        ).json()["resource_providers"]
        used[agg.availability_zone] = sum(
            conn.placement.get(f"/resource_providers/{rp['uuid']}/usages", microversion="1.39")
            .json()["usages"]
            .get("MEMORY_MB", 0)
            for rp in providers
        )
    return used


@pytest.mark.usefixtures("nova_own_parts")
def test_placement_reports_memory_usage_per_az_aggregate(os_conn: Any) -> None:
    """A boot in local-az raises MEMORY_MB usage of that AZ's aggregate by the flavor's RAM."""
    before = _memory_used_by_az(os_conn)
    assert set(before) >= set(COMPUTES.values())
    flavor = os_conn.compute.find_flavor("m1.small")
    server = os_conn.compute.create_server(
        name=f"smoke-mem-{uuid.uuid4().hex[:6]}",
        flavor_id=flavor.id,
        image_id=os_conn.image.find_image(IMAGE).id,
        networks="none",
        availability_zone="local-az",
    )
    os_conn.compute.wait_for_server(server, status="ACTIVE", wait=180, interval=0.5)
    after = _memory_used_by_az(os_conn)
    assert after["local-az"] - before["local-az"] == flavor.ram
    assert after["aws-az"] == before["aws-az"]


def test_a_gnocchi_measure_round_trips(openstack_bed: OpenStackBed) -> None:
    from gnocchiclient import auth, client

    gnocchi = client.Client(
        "1",
        session_options={
            "auth": auth.GnocchiBasicPlugin(
                user="admin", endpoint=f"http://127.0.0.1:{PORTS['gnocchi-api']}"
            )
        },
    )
    policy = f"smoke-{uuid.uuid4().hex[:6]}"
    gnocchi.archive_policy.create(
        {
            "name": policy,
            "aggregation_methods": ["mean"],
            "definition": [{"granularity": "60s", "timespan": "1 day"}],
        }
    )
    rid = str(uuid.uuid4())
    gnocchi.resource.create(
        "generic", {"id": rid, "metrics": {"cpu_util": {"archive_policy_name": policy}}}
    )
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    sent = {(now - dt.timedelta(minutes=i)).isoformat(): 10.0 * i for i in range(3)}
    gnocchi.metric.add_measures(
        "cpu_util", [{"timestamp": t, "value": v} for t, v in sent.items()], resource_id=rid
    )

    def measures() -> list[Any]:
        found: list[Any] = gnocchi.metric.get_measures("cpu_util", resource_id=rid, refresh=True)
        return found

    until_sync(
        lambda: len(measures()) >= len(sent), "Gnocchi to aggregate the measures", timeout=60
    )
    assert sorted(v for _, _, v in measures()) == sorted(sent.values())
