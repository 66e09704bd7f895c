"""The blueprint's workflow end to end, on real parts: the real Nova with FederationFilter in its
scheduler and FederationDriver on the proxy host, moto as the AWS VPC, and the real azfed
receiver and agent processes feeding the real Gnocchi and Nova.

One test per workflow step, in the blueprint's order; they share one federation (conftest.py)
and build on each other, as the steps do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest

from testbed.demo import FLAVOR_MAP, PUBLIC_MEMORY_MB, PUBLIC_VCPUS
from testbed.openstack import IMAGE, PUBLIC_AUTH, PUBLIC_CLOUD, PUBLIC_PROJECT, OpenStackBed
from tests.e2e.federation import FLAVOR, LOCAL, Federation, eventually

pytestmark = pytest.mark.e2e


def _decision(fed: Federation, server_id: str) -> dict[str, Any]:
    state = json.loads((fed.demo.home / "filter-state.json").read_text())
    found = [d for d in state["recent"] if d["instance_uuid"] == server_id]
    assert found, f"FederationFilter recorded no decision for {server_id}"
    return dict(found[-1])


def test_1_each_boot_under_the_threshold_is_checked_and_placed_locally(
    federation: Federation,
) -> None:
    """Step 1 and the blueprint's last step: the scheduler checks the policy on every request,
    and while the local AZ is under its threshold the native driver runs the VM locally."""
    for name in LOCAL:
        server = federation.ensure(name)
        assert (server.availability_zone, server.compute_host) == ("local-az", "compute-local")
        decision = _decision(federation, server.id)
        assert decision["az"] == "local-az"
        assert decision["rule"] == "below_burst_threshold"
        assert federation.ec2_instances_for(server.id) == []


def test_2_over_the_threshold_the_driver_spawns_the_vm_in_the_aws_vpc(
    federation: Federation,
) -> None:
    """Step 2: over the threshold the VM goes to the public AZ, whose proxy host's driver
    spawns it on EC2 in the configured subnet, tagged with the Nova UUID."""
    server = federation.ensure("burst-1")
    assert (server.availability_zone, server.compute_host) == ("aws-az", "compute-aws")
    decision = _decision(federation, server.id)
    assert decision["burst"] is True
    assert (
        decision["compared"]["memory_used_pct"]["value"]
        >= (decision["compared"]["memory_used_pct"]["limit"])
    )
    [instance] = federation.ec2_instances_for(server.id)
    assert instance["SubnetId"] == federation.vpc["subnet"]
    assert instance["InstanceType"] == "t3.small"
    assert instance["State"]["Name"] == "running"
    meta = federation.metadata(server.id)
    assert meta["azfed_remote_id"] == instance["InstanceId"]
    assert meta["azfed_private_ip"] == instance["PrivateIpAddress"]


def test_3_the_public_host_offers_placement_the_raised_capacity(federation: Federation) -> None:
    """Step 3: the proxy host's inventory is the burst allowance from its config, far above
    any local hypervisor's: the blueprint's raised quota of the public AZ's host."""
    placement = federation.conn.placement
    [rp] = [r for r in placement.resource_providers() if r.name == "compute-aws"]
    inventory = {i.resource_class: i.total for i in placement.resource_provider_inventories(rp)}
    assert inventory["MEMORY_MB"] == PUBLIC_MEMORY_MB
    assert inventory["VCPU"] == PUBLIC_VCPUS


def test_4_usage_is_monitored_in_aws_and_returned_to_gnocchi_and_nova(
    federation: Federation,
) -> None:
    """Step 4: the agent collects the burst VM's usage from CloudWatch and pushes it home; the
    receiver writes it to Gnocchi beside local VMs' meters, and its state into Nova."""
    server = federation.ensure("burst-1")
    [instance] = federation.ec2_instances_for(server.id)
    federation.demo.seed_usage({server.id: instance})
    gnocchi = federation.demo.gnocchi()

    def cpu() -> float | None:
        # Ceilometer's cpu: CPU time, cumulative, in ns (CPUUtilization x vCPUs x period)
        rows = federation.cpu_measures(server.id)
        return float(rows[-1][2]) if rows else None

    value = eventually(cpu, f"cpu of {server.id} in Gnocchi")
    assert value > 0
    # the same resource type, attributes and meter names Ceilometer gives local VMs
    resource = gnocchi.resource.get("instance", server.id)
    assert resource["display_name"] == server.name
    assert resource["flavor_name"] == FLAVOR
    assert resource["flavor_id"] not in ("", FLAVOR)  # the flavor's id, not its name
    assert resource["availability_zone"] == server.availability_zone
    assert {"cpu", "vcpus", "memory", "power.state"} <= set(resource["metrics"])

    def seen_in_nova() -> dict[str, str] | None:
        meta = federation.metadata(server.id)
        return meta if "azfed_last_seen" in meta else None

    meta = eventually(seen_in_nova, "azfed_last_seen in the Nova server's metadata")
    assert meta["azfed_remote_state"] == "running"


