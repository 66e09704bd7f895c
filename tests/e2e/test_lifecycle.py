"""A burst VM's snapshot and diagnostics through Nova's API, in the bed (issue 13): real Nova,
Glance and Placement, azfed's driver with moto's EC2, the receiver and agent feeding Gnocchi.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.federation import FLAVOR, Federation, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def burst(federation: Federation) -> Iterator[Any]:
    server = federation.boot("life-burst", availability_zone="aws-az")
    yield server
    federation.servers.pop("life-burst", None)
    federation.conn.compute.delete_server(server, ignore_missing=True)
    federation.conn.compute.wait_for_delete(server, wait=120)


def test_a_snapshot_is_an_ami_that_boots_another_burst_vm(
    federation: Federation, burst: Any
) -> None:
    """`openstack server image create` on a burst VM: the Glance image becomes active and names
    the new AMI; a server booted from it with no AZ asked goes to aws-az (the image requires the
    proxy host's trait) and its EC2 instance runs that AMI."""
    conn = federation.conn
    image = conn.compute.create_server_image(burst, name=f"e2e-snap-{uuid.uuid4().hex[:6]}")
    try:
        image = conn.image.wait_for_status(image, status="active", failures=["killed"], wait=300)
        ami = image.properties["azfed_ec2_ami"]
        [found] = federation.ec2.describe_images(ImageIds=[ami])["Images"]
        assert found["State"] == "available"
        server = conn.compute.create_server(
            name=f"e2e-from-snap-{uuid.uuid4().hex[:6]}",
            flavor_id=conn.compute.find_flavor(FLAVOR).id,
            image_id=image.id,
            networks="none",
        )
        federation.servers["life-from-snap"] = server
        server = conn.compute.wait_for_server(
            server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
        )
        assert (server.availability_zone, server.compute_host) == ("aws-az", "compute-aws")
        [instance] = federation.ec2_instances_for(server.id)
        assert instance["ImageId"] == ami
    finally:
        gone = federation.servers.pop("life-from-snap", None)
        if gone is not None:
            conn.compute.delete_server(gone, ignore_missing=True)
            conn.compute.wait_for_delete(gone, wait=120)
        conn.image.delete_image(image, ignore_missing=True)


def test_diagnostics_show_the_agents_figures(federation: Federation, burst: Any) -> None:
    """`openstack server show --diagnostics` (microversion 2.48) for a burst VM: the state, the
    CPU time the agent reported (the same as Gnocchi's newest `cpu` measure) and its vNIC's
    counters."""
    [instance] = federation.ec2_instances_for(burst.id)
    federation.demo.seed_usage({burst.id: instance})
    eventually(lambda: federation.cpu_measures(burst.id) or None, "the agent's cpu in Gnocchi")
    conn = federation.conn

    def newest_cpu() -> int | None:
        rows = federation.cpu_measures(burst.id)
        finest = min((r[1] for r in rows), default=None)
        return int([r for r in rows if r[1] == finest][-1][2]) if rows else None

    def diagnostics() -> Any:
        # the agent keeps reporting, and Gnocchi processes the vNIC's first measures (each
        # counter its own metric) a little after the instance's: wait for a moment when the
        # vNIC has its received bytes and both say the same newest CPU time
        found = conn.compute.get_server_diagnostics(burst)
        cpu = found.cpu_details[0]["time"] if found.cpu_details else None
        rx = found.nic_details[0].get("rx_octets") if found.nic_details else None
        return found if rx is not None and cpu is not None and cpu == newest_cpu() else None

    diags = eventually(diagnostics, "diagnostics with Gnocchi's newest CPU time, vNIC rx", 120)
    assert (diags.state, diags.hypervisor, diags.num_cpus) == ("running", "azfed-ec2", 1)
    [nic] = diags.nic_details
    assert nic["rx_octets"] > 0, nic


def test_an_instance_terminated_outside_nova_shows_stopped_with_the_next_report(
    federation: Federation,
) -> None:
    """An EC2 instance terminated behind Nova's back (the console, a spot reclaim): with the
    agent's next report the receiver sends Nova's power-update event, and Nova shows the server
    SHUTOFF (a stop action in its history) and `azfed_remote_state=terminated`, long before
    the proxy host's power-state sync (every 10 minutes) would have noticed."""
    conn = federation.conn
    server = federation.boot("life-terminated", availability_zone="aws-az")
    try:
        [instance] = federation.ec2_instances_for(server.id)
        federation.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])

        def stopped() -> Any:
            now = conn.compute.get_server(server.id)
            return now if now.status == "SHUTOFF" else None

        now = eventually(stopped, "the server SHUTOFF after its instance was terminated", 90)
        assert now.metadata["azfed_remote_state"] == "terminated"
        actions = [a.action for a in conn.compute.server_actions(server)]
        assert actions[0] == "stop", actions  # the power-update event's, newest first
    finally:
        federation.servers.pop("life-terminated", None)
        conn.compute.delete_server(server, ignore_missing=True)
        conn.compute.wait_for_delete(server, wait=120)
