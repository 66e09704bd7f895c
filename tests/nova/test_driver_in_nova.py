"""FederationDriver inside the real Nova: compute-aws bursts to moto's EC2 over HTTP.

The module points the shared bed's proxy host at this session's moto (and leaves it running
FederationDriver afterwards). It never resets moto: it builds its own VPC, subnet, security
group, key pair and image, and deletes the servers it boots.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from azfed.clouds import UUID_TAG

from testbed.aws import FAKE_CREDENTIALS, REGION, MotoServer
from testbed.openstack import AZFED_DRIVER, OpenStackBed

# Nova imports compute_driver from its own nova.virt package: the shim puts ours there
SHIM = Path(__file__).resolve().parents[2] / "agent" / "azfed" / "nova" / "nova_virt_azfed.py"

# the bed's Popen handles of restarted services are dropped on purpose (they outlive us)
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
FLAVOR_MAP = "m1.tiny:t3.micro,m1.small:t3.small,m1.medium:t3.medium"
CAPACITY = {"vcpus": 64, "memory_mb": 262144, "disk_gb": 10000}


@dataclass(frozen=True)
class Burst:
    """What this module set up: the EC2 side and the Glance image carrying the AMI property."""

    ec2: Any
    subnet_id: str
    zone: str
    sg_id: str
    key_name: str
    ami: str
    default_ami: str
    image_id: str


def _ec2_network(ec2: Any) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24", AvailabilityZone="us-east-1a")
    sg = ec2.create_security_group(GroupName=f"azfed-{tag}", Description="burst", VpcId=vpc)
    ec2.create_key_pair(KeyName=f"azfed-{tag}")
    amis = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])
    return {
        "subnet_id": subnet["Subnet"]["SubnetId"],
        "sg_id": sg["GroupId"],
        "key_name": f"azfed-{tag}",
        "ami": amis[0],
        "default_ami": amis[1],
    }


def _install_shim(bed: OpenStackBed) -> None:
    """What a package of azfed for Nova hosts installs: nova/virt/azfed.py."""
    assert bed.os_venv is not None
    [virt] = bed.os_venv.glob("lib/python3*/site-packages/nova/virt")
    shutil.copyfile(SHIM, virt / "azfed.py")


@pytest.fixture(scope="module")
def burst(openstack_bed: OpenStackBed, moto: MotoServer) -> Iterator[Burst]:
    ec2 = boto3.client("ec2", **moto.client_kwargs())
    net = _ec2_network(ec2)
    _install_shim(openstack_bed)
    openstack_bed.reconfigure(
        aws_driver=AZFED_DRIVER,
        extra_nova={
            "azfed": {
                "provider": "ec2",
                "region": REGION,
                "endpoint_url": moto.endpoint,
                "subnet_id": net["subnet_id"],
                "security_group_ids": net["sg_id"],
                "key_name": net["key_name"],
                "flavor_map": FLAVOR_MAP,
                "default_image": net["default_ami"],
                "max_attempts": 3,
                "throttle_retries": 1,
                "wait_delay_s": 0.5,
                **CAPACITY,
            },
        },
        extra_env={**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint},
    )
    conn = openstack_bed.connect()
    image = conn.image.create_image(
        name=f"azfed-burst-{uuid.uuid4().hex[:6]}",
        disk_format="raw",
        container_format="bare",
        data=b"\0" * 1024,
        azfed_ec2_ami=net["ami"],
    )
    yield Burst(
        ec2,
        net["subnet_id"],
        "us-east-1a",
        net["sg_id"],
        net["key_name"],
        net["ami"],
        net["default_ami"],
        image.id,
    )
    conn.image.delete_image(image)
    conn.close()


def boot(conn: Any, burst: Burst, flavor: str = "m1.tiny", wait_for: str = "ACTIVE") -> Any:
    server = conn.compute.create_server(
        name=f"azfed-drv-{uuid.uuid4().hex[:8]}",
        flavor_id=conn.compute.find_flavor(flavor).id,
        image_id=burst.image_id,
        networks="none",
        availability_zone="aws-az",
    )
    failures = [] if wait_for == "ERROR" else ["ERROR"]
    return conn.compute.wait_for_server(
        server, status=wait_for, failures=failures, wait=180, interval=0.5
    )


def settle(conn: Any, server: Any, status: str, wait: float = 180) -> Any:
    """Wait until the server has `status` and no task in flight (a reboot keeps ACTIVE)."""
    deadline = time.monotonic() + wait
    while True:
        current = conn.compute.get_server(server.id)
        if current.status == status and current.task_state is None:
            return current
        assert current.status != "ERROR", current.fault
        assert time.monotonic() < deadline, f"{current.status}/{current.task_state}"
        time.sleep(0.5)


def live_ec2(burst: Burst, server_id: str) -> list[dict[str, Any]]:
    """Every not-terminated EC2 instance tagged with this Nova UUID."""
    out = burst.ec2.describe_instances(
        Filters=[
            {"Name": f"tag:{UUID_TAG}", "Values": [server_id]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )
    return [i for r in out["Reservations"] for i in r["Instances"]]


def test_booting_in_aws_az_makes_one_tagged_ec2_instance_whose_addresses_nova_shows(
    os_conn: Any, burst: Burst
) -> None:
    server = boot(os_conn, burst)

    [vm] = live_ec2(burst, server.id)
    assert (vm["InstanceType"], vm["ImageId"]) == ("t3.micro", burst.ami)
    assert vm["SubnetId"] == burst.subnet_id
    assert vm["State"]["Name"] == "running"
    assert vm["MetadataOptions"]["HttpTokens"] == "required"
    assert server.power_state == 1  # RUNNING
    assert server.compute_host == "compute-aws"
    assert server.metadata["azfed_remote_id"] == vm["InstanceId"]
    assert server.metadata["azfed_private_ip"] == vm["PrivateIpAddress"]


def test_stop_start_reboot_resize_and_delete_are_mirrored_on_ec2(
    os_conn: Any, burst: Burst
) -> None:
    c = os_conn.compute
    server = boot(os_conn, burst)

    def ec2_state() -> tuple[str, str]:
        [vm] = live_ec2(burst, server.id)
        return vm["State"]["Name"], vm["InstanceType"]

    c.stop_server(server)
    server = settle(os_conn, server, "SHUTOFF")
    assert (server.power_state, ec2_state()) == (4, ("stopped", "t3.micro"))

    c.start_server(server)
    server = settle(os_conn, server, "ACTIVE")
    assert (server.power_state, ec2_state()) == (1, ("running", "t3.micro"))

    c.reboot_server(server, "HARD")
    server = settle(os_conn, server, "ACTIVE")
    assert (server.power_state, ec2_state()) == (1, ("running", "t3.micro"))

    c.resize_server(server, c.find_flavor("m1.small").id)
    server = settle(os_conn, server, "VERIFY_RESIZE")
    c.confirm_server_resize(server)
    server = settle(os_conn, server, "ACTIVE")
    assert server.flavor.original_name == "m1.small"
    assert (server.power_state, ec2_state()) == (1, ("running", "t3.small"))

    c.delete_server(server)
    c.wait_for_delete(server, wait=120, interval=0.5)
    assert live_ec2(burst, server.id) == []


def test_no_ec2_capacity_and_no_other_az_leaves_the_server_in_error_and_no_instance(
    os_conn: Any, burst: Burst, moto: MotoServer
) -> None:
    # 3 = every botocore attempt ([azfed] max_attempts): capacity is not throttling
    moto.fault(
        "RunInstances",
        "InsufficientInstanceCapacity",
        status=500,
        times=3,
        message="We currently do not have sufficient t3.micro capacity",
    )

    server = boot(os_conn, burst, wait_for="ERROR")

    # rescheduled (issue 15): with no other AZ to try, Nova's fault says the hosts ran out,
    # and the cloud's reason is kept in the server's metadata
    assert "Exhausted all hosts" in server.fault["message"], server.fault
    reason = os_conn.compute.get_server_metadata(server).metadata["azfed_fallback_reason"]
    assert "AWS has no capacity for t3.micro in us-east-1a" in reason
    assert live_ec2(burst, server.id) == []


def test_ec2_throttling_is_retried_and_the_boot_succeeds(
    os_conn: Any, burst: Burst, moto: MotoServer
) -> None:
    before = moto.stats()["hits"].get("RunInstances", 0)
    moto.fault("RunInstances", "RequestLimitExceeded", status=503, times=2)

    server = boot(os_conn, burst)

    assert len(live_ec2(burst, server.id)) == 1
    assert moto.stats()["hits"]["RunInstances"] - before == 3


def test_the_proxy_host_reports_the_configured_burst_allowance_to_placement(
    os_conn: Any, burst: Burst
) -> None:
    [rp] = [p for p in os_conn.placement.resource_providers() if p.name == "compute-aws"]
    inventory = {
        i.resource_class: i.total for i in os_conn.placement.resource_provider_inventories(rp)
    }
    assert inventory == {
        "VCPU": CAPACITY["vcpus"],
        "MEMORY_MB": CAPACITY["memory_mb"],
        "DISK_GB": CAPACITY["disk_gb"],
    }