def test_5_a_vm_terminated_directly_on_ec2_shows_in_nova_and_is_reported(
    federation: Federation,
) -> None:
    """Someone terminates the burst VM in the AWS console: after the agent's next cycle Nova
    shows it terminated, and the receiver's reconciliation reports the husk."""
    server = federation.ensure("burst-doomed")  # its own: test 4 needs burst-1 running
    [instance] = federation.ec2_instances_for(server.id)
    federation.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])

    def terminated_in_nova() -> dict[str, str] | None:
        meta = federation.metadata(server.id)
        return meta if meta.get("azfed_remote_state") == "terminated" else None

    eventually(terminated_in_nova, "azfed_remote_state=terminated in Nova")
    config = federation.demo.home / "receiver.toml"

    def reported() -> list[dict[str, Any]] | None:
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "azfed"),
                "status",
                "--config",
                str(config),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        orphans = [o for o in json.loads(out.stdout)["orphans"] if o["instance_uuid"] == server.id]
        return orphans or None

    [orphan] = eventually(reported, "reconciliation reporting the terminated VM", timeout=120)
    assert orphan["kind"] == "public_gone"


@pytest.fixture
def public_openstack(federation: Federation, openstack_bed: OpenStackBed) -> Iterator[Any]:
    """The proxy host switched to the public-OpenStack provider. The "public" cloud is the
    bed's own Nova, in the bed's public project (testbed.openstack.PUBLIC_PROJECT), its
    servers booted in local-az (a real Nova scheduling a real boot); afterwards the proxy host
    goes back to EC2."""
    conn = federation.conn
    project = conn.identity.find_project(PUBLIC_PROJECT, domain_id="default")
    public = openstack.connect(**PUBLIC_AUTH)
    # the [azfed] key_name the operator configured must exist in the public cloud too
    keypair = public.compute.create_keypair(name=federation.vpc["key"])
    ec2_opts = {"provider": "ec2", "flavor_map": FLAVOR_MAP}
    openstack_bed.reconfigure(
        extra_nova={
            "azfed": {
                "provider": "openstack",
                "cloud": PUBLIC_CLOUD,
                "public_az": "local-az",
                "flavor_map": "m1.tiny:m1.tiny,m1.small:m1.tiny",
                "default_image": IMAGE,
            }
        },
    )
    yield project
    openstack_bed.reconfigure(extra_nova={"azfed": ec2_opts})
    left = list(conn.compute.servers(all_projects=True, project_id=project.id))
    for server in left:
        conn.compute.delete_server(server)
    for server in left:
        conn.compute.wait_for_delete(server, wait=120)
    public.compute.delete_keypair(keypair)
    public.close()


def test_6_the_driver_spawns_the_vm_on_a_public_openstack_too(
    federation: Federation, public_openstack: Any
) -> None:
    """Step 2, the blueprint's other provider: the same proxy host, driven by openstacksdk,
    boots the VM on a public OpenStack and keeps it in step with Nova."""
    conn = federation.conn
    server = conn.compute.create_server(
        name=f"e2e-public-os-{uuid.uuid4().hex[:6]}",
        flavor_id=conn.compute.find_flavor(FLAVOR).id,
        image_id=conn.image.find_image(IMAGE).id,
        networks="none",
        availability_zone="aws-az",  # asked for: the policy honours an explicit AZ
    )
    server = conn.compute.wait_for_server(
        server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
    )
    federation.servers["public-os"] = server
    assert server.compute_host == "compute-aws"
    [remote] = list(conn.compute.servers(all_projects=True, project_id=public_openstack.id))
    assert remote.name == f"azfed-{server.id}"
    assert remote.status == "ACTIVE"
    assert remote.flavor.original_name == "m1.tiny"
    meta = federation.metadata(server.id)
    assert (meta["azfed_provider"], meta["azfed_remote_id"]) == ("openstack", remote.id)

    conn.compute.delete_server(federation.servers.pop("public-os"))
    conn.compute.wait_for_delete(server, wait=180)
    assert list(conn.compute.servers(all_projects=True, project_id=public_openstack.id)) == []
