"""Neutron security groups mirrored into a VPC (moto's EC2 over HTTP): created once, kept equal
to Neutron's rules both ways, referenced groups, instance groups, deletion."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from azfed.neutron.ec2_mirror import GROUP_TAG, SecurityGroupMirror
from azfed.neutron.rules import actual

from testbed.aws import MotoServer


@pytest.fixture
def vpc(aws: MotoServer) -> tuple[Any, str]:
    client = boto3.client("ec2", **aws.client_kwargs())
    vpc_id = client.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    return client, vpc_id


def _group(gid: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": gid,
        "name": f"name-{gid}",
        "security_group_rules": [
            {"id": f"r{i}", "security_group_id": gid, "ethertype": "IPv4", **r}
            for i, r in enumerate(rules)
        ],
    }


def _described(client: Any, group_id: str) -> dict[str, Any]:
    return dict(client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0])


def test_sync_creates_one_tagged_group_equal_to_neutron(vpc: tuple[Any, str]) -> None:
    """The first sync creates the group in the VPC, tagged with the Neutron id, and makes its
    permissions Neutron's: EC2's default allow-all egress is gone when Neutron has no egress."""
    client, vpc_id = vpc
    mirror = SecurityGroupMirror(client, vpc_id)
    group = _group(
        "n-web",
        {"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443},
    )
    gid = mirror.sync(group)
    seen = _described(client, gid)
    assert seen["VpcId"] == vpc_id
    assert {"Key": GROUP_TAG, "Value": "n-web"} in seen["Tags"]
    assert [(p.direction, p.protocol, p.from_port, p.peer) for p in actual(seen)] == [
        ("ingress", "tcp", 443, "0.0.0.0/0")
    ]
    # idempotent: a second writer (another neutron worker, nova-compute) finds the same group
    assert SecurityGroupMirror(client, vpc_id).sync(group) == gid
    assert (
        len(
            client.describe_security_groups(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]},
                    {"Name": "group-name", "Values": ["azfed-n-web"]},
                ]
            )["SecurityGroups"]
        )
        == 1
    )


def test_rules_added_changed_removed_follow(vpc: tuple[Any, str]) -> None:
    """Adding, changing (Neutron: delete + create) and removing rules reach the EC2 group."""
    client, vpc_id = vpc
    mirror = SecurityGroupMirror(client, vpc_id)
    ssh = {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}
    gid = mirror.sync(_group("n-1", ssh))
    narrowed = {**ssh, "remote_ip_prefix": "192.168.0.0/16"}
    egress = {"direction": "egress", "protocol": "udp", "port_range_min": 53, "port_range_max": 53}
    mirror.sync(_group("n-1", narrowed, egress))
    assert {
        (p.direction, p.protocol, p.from_port, p.peer) for p in actual(_described(client, gid))
    } == {
        ("ingress", "tcp", 22, "192.168.0.0/16"),
        ("egress", "udp", 53, "0.0.0.0/0"),
    }
    mirror.sync(_group("n-1"))
    assert actual(_described(client, gid)) == set()


def test_remote_group_is_a_reference_to_its_mirror(vpc: tuple[Any, str]) -> None:
    """A rule naming another Neutron group refers to that group's EC2 mirror (created empty
    if no burst VM has it yet), and the default group's self-reference to itself."""
    client, vpc_id = vpc
    mirror = SecurityGroupMirror(client, vpc_id)
    gid = mirror.sync(
        _group(
            "n-app",
            {"direction": "ingress", "remote_group_id": "n-db"},
            {"direction": "ingress", "remote_group_id": "n-app"},
        )
    )
    db = mirror.find("n-db")
    assert db is not None
    peers = {p.peer for p in actual(_described(client, gid))}
    assert peers == {db, gid}


def test_instance_groups_and_deletion(vpc: tuple[Any, str]) -> None:
    """A port's new groups are applied to its live instance; a group still used by an instance
    is not deleted (deferred), and is once the instance is gone."""
    client, vpc_id = vpc
    subnet = client.create_subnet(VpcId=vpc_id, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    mirror = SecurityGroupMirror(client, vpc_id)
    first = mirror.sync(_group("n-a"))
    instance = client.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        SecurityGroupIds=[first],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "azfed:instance-uuid", "Value": "u-1"}]}
        ],
    )["Instances"][0]["InstanceId"]
    assert mirror.set_instance_groups("u-1", ["n-b"]) == instance
    second = mirror.find("n-b")
    groups = client.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0][
        "SecurityGroups"
    ]
    assert [g["GroupId"] for g in groups] == [second]
    assert mirror.set_instance_groups("u-unknown", ["n-b"]) is None
    assert mirror.delete("n-a") is True
    assert mirror.find("n-a") is None
    assert mirror.delete("n-gone") is True  # never mirrored: nothing to do
