"""Burst VMs on Neutron ports, in the bed: real Nova and neutron-server with azfed's ML2 driver,
moto as the VPC.

A VPC subnet mirrored by `azfed network mirror` is an ordinary Neutron network: a server booted
on it in aws-az gets its port (and address) from Neutron, the EC2 instance runs with that
address, and the port's security groups are mirrored as EC2 groups that follow Neutron's rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.aws import MotoServer
from tests.e2e.federation import Federation, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def web_group(federation: Federation) -> Iterator[Any]:
    group = federation.ssh_group("e2e-web")
    yield group
    federation.conn.network.delete_security_group(group, ignore_missing=True)


def _boot_on(federation: Federation, network_id: str, name: str, groups: list[str]) -> Any:
    """Boot on the network, no AZ asked: the network's own AZ is where it must go."""
    return federation.create(
        name, networks=[{"uuid": network_id}], security_groups=[{"name": g} for g in groups]
    )


@pytest.fixture(scope="module")
def burst(federation: Federation, mirrored_network: dict[str, Any], web_group: Any) -> Any:
    server = _boot_on(federation, mirrored_network["network_id"], "port-burst", [web_group.name])
    return federation.conn.compute.wait_for_server(
        server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
    )


def _port_of(federation: Federation, server_id: str) -> Any:
    ports = list(federation.conn.network.ports(device_id=server_id))
    assert len(ports) == 1, ports
    return ports[0]


def _ec2_group(federation: Federation, neutron_id: str) -> dict[str, Any] | None:
    found = federation.ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [federation.vpc["vpc"]]},
            {"Name": "tag:azfed:neutron-security-group", "Values": [neutron_id]},
        ]
    )["SecurityGroups"]
    return dict(found[0]) if found else None


def _ingress(group: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {
        (p["IpProtocol"], p.get("FromPort", -1), r["CidrIp"])
        for p in group["IpPermissions"]
        for r in p.get("IpRanges", [])
    }


def test_burst_server_gets_its_address_from_neutron(
    federation: Federation, mirrored_network: dict[str, Any], burst: Any
) -> None:
    """Booted on the mirrored network with no AZ asked, the server lands in aws-az (the filter
    reads the network's AZ, as if it had been asked for); its port is bound to the proxy host
    and ACTIVE; Nova lists the port's address; the EC2 instance has that address in the
    mirrored VPC subnet; Neutron's pool leaves out AWS's reserved addresses."""
    assert (burst.availability_zone, burst.compute_host) == ("aws-az", "compute-aws")
    state = json.loads((federation.demo.home / "filter-state.json").read_text())
    [decision] = [d for d in state["recent"] if d["instance_uuid"] == burst.id]
    assert (decision["requested_az"], decision["rule"]) == ("aws-az", "explicit_az_honoured")
    port = _port_of(federation, burst.id)
    assert (port.binding_host_id, port.binding_vif_type, port.status) == (
        "compute-aws",
        "other",
        "ACTIVE",
    )
    address = port.fixed_ips[0]["ip_address"]
    listed = federation.conn.compute.get_server(burst.id).addresses
    assert [a["addr"] for net in listed.values() for a in net] == [address]
    (instance,) = federation.ec2_instances_for(burst.id)
    assert (instance["PrivateIpAddress"], instance["SubnetId"]) == (
        address,
        federation.vpc["ports_subnet"],
    )
    assert mirrored_network["allocation_pools"] == [{"start": "10.42.2.4", "end": "10.42.2.254"}]


def test_security_groups_follow_neutron(federation: Federation, burst: Any, web_group: Any) -> None:
    """The instance has the EC2 group mirrored from the port's group; a rule added in Neutron
    appears in it and a removed one disappears (read back with boto3); swapping the port's
    groups swaps the instance's, and the group no port uses any more is deleted from EC2."""
    conn = federation.conn
    mirror = _ec2_group(federation, web_group.id)
    assert mirror is not None
    (instance,) = federation.ec2_instances_for(burst.id)
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [mirror["GroupId"]]
    assert _ingress(mirror) == {("tcp", 22, "10.0.0.0/8")}

    added = conn.network.create_security_group_rule(
        security_group_id=web_group.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=443,
        port_range_max=443,
        remote_ip_prefix="0.0.0.0/0",
    )
    eventually(
        lambda: (
            ("tcp", 443, "0.0.0.0/0")
            in _ingress(_ec2_group(federation, web_group.id) or {"IpPermissions": []})
            or None
        ),
        "the new Neutron rule in the EC2 group",
        timeout=15,
    )
    conn.network.delete_security_group_rule(added)
    eventually(
        lambda: (
            _ingress(_ec2_group(federation, web_group.id) or {"IpPermissions": []})
            == {("tcp", 22, "10.0.0.0/8")}
            or None
        ),
        "the deleted Neutron rule gone from the EC2 group",
        timeout=15,
    )

    default = next(conn.network.security_groups(name="default", project_id=burst.project_id))
    conn.network.update_port(_port_of(federation, burst.id), security_groups=[default.id])
    default_mirror = eventually(
        lambda: _ec2_group(federation, default.id), "the default group's mirror", 15
    )

    def swapped() -> bool | None:
        (now,) = federation.ec2_instances_for(burst.id)
        return [g["GroupId"] for g in now["SecurityGroups"]] == [default_mirror["GroupId"]] or None

    eventually(swapped, "the instance's groups swapped to the default group's mirror", 15)
    eventually(
        lambda: _ec2_group(federation, web_group.id) is None or None,
        "the unused web group's mirror deleted",
        15,
    )


def test_failed_launch_leaves_no_port_and_no_instance(
    federation: Federation, mirrored_network: dict[str, Any], moto: MotoServer
) -> None:
    """EC2 refusing the address (in use outside Neutron) ends the boot in ERROR with EC2's
    reason; Nova deletes the port it made and no EC2 instance is left."""
    moto.fault(
        "RunInstances", "InvalidIPAddress.InUse", message="Address 10.42.2.9 is in use.", times=1
    )
    server = _boot_on(federation, mirrored_network["network_id"], "port-inuse", ["default"])
    failed = federation.conn.compute.wait_for_server(
        server, status="ERROR", failures=["ACTIVE"], wait=300, interval=0.5
    )
    assert "InvalidIPAddress.InUse" in failed.fault["message"]
    eventually(
        lambda: not list(federation.conn.network.ports(device_id=server.id)) or None,
        "the failed server's port deleted",
        60,
    )
    assert [
        i for i in federation.ec2_instances_for(server.id) if i["State"]["Name"] != "terminated"
    ] == []


def test_deleting_the_server_frees_its_port(
    federation: Federation, mirrored_network: dict[str, Any]
) -> None:
    """Deleting a burst server deletes its port (the address goes back to Neutron's pool) and
    terminates its EC2 instance."""
    conn = federation.conn
    server = _boot_on(federation, mirrored_network["network_id"], "port-delete", ["default"])
    server = conn.compute.wait_for_server(
        server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
    )
    address = _port_of(federation, server.id).fixed_ips[0]["ip_address"]
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=120)
    assert list(conn.network.ports(device_id=server.id)) == []
    assert not any(
        p.fixed_ips[0]["ip_address"] == address
        for p in conn.network.ports(network_id=mirrored_network["network_id"])
    )
    states = {i["State"]["Name"] for i in federation.ec2_instances_for(server.id)}
    assert states <= {"shutting-down", "terminated"}
